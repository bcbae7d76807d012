"""Many writers, readers, listers and deleters at once, on every built-in store.

How the result is judged (deterministic, no timing assumptions):

* Every value written is self-describing: ``"<payer>|<key>|<writer>|<n>|<filler>"``
  where the filler is derived from the header (a SHA-256 repeated to a length
  that varies from 0 to 5,000 characters). A value read back must parse, its
  filler must match its header (no torn or mixed write), and its payer and key
  must be the ones it was read under (no cross-payer or cross-key data).
* Exclusive keys ``own:<writer>:<j>``: one writer per (payer, key). Each
  writer keeps a model of its keys, updated only when an operation is
  acknowledged; its own reads must match the model (read-your-writes), and at
  the end every payer's exclusive keys must equal the union of the models
  exactly: the serial replay of the acknowledged operations.
* Shared keys ``shared:<j>``: every writer writes them. Each write takes a
  global sequence number when it starts and another when it is acknowledged.
  At the end the value must be one of the acknowledged writes, and not one
  that was superseded by a write that started after it was acknowledged
  (that write would be the last in any serial order).
* The in-memory store with a small ``max_entries``: ``len(store)`` is checked
  after every operation; entries may be evicted, so there a key present must
  hold exactly the replayed value, and a key absent is allowed.

Tasks run on one event loop (every await is a chance to interleave); threads
call the stores the way sync views do, one ``async_to_sync`` per operation.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import secrets
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.db import connections
from redis.asyncio import Redis

from aixyz_sessions.stores.base import SessionStore
from aixyz_sessions.stores.cache import CacheSessionStore
from aixyz_sessions.stores.db import DatabaseSessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from tests.services import REDIS_HOST, REDIS_PORT, need_postgres, need_redis

PAYERS = ["0x" + c * 40 for c in "abcd"]
OWN_KEYS = 3
SHARED_KEYS = 3
FILLER_LENGTHS = [0, 7, 300, 5000]
WITH_POSTGRES = ["default", "postgres"] if "postgres" in django_settings.DATABASES else ["default"]


def make_value(payer: str, key: str, writer: int, n: int, length: int) -> str:
    header = f"{payer}|{key}|{writer}|{n}|"
    digest = hashlib.sha256(header.encode()).hexdigest()
    return header + (digest * (length // 64 + 1))[:length]


def check_value(value: str, payer: str, key: str) -> None:
    """A value read under (payer, key): whole, and written for that payer and key."""
    parts = value.split("|", 4)
    assert len(parts) == 5, f"unparseable value under {payer}/{key}: {value[:80]!r}"
    assert parts[0] == payer, f"cross-payer data: {payer}/{key} holds {value[:80]!r}"
    assert parts[1] == key, f"cross-key data: {payer}/{key} holds {value[:80]!r}"
    expected = make_value(parts[0], parts[1], int(parts[2]), int(parts[3]), len(parts[4]))
    assert value == expected, f"torn value under {payer}/{key}: {value[:80]!r}"


@dataclass
class SharedWrite:
    value: str
    started: int
    acked: int


@dataclass
class Run:
    """What all workers of one scenario acknowledged."""

    capped: int | None = None
    store_len: Callable[[], int] | None = None
    seq: Iterator[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    own: dict[tuple[str, str], str | None] = field(default_factory=dict)
    shared: dict[tuple[str, str], list[SharedWrite]] = field(default_factory=dict)
    started_values: set[str] = field(default_factory=set)

    def next_seq(self) -> int:
        with self.lock:
            return next(self.seq)


Call = Callable[[Coroutine[Any, Any, Any]], Any]


class Worker:
    """One writer: a deterministic random sequence of operations, checked as it goes."""

    def __init__(self, run: Run, store: SessionStore, writer: int, seed: int) -> None:
        self.run, self.store, self.writer = run, store, writer
        self.rng = random.Random(seed * 1_000 + writer)
        self.model: dict[tuple[str, str], str | None] = {}
        self.n = 0

    def own_key(self) -> tuple[str, str]:
        return self.rng.choice(PAYERS), f"own:{self.writer}:{self.rng.randrange(OWN_KEYS)}"

    def value(self, payer: str, key: str) -> str:
        self.n += 1
        return make_value(payer, key, self.writer, self.n, self.rng.choice(FILLER_LENGTHS))

    def expect_own(self, payer: str, key: str, got: str | None) -> None:
        wanted = self.model.get((payer, key))
        if got is not None:
            check_value(got, payer, key)
        if self.run.capped is None:
            assert got == wanted, (payer, key, got and got[:60], wanted and wanted[:60])
        else:  # eviction may have dropped it, never replaced it by something else
            assert got is None or got == wanted, (payer, key)

    async def step(self, call: Call) -> None:
        store, rng = self.store, self.rng
        kind = rng.choices(
            ["set", "delete", "get", "set_shared", "get_shared", "set_many", "get_many", "list"],
            weights=[30, 10, 12, 18, 8, 7, 7, 8],
        )[0]
        if kind == "set":
            payer, key = self.own_key()
            value = self.value(payer, key)
            await call(store.set(payer, key, value, ttl_ms=0))
            self.model[(payer, key)] = value
        elif kind == "delete":
            payer, key = self.own_key()
            existed = await call(store.delete(payer, key))
            had = self.model.get((payer, key)) is not None
            assert existed == had if self.run.capped is None else (not existed or had)
            self.model[(payer, key)] = None
        elif kind == "get":
            payer, key = self.own_key()
            self.expect_own(payer, key, await call(store.get(payer, key)))
        elif kind == "set_shared":
            payer, key = rng.choice(PAYERS), f"shared:{rng.randrange(SHARED_KEYS)}"
            value = self.value(payer, key)
            with self.run.lock:
                self.run.started_values.add(value)
            started = self.run.next_seq()
            await call(store.set(payer, key, value, ttl_ms=0))
            acked = self.run.next_seq()
            with self.run.lock:
                self.run.shared.setdefault((payer, key), []).append(
                    SharedWrite(value, started, acked)
                )
        elif kind == "get_shared":
            payer, key = rng.choice(PAYERS), f"shared:{rng.randrange(SHARED_KEYS)}"
            got = await call(store.get(payer, key))
            if got is not None:
                check_value(got, payer, key)
                with self.run.lock:
                    assert got in self.run.started_values, "read a value nobody wrote"
        elif kind == "set_many":
            payer = rng.choice(PAYERS)
            keys = rng.sample([f"own:{self.writer}:{j}" for j in range(OWN_KEYS)], 2)
            entries = {key: self.value(payer, key) for key in keys}
            await call(store.set_many(payer, entries, ttl_ms=0))
            for key, value in entries.items():
                self.model[(payer, key)] = value
        elif kind == "get_many":
            payer = rng.choice(PAYERS)
            keys = [f"own:{self.writer}:{j}" for j in range(OWN_KEYS)]
            found = await call(store.get_many(payer, keys))
            assert list(found) == keys
            for key in keys:
                self.expect_own(payer, key, found[key])
        else:
            payer = rng.choice(PAYERS)
            prefix = f"own:{self.writer}:"
            page = await call(store.list(payer, prefix=prefix))
            assert page.cursor is None
            mine = {
                k: v
                for (p, k), v in self.model.items()
                if p == payer and k.startswith(prefix) and v is not None
            }
            for key, value in page.entries.items():
                check_value(value, payer, key)
            if self.run.capped is None:
                assert page.entries == mine
            else:
                assert all(mine.get(k) == v for k, v in page.entries.items())
        if self.run.store_len is not None and self.run.capped is not None:
            assert self.run.store_len() <= self.run.capped, "max_entries exceeded"

    def publish(self) -> None:
        with self.run.lock:
            self.run.own.update(self.model)


async def run_tasks(store: SessionStore, run: Run, *, workers: int, ops: int, seed: int) -> None:
    async def direct(coro: Coroutine[Any, Any, Any]) -> Any:
        return await coro

    async def work(writer: int) -> None:
        worker = Worker(run, store, writer, seed)
        for _ in range(ops):
            await worker.step(direct)
            await asyncio.sleep(0)  # interleave even where a store never awaits
        worker.publish()

    await asyncio.gather(*(work(w) for w in range(workers)))


def run_threads(
    store: SessionStore, run: Run, *, workers: int, ops: int, seed: int, close_db: bool = False
) -> None:
    """Each thread calls the store like a sync view: ``async_to_sync`` per operation."""

    def blocking(coro: Coroutine[Any, Any, Any]) -> Any:
        async def wrapped() -> Any:
            return await coro

        return async_to_sync(wrapped)()

    def work(writer: int) -> None:
        worker = Worker(run, store, writer, seed)

        async def call(coro: Coroutine[Any, Any, Any]) -> Any:
            return blocking(coro)

        try:
            for _ in range(ops):
                step = worker.step(call)
                try:  # drive the step by hand: every await inside it is a blocking call
                    step.send(None)
                except StopIteration:
                    pass
                else:  # pragma: no cover - call() never suspends
                    raise AssertionError("a step suspended outside async_to_sync")
            worker.publish()
        finally:
            if close_db:
                connections.close_all()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, w) for w in range(workers)]:
            future.result()


async def verify_final(store: SessionStore, run: Run) -> None:
    """Every payer's data against the serial replay of what was acknowledged."""
    for payer in PAYERS:
        listed: dict[str, str] = {}
        cursor = None
        while True:
            page = await store.list(payer, cursor=cursor, limit=7)
            assert not set(page.entries) & set(listed)
            listed.update(page.entries)
            cursor = page.cursor
            if cursor is None:
                break
        assert list(listed) == sorted(listed)
        for key, value in listed.items():
            check_value(value, payer, key)
        own = {k: v for (p, k), v in run.own.items() if p == payer and v is not None}
        listed_own = {k: v for k, v in listed.items() if k.startswith("own:")}
        if run.capped is None:
            assert listed_own == own
        else:
            assert all(own.get(k) == v for k, v in listed_own.items())
        for j in range(SHARED_KEYS):
            key = f"shared:{j}"
            writes = run.shared.get((payer, key), [])
            final = listed.get(key)
            if not writes:
                assert final is None
                continue
            if final is None:
                assert run.capped is not None, f"{payer}/{key} lost every write"
                continue
            chosen = [w for w in writes if w.value == final]
            assert chosen, f"{payer}/{key} holds a value never acknowledged"
            later = [w for w in writes if w.started > chosen[0].acked]
            assert not later, f"{payer}/{key} lost a write that came strictly after"
    if run.capped is not None and run.store_len is not None:
        assert run.store_len() <= run.capped


