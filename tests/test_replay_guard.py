"""The payment replay guard on every backend, and the runtime choosing the store's.

Each guard (process memory, Redis, SQLite, PostgreSQL) must accept a payment
authorization ``(payer, nonce)`` once, atomically, case-insensitively, and
forget it once its window (``valid_before + grace``) has passed. Redis and
the database are shared, so a second "process" (another store object, another
runtime) must refuse what the first one claimed. Redis and PostgreSQL tests
call ``need_redis()`` / ``need_postgres()`` (skip here, failure under CI=true).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings as django_settings
from django.db import connections
from django.test import AsyncClient, override_settings
from redis.asyncio import Redis

from aixyz_sessions import get_store
from aixyz_sessions.conf import reset_store
from aixyz_sessions.exceptions import SessionStoreUnavailable
from aixyz_sessions.models import PaymentClaim
from aixyz_sessions.payments.authorization import read_payment
from aixyz_sessions.payments.conf import get_config
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.runtime import (
    PaymentRuntime,
    build_replay_guard,
    get_runtime,
    reset_runtime,
)
from aixyz_sessions.replay import MAX_CLAIM_FIELD, MAX_EXPIRY, InMemoryReplayGuard, ReplayGuard
from aixyz_sessions.stores.base import SessionStore
from aixyz_sessions.stores.cache import CacheSessionStore, RedisReplayGuard, payer_tag
from aixyz_sessions.stores.db import DatabaseReplayGuard, DatabaseSessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.testing import ManualClock
from aixyz_sessions.testing.paying import PayingClient
from tests.payments_helpers import LOCAL, MIDDLEWARE, free_port
from tests.services import REDIS_HOST, REDIS_PORT, need_postgres, need_redis

REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
ALIAS = "sessions"
PAYER = "0x" + "Ab" * 20
NONCE = "0x" + "Cd" * 32
CACHE_STORE = "aixyz_sessions.stores.cache.CacheSessionStore"
DB_STORE = "aixyz_sessions.stores.db.DatabaseSessionStore"

# The ``postgres`` alias exists only when PostgreSQL answered at settings time.
WITH_POSTGRES = ["default", "postgres"] if "postgres" in django_settings.DATABASES else ["default"]
sqlite_db = pytest.mark.django_db(transaction=True, databases=["default"])
postgres_db = pytest.mark.django_db(transaction=True, databases=WITH_POSTGRES)


def redis_caches(location: str = REDIS_URL) -> dict[str, Any]:
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        ALIAS: {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location},
    }


def unique_prefix() -> str:
    return f"aixyz:test:{secrets.token_hex(6)}"


async def drop_keys(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def _close_database_thread_connections() -> None:
    """Close what the stores opened in asgiref's database thread (PostgreSQL teardown)."""
    asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


# -- one fixture, four backends -----------------------------------------------------------


@dataclass
class Backend:
    """Guards over one backend, and its notion of time (seconds)."""

    name: str
    make: Callable[[float], ReplayGuard]  # grace -> a guard (another "process" when shared)
    now: Callable[[], float]
    advance: Callable[[float], Awaitable[None]]
    stores: list[SessionStore] = field(default_factory=list)

    def guard(self, grace: float = 60.0) -> ReplayGuard:
        return self.make(grace)


def _memory() -> Backend:
    clock = [1_000_000.0]

    async def advance(seconds: float) -> None:
        clock[0] += seconds

    return Backend(
        "memory",
        lambda grace: InMemoryReplayGuard(grace=grace, clock=lambda: clock[0]),
        lambda: clock[0],
        advance,
    )


def _database(alias: str) -> Backend:
    clock = ManualClock(start_ms=1_000_000_000_000.0)
    backend = Backend(
        alias,
        lambda grace: DatabaseReplayGuard(_store(), grace=grace),
        lambda: clock.now_ms / 1000,
        lambda seconds: _advance_manual(clock, seconds),
    )

    def _store() -> DatabaseSessionStore:
        store = DatabaseSessionStore(using=alias, clock=clock)
        backend.stores.append(store)
        return store

    return backend


async def _advance_manual(clock: ManualClock, seconds: float) -> None:
    clock.advance(seconds * 1000)


