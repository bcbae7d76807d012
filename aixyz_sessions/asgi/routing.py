"""Which app answers a scope: ``lifespan`` here, HTTP ``/mcp`` to the MCP app, the rest on.

:class:`McpRouter` splits HTTP between the MCP app and Django;
:class:`Application` answers ``lifespan`` itself and hands every other scope
to channels' protocol router.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..lazy import Lazy
from .protocol import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from .lifespan import Lifespan

__all__ = ["MCP_MODULE", "MCP_PREFIX", "Application", "McpRouter"]

MCP_PREFIX = "/mcp"
MCP_MODULE = "aixyz_sessions.tools.mcp"


def _is_mcp_path(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path == MCP_PREFIX or path.startswith(MCP_PREFIX + "/")


class McpRouter:
    """HTTP: ``/mcp`` and below to the MCP app, the rest to ``django``; ``lifespan`` handled.

    The MCP app comes from ``mcp_asgi_app()`` in :data:`MCP_MODULE`, imported
    once on first need (the lifespan startup or the first ``/mcp`` request),
    so serving Django alone never loads the MCP SDK.
    """

    def __init__(self, django: ASGIApp, *, loader: Callable[[], ASGIApp] | None = None):
        self.django = django
        self._mcp: Lazy[ASGIApp] = Lazy(loader or _load_mcp_app)

    def mcp_app(self) -> ASGIApp:
        """The MCP app, loaded on first use."""
        return self._mcp.get()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one HTTP request."""
        app = self.mcp_app() if _is_mcp_path(scope) else self.django
        await app(scope, receive, send)


def _load_mcp_app() -> ASGIApp:
    app: ASGIApp = importlib.import_module(MCP_MODULE).mcp_asgi_app()
    return app


class Application:
    """``lifespan`` here, everything else to channels' router."""

    def __init__(self, router: ASGIApp, lifespan: Lifespan) -> None:
        self.router = router
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
        else:
            await self.router(scope, receive, send)