# -- in memory ---------------------------------------------------------------------------------


async def test_memory_tasks() -> None:
    store = InMemorySessionStore()
    run = Run()
    await run_tasks(store, run, workers=12, ops=150, seed=1)
    await verify_final(store, run)


def test_memory_threads() -> None:
    store = InMemorySessionStore()
    run = Run()
    run_threads(store, run, workers=8, ops=120, seed=2)
    async_to_sync(verify_final)(store, run)


@pytest.mark.parametrize("mode", ["tasks", "threads"])
def test_memory_cap_is_never_exceeded(mode: str) -> None:
    cap = 25
    store = InMemorySessionStore(max_entries=cap)
    run = Run(capped=cap, store_len=lambda: len(store))
    if mode == "tasks":
        async_to_sync(run_tasks)(store, run, workers=10, ops=150, seed=3)
    else:
        run_threads(store, run, workers=8, ops=120, seed=4)
    assert len(store) <= cap
    async_to_sync(verify_final)(store, run)


# -- Redis -----------------------------------------------------------------------------------


@pytest.fixture
def redis_store(settings: Any) -> Iterator[CacheSessionStore]:
    need_redis()
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sessions": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url},
    }
    prefix = f"aixyz:conc:{secrets.token_hex(6)}"
    yield CacheSessionStore(cache_alias="sessions", key_prefix=prefix)

    async def drop() -> None:
        client = Redis.from_url(url)
        try:
            keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start : start + 500])
        finally:
            await client.aclose()

    asyncio.run(drop())


