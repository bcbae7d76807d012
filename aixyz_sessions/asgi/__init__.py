"""The project's one ASGI application: Django, the MCP server at ``/mcp``, tools over WebSocket.

In a project's ``asgi.py``::

    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

    from aixyz_sessions.asgi import get_asgi_application

    application = get_asgi_application()

(and ``ASGI_APPLICATION = "mysite.asgi.application"`` for channels'
``runserver``). Routing:

* HTTP ``/mcp`` and ``/mcp/...`` -> the MCP server
  (``aixyz_sessions.tools.mcp.mcp_asgi_app()``, imported on first use and
  given the request unchanged); every other HTTP path -> Django
  (:mod:`.routing`);
* WebSocket ``/ws/tools/`` -> :class:`~aixyz_sessions.tools.consumers.ToolConsumer`
  behind two checks (:mod:`.websocket`): its ``Host`` must be one of ``ALLOWED_HOSTS`` (as Django
  checks every HTTP request's; channels checks none), and a browser (it
  always sends ``Origin``) must come from ``ALLOWED_HOSTS``, as with
  channels' ``AllowedHostsOriginValidator``; a client without ``Origin`` (an
  agent, not a browser) is let in, since every paid message carries its own
  signed payment and a sign-in names this server's own origin (see
  :func:`~aixyz_sessions.payments.paid_call.sign_in_origin`);
* ``lifespan``: startup and shutdown are acknowledged and forwarded to the
  MCP app (its session manager runs for the server's lifetime); channels'
  router alone would raise on this scope (:mod:`.lifespan`).

``uvicorn aixyz_sessions.asgi:application`` also works once
``DJANGO_SETTINGS_MODULE`` is set: ``application`` is built on first access.
"""

from __future__ import annotations

from typing import Any

from ..lazy import Lazy
from .lifespan import Lifespan
from .protocol import ASGIApp
from .routing import MCP_MODULE, MCP_PREFIX, Application, McpRouter
from .websocket import host_checked, origin_checked

__all__ = ["MCP_MODULE", "MCP_PREFIX", "McpRouter", "get_asgi_application"]


def get_asgi_application() -> ASGIApp:
    """Build the ASGI app (sets Django up; ``DJANGO_SETTINGS_MODULE`` must be set).

    Runs this app's system checks first and raises
    :class:`~aixyz_sessions.checks.startup.NotReady` listing every error (a wrong
    store path, a missing ``PAY_TO``, tables not migrated...), so the server
    refuses to start instead of failing at the first paid request.
    """
    from django.core.asgi import get_asgi_application as django_asgi_application

    django_app = django_asgi_application()  # django.setup() before importing consumers

    from ..checks.startup import ensure_ready

    # Refuse to start on a setting that cannot work, naming it: servers do not
    # run `manage.py check`, and otherwise the first paid request would be a 500.
    ensure_ready()
    from ..checks.workers import warn_if_several_workers
    from ..metrics.checks import warn_if_metrics_split

    warn_if_several_workers()
    warn_if_metrics_split()

    from channels.routing import (  # type: ignore[import-untyped]
        ProtocolTypeRouter,
        URLRouter,
    )
    from django.urls import re_path

    from ..tools.consumers import ToolConsumer

    http = McpRouter(django_app)
    from ..checks.served import mark_our_asgi_built

    mark_our_asgi_built()  # what the tool list and the registration file may advertise
    tools = URLRouter([re_path(r"^ws/tools/?$", ToolConsumer.as_asgi())])
    websocket = host_checked(origin_checked(tools))
    router = ProtocolTypeRouter({"http": http, "websocket": websocket})
    return Application(router, Lifespan(http))


_application: Lazy[ASGIApp] = Lazy(get_asgi_application)


def __getattr__(name: str) -> Any:
    """``application``: built by :func:`get_asgi_application` on first access."""
    if name != "application":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _application.get()
