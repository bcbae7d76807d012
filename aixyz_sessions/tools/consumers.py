"""The registered tools over a WebSocket (channels), one JSON message per call.

Request ``{"id": "1", "tool": "put", "arguments": {...}, "payment": {...}}``
(``arguments`` and ``payment`` optional; ``payment`` is the x402 payment
payload an x402 client signs, or its base64 header form). A returning payer
of a tool declared with ``sign_in=`` sends ``"sign_in": <the SIGN-IN-WITH-X
payload object or its base64 form>`` instead of ``payment``. Reply
``{"id": "1", "result": ..., "payment_response": "<base64>"}`` (the latter
only for paid calls, encoded as the SDK encodes ``PAYMENT-RESPONSE``) or
``{"id": "1", "error": {"code": ..., "message": ..., ...}}``.

Error codes: ``invalid_message`` (not JSON text, not an object, bad ``id``
or ``tool``; ``id`` is ``null`` when it could not be read), ``unknown_tool``,
``invalid_arguments`` (+ ``errors`` [{field, message}]), ``payment_required``
(+ ``payment_required``: the SDK's ``PaymentRequired`` JSON, what an HTTP
402 carries), ``invalid_payment`` (+ ``payment_required`` when known),
``sign_in_required`` and ``invalid_sign_in`` (+ ``payment_required`` with the
sign-in-with-x extension offered),
``facilitator_unavailable``, ``facilitator_timeout``, ``settlement_failed``,
``tool_error``, ``session_store_unavailable``, ``session_store_misconfigured``,
``message_too_large``,
``internal_error``. An error never closes the connection.

Messages of one connection run concurrently (at most
:attr:`ToolConsumer.max_in_flight` at a time; more wait), so replies may
arrive out of order: match them by ``id``. Each message runs in its own
task with its own payer binding (the payment's signer for a paid call,
nothing otherwise): nothing leaks between messages or connections. Calls
still running when the socket closes are cancelled, unsettled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer  # type: ignore[import-untyped]
from django.conf import settings

from .. import bounded_json
from ..context import payer_context
from .calls import call_tool
from .failures import tool_failure
from .registry import registry

__all__ = ["ToolConsumer"]

logger = logging.getLogger("aixyz_sessions.tools")

MAX_ID_LENGTH = 256


class MessageError(ValueError):
    """A message the consumer cannot act on; becomes an ``error`` reply."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """``{"code", "message", ...}``."""
        return {"code": self.code, "message": self.message, **self.extra}


def _read_id(message: dict[str, Any]) -> str | int:
    if "id" not in message:
        raise MessageError("invalid_message", "message has no 'id' (a string or an integer)")
    value = message["id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MessageError("invalid_message", "'id' must be a string or an integer")
    if isinstance(value, str) and not 0 < len(value) <= MAX_ID_LENGTH:
        raise MessageError("invalid_message", f"'id' must be 1-{MAX_ID_LENGTH} characters")
    return value


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class ToolConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Serve the tool registry over a WebSocket; see the module docstring for the protocol."""

    #: How many calls of one connection may run at once.
    max_in_flight = 16
    #: Largest message accepted, in bytes; ``None``: Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    #: (the limit of an HTTP tool call's body). Larger ones get ``message_too_large``.
    max_message_bytes: int | None = None

    def _message_limit(self) -> int | None:
        if self.max_message_bytes is not None:
            return self.max_message_bytes
        limit: int | None = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return limit

    async def connect(self) -> None:
        """Accept the connection."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.max_in_flight)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        """Cancel the calls still running (they are not settled)."""
        tasks = list(getattr(self, "_tasks", ()))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Decode one message and start handling it in its own task."""
        if text_data is None:
            await self._reply(None, error={"code": "invalid_message", "message": "send JSON text"})
            return
        limit = self._message_limit()
        if limit is not None and len(text_data) > limit // 4 and _utf8_size(text_data) > limit:
            await self._reply(
                None,
                error={
                    "code": "message_too_large",
                    "message": f"a message is at most {limit} bytes",
                },
            )
            return
        try:
            message = bounded_json.loads(text_data)
        except ValueError as exc:
            await self._reply(
                None, error={"code": "invalid_message", "message": f"not JSON: {exc}"}
            )
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, message: object) -> None:
        """Answer one message; every outcome becomes a reply."""
        message_id: str | int | None = None
        async with payer_context(None):  # a fresh binding for this message
            try:
                if not isinstance(message, dict):
                    raise MessageError(
                        "invalid_message",
                        f"a message is a JSON object, not {type(message).__name__}",
                    )
                message_id = _read_id(message)
                reply = await self._call(message)
            except MessageError as exc:
                await self._reply(message_id, error=exc.to_dict())
            except Exception as exc:
                failure = tool_failure(exc, "a WebSocket tool call")
                if failure is None:
                    logger.exception("tool call over WebSocket failed")
                    error = {"code": "internal_error", "message": "internal error"}
                else:
                    error = failure.to_dict()
                await self._reply(message_id, error=error)
            else:
                await self._reply(message_id, **reply)

    async def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        name = message.get("tool")
        if not isinstance(name, str) or not name:
            raise MessageError("invalid_message", "'tool' must be a tool name (a string)")
        item = registry.get(name)
        if item is None:
            raise MessageError("unknown_tool", f"no tool named {name!r}")
        outcome = await call_tool(
            item,
            message.get("arguments"),
            message.get("payment"),
            resource=self._resource(name),
            sign_in=message.get("sign_in"),
            origin=self._origin(),
        )
        reply: dict[str, Any] = {"result": outcome.result}
        if outcome.payment_response is not None:
            reply["payment_response"] = outcome.payment_response
        return reply

    def _resource(self, name: str) -> str:
        """The URL reported in a tool's payment requirements: this socket, the tool as fragment."""
        headers = dict(self.scope.get("headers") or [])
        host = headers.get(b"host", b"localhost").decode("latin1")
        scheme = self.scope.get("scheme") or "ws"
        return f"{scheme}://{host}{self.scope.get('path', '/')}#{name}"

    def _origin(self) -> str | None:
        """``http(s)://host`` this socket reached (see ``hosts.scope_origin``): what a sign-in
        must name, unless ``AIXYZ_X402["ORIGIN"]`` says otherwise."""
        from ..hosts import scope_origin

        return scope_origin(self.scope)

    async def _reply(self, message_id: str | int | None, **body: Any) -> None:
        await self.send(text_data=json.dumps({"id": message_id, **body}))