async def test_redis_tasks(redis_store: CacheSessionStore) -> None:
    run = Run()
    try:
        await run_tasks(redis_store, run, workers=12, ops=100, seed=5)
        await verify_final(redis_store, run)
    finally:
        await redis_store.close()


def test_redis_threads(redis_store: CacheSessionStore) -> None:
    run = Run()
    run_threads(redis_store, run, workers=6, ops=50, seed=6)
    async_to_sync(verify_final)(redis_store, run)


# -- the database ----------------------------------------------------------------------------


@pytest.fixture
def close_database_thread() -> Iterator[None]:
    yield
    from asgiref.sync import sync_to_async

    asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


@pytest.mark.django_db(transaction=True, databases=["default"])
def test_sqlite_tasks(close_database_thread: None) -> None:
    # Tasks only: the store's hops to the database thread serialise them; SQLite's
    # in-memory test database would turn real thread parallelism into lock errors.
    store = DatabaseSessionStore(using="default")
    run = Run()
    async_to_sync(run_tasks)(store, run, workers=8, ops=60, seed=7)
    async_to_sync(verify_final)(store, run)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=WITH_POSTGRES)
@pytest.mark.parametrize("mode", ["tasks", "threads"])
def test_postgres(mode: str, close_database_thread: None) -> None:
    need_postgres()
    store = DatabaseSessionStore(using="postgres")
    run = Run()
    if mode == "tasks":
        async_to_sync(run_tasks)(store, run, workers=8, ops=60, seed=8)
    else:
        run_threads(store, run, workers=6, ops=50, seed=9, close_db=True)
    async_to_sync(verify_final)(store, run)


# -- the judge itself catches what it is there to catch ------------------------------------------


class _Faulty(InMemorySessionStore):
    """An in-memory store with one deliberate defect, to prove the checks notice it."""

    def __init__(self, defect: str) -> None:
        super().__init__()
        self.defect = defect
        self.writes = 0

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        self.writes += 1
        if self.writes % 37 == 0:
            if self.defect == "lost":
                return
            if self.defect == "torn" and len(value) > 100:
                value = value[:-1] + ("0" if value[-1] != "0" else "1")
            if self.defect == "crossed":
                payer = PAYERS[(PAYERS.index(payer) + 1) % len(PAYERS)]
        await super().set(payer, key, value, ttl_ms=ttl_ms)


@pytest.mark.parametrize("defect", ["lost", "torn", "crossed"])
async def test_the_checks_notice_a_defective_store(defect: str) -> None:
    store = _Faulty(defect)
    run = Run()
    with pytest.raises(AssertionError):
        await run_tasks(store, run, workers=6, ops=150, seed=10)
        await verify_final(store, run)
