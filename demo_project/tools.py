"""The demo's two agent tools: store and read content in the payer's session.

Defined once with ``@tool``; served over HTTP (``/tools/``), MCP (``/mcp``)
and WebSocket (``/ws/tools/``). Both are paid, so inside them
``get_session()`` is the session of whoever signed the payment.
"""

from __future__ import annotations

from typing import Any

from aixyz_sessions import get_session
from aixyz_sessions.tools import tool

NO_SESSION = {"success": False, "error": "no session: this tool needs a verified x402 payment"}


@tool(
    name="put-content",
    description="Store a value under a key in your session; a null value deletes the key.",
    price="$0.01",
)
async def put_content(key: str, value: str | None) -> dict[str, Any]:
    # ``value`` is required (null allowed): forgetting it must not delete anything.
    session = get_session()
    if session is None:
        return dict(NO_SESSION)
    try:
        if value is None:
            return {"success": True, "key": key, "deleted": await session.delete(key)}
        await session.set(key, value)
    except (TypeError, ValueError) as exc:
        return {"success": False, "error": str(exc)}
    return {"success": True, "key": key, "value": value}


@tool(
    name="get-content",
    description="Read the value of a key from your session, or all your content without a key.",
    price="$0.001",
)
async def get_content(key: str | None = None) -> dict[str, Any]:
    session = get_session()
    if session is None:
        return dict(NO_SESSION)
    try:
        if key is None:
            content: dict[str, str] = {}
            cursor = None
            while True:
                page = await session.list(cursor=cursor, limit=500)
                content.update(page.entries)
                cursor = page.cursor
                if cursor is None:
                    break
            return {"success": True, "content": content, "count": len(content)}
        value = await session.get(key)
    except (TypeError, ValueError) as exc:
        return {"success": False, "error": str(exc)}
    if value is None:
        return {"success": False, "error": f"no content under key {key!r}"}
    return {"success": True, "key": key, "value": value}
