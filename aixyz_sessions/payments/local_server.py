"""The :class:`LocalFacilitator` over HTTP: the x402 facilitator API as an ASGI app.

``GET /supported``, ``POST /verify``, ``POST /settle`` with the bodies the
SDK's ``HTTPFacilitatorClient`` sends (``{"x402Version", "paymentPayload",
"paymentRequirements"}``), so the HTTP facilitator path can be exercised end
to end on loopback. No money moves (see :mod:`aixyz_sessions.payments.local`).

Run it::

    python -m aixyz_sessions.payments.local_server --port 4020
    # then AIXYZ_X402 = {..., "FACILITATOR_URL": "http://127.0.0.1:4020"}
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError
from x402.schemas import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    PaymentRequirementsV1,
)

from .. import bounded_json
from ..asgi.json_response import send_json
from .local import LocalFacilitator, get_local_facilitator

__all__ = ["MAX_BODY_BYTES", "LocalFacilitatorApp", "check_bind_host", "main"]

#: Largest request body read (a real verify/settle request is about 2 KB).
MAX_BODY_BYTES = 64 * 1024
#: The flag that lets the unauthenticated facilitator listen beyond loopback.
ALLOW_REMOTE_FLAG = "--allow-non-loopback"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LocalFacilitatorApp:
    """ASGI app serving one :class:`LocalFacilitator` (default: the process-wide one)."""

    def __init__(self, facilitator: LocalFacilitator | None = None) -> None:
        self._facilitator = facilitator

    @property
    def facilitator(self) -> LocalFacilitator:
        """The facilitator served."""
        if self._facilitator is None:
            self._facilitator = get_local_facilitator()
        return self._facilitator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"].rstrip("/")
        if method == "GET" and path == "/supported":
            supported = self.facilitator.get_supported()
            await send_json(send, 200, supported.model_dump(by_alias=True, exclude_none=True))
            return
        if method != "POST" or path not in ("/verify", "/settle"):
            await send_json(send, 404, {"error": "not found"})
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                await send_json(
                    send, 413, {"error": f"request body is larger than {MAX_BODY_BYTES} bytes"}
                )
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        try:
            request = bounded_json.loads(b"".join(chunks))
            v1 = request.get("x402Version") == 1
            payload_model = PaymentPayloadV1 if v1 else PaymentPayload
            requirements_model = PaymentRequirementsV1 if v1 else PaymentRequirements
            payload = payload_model.model_validate(request["paymentPayload"])
            requirements = requirements_model.model_validate(request["paymentRequirements"])
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
            await send_json(send, 400, {"error": f"invalid request: {exc}"})
            return
        if path == "/verify":
            result: Any = await self.facilitator.verify(payload, requirements)
        else:
            result = await self.facilitator.settle(payload, requirements)
        await send_json(send, 200, result.model_dump(by_alias=True, exclude_none=True))


app = LocalFacilitatorApp()


def check_bind_host(host: str, *, allow_remote: bool) -> str | None:
    """Why the facilitator must not listen on ``host``, or ``None``.

    It is unauthenticated and settles anything it verifies, so only a
    loopback address (or ``localhost``) is accepted unless the caller says
    otherwise with :data:`ALLOW_REMOTE_FLAG`.
    """
    if allow_remote or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"refusing to listen on {host!r}: the local facilitator is unauthenticated, "
        f"so it listens on loopback only (127.0.0.1, ::1, localhost). Pass "
        f"{ALLOW_REMOTE_FLAG} if you really mean to expose it."
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the local facilitator with uvicorn (a dev dependency)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4020)
    parser.add_argument(ALLOW_REMOTE_FLAG, action="store_true", dest="allow_remote")
    args = parser.parse_args(argv)
    problem = check_bind_host(args.host, allow_remote=args.allow_remote)
    if problem is not None:
        parser.error(problem)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
