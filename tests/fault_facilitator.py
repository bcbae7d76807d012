"""The local facilitator over HTTP, behind a wrapper a test can make slow or broken.

``FaultyFacilitator`` wraps :class:`~aixyz_sessions.payments.local_server.LocalFacilitatorApp`
(which settles on the process-wide local ledger). Per path (``/supported``,
``/verify``, ``/settle``) a test sets one fault:

* ``("delay", seconds)``: answer after ``seconds``; if the client hangs up
  first (it timed out), the request is dropped and never reaches the
  facilitator, so a timed-out settlement moves no money;
* ``("status", code)``: answer ``code`` with a JSON error, never forwarding;
* ``("garbage", None)``: answer 200 with a body that is not JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aixyz_sessions.payments.local_server import LocalFacilitatorApp

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class FaultyFacilitator:
    """ASGI app: the local facilitator, with the faults in :attr:`faults` applied."""

    def __init__(self) -> None:
        self.inner = LocalFacilitatorApp()
        self.faults: dict[str, tuple[str, Any]] = {}
        self.calls: dict[str, int] = {}
        self.dropped: dict[str, int] = {}

    def reset(self) -> None:
        self.faults.clear()
        self.calls.clear()
        self.dropped.clear()

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        path = scope["path"].rstrip("/")
        self.calls[path] = self.calls.get(path, 0) + 1
        fault = self.faults.get(path)
        if fault is None:
            await self.inner(scope, receive, send)
            return
        kind, arg = fault
        body = await _read_body(receive)
        if kind == "status":
            await _answer(send, int(arg), json.dumps({"error": "injected failure"}).encode())
            return
        if kind == "garbage":
            await _answer(send, 200, b"<html>certainly not json</html>")
            return
        assert kind == "delay", kind
        try:
            message = await asyncio.wait_for(receive(), timeout=float(arg))
        except TimeoutError:
            pass  # the client waited that long: answer for real
        else:
            if message["type"] == "http.disconnect":
                self.dropped[path] = self.dropped.get(path, 0) + 1
                return
        replay: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.inner(scope, replayed, send)


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
