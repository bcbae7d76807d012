"""Shared settings and helpers for the payment tests."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
