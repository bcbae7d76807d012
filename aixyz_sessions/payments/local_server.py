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
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import ValidationError
from x402.schemas import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    PaymentRequirementsV1,
)

from ..asgi_json import send_json
from .local import LocalFacilitator, get_local_facilitator

__all__ = ["LocalFacilitatorApp", "main"]

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
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = json.loads(body)
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


def main(argv: list[str] | None = None) -> None:
    """Serve the local facilitator with uvicorn (a dev dependency)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4020)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