def _redis(prefix: str) -> Backend:
    backend = Backend(
        "redis",
        lambda grace: RedisReplayGuard(_store(), grace=grace),
        time.time,
        asyncio.sleep,  # Redis expires keys by its own (real) clock
    )

    def _store() -> CacheSessionStore:
        store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)
        backend.stores.append(store)
        return store

    return backend


SHARED = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("sqlite", marks=sqlite_db),
    pytest.param("postgres", marks=[pytest.mark.postgres, postgres_db]),
]


@pytest.fixture(params=["memory", *SHARED])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    kind: str = request.param
    if kind == "memory":
        yield _memory()
    elif kind == "redis":
        need_redis()
        prefix = unique_prefix()
        with override_settings(CACHES=redis_caches()):
            made = _redis(prefix)
            try:
                yield made
            finally:
                await drop_keys(prefix)
                for store in made.stores:
                    await store.close()
    else:
        if kind == "postgres":
            need_postgres()
        yield _database("default" if kind == "sqlite" else "postgres")
        await sync_to_async(connections.close_all, thread_sensitive=True)()


# -- the contract, on every backend -----------------------------------------------------------


def _valid_before(backend: Backend, seconds: float = 600) -> int:
    return int(backend.now() + seconds)


async def test_first_claim_wins_then_refused(backend: Backend) -> None:
    guard = backend.guard()
    valid_before = _valid_before(backend)
    assert await guard.claim(PAYER, NONCE, valid_before) is True
    assert await guard.claim(PAYER, NONCE, valid_before) is False
    # Other nonces and other payers are other authorizations.
    assert await guard.claim(PAYER, "0x" + "01" * 32, valid_before) is True
    assert await guard.claim("0x" + "ef" * 20, NONCE, valid_before) is True


async def test_concurrent_claims_exactly_one_wins(backend: Backend) -> None:
    guard = backend.guard()
    valid_before = _valid_before(backend)
    results = await asyncio.gather(*(guard.claim(PAYER, NONCE, valid_before) for _ in range(20)))
    assert sorted(results) == [False] * 19 + [True]


async def test_release_allows_a_new_claim(backend: Backend) -> None:
    guard = backend.guard()
    valid_before = _valid_before(backend)
    assert await guard.claim(PAYER, NONCE, valid_before)
    await guard.release(PAYER, NONCE)
    assert await guard.claim(PAYER, NONCE, valid_before)
    assert not await guard.claim(PAYER, NONCE, valid_before)
    await guard.release(PAYER, "0x" + "99" * 32)  # releasing what nobody claimed is harmless


async def test_payer_and_nonce_are_case_insensitive(backend: Backend) -> None:
    guard = backend.guard()
    valid_before = _valid_before(backend)
    assert await guard.claim(PAYER, NONCE, valid_before)
    assert not await guard.claim(PAYER.lower(), NONCE.lower(), valid_before)
    assert not await guard.claim(PAYER.upper().replace("0X", "0x"), NONCE.upper(), valid_before)
    await guard.release(PAYER.lower(), NONCE.upper())
    assert await guard.claim(PAYER.lower(), NONCE.lower(), valid_before)


async def test_a_claim_is_forgotten_once_its_window_has_passed(backend: Backend) -> None:
    now = backend.now()
    valid_before = int(now)
    # The window ends 0.4 s from now: valid_before (whole seconds) plus a fractional grace.
    guard = backend.guard(grace=now - valid_before + 0.4)
    assert await guard.claim(PAYER, NONCE, valid_before)
    assert not await guard.claim(PAYER, NONCE, valid_before)
    await backend.advance(0.6)
    assert await guard.claim(PAYER, NONCE, valid_before)  # forgotten: a new claim, not a replay


async def test_an_authorization_already_past_its_window_is_not_remembered(
    backend: Backend,
) -> None:
    guard = backend.guard(grace=0)
    valid_before = int(backend.now()) - 10
    assert await guard.claim(PAYER, NONCE, valid_before)
    assert await guard.claim(PAYER, NONCE, valid_before)


async def test_a_far_future_valid_before_is_kept(backend: Backend) -> None:
    guard = backend.guard()
    for valid_before in (MAX_EXPIRY, 2**255):
        nonce = f"0x{valid_before:064x}"[-66:]
        assert await guard.claim(PAYER, nonce, valid_before)
        assert not await guard.claim(PAYER, nonce, valid_before)


