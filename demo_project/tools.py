"""The demo's two agent tools: store and read content in the payer's session.

Defined once with ``@tool``; served over HTTP (``/tools/``), MCP (``/mcp``)
and WebSocket (``/ws/tools/``). Both are paid, so inside them
``get_session()`` is the session of whoever signed the payment. A payer of
either tool within the last 24 hours (``AIXYZ_X402["SIGN_IN_WINDOW"]``) may
read with ``get-content`` by signing in with the same wallet instead of
paying again (x402's sign-in-with-x: ``sign_in="after_any_payment"``).

A key or value the session store refuses (empty, over 512 bytes, NUL...) is
not caught here: it reaches the transport as ``invalid_arguments`` and the
call is not charged. Listing is paged (at most :data:`MAX_PAGE_ENTRIES`
entries and about :data:`PAGE_BYTES` of values per call, with a cursor), so
one cheap read can never return the whole session at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from aixyz_sessions import Session, get_session
from aixyz_sessions.tools import tool

NO_SESSION = {
    "success": False,
    "error": "no session: this tool needs a verified x402 payment or sign-in",
}


#: Most entries one listing call returns.
MAX_PAGE_ENTRIES = 100
#: Values returned by one listing call stop growing past this many UTF-8 bytes
#: (a page always holds at least one entry, and one value is at most 1 MiB).
PAGE_BYTES = 256 * 1024
#: How many values are fetched from the store at once while a page is filled.
_FETCH = 8


@tool(
    name="put-content",
    # No final period: the SDK's paywall page appends ". To access this content...".
    description="Store a value under a key in your session; a null value deletes the key",
    price="$0.01",
)
async def put_content(key: str, value: str | None) -> dict[str, Any]:
    # ``value`` is required (null allowed): forgetting it must not delete anything.
    session = get_session()
    if session is None:
        return dict(NO_SESSION)
    if value is None:
        return {"success": True, "key": key, "deleted": await session.delete(key)}
    await session.set(key, value)
    return {"success": True, "key": key, "value": value}


@tool(
    name="get-content",
    description=(
        "Read the value of a key from your session; without a key, list your content "
        "a page at a time (pass the returned cursor to get the next page)."
    ),
    price="$0.001",
    sign_in="after_any_payment",
)
async def get_content(
    key: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE_ENTRIES)] = 20,
) -> dict[str, Any]:
    session = get_session()
    if session is None:
        return dict(NO_SESSION)
    if key is None:
        return await _page(session, cursor, limit)
    value = await session.get(key)
    if value is None:
        return {"success": False, "error": f"no content under key {key!r}"}
    return {"success": True, "key": key, "value": value}


async def _page(session: Session, cursor: str | None, limit: int) -> dict[str, Any]:
    """Up to ``limit`` entries after ``cursor``, their values bounded by :data:`PAGE_BYTES`.

    Keys are listed first (cheap); values are read a few at a time until the
    byte budget is spent. When the page stops early, a keys-only listing of
    exactly the keys looked at gives the cursor to continue from.
    """
    keys = await session.list(cursor=cursor, limit=limit, keys_only=True)
    names = list(keys.entries)
    content: dict[str, str] = {}
    size, seen = 0, 0
    while seen < len(names) and (not content or size < PAGE_BYTES):
        batch = names[seen : seen + _FETCH]
        values = await session.get_many(batch)
        for name in batch:
            value = values.get(name)
            if content and size >= PAGE_BYTES:
                break
            seen += 1
            if value is not None:  # expired since it was listed
                content[name] = value
                size += len(value.encode("utf-8", "surrogatepass"))
    next_cursor = keys.cursor
    if seen < len(names):
        next_cursor = (await session.list(cursor=cursor, limit=seen, keys_only=True)).cursor
    result: dict[str, Any] = {"success": True, "content": content, "count": len(content)}
    if next_cursor is not None:
        result["cursor"] = next_cursor
    return result
