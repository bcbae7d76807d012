"""``ChannelStorage`` (x402 ``batch-settlement``) on every backend, and no lost update.

One conformance suite runs against the SDK's ``InMemoryChannelStorage`` (the
reference semantics), ``DatabaseChannelStorage`` on SQLite and PostgreSQL and
``RedisChannelStorage``. Then N threads, and for the shared servers 2
processes, each add 1 to one channel's ``charged_cumulative_amount`` M times
through ``update_channel``: the total must be exact. Redis and PostgreSQL
tests call ``need_redis()`` / ``need_postgres()`` (skip here, failure under
CI=true).

Also the worker those processes run: ``python -m tests.test_channel_storage
(postgres <test db name> | redis <prefix>) <channel id> <M>``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections
from redis import Redis
from x402.mechanisms.evm.batch_settlement.server.storage import (
    Channel,
    ChannelStorage,
    InMemoryChannelStorage,
)
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig

from aixyz_sessions.channels.storage import (
    ChannelConflictError,
    DatabaseChannelStorage,
    RedisChannelStorage,
)
from tests.services import REDIS_HOST, REDIS_PORT, need_postgres, need_redis

REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
ROOT = Path(__file__).resolve().parent.parent
WITH_POSTGRES = ["default", "postgres"] if "postgres" in django_settings.DATABASES else ["default"]
sqlite_db = pytest.mark.django_db(transaction=True, databases=["default"])
postgres_db = pytest.mark.django_db(transaction=True, databases=WITH_POSTGRES)

THREADS, INCREMENTS = 4, 40
PROCESSES = 2


def new_id() -> str:
    return "0x" + secrets.token_hex(32)


def make_channel(channel_id: str, **fields: Any) -> Channel:
    config = ChannelConfig(
        payer="0x" + "Ab" * 20,
        payer_authorizer="0x" + "00" * 20,
        receiver="0x" + "Cd" * 20,
        receiver_authorizer="0x" + "00" * 20,
        token="0x" + "Ef" * 20,
        withdraw_delay=86400,
        salt="0x" + "00" * 32,
    )
    return Channel(channel_id=channel_id, channel_config=config, **fields)


def put(storage: ChannelStorage, channel: Channel) -> None:
    assert storage.update_channel(channel.channel_id, lambda _: channel).status == "updated"


def increment(storage: ChannelStorage, channel_id: str) -> None:
    def add_one(current: Channel | None) -> Channel:
        if current is None:
            return make_channel(channel_id, charged_cumulative_amount="1")
        amount = int(current.charged_cumulative_amount) + 1
        return replace(current, charged_cumulative_amount=str(amount))

    storage.update_channel(channel_id, add_one)


# -- one fixture, four backends -----------------------------------------------------------


@dataclass
class Backend:
    name: str
    make: Callable[[], ChannelStorage]  # another "process" for the shared backends

    def storage(self) -> ChannelStorage:
        return self.make()


def redis_prefix() -> str:
    return f"aixyz:test:ch:{secrets.token_hex(6)}:"


def drop_redis_keys(prefix: str) -> None:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("sqlite", marks=sqlite_db),
        pytest.param("postgres", marks=[pytest.mark.postgres, postgres_db]),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    kind: str = request.param
    if kind == "memory":
        shared = InMemoryChannelStorage()
        yield Backend(kind, lambda: shared)
    elif kind == "redis":
        need_redis()
        prefix = redis_prefix()
        made: list[RedisChannelStorage] = []

        def make() -> RedisChannelStorage:
            made.append(RedisChannelStorage(REDIS_URL, prefix=prefix))
            return made[-1]

        try:
            yield Backend(kind, make)
        finally:
            drop_redis_keys(prefix)
            for storage in made:
                storage.close()
    else:
        if kind == "postgres":
            need_postgres()
        alias = "default" if kind == "sqlite" else "postgres"
        yield Backend(kind, lambda: DatabaseChannelStorage(using=alias))
        connections.close_all()


# -- the contract, on every backend -------------------------------------------------------


def test_get_and_list_when_empty(backend: Backend) -> None:
    storage = backend.storage()
    assert storage.get(new_id()) is None
    assert storage.list() == []


def test_create_then_get_and_list(backend: Backend) -> None:
    storage = backend.storage()
    channel_id = new_id()
    channel = make_channel(channel_id, balance="1000", last_request_timestamp=7)
    result = storage.update_channel(channel_id, lambda current: channel)
    assert result.status == "updated" and result.channel == channel
    assert storage.get(channel_id) == channel
    assert backend.storage().get(channel_id) == channel  # another "process" sees it
    other = make_channel(new_id())
    put(storage, other)
    listed = sorted(storage.list(), key=lambda c: c.channel_id)
    assert listed == sorted([channel, other], key=lambda c: c.channel_id)


def test_update_sees_the_current_channel_and_replaces_it(backend: Backend) -> None:
    storage = backend.storage()
    channel_id = new_id()
    put(storage, make_channel(channel_id, balance="10"))
    seen: list[Channel | None] = []

    def top_up(current: Channel | None) -> Channel:
        seen.append(current)
        assert current is not None
        return replace(current, balance=str(int(current.balance) + 5))

    result = storage.update_channel(channel_id, top_up)
    assert result.status == "updated"
    assert result.channel is not None and result.channel.balance == "15"
    assert seen[-1] == make_channel(channel_id, balance="10")
    stored = storage.get(channel_id)
    assert stored is not None and stored.balance == "15"
    assert len(storage.list()) == 1


def test_returning_the_argument_is_unchanged(backend: Backend) -> None:
    storage = backend.storage()
    channel_id = new_id()
    channel = make_channel(channel_id, balance="3")
    put(storage, channel)

    def touch(current: Channel | None) -> Channel | None:
        assert current is not None
        current.balance = "999"  # mutated in place, but "unchanged": nothing is written
        return current

    result = storage.update_channel(channel_id, touch)
    assert result.status == "unchanged"
    assert storage.get(channel_id) == channel
    # None for a channel that does not exist: nothing to delete.
    missing = storage.update_channel(new_id(), lambda current: current)
    assert (missing.status, missing.channel) == ("unchanged", None)
    gone = storage.update_channel(new_id(), lambda current: None)
    assert (gone.status, gone.channel) == ("unchanged", None)
    assert storage.list() == [channel]


def test_returning_none_deletes(backend: Backend) -> None:
    storage = backend.storage()
    channel_id, kept = new_id(), new_id()
    put(storage, make_channel(channel_id))
    put(storage, make_channel(kept))
    result = storage.update_channel(channel_id, lambda current: None)
    assert (result.status, result.channel) == ("deleted", None)
    assert storage.get(channel_id) is None
    assert [c.channel_id for c in storage.list()] == [kept]
    again = storage.update_channel(channel_id, lambda current: None)
    assert again.status == "unchanged"
    # Deleted then created again: a fresh channel.
    put(storage, make_channel(channel_id, balance="1"))
    recreated = storage.get(channel_id)
    assert recreated is not None and recreated.balance == "1"


def test_ids_are_normalised(backend: Backend) -> None:
    storage = backend.storage()
    lower = "0x" + "ab" * 32
    upper = "0x" + "AB" * 32
    put(storage, make_channel(lower, balance="1"))
    assert storage.get(upper) == storage.get(lower) != None  # noqa: E711
    result = storage.update_channel(upper, lambda c: replace(c, balance="2") if c else None)
    assert result.status == "updated"
    assert [(c.channel_id, c.balance) for c in storage.list()] == [(lower, "2")]
    for bad in ("0x" + "ab" * 31, "ab" * 32, "0X" + "ab" * 32, "0x" + "zz" * 32, ""):
        with pytest.raises(ValueError):
            storage.get(bad)
        with pytest.raises(ValueError):
            storage.update_channel(bad, lambda current: current)


def test_copies_not_aliases(backend: Backend) -> None:
    storage = backend.storage()
    channel_id = new_id()
    original = make_channel(channel_id, balance="100")
    put(storage, original)
    if backend.name != "memory":  # the SDK's keeps the very object the callback returned
        original.balance = "-1"
    got = storage.get(channel_id)
    assert got is not None and got.balance == "100"
    got.balance = "-2"
    listed = storage.list()[0]
    listed.balance = "-3"
    result = storage.update_channel(channel_id, lambda c: replace(c, balance="7") if c else None)
    assert result.channel is not None
    result.channel.balance = "-4"
    stored = storage.get(channel_id)
    assert stored is not None and stored.balance == "7"
    assert storage.get(channel_id) is not storage.get(channel_id)


def test_a_failing_update_writes_nothing(backend: Backend) -> None:
    storage = backend.storage()
    channel_id = new_id()
    put(storage, make_channel(channel_id, balance="5"))

    def boom(current: Channel | None) -> Channel:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        storage.update_channel(channel_id, boom)
    with pytest.raises(RuntimeError, match="boom"):
        storage.update_channel(new_id(), boom)
    assert [c.balance for c in storage.list()] == ["5"]


def test_threads_lose_no_update(backend: Backend) -> None:
    channel_id = new_id()
    barrier = threading.Barrier(THREADS)

    def work(_: int) -> None:
        storage = backend.storage()
        try:
            barrier.wait()
            for _ in range(INCREMENTS):
                increment(storage, channel_id)
        finally:
            connections.close_all()  # this thread's connections

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(work, range(THREADS)))
    final = backend.storage().get(channel_id)
    assert final is not None
    assert int(final.charged_cumulative_amount) == THREADS * INCREMENTS


# -- across processes: PostgreSQL and Redis ---------------------------------------------


def _run_workers(kind: str, target: str, channel_id: str, storage: ChannelStorage) -> None:
    """PROCESSES workers and one thread of this process increment together, from one start."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    command = [sys.executable, "-m", "tests.test_channel_storage", kind, target, channel_id]
    workers = [
        subprocess.Popen(
            [*command, str(INCREMENTS)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for worker in workers:  # each is set up and waits for "go"
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        thread = threading.Thread(target=_thread_increments, args=(storage, channel_id))
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        thread.start()
        for worker in workers:
            output, _ = worker.communicate(timeout=120)
            assert worker.returncode == 0, output
        thread.join()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


@pytest.mark.postgres
@postgres_db
def test_postgres_processes_and_threads_lose_no_update() -> None:
    need_postgres()
    channel_id = new_id()
    storage = DatabaseChannelStorage(using="postgres")
    put(storage, make_channel(channel_id))
    test_db = connections["postgres"].settings_dict["NAME"]
    _run_workers("postgres", test_db, channel_id, storage)
    final = storage.get(channel_id)
    assert final is not None
    assert int(final.charged_cumulative_amount) == (PROCESSES + 1) * INCREMENTS
    row = storage._model.objects.using("postgres").get(pk=channel_id)
    assert row.charged_cumulative_amount == Decimal((PROCESSES + 1) * INCREMENTS)
    assert row.payer == "0x" + "ab" * 20


def _thread_increments(storage: ChannelStorage, channel_id: str) -> None:
    try:
        for _ in range(INCREMENTS):
            increment(storage, channel_id)
    finally:
        connections.close_all()


@pytest.mark.redis
def test_redis_processes_and_threads_lose_no_update() -> None:
    need_redis()
    prefix = redis_prefix()
    channel_id = new_id()
    storage = RedisChannelStorage(REDIS_URL, prefix=prefix)
    try:
        _run_workers("redis", prefix, channel_id, storage)
        final = storage.get(channel_id)
        assert final is not None
        assert int(final.charged_cumulative_amount) == (PROCESSES + 1) * INCREMENTS
    finally:
        drop_redis_keys(prefix)
        storage.close()


# -- backend specifics ------------------------------------------------------------------


@pytest.mark.redis
def test_redis_layout_and_conflict_limit() -> None:
    need_redis()
    prefix = redis_prefix()
    storage = RedisChannelStorage(REDIS_URL, prefix=prefix, max_attempts=3)
    channel_id = new_id()
    try:
        put(storage, make_channel(channel_id))
        client = Redis.from_url(REDIS_URL, decode_responses=True)
        key = f"{prefix}{{{channel_id}}}"
        assert storage.key(channel_id.upper().replace("0X", "0x")) == key
        assert set(client.hkeys(key)) == {"data", "ver"}
        calls = 0

        def always_raced(current: Channel | None) -> Channel:
            nonlocal calls
            calls += 1
            client.hset(key, "ver", secrets.token_hex(8))  # someone else wrote meanwhile
            assert current is not None
            return replace(current, balance="1")

        with pytest.raises(ChannelConflictError, match="3 times"):
            storage.update_channel(channel_id, always_raced)
        assert calls == 3
        stored = storage.get(channel_id)
        assert stored is not None and stored.balance == "0"
        client.close()
    finally:
        drop_redis_keys(prefix)
        storage.close()


@sqlite_db
def test_database_columns_follow_the_channel() -> None:
    storage = DatabaseChannelStorage()
    channel_id = new_id()
    put(storage, make_channel(channel_id, balance="1000", total_claimed="40"))
    increment(storage, channel_id)
    row = storage._model.objects.get(pk=channel_id)
    assert (row.payer, row.balance, row.total_claimed) == ("0x" + "ab" * 20, 1000, 40)
    assert row.charged_cumulative_amount == 1
    assert row.data == storage.get(channel_id).to_dict()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not a database alias"):
        DatabaseChannelStorage(using="nope")
    with pytest.raises(ValueError, match="another channel_id"):
        storage.update_channel(channel_id, lambda current: make_channel(new_id()))


# -- the worker process -------------------------------------------------------------------


def _worker(kind: str, target: str, channel_id: str, count: int) -> None:
    import django

    django.setup()
    storage: ChannelStorage
    if kind == "postgres":
        connections["postgres"].settings_dict["NAME"] = target  # the test database
        storage = DatabaseChannelStorage(using="postgres")
    else:
        storage = RedisChannelStorage(REDIS_URL, prefix=target)
    storage.get(channel_id)  # connected
    print("ready", flush=True)
    sys.stdin.readline()
    for _ in range(count):
        increment(storage, channel_id)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
