"""The MCP endpoint: every registry tool over Streamable HTTP, paid ones through x402.

::

    from aixyz_sessions.tools.mcp import mcp_asgi_app
    application = ProtocolTypeRouter({"http": URLRouter([
        re_path(r"^mcp(/|$)", mcp_asgi_app()), re_path(r"", django_asgi_app)])})

* :func:`build_mcp_server` makes a stateless FastMCP server with the tools
  registered at that moment: name, description and input schema as in the
  registry; arguments validated by the registry (an invalid call is an
  ``isError`` result naming the field); paid tools wrapped by the SDK's
  ``x402.mcp`` payment wrapper, run inside ``payer_context(payer)``; free
  tools inside ``payer_context(None)``.
* :func:`mcp_asgi_app` serves it at ``/mcp``, starting the session manager
  on the first request (no lifespan needed).
* :func:`reset_mcp_server` makes the served app pick up tools registered
  since (and a changed ``AIXYZ_X402``): the next request builds a new server.

Paid calls follow the x402 MCP transport: without ``_meta["x402/payment"]``
the result is ``isError`` with the ``PaymentRequired`` object in
``structuredContent`` (and as JSON text); with a valid payment the tool runs,
the payment settles, and ``_meta["x402/payment-response"]`` carries the
settlement. An authorization is used once (replay guard).

The modules: :mod:`.server` (the FastMCP server, one :class:`RegistryTool`
per registry tool), :mod:`.payments` (a paid tool behind ``x402.mcp``),
:mod:`.results` (the result shapes), :mod:`.asgi` (:class:`MCPApp`) and
:mod:`.logging_guard` (the host's logging left alone).
"""

from __future__ import annotations

from ...lazy import Lazy
from .asgi import MCPApp, bump_generation
from .payments import REPLAYED, tool_resource_url
from .server import MCP_PATH, SIGN_IN_META, RegistryTool, build_mcp_server

__all__ = [
    "MCP_PATH",
    "REPLAYED",
    "SIGN_IN_META",
    "MCPApp",
    "RegistryTool",
    "build_mcp_server",
    "mcp_asgi_app",
    "reset_mcp_server",
    "tool_resource_url",
]

_app: Lazy[MCPApp] = Lazy(MCPApp)


def mcp_asgi_app() -> MCPApp:
    """The process's ASGI app for ``/mcp`` (one instance, built lazily per event loop)."""
    return _app.get()


def reset_mcp_server() -> None:
    """Rebuild the served MCP server at the next request (new tools; tests).

    A request still running on the previous server on the same event loop
    is cut short when the new one starts.
    """
    bump_generation()
