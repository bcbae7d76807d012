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
  given the request unchanged); every other HTTP path -> Django;
* WebSocket ``/ws/tools/`` -> :class:`~aixyz_sessions.tools.consumers.ToolConsumer`
  behind two checks: its ``Host`` must be one of ``ALLOWED_HOSTS`` (as Django
  checks every HTTP request's; channels checks none), and a browser (it
  always sends ``Origin``) must come from ``ALLOWED_HOSTS``, as with
  channels' ``AllowedHostsOriginValidator``; a client without ``Origin`` (an
  agent, not a browser) is let in, since every paid message carries its own
  signed payment and a sign-in names this server's own origin (see
  :func:`~aixyz_sessions.payments.paid_call.sign_in_origin`);
* ``lifespan``: startup and shutdown are acknowledged and forwarded to the
  MCP app (its session manager runs for the server's lifetime); channels'
  router alone would raise on this scope.

``uvicorn aixyz_sessions.asgi:application`` also works once
``DJANGO_SETTINGS_MODULE`` is set: ``application`` is built on first access.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .lazy import Lazy

__all__ = ["MCP_MODULE", "MCP_PREFIX", "McpRouter", "get_asgi_application"]

logger = logging.getLogger("aixyz_sessions.asgi")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[Any]]

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


class _Lifespan:
    """Answer the ``lifespan`` scope, forwarding startup/shutdown to the MCP app.

    The MCP app's lifespan runs in its own task fed through a queue; an app
    that does not speak lifespan (it raises, or returns without completing
    startup) is simply not forwarded to.
    """

    def __init__(self, router: McpRouter) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner: _InnerLifespan | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    inner = _InnerLifespan(self.router.mcp_app(), scope)
                    failure = await inner.startup()
                    if failure is not None:
                        await send({"type": "lifespan.startup.failed", "message": failure})
                        return
                except Exception as exc:
                    logger.exception("ASGI lifespan startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if inner is not None:
                    await inner.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _InnerLifespan:
    """One app's lifespan protocol, driven from outside."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self._app = app
        self._scope = scope
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._active = False

    async def _run(self) -> None:
        try:
            await self._app(dict(self._scope), self._inbox.get, self._outbox.put)
        except Exception:  # an app without lifespan support
            logger.debug("MCP app does not handle lifespan", exc_info=True)
        finally:
            await self._outbox.put({"type": "_finished"})

    async def startup(self) -> str | None:
        """Start the app's lifespan; a failure message, or ``None``."""
        self._task = asyncio.create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        reply = await self._outbox.get()
        if reply["type"] == "lifespan.startup.failed":
            return str(reply.get("message", "MCP app startup failed"))
        self._active = reply["type"] == "lifespan.startup.complete"
        return None

    async def shutdown(self) -> None:
        """Stop the app's lifespan and wait for it."""
        if self._active:
            await self._inbox.put({"type": "lifespan.shutdown"})
            while (await self._outbox.get())["type"] not in (
                "lifespan.shutdown.complete",
                "lifespan.shutdown.failed",
                "_finished",
            ):
                pass
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class _Application:
    """``lifespan`` here, everything else to channels' router."""

    def __init__(self, router: ASGIApp, lifespan: _Lifespan) -> None:
        self.router = router
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
        else:
            await self.router(scope, receive, send)


def _host_checked(app: ASGIApp) -> ASGIApp:
    """Refuse a WebSocket whose ``Host`` Django would refuse (``ALLOWED_HOSTS``).

    A scope that names no host at all (no ``Host`` header, no server address)
    does not come from a network client: an in-process test communicator.
    """
    from channels.security.websocket import WebsocketDenier  # type: ignore[import-untyped]

    from .hosts import host_error, scope_host

    async def checked(scope: Scope, receive: Receive, send: Send) -> None:
        problem = host_error(scope) if scope_host(scope) else None
        if problem is not None:
            logger.warning("WebSocket refused: %s", problem)
            await WebsocketDenier()(scope, receive, send)
            return
        await app(scope, receive, send)

    return checked


def _origin_checked(app: ASGIApp) -> ASGIApp:
    """``AllowedHostsOriginValidator`` that also admits connections without ``Origin``."""
    from channels.security.websocket import OriginValidator
    from django.conf import settings

    class AgentOriginValidator(OriginValidator):  # type: ignore[misc]
        def valid_origin(self, parsed_origin: Any) -> bool:
            return parsed_origin is None or bool(super().valid_origin(parsed_origin))

    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    validator: ASGIApp = AgentOriginValidator(app, allowed)
    return validator


def get_asgi_application() -> ASGIApp:
    """Build the ASGI app (sets Django up; ``DJANGO_SETTINGS_MODULE`` must be set).

    Runs this app's system checks first and raises
    :class:`~aixyz_sessions.startup.NotReady` listing every error (a wrong
    store path, a missing ``PAY_TO``, tables not migrated...), so the server
    refuses to start instead of failing at the first paid request.
    """
    from django.core.asgi import get_asgi_application as django_asgi_application

    django_app = django_asgi_application()  # django.setup() before importing consumers

    from .startup import ensure_ready

    # Refuse to start on a setting that cannot work, naming it: servers do not
    # run `manage.py check`, and otherwise the first paid request would be a 500.
    ensure_ready()
    from .single_process import warn_if_several_workers

    warn_if_several_workers()

    from channels.routing import (  # type: ignore[import-untyped]
        ProtocolTypeRouter,
        URLRouter,
    )
    from django.urls import re_path

    from .tools.consumers import ToolConsumer

    http = McpRouter(django_app)
    tools = URLRouter([re_path(r"^ws/tools/?$", ToolConsumer.as_asgi())])
    websocket = _host_checked(_origin_checked(tools))
    router = ProtocolTypeRouter({"http": http, "websocket": websocket})
    return _Application(router, _Lifespan(http))


_application: Lazy[ASGIApp] = Lazy(get_asgi_application)


def __getattr__(name: str) -> Any:
    """``application``: built by :func:`get_asgi_application` on first access."""
    if name != "application":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _application.get()