async def test_bad_arguments_are_refused(backend: Backend) -> None:
    guard = backend.guard()
    valid_before = _valid_before(backend)
    with pytest.raises(ValueError, match="payer"):
        await guard.claim("", NONCE, valid_before)
    with pytest.raises(ValueError, match=f"1..{MAX_CLAIM_FIELD}"):
        await guard.claim(PAYER, "1" * (MAX_CLAIM_FIELD + 1), valid_before)
    with pytest.raises(TypeError, match="nonce"):
        await guard.claim(PAYER, 7, valid_before)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="valid_before"):
        await guard.claim(PAYER, NONCE, "soon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grace"):
        backend.guard(grace=-1)
    assert await guard.claim(PAYER, NONCE, valid_before)  # nothing was claimed by the refusals


@pytest.mark.parametrize("backend", SHARED, indirect=True)
async def test_guards_of_one_shared_backend_agree(backend: Backend) -> None:
    """Two guards over distinct store objects stand for two worker processes."""
    first, second = backend.guard(), backend.guard()
    valid_before = _valid_before(backend)
    results = await asyncio.gather(
        *(guard.claim(PAYER, NONCE, valid_before) for guard in [first, second] * 10)
    )
    assert sorted(results) == [False] * 19 + [True]
    winner = first if results[0] else second
    loser = second if winner is first else first
    await winner.release(PAYER, NONCE)
    assert await loser.claim(PAYER, NONCE, valid_before)
    assert not await winner.claim(PAYER, NONCE, valid_before)


# -- records: remember / recall, on every backend ------------------------------------------


async def test_a_record_is_kept_until_it_expires_and_the_last_write_wins(
    backend: Backend,
) -> None:
    guard = backend.guard()
    now = backend.now()
    assert await guard.recall(PAYER, "paid:x") is None
    await guard.remember(PAYER, "paid:x", '{"at": 1}', now + 600)
    assert await guard.recall(PAYER, "paid:x") == '{"at": 1}'
    assert await guard.recall(PAYER.lower(), "PAID:X") == '{"at": 1}'  # like claims: any case
    assert await guard.recall("0x" + "ef" * 20, "paid:x") is None  # another payer's: none
    await guard.remember(PAYER, "paid:x", "second", now + 0.4)
    assert await guard.recall(PAYER, "paid:x") == "second"
    await backend.advance(0.6)
    assert await guard.recall(PAYER, "paid:x") is None
    await guard.remember(PAYER, "paid:x", "gone", backend.now() - 5)  # already past: nothing
    assert await guard.recall(PAYER, "paid:x") is None


async def test_records_and_claims_share_names_claims_read_as_taken(backend: Backend) -> None:
    guard = backend.guard()
    valid_before = _valid_before(backend)
    assert await guard.claim(PAYER, "pid:abc", valid_before)
    assert await guard.recall(PAYER, "pid:abc") is not None  # taken, nothing kept yet
    await guard.remember(PAYER, "pid:abc", "kept answer", backend.now() + 600)
    assert await guard.recall(PAYER, "pid:abc") == "kept answer"
    assert not await guard.claim(PAYER, "pid:abc", valid_before)  # still taken
    await guard.release(PAYER, "pid:abc")
    assert await guard.recall(PAYER, "pid:abc") is None


