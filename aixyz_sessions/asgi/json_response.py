"""``send_json``: a complete JSON HTTP response on a raw ASGI ``send``.

For the small ASGI apps outside Django (the ``/mcp`` mount, the local
facilitator server, the router in ``aixyz_sessions.asgi``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[Any], Awaitable[None]]


async def send_json(send: Send, status: int, body: Any) -> None:
    """Send ``body`` as a JSON response with ``status``."""
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
