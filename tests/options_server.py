"""The payment-options app (``tests.options_app``) served by uvicorn for a block: its base URL.

Shared by the end-to-end tests of payment options and channels: the tools of
``options_tools()``, the agent, every transport, and the LocalFacilitator;
the runtime, the agent and the MCP server are rebuilt for the block's
``AIXYZ_X402`` and again after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.test import override_settings

from aixyz_sessions.agent.server import reset_agent
from aixyz_sessions.asgi import get_asgi_application
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.tools.mcp import reset_mcp_server
from tests.agent_app import AGENT
from tests.options_app import SETTINGS, options_tools
from tests.payments_helpers import LOCAL, MIDDLEWARE, serve


def _reset() -> None:
    reset_runtime()
    reset_agent()
    reset_mcp_server()


@contextmanager
def options_server(x402: dict[str, Any] | None = None, **settings: Any) -> Iterator[str]:
    """Serve the options app with ``x402`` (default: the local facilitator) and ``settings``."""
    values = {
        "MIDDLEWARE": MIDDLEWARE,
        "AIXYZ_X402": LOCAL if x402 is None else x402,
        "AIXYZ_AGENT": AGENT,
        **SETTINGS,
        **settings,
    }
    with options_tools(), override_settings(**values):
        _reset()
        try:
            with serve(get_asgi_application(), lifespan="on") as url:
                yield url
        finally:
            get_local_facilitator().ledger.fail_settlements = None
            _reset()


def with_channels(storage: str = "database") -> dict[str, Any]:
    """``LOCAL`` with payment channels kept in ``storage``."""
    return {**LOCAL, "BATCH_SETTLEMENT": {"STORAGE": storage}}
