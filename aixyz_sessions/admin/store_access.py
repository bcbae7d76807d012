"""What the admin's "Sessions" pages ask of the configured store: pages, one entry, counts, erasure.

Everything goes through the store's public API, so the pages work for every
store, built-in or custom. Reads never slide an entry's expiry: an entry is
read with ``list`` (which does not count as use), not with ``get``. The
functions are coroutines; the admin's (synchronous) views run one of them per
request.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..stores.base import ListResult, PayerPage, SessionStore

__all__ = [
    "StoredEntry",
    "can_list_payers",
    "count_entries",
    "erase_payer",
    "has_entries",
    "keys_page",
    "normalize_payer",
    "payers_page",
    "read_entry",
]


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One entry as the admin shows it."""

    payer: str
    key: str
    value: str
    #: Milliseconds left (``None``: never expires); meaningless unless ``ttl_reported``.
    ttl_ms: int | None
    #: Whether the store tells how long an entry has left (``entry_ttl_ms``).
    ttl_reported: bool


def normalize_payer(text: str) -> str:
    """A payer id (or the beginning of one) as stores file it: no spaces, lower case."""
    return "".join(text.split()).lower()


def can_list_payers(store: SessionStore) -> bool:
    """Whether ``store`` says it can list its payers (``supports_list_payers``)."""
    return bool(getattr(store, "supports_list_payers", False)) and callable(
        getattr(store, "list_payers", None)
    )


async def payers_page(
    store: SessionStore, *, prefix: str | None, cursor: str | None, limit: int
) -> PayerPage | None:
    """One page of payer ids starting with ``prefix``; ``None`` if the store cannot list them."""
    if not can_list_payers(store):
        return None
    try:
        return await store.list_payers(prefix=prefix, cursor=cursor, limit=limit)
    except NotImplementedError:
        return None


async def has_entries(store: SessionStore, payer: str) -> bool:
    """Whether ``payer`` has at least one live entry."""
    return bool((await store.list(payer, limit=1, keys_only=True)).entries)


async def keys_page(
    store: SessionStore, payer: str, *, prefix: str | None, cursor: str | None, limit: int
) -> ListResult:
    """One page of ``payer``'s entries, values included (the admin previews them)."""
    return await store.list(payer, prefix=prefix, cursor=cursor, limit=limit)


async def read_entry(store: SessionStore, payer: str, key: str) -> StoredEntry | None:
    """``payer``'s entry under ``key`` and the time it has left; ``None`` if there is none.

    Read as the first entry of a page with the key as prefix (no key with
    that prefix sorts before the key itself), so the read leaves the entry's
    sliding expiry alone. "Time left" comes from the store's optional
    ``entry_ttl_ms(payer, key)`` coroutine (milliseconds, ``None`` for never);
    a store without it does not report one.
    """
    value = (await store.list(payer, prefix=key, limit=1)).entries.get(key)
    if value is None:
        return None
    entry_ttl_ms = getattr(store, "entry_ttl_ms", None)
    if entry_ttl_ms is None:
        return StoredEntry(payer, key, value, None, ttl_reported=False)
    ttl_ms = await entry_ttl_ms(payer, key)
    return StoredEntry(payer, key, value, ttl_ms, ttl_reported=True)


async def count_entries(store: SessionStore, payer: str) -> int:
    """How many live entries ``payer`` has, counted by paging keys only."""
    total, cursor = 0, None
    while True:
        page = await store.list(payer, cursor=cursor, limit=store.max_batch, keys_only=True)
        total += len(page.entries)
        if page.cursor is None:
            return total
        cursor = page.cursor


async def erase_payer(store: SessionStore, payer: str) -> int:
    """Delete every entry of ``payer`` in batches of ``max_batch``; how many went.

    Each round lists from the start, so keys written meanwhile go too; it
    stops when a page comes back empty, or the same as the last one (a key
    the store lists but cannot delete would otherwise loop forever).
    """
    removed = 0
    last: list[str] = []
    while True:
        page = await store.list(payer, limit=store.max_batch, keys_only=True)
        keys = list(page.entries)
        if not keys or keys == last:
            return removed
        removed += await store.delete_many(payer, keys)
        last = keys