async def test_record_arguments_are_checked(backend: Backend) -> None:
    guard = backend.guard()
    later = backend.now() + 60
    with pytest.raises(TypeError, match="value"):
        await guard.remember(PAYER, "k", 7, later)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expires_at"):
        await guard.remember(PAYER, "k", "v", "later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        await guard.remember(PAYER, "k", "v", float("nan"))
    with pytest.raises(ValueError, match=f"1..{MAX_CLAIM_FIELD}"):
        await guard.recall(PAYER, "k" * (MAX_CLAIM_FIELD + 1))
    await guard.remember(PAYER, "k", "v", 1e300)  # clamped, kept
    assert await guard.recall(PAYER, "k") == "v"


async def test_take_keeps_a_value_once_then_reads_what_is_there(backend: Backend) -> None:
    guard = backend.guard()
    other = guard if backend.name == "memory" else backend.guard()  # another process
    now = backend.now()
    assert await guard.take(PAYER, "pid:a", "first", now + 0.5) is None
    assert await guard.recall(PAYER, "pid:a") == "first"
    assert await other.take(PAYER.lower(), "PID:A", "second", now + 600) == "first"
    assert await guard.recall(PAYER, "pid:a") == "first"  # not replaced
    assert await guard.claim(PAYER, "pid:b", _valid_before(backend))
    assert await guard.take(PAYER, "pid:b", "late", now + 600) is not None  # a claim: taken
    await backend.advance(1.0)
    assert await guard.take(PAYER, "pid:a", "again", backend.now() + 600) is None  # expired
    assert await other.recall(PAYER, "pid:a") == "again"


async def test_concurrent_takes_exactly_one_wins(backend: Backend) -> None:
    one = backend.guard()  # memory: one process, one guard; else a guard per "process"
    guards = [one] * 8 if backend.name == "memory" else [backend.guard() for _ in range(8)]
    later = backend.now() + 600
    found = await asyncio.gather(
        *[g.take(PAYER, "pid:c", f"call-{i}", later) for i, g in enumerate(guards)]
    )
    assert found.count(None) == 1
    assert await guards[0].recall(PAYER, "pid:c") == f"call-{found.index(None)}"


@pytest.mark.parametrize("backend", SHARED, indirect=True)
async def test_records_are_shared_by_every_guard_of_a_backend(backend: Backend) -> None:
    first, second = backend.guard(), backend.guard()
    await first.remember(PAYER, "paid:*", "1", backend.now() + 600)
    assert await second.recall(PAYER, "paid:*") == "1"


async def test_a_custom_guard_without_records_says_what_is_missing() -> None:
    class OnlyClaims(ReplayGuard):
        async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
            return True

        async def release(self, payer: str, nonce: str) -> None:
            return None

    with pytest.raises(NotImplementedError, match=r"remember\(\) and recall\(\)"):
        await OnlyClaims().recall(PAYER, "paid:*")


# -- Redis specifics -------------------------------------------------------------------------


@pytest.fixture
async def redis_store() -> AsyncIterator[CacheSessionStore]:
    need_redis()
    prefix = unique_prefix()
    with override_settings(CACHES=redis_caches()):
        store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)
        try:
            yield store
        finally:
            await drop_keys(prefix)
            await store.close()


@pytest.mark.redis
async def test_redis_claim_is_one_key_with_an_absolute_expiry(
    redis_store: CacheSessionStore,
) -> None:
    guard = redis_store.replay_guard()
    assert isinstance(guard, RedisReplayGuard) and guard.store is redis_store
    valid_before = int(time.time()) + 100
    assert await guard.claim(PAYER, NONCE, valid_before)
    await redis_store.set(PAYER.lower(), "k", "v")
    key = f"{redis_store.key_prefix}:replay:{{{payer_tag(PAYER.lower())}}}:{NONCE.lower()}"
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        replay_keys = [
            k async for k in client.scan_iter(match=f"{redis_store.key_prefix}:replay:*")
        ]
        assert replay_keys == [key]
        expires_ms = await client.pexpiretime(key)
        assert expires_ms == (valid_before + guard.grace) * 1000
    finally:
        await client.aclose()
    # Session data and claims never collide, and purging sessions leaves claims alone.
    assert await redis_store.get(PAYER.lower(), "k") == "v"
    assert (await redis_store.list(PAYER.lower())).entries == {"k": "v"}
    await redis_store.purge_expired()
    assert not await guard.claim(PAYER, NONCE, valid_before)


