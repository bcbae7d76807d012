"""The ASGI side of the MCP endpoint: Streamable HTTP without a lifespan.

FastMCP's session manager needs a running task group (``manager.run()``),
which a Starlette app would enter in its lifespan. Under the project's
channels ``ProtocolTypeRouter`` no lifespan events arrive, so
:class:`MCPApp` starts the manager itself on the first request, in a
background task on the event loop serving that request, and keeps it for the
life of the loop. Each event loop gets its own server and manager (anyio task
groups and streams belong to one loop); concurrent first requests share one
start-up. A lifespan, when one does arrive, is honoured: shutdown stops the
manager.

Hosts are checked against Django's ``ALLOWED_HOSTS`` (as ``HttpRequest.get_host``
does), and bodies against ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (a larger one is a
413 JSON error), since these requests never pass through Django's request
handling.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from mcp.server.fastmcp import FastMCP
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Receive, Scope, Send

from ... import bounded_json
from ...asgi.json_response import send_json
from ...hosts import host_error
from .server import MCP_PATH, build_mcp_server

__all__ = ["MCPApp", "bump_generation"]

logger = logging.getLogger("aixyz_sessions.tools")

_generations = itertools.count(1)
_generation = 0


def bump_generation() -> None:
    """Make every :class:`MCPApp` build a fresh server at its next request."""
    global _generation
    _generation = next(_generations)


@dataclass
class _Running:
    """One event loop's server, its session manager and the task that runs it."""

    generation: int
    server: FastMCP[Any]
    manager: StreamableHTTPSessionManager
    started: asyncio.Future[None]
    stop: asyncio.Event
    task: asyncio.Task[None]


async def _run_manager(
    manager: StreamableHTTPSessionManager, started: asyncio.Future[None], stop: asyncio.Event
) -> None:
    """Hold ``manager.run()`` open until ``stop`` is set (or the loop ends)."""
    try:
        async with manager.run():
            started.set_result(None)
            await stop.wait()
    except asyncio.CancelledError:
        if not started.done():
            started.cancel()
        raise
    except Exception as exc:
        logger.exception("the MCP session manager stopped")
        if not started.done():
            started.set_exception(exc)


class _TooLarge(Exception):
    pass


def _parse_error(body: bytes) -> str | None:
    """Why ``body`` is not UTF-8 JSON, or ``None``.

    The MCP SDK answers 500 for bodies its ``json.loads`` fails on other than
    by ``JSONDecodeError`` (bytes it guesses to be UTF-16), and its parser
    would crash the process on deep nesting (see :mod:`aixyz_sessions.bounded_json`),
    so bodies are checked here first, strictly as UTF-8, depth bounded.
    """
    try:
        bounded_json.loads(body.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError and JSONTooDeep
        return str(exc)
    return None


async def _buffered(receive: Receive, limit: int | None) -> tuple[Receive, bytes]:
    """Read the whole request body (at most ``limit`` bytes); a ``receive`` that replays it.

    The MCP transport reads the full body anyway; reading it here first lets a
    body over the limit be refused before anything parses it. Raises
    :class:`_TooLarge`. After the replay, ``receive`` is used again (disconnects).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            replay = [message]
            body = b""
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            body = b"".join(chunks)
            replay = [{"type": "http.request", "body": body, "more_body": False}]
            break

    async def replayed() -> Any:
        return replay.pop() if replay else await receive()

    return replayed, body


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class MCPApp:
    """ASGI app serving MCP Streamable HTTP at ``path`` (``/mcp``; ``/mcp/`` too).

    Other paths answer 404, a host outside ``ALLOWED_HOSTS`` 400, a server
    that cannot start 503. ``build`` makes the FastMCP server (default:
    :func:`~aixyz_sessions.tools.mcp.server.build_mcp_server`); it runs on the
    event loop, so it must not block.
    """

    def __init__(
        self,
        build: Callable[[], FastMCP[Any]] = build_mcp_server,
        *,
        path: str = MCP_PATH,
    ) -> None:
        self.build = build
        self.path = path.rstrip("/")
        self._lock = threading.Lock()
        self._running: dict[asyncio.AbstractEventLoop, _Running] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch one ASGI connection."""
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1000})
            return
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root + "/"):
            path = path[len(root) :]
        if path.rstrip("/") != self.path:
            await send_json(send, 404, {"error": "not_found", "message": f"MCP is at {self.path}"})
            return
        problem = host_error(scope)
        if problem is not None:
            await send_json(send, 400, {"error": "invalid_host", "message": problem})
            return
        limit: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        too_large = {
            "error": "request_too_large",
            "message": f"request body is larger than {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)",
        }
        if scope.get("method") == "POST":
            declared = _declared_length(scope)
            if limit is not None and declared is not None and declared > limit:
                await send_json(send, 413, too_large)
                return
            try:
                receive, body = await _buffered(receive, limit)
            except _TooLarge:
                await send_json(send, 413, too_large)
                return
            problem = _parse_error(body) if body else None
            if problem is not None:  # a JSON-RPC parse error, as the SDK would answer
                error = {"code": -32700, "message": f"Parse error: {problem}"}
                await send_json(send, 400, {"jsonrpc": "2.0", "id": None, "error": error})
                return
        try:
            manager = await self.manager()
        except Exception as exc:
            await send_json(
                send,
                503,
                {"error": "unavailable", "message": f"MCP server failed to start: {exc}"},
            )
            return
        await manager.handle_request(scope, receive, send)

    def server(self) -> FastMCP[Any] | None:
        """The FastMCP server serving the running event loop, if started."""
        running = self._running.get(asyncio.get_running_loop())
        return None if running is None else running.server

    async def manager(self) -> StreamableHTTPSessionManager:
        """The running session manager for this event loop, started on first use."""
        loop = asyncio.get_running_loop()
        replaced: _Running | None = None
        with self._lock:
            running = self._running.get(loop)
            if running is None or running.generation != _generation or running.task.done():
                replaced = running
                running = self._running[loop] = self._start(loop)
                for other in [other for other in self._running if other.is_closed()]:
                    del self._running[other]
        if replaced is not None:
            replaced.stop.set()
        await asyncio.shield(running.started)
        return running.manager

    def _start(self, loop: asyncio.AbstractEventLoop) -> _Running:
        server = self.build()
        server.streamable_http_app()  # creates server.session_manager
        manager = server.session_manager
        started: asyncio.Future[None] = loop.create_future()
        stop = asyncio.Event()
        # A fresh context: the first request's context variables must not be
        # inherited by the manager, which outlives it.
        task = loop.create_task(
            _run_manager(manager, started, stop),
            name="aixyz-sessions MCP session manager",
            context=contextvars.Context(),
        )
        return _Running(_generation, server, manager, started, stop, task)

    async def aclose(self) -> None:
        """Stop this event loop's session manager (lifespan shutdown; tests)."""
        with self._lock:
            running = self._running.pop(asyncio.get_running_loop(), None)
        if running is not None:
            running.stop.set()
            await asyncio.gather(running.task, return_exceptions=True)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
