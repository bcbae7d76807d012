"""The ``lifespan`` scope: acknowledged here and forwarded to the MCP app.

The MCP app's session manager runs for the server's lifetime; channels'
router alone would raise on this scope.
"""

from __future__ import annotations

import asyncio
import logging

from .protocol import ASGIApp, Message, Receive, Scope, Send
from .routing import McpRouter

__all__ = ["InnerLifespan", "Lifespan"]

logger = logging.getLogger("aixyz_sessions.asgi")


class Lifespan:
    """Answer the ``lifespan`` scope, forwarding startup/shutdown to the MCP app.

    The MCP app's lifespan runs in its own task fed through a queue; an app
    that does not speak lifespan (it raises, or returns without completing
    startup) is simply not forwarded to.
    """

    def __init__(self, router: McpRouter) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner: InnerLifespan | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    inner = InnerLifespan(self.router.mcp_app(), scope)
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
                await _flush_spans()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _flush_spans() -> None:
    """The spans still queued go out before the process ends (see ``tracing.flush``)."""
    from ..tracing import flush

    try:
        await asyncio.to_thread(flush)
    except Exception:  # an exporter that fails must not hold up the shutdown
        logger.exception("ASGI lifespan shutdown: the queued spans could not be sent")


class InnerLifespan:
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