@pytest.mark.redis
async def test_redis_claim_survives_a_lost_reply(
    redis_store: CacheSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SET that landed but whose reply was lost (then retried: "exists") is still ours."""
    guard = redis_store.replay_guard()
    client = redis_store._client()
    real_set = client.set

    async def lost_reply(*args: Any, **kwargs: Any) -> Any:
        await real_set(*args, **kwargs)
        return None  # what the client's retry of the same SET NX answers

    monkeypatch.setattr(client, "set", lost_reply)
    valid_before = int(time.time()) + 100
    assert await guard.claim(PAYER, NONCE, valid_before)
    assert not await guard.claim(PAYER, NONCE, valid_before)


@pytest.mark.redis
async def test_redis_down_is_unavailable() -> None:
    with override_settings(CACHES=redis_caches(f"redis://127.0.0.1:{free_port()}/0")):
        store = CacheSessionStore(cache_alias=ALIAS, key_prefix=unique_prefix())
    guard = store.replay_guard()
    with pytest.raises(SessionStoreUnavailable, match="unavailable: replay claim failed"):
        await guard.claim(PAYER, NONCE, int(time.time()) + 100)
    with pytest.raises(SessionStoreUnavailable, match="unavailable: replay release failed"):
        await guard.release(PAYER, NONCE)
    await store.close()


# -- database specifics ------------------------------------------------------------------------


@sqlite_db
async def test_database_claims_are_rows_and_purge_drops_expired_ones() -> None:
    clock = ManualClock(start_ms=1_000_000_000_000.0)
    store = DatabaseSessionStore(clock=clock)
    guard = store.replay_guard()
    assert isinstance(guard, DatabaseReplayGuard) and guard.store is store
    now = int(clock() / 1000)
    assert await guard.claim(PAYER, NONCE, now + 10)
    assert await guard.claim(PAYER, "0x01", now + 1000)
    rows = await sync_to_async(
        lambda: sorted(PaymentClaim.objects.values_list("payer", "nonce")),
        thread_sensitive=True,
    )()
    assert rows == [(PAYER.lower(), "0x01"), (PAYER.lower(), NONCE.lower())]
    clock.advance((10 + guard.grace) * 1000)
    await store.set("0xa", "k", "v", ttl_ms=1)  # expires with the first claim
    clock.advance(1)
    assert await store.purge_expired() == 2  # the entry and the first claim
    count = await sync_to_async(PaymentClaim.objects.count, thread_sensitive=True)()
    assert count == 1
    assert not await guard.claim(PAYER, "0x01", now + 1000)  # the live claim stayed


@sqlite_db
async def test_database_reuses_an_expired_row() -> None:
    clock = ManualClock(start_ms=1_000_000_000_000.0)
    guard = DatabaseReplayGuard(DatabaseSessionStore(clock=clock), grace=0)
    now = int(clock() / 1000)
    assert await guard.claim(PAYER, NONCE, now + 5)
    clock.advance(5_000)
    assert await guard.claim(PAYER, NONCE, now + 50)  # the old row is replaced
    clock.advance(10_000)
    assert not await guard.claim(PAYER, NONCE, now + 50)
    expiry = await sync_to_async(
        lambda: PaymentClaim.objects.get().expires_at.timestamp(), thread_sensitive=True
    )()
    assert expiry == now + 50


@pytest.mark.postgres
@postgres_db
def test_postgres_claims_from_many_connections_one_wins() -> None:
    """Concurrent claims on separate connections (threads): the unique constraint decides."""
    need_postgres()
    guard = DatabaseReplayGuard(DatabaseSessionStore(using="postgres"))
    valid_before = int(time.time()) + 600
    barrier = threading.Barrier(8)

    def claim(_: int) -> bool:
        try:
            barrier.wait()
            return guard._guarded(guard._claim_now, PAYER.lower(), NONCE.lower(), valid_before)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(claim, range(8)))
    assert sorted(results) == [False] * 7 + [True]


# -- the runtime picks the store's guard -----------------------------------------------------


@pytest.fixture
def _payments() -> Iterator[None]:
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
    ):
        yield
    reset_runtime()


@pytest.mark.usefixtures("_payments")
def test_memory_store_gets_an_in_memory_guard() -> None:
    assert InMemorySessionStore().replay_guard() is None
    assert isinstance(get_store(), InMemorySessionStore)
    assert type(build_replay_guard(None)) is InMemoryReplayGuard
    assert type(get_runtime().replay_guard) is InMemoryReplayGuard


@pytest.mark.usefixtures("_payments")
def test_runtime_follows_the_x402_setting() -> None:
    local_runtime = get_runtime()
    explicit = {**LOCAL, "REPLAY_GUARD": "aixyz_sessions.replay.InMemoryReplayGuard"}
    with override_settings(AIXYZ_X402=explicit):
        runtime = get_runtime()
        assert runtime is not local_runtime and runtime.config == get_config()
        assert runtime.config.replay_guard == explicit["REPLAY_GUARD"]
    assert get_runtime() is not runtime and get_runtime().config.replay_guard is None


@pytest.mark.redis
@pytest.mark.usefixtures("_payments")
def test_runtime_follows_the_store_setting() -> None:
    need_redis()
    memory_runtime = get_runtime()
    with override_settings(
        CACHES=redis_caches(),
        AIXYZ_SESSION_STORE={"BACKEND": CACHE_STORE, "OPTIONS": {"cache_alias": ALIAS}},
    ):
        guard = get_runtime().replay_guard
        assert isinstance(guard, RedisReplayGuard) and guard.store is get_store()
        assert get_runtime() is not memory_runtime
        # An explicit REPLAY_GUARD still wins over the store's.
        explicit = {**LOCAL, "REPLAY_GUARD": "aixyz_sessions.replay.InMemoryReplayGuard"}
        with override_settings(AIXYZ_X402=explicit):
            assert type(get_runtime().replay_guard) is InMemoryReplayGuard
    assert type(get_runtime().replay_guard) is InMemoryReplayGuard


@sqlite_db
@pytest.mark.usefixtures("_payments")
def test_database_store_gets_a_database_guard() -> None:
    with override_settings(AIXYZ_SESSION_STORE=DB_STORE):
        guard = get_runtime().replay_guard
        assert isinstance(guard, DatabaseReplayGuard) and guard.store is get_store()


# -- end to end: X402Middleware with a shared store ------------------------------------------


@pytest.fixture
def redis_sessions(_payments: None) -> Iterator[str]:
    need_redis()
    prefix = unique_prefix()
    store = {"BACKEND": CACHE_STORE, "OPTIONS": {"cache_alias": ALIAS, "key_prefix": prefix}}
    with override_settings(CACHES=redis_caches(), AIXYZ_SESSION_STORE=store):
        yield "redis"
    asyncio.run(drop_keys(prefix))


@pytest.fixture
def db_sessions(_payments: None) -> Iterator[str]:
    with override_settings(AIXYZ_SESSION_STORE=DB_STORE):
        yield "database"
    _close_database_thread_connections()


def _new_process() -> None:
    """What a fresh worker process has: no store object, no runtime yet."""
    reset_store()
    reset_runtime()


async def _replays_are_refused_across_processes() -> None:
    client = PayingClient()
    headers = await client.payment_headers(await client.get("/paid/", pay=False))
    _, authorization = read_payment(headers["PAYMENT-SIGNATURE"])

    # Process B verified the same authorization and is still serving it.
    _new_process()
    other = PaymentRuntime(get_config())
    _new_process()
    assert await other.replay_guard.claim(
        authorization.payer, authorization.nonce, authorization.valid_before
    )

    # Process A (the middleware's runtime) refuses it: 402, the view never runs.
    response = await AsyncClient().get("/paid/", headers=headers)
    assert response.status_code == 402
    assert json.loads(response.content)["reason"] == REPLAYED
    runtime = get_runtime()
    assert runtime is not other and type(runtime.replay_guard) is type(other.replay_guard)
    assert runtime.replay_guard is not other.replay_guard
    assert await get_store().get(authorization.payer.lower(), "count") is None

    # B's request failed before settlement: it gives the claim back, A may serve it once.
    await other.replay_guard.release(authorization.payer, authorization.nonce)
    first = await AsyncClient().get("/paid/", headers=headers)
    assert first.status_code == 200, first.content
    _new_process()
    again = await AsyncClient().get("/paid/", headers=headers)
    assert again.status_code == 402
    assert await get_store().get(authorization.payer.lower(), "count") == "1"


async def _concurrent_replays_one_wins() -> None:
    client = PayingClient()
    headers = await client.payment_headers(await client.get("/paid/", pay=False))
    responses = await asyncio.gather(
        *(AsyncClient().get("/paid/", headers=headers) for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] + [402] * 7
    assert await get_store().get(client.address.lower(), "count") == "1"


@pytest.mark.redis
async def test_redis_store_refuses_replays_across_processes(redis_sessions: str) -> None:
    await _replays_are_refused_across_processes()
    assert isinstance(get_runtime().replay_guard, RedisReplayGuard)


@pytest.mark.redis
async def test_redis_store_concurrent_replays(redis_sessions: str) -> None:
    await _concurrent_replays_one_wins()
    assert isinstance(get_runtime().replay_guard, RedisReplayGuard)


@sqlite_db
async def test_database_store_refuses_replays_across_processes(db_sessions: str) -> None:
    await _replays_are_refused_across_processes()
    assert isinstance(get_runtime().replay_guard, DatabaseReplayGuard)


@sqlite_db
async def test_database_store_concurrent_replays(db_sessions: str) -> None:
    await _concurrent_replays_one_wins()
    assert isinstance(get_runtime().replay_guard, DatabaseReplayGuard)
