"""URLconf for the A2A tests: the agent (card and /agent) and the HTTP tools."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.urls import include, path

from tests.settings import LOOPBACK_HOSTS

AGENT = {
    "NAME": "Test Agent",
    "DESCRIPTION": "Invokes the example tools.",
    "VERSION": "2.0.0",
    "PRICE": "$0.001",
}

urlpatterns = [
    path("", include("aixyz_sessions.agent.urls")),
    path("tools/", include("aixyz_sessions.tools.urls")),
]


@contextmanager
def agent_server(**settings: Any) -> Iterator[str]:
    """The agent and the example tools served by uvicorn on loopback; its base URL.

    ``settings`` override the test settings (``AIXYZ_AGENT``, say).
    """
    from django.core.asgi import get_asgi_application
    from django.test import override_settings

    from aixyz_sessions.agent.server import reset_agent
    from aixyz_sessions.payments.runtime import reset_runtime
    from tests import mcp_helpers
    from tests.payments_helpers import LOCAL, MIDDLEWARE, serve

    mcp_helpers.register_examples()
    values = {
        "MIDDLEWARE": MIDDLEWARE,
        "ROOT_URLCONF": __name__,
        "AIXYZ_X402": LOCAL,
        "AIXYZ_AGENT": AGENT,
        "ALLOWED_HOSTS": LOOPBACK_HOSTS,
        **settings,
    }
    with override_settings(**values):
        reset_runtime()
        reset_agent()
        try:
            with serve(get_asgi_application()) as url:
                yield url
        finally:
            mcp_helpers.unregister_examples()
            reset_agent()
            reset_runtime()
