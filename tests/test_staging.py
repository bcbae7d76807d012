"""``StagedSession``: pending writes checked now, seen by reads, applied only by ``commit``."""

from __future__ import annotations

import pytest

from aixyz_sessions import SessionArgumentError
from aixyz_sessions.staging import StagedSession
from aixyz_sessions.stores.memory import InMemorySessionStore

PAYER = "0x" + "Ab" * 20


@pytest.fixture
def store() -> InMemorySessionStore:
    return InMemorySessionStore()


async def _listed(session: StagedSession, **options: object) -> list[dict[str, str]]:
    """Every page of a listing, following cursors."""
    pages, cursor = [], None
    while True:
        page = await session.list(cursor=cursor, **options)  # type: ignore[arg-type]
        pages.append(page.entries)
        cursor = page.cursor
        if cursor is None:
            return pages


async def test_writes_wait_and_reads_see_them(store: InMemorySessionStore) -> None:
    await store.set(PAYER.lower(), "kept", "old")
    await store.set(PAYER.lower(), "gone", "x")
    session = StagedSession(PAYER, store)
    await session.set("kept", "new")
    await session.set_many({"a": "1", "z": "26"})
    assert await session.delete("gone") is True
    assert await session.delete("never") is False
    assert await session.get("kept") == "new" and await session.get("gone") is None
    assert await session.get_many(["a", "gone", "kept", "absent"]) == {
        "a": "1",
        "gone": None,
        "kept": "new",
        "absent": None,
    }
    assert (await session.list()).entries == {"a": "1", "kept": "new", "z": "26"}
    assert (await session.list(keys_only=True, prefix="k")).entries == {"kept": ""}
    # Nothing reached the store yet.
    assert (await store.list(PAYER.lower())).entries == {"gone": "x", "kept": "old"}
    assert await session.delete_many(["a", "kept", "none"]) == 2
    await session.commit()
    assert (await store.list(PAYER.lower())).entries == {"z": "26"}
    await session.set("after", "commit")  # writes go straight through now
    assert await store.get(PAYER.lower(), "after") == "commit"


async def test_discard_drops_everything(store: InMemorySessionStore) -> None:
    session = StagedSession(PAYER, store)
    await session.set("k", "v")
    session.discard()
    await session.commit()
    assert (await store.list(PAYER.lower())).entries == {}


async def test_refused_writes_raise_at_once_as_the_store_would(
    store: InMemorySessionStore,
) -> None:
    session = StagedSession(PAYER, InMemorySessionStore(max_value_bytes=4))
    for bad in (lambda: session.set("", "v"), lambda: session.set("k", "toolong")):
        with pytest.raises(SessionArgumentError):
            await bad()
    with pytest.raises(TypeError):
        await session.set("k", 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        await session.set("k", "v", ttl_ms=-1)
    assert not session.has_pending_writes


async def test_pages_cover_stored_and_pending_keys_once_in_order(
    store: InMemorySessionStore,
) -> None:
    await store.set_many(PAYER.lower(), {f"k{i:02d}": "stored" for i in range(0, 20, 2)})
    session = StagedSession(PAYER, store)
    for i in range(1, 20, 2):
        await session.set(f"k{i:02d}", "pending")
    await session.delete("k04")
    await session.set("k06", "replaced")
    pages = await _listed(session, limit=3)
    keys = [key for page in pages for key in page]
    expected = sorted({f"k{i:02d}" for i in range(20)} - {"k04"})
    assert keys == expected
    assert all(len(page) <= 3 for page in pages)
    merged = {k: v for page in pages for k, v in page.items()}
    assert merged["k06"] == "replaced" and merged["k01"] == "pending"
    assert merged["k02"] == "stored"


async def test_commit_writes_in_batches_the_store_accepts() -> None:
    store = InMemorySessionStore(max_batch=3)
    session = StagedSession(PAYER, store)
    for i in range(10):
        await session.set(f"k{i}", str(i), ttl_ms=0 if i % 2 else None)
    await session.commit()
    assert len((await store.list(PAYER.lower())).entries) == 10
