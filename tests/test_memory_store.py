"""InMemorySessionStore: the shared contract plus its own LRU, cap and threading."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import settings

from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.testing import ManualClock, StoreConformance
from aixyz_sessions.testing.properties import DEFAULT_TTL, store_state_machine


class TestInMemoryConformance(StoreConformance):
    def make_store(self, clock: ManualClock, **options: Any) -> InMemorySessionStore:
        return InMemorySessionStore(clock=clock, **options)


class TestInMemoryRealClock(StoreConformance):
    """The same contract once on the real monotonic clock, with short sleeps."""

    clock_controlled = False
    ttl_unit_ms = 120

    def make_store(self, clock: ManualClock, **options: Any) -> InMemorySessionStore:
        return InMemorySessionStore(**options)


_Machine = store_state_machine(
    lambda clock: InMemorySessionStore(clock=clock, ttl_ms=DEFAULT_TTL, max_entries=10_000)
)
TestInMemoryStateMachine = _Machine.TestCase
TestInMemoryStateMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_entries": 0}, "max_entries must be >= 1"),
        ({"max_entries": -5}, "max_entries must be >= 1"),
        ({"ttl_ms": -1}, "ttl_ms must be >= 0"),
    ],
)
def test_constructor_messages(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError) as info:
        InMemorySessionStore(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("kwargs", [{"max_entries": "10"}, {"ttl_ms": 1.5}, {"max_entries": True}])
def test_constructor_types(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        InMemorySessionStore(**kwargs)


async def test_cap_evicts_least_recently_used_across_payers() -> None:
    store = InMemorySessionStore(max_entries=3)
    await store.set("0xa", "1", "a1")
    await store.set("0xb", "1", "b1")
    await store.set("0xa", "2", "a2")
    assert await store.get("0xa", "1") == "a1"  # a/1 is now the most recent
    await store.set("0xc", "1", "c1")  # evicts b/1, the least recently used
    assert len(store) == 3
    assert await store.get("0xb", "1") is None
    assert (await store.list("0xb")).entries == {}
    assert await store.get_many("0xa", ["1", "2"]) == {"1": "a1", "2": "a2"}
    await store.set("0xa", "2", "a2'")  # overwrite: no eviction
    assert len(store) == 3
    await store.set("0xd", "1", "d1")  # c/1 is now the least recently used
    assert await store.get("0xc", "1") is None
    assert await store.get("0xa", "1") == "a1"


async def test_cap_of_one() -> None:
    store = InMemorySessionStore(max_entries=1)
    for i in range(5):
        await store.set(f"0x{i}", "k", str(i))
        assert len(store) == 1
    assert (await store.list("0x4")).entries == {"k": "4"}


async def test_list_does_not_count_as_use() -> None:
    store = InMemorySessionStore(max_entries=2)
    await store.set("0xa", "old", "1")
    await store.set("0xa", "new", "2")
    await store.list("0xa")
    await store.set("0xa", "newest", "3")
    assert (await store.list("0xa")).entries == {"new": "2", "newest": "3"}


async def test_expired_entries_are_collected_lazily() -> None:
    clock = ManualClock()
    store = InMemorySessionStore(clock=clock, ttl_ms=10)
    await store.set_many("0xa", {"a": "1", "b": "2"})
    clock.advance(20)
    assert len(store) == 2  # nothing swept eagerly
    assert (await store.list("0xa")).entries == {}
    assert len(store) == 0


async def test_close_empties() -> None:
    store = InMemorySessionStore()
    await store.set("0xa", "k", "v")
    await store.close()
    assert len(store) == 0 and await store.get("0xa", "k") is None


async def test_many_tasks_never_exceed_cap() -> None:
    store = InMemorySessionStore(max_entries=500)

    async def writer(n: int) -> None:
        for i in range(200):
            await store.set(f"0x{n % 7}", f"k{n}-{i}", "v")
            await store.get(f"0x{(n + 1) % 7}", f"k{n}-{i - 1}")
            if i % 50 == 0:
                await asyncio.sleep(0)
                await store.list(f"0x{n % 7}", limit=10)

    await asyncio.gather(*(writer(n) for n in range(20)))
    assert len(store) == 500
    total = 0
    for p in range(7):
        total += len((await store.list(f"0x{p}")).entries)
    assert total == 500


def test_threads_share_one_store_safely() -> None:
    store = InMemorySessionStore(max_entries=1000)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        async def run() -> None:
            for i in range(300):
                await store.set(f"0x{n}", f"k{i}", f"{n}:{i}")
                assert await store.get(f"0x{n}", f"k{i}") in (f"{n}:{i}", None)
                if i % 30 == 0:
                    page = await store.list(f"0x{n}", limit=5)
                    assert all(v.startswith(f"{n}:") for v in page.entries.values())

        try:
            asyncio.run(run())
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store) == 1000


async def test_paging_is_not_a_scan_from_the_start() -> None:
    """Each page bisects: a late page must not walk the keys before it."""
    store = InMemorySessionStore(max_entries=50_000)
    await store.set_many("0xa", {f"k{i:05d}": "v" for i in range(1000)})
    for start in range(1000, 20_000, 1000):
        await store.set_many("0xa", {f"k{i:05d}": "v" for i in range(start, start + 1000)})
    visited: list[int] = []

    class Counting(OrderedDict):  # type: ignore[type-arg]
        def __getitem__(self, item: Any) -> Any:
            visited.append(1)
            return super().__getitem__(item)

    store._entries = Counting(store._entries)
    page = await store.list("0xa", limit=100)
    cursor = page.cursor
    for _ in range(150):
        page = await store.list("0xa", limit=100, cursor=cursor)
        cursor = page.cursor
    visited.clear()
    page = await store.list("0xa", limit=100, cursor=cursor)
    assert next(iter(page.entries)) == "k15100"
    assert len(visited) == 101  # the page and one look-ahead, nothing before it


async def test_purge_expired() -> None:
    clock = ManualClock()
    store = InMemorySessionStore(clock=clock, ttl_ms=10)
    await store.set_many("0xa", {"a": "1", "b": "2"})
    await store.set("0xb", "keep", "3", ttl_ms=0)
    clock.advance(20)
    assert await store.purge_expired() == 2
    assert len(store) == 1
    assert await store.purge_expired() == 0


def test_store_methods_read_as_coroutine_functions() -> None:
    from asgiref.sync import iscoroutinefunction

    store = InMemorySessionStore()
    for name in ("get", "set", "delete", "list", "get_many", "set_many", "delete_many", "close"):
        assert asyncio.iscoroutinefunction(getattr(InMemorySessionStore, name)), name
        assert iscoroutinefunction(getattr(store, name)), name
