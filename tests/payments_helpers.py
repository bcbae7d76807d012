"""Shared settings and helpers for the payment tests."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from x402.http import decode_payment_required_header
from x402.schemas import PaymentRequired

PAY_TO = "0x" + "ab" * 20
NETWORK = "eip155:84532"
MIDDLEWARE = ["aixyz_sessions.payments.middleware.X402Middleware"]
LOCAL = {"PAY_TO": PAY_TO, "NETWORK": NETWORK, "FACILITATOR": "local"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def decode(header: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base64.b64decode(header))
    return data


def encode(data: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def assert_one_requirement(
    required: PaymentRequired | Mapping[str, Any] | str,
    *,
    amount: str,
    pay_to: str = PAY_TO,
    network: str = NETWORK,
) -> PaymentRequired:
    """Check that a 402 asks for exactly one ``exact`` payment of ``amount`` atomic units.

    ``required`` is the SDK's ``PaymentRequired``, its JSON object (as a
    WebSocket error carries it) or the ``PAYMENT-REQUIRED`` header; returns the
    decoded ``PaymentRequired`` for further checks.
    """
    if isinstance(required, str):
        required = decode_payment_required_header(required)
    elif not isinstance(required, PaymentRequired):
        required = PaymentRequired.model_validate(required)
    assert isinstance(required, PaymentRequired), required
    (accept,) = required.accepts
    assert (accept.scheme, accept.network, accept.pay_to, accept.amount) == (
        "exact",
        network,
        pay_to,
        amount,
    )
    return required


@contextmanager
def serve(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """Run an ASGI ``app`` under uvicorn on a free loopback port, in a thread; its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def paid_views() -> Iterator[None]:
    """``tests.payments_urls`` behind X402Middleware over the local facilitator."""
    from django.test import override_settings

    from aixyz_sessions.payments.local import get_local_facilitator

    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
    ):
        yield
    get_local_facilitator().ledger.fail_settlements = None
