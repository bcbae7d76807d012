"""The demo's agent tools: store, read, list and summarize content in the payer's session.

Defined once with ``@tool``; served over HTTP (``/tools/``), MCP (``/mcp``)
and WebSocket (``/ws/tools/``). All are paid, so inside them
``get_session()`` is the session of whoever signed the payment. A payer of
any tool within the last 24 hours (``AIXYZ_X402["SIGN_IN_WINDOW"]``) may
read with ``get-content`` by signing in with the same wallet instead of
paying again (x402's sign-in-with-x: ``sign_in="after_any_payment"``).

Two of them show the other ways to price a call:

* ``list-keys`` is offered on two networks (``accepts=[...]``): Base Sepolia
  and Base, in that order; the payer pays on either, and the session is the
  same. (With the local facilitator no money moves on either; with a real
  facilitator Base is real USDC, and the facilitator must support both.)
* ``summarize-content`` is metered (x402 ``upto``): the payer authorizes
  :data:`SUMMARY_MAX` and the call settles what :func:`summary_price` makes
  of the session's size, reported with ``charge()``.

A key or value the session store refuses (empty, over 512 bytes, NUL...) is
not caught here: it reaches the transport as ``invalid_arguments`` and the
call is not charged. Listing is paged (at most :data:`MAX_PAGE_ENTRIES`
entries and about :data:`PAGE_BYTES` of values per call, with a cursor), so
one cheap read can never return the whole session at once.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field

from aixyz_sessions import Session, get_session
from aixyz_sessions.payments import charge
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

#: The networks ``list-keys`` is offered on, in the order its 402 lists them.
BASE_SEPOLIA, BASE = "eip155:84532", "eip155:8453"
#: Most keys one ``list-keys`` call returns.
MAX_KEYS_PAGE = 1000

#: What a summary costs at most (what the payer authorizes), and how it is metered:
#: :data:`SUMMARY_BASE` plus :data:`SUMMARY_PER_KIB` per started KiB of stored values.
SUMMARY_MAX = "$0.05"
SUMMARY_BASE = Decimal("0.001")
SUMMARY_PER_KIB = Decimal("0.0001")
#: Most entries a summary looks at; past them it says ``"complete": false``.
SUMMARY_ENTRIES = 10_000
#: A summary stops reading values past this many bytes (its price is capped long before).
SUMMARY_BYTES = 4 * 1024 * 1024
#: How many keys a summary shows.
SUMMARY_PREVIEW = 10
#: Keys listed, and values fetched, at once while a summary is made.
_SUMMARY_LIST, _SUMMARY_FETCH = 500, 50


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


@tool(
    name="list-keys",
    description=(
        "List the keys of your session without their values, a page at a time "
        "(pass the returned cursor to get the next page); payable on Base Sepolia or Base"
    ),
    accepts=[
        {"price": "$0.001", "network": BASE_SEPOLIA},
        {"price": "$0.001", "network": BASE},
    ],
)
async def list_keys(
    cursor: str | None = None,
    limit: Annotated[int, Field(ge=1, le=MAX_KEYS_PAGE)] = 100,
) -> dict[str, Any]:
    session = get_session()
    if session is None:
        return dict(NO_SESSION)
    page = await session.list(cursor=cursor, limit=limit, keys_only=True)
    keys = list(page.entries)
    result: dict[str, Any] = {"success": True, "keys": keys, "count": len(keys)}
    if page.cursor is not None:
        result["cursor"] = page.cursor
    return result


def summary_price(size: int) -> Decimal:
    """Dollars a summary of ``size`` bytes of values costs (see :data:`SUMMARY_MAX`)."""
    price = SUMMARY_BASE + SUMMARY_PER_KIB * math.ceil(size / 1024)
    return min(price, Decimal(SUMMARY_MAX.removeprefix("$"))).normalize()


@tool(
    name="summarize-content",
    description=(
        "Summarize your session: how many keys, how many bytes of values, the largest "
        f"entry and the first keys; metered: ${SUMMARY_BASE} plus ${SUMMARY_PER_KIB} per KiB "
        f"of values, at most {SUMMARY_MAX}"
    ),
    upto=SUMMARY_MAX,
)
async def summarize_content() -> dict[str, Any]:
    session = get_session()
    if session is None:
        charge(0)
        return dict(NO_SESSION)
    summary = await _summary(session)
    price = f"${summary_price(summary['bytes']):f}"
    charge(price)
    return {"success": True, **summary, "cost": price}


async def _summary(session: Session) -> dict[str, Any]:
    """Count the session's entries and the UTF-8 bytes of their values, within the bounds.

    Keys are listed a page at a time (keys only) and values read a batch at a
    time, until :data:`SUMMARY_ENTRIES` keys or :data:`SUMMARY_BYTES` bytes;
    an entry that expired between the listing and the read is not counted.
    """
    count, size, complete = 0, 0, True
    preview: list[str] = []
    largest: tuple[int, str] | None = None
    cursor: str | None = None
    while True:
        limit = min(_SUMMARY_LIST, SUMMARY_ENTRIES - count)
        page = await session.list(cursor=cursor, limit=limit, keys_only=True)
        names = list(page.entries)
        for start in range(0, len(names), _SUMMARY_FETCH):
            if size >= SUMMARY_BYTES:
                complete = False
                break
            batch = names[start : start + _SUMMARY_FETCH]
            values = await session.get_many(batch)
            for name in batch:
                value = values.get(name)
                if value is None:  # expired since it was listed
                    continue
                length = len(value.encode("utf-8", "surrogatepass"))
                count += 1
                size += length
                if len(preview) < SUMMARY_PREVIEW:
                    preview.append(name)
                if largest is None or length > largest[0]:
                    largest = (length, name)
        cursor = page.cursor
        if cursor is None or not complete:
            break
        if count >= SUMMARY_ENTRIES:
            complete = False
            break
    summary: dict[str, Any] = {"count": count, "bytes": size, "keys": preview}
    if largest is not None:
        summary["largest"] = {"key": largest[1], "bytes": largest[0]}
    summary["complete"] = complete
    return summary
