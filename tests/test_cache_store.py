"""CacheSessionStore: the shared contract on both Redis cache backends, plus Redis specifics.

Everything that needs the Redis at 127.0.0.1:6379 calls ``need_redis()``
first (skip here, failure under CI=true). Each test writes under its own
random key prefix and deletes what it wrote, so runs never collide. Tests
that must break Redis (kill, restart, MONITOR) start their own
``redis-server`` on a free loopback port.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import run_state_machine_as_test
from redis.asyncio import Redis
from redis.crc import key_slot

from aixyz_sessions import get_store
from aixyz_sessions.checks.store import check_session_store
from aixyz_sessions.exceptions import SessionStoreError, SessionStoreUnavailable
from aixyz_sessions.stores.cache import CacheSessionStore, payer_tag
from aixyz_sessions.stores.redis_config import (
    DJANGO_BUILTIN_REDIS,
    DJANGO_REDIS,
    SUPPORTED_BACKENDS,
    resolve_cache_alias,
)
from aixyz_sessions.testing import ManualClock, StoreConformance
from aixyz_sessions.testing.properties import DEFAULT_TTL, store_state_machine
from tests.services import REDIS_HOST, REDIS_PORT, need, need_redis

REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
STORE_PATH = "aixyz_sessions.stores.cache.CacheSessionStore"
ALIAS = "sessions"


def unique_prefix() -> str:
    return f"aixyz:test:{secrets.token_hex(6)}"


def redis_caches(backend: str = DJANGO_BUILTIN_REDIS, location: Any = REDIS_URL) -> dict[str, Any]:
    return {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        ALIAS: {"BACKEND": backend, "LOCATION": location},
    }


async def drop_keys(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every Redis key under ``prefix`` (SCAN, then DEL in chunks)."""
    client = Redis.from_url(url, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        await client.aclose()


async def keys_under(prefix: str, url: str = REDIS_URL) -> list[str]:
    client = Redis.from_url(url, decode_responses=True)
    try:
        return sorted([key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)])
    finally:
        await client.aclose()


# -- the contract, on each supported backend ------------------------------------------


class _RedisConformance(StoreConformance):
    clock_controlled = False
    ttl_unit_ms = 120
    backend = DJANGO_BUILTIN_REDIS
    prefix: str

    @pytest.fixture(autouse=True)
    def _redis_cache(self, settings: Any) -> None:
        need_redis()
        settings.CACHES = redis_caches(self.backend)
        self.prefix = unique_prefix()

    def make_store(self, clock: ManualClock, **options: Any) -> CacheSessionStore:
        return CacheSessionStore(cache_alias=ALIAS, key_prefix=self.prefix, **options)

    async def cleanup_store(self, store: Any) -> None:
        await drop_keys(store.key_prefix)
        await store.close()


class TestDjangoRedisConformance(_RedisConformance):
    backend = DJANGO_REDIS


class TestDjangoBuiltinRedisConformance(_RedisConformance):
    backend = DJANGO_BUILTIN_REDIS


def test_state_machine(settings: Any) -> None:
    need_redis()
    settings.CACHES = redis_caches(DJANGO_REDIS)

    def make(clock: ManualClock) -> CacheSessionStore:
        return CacheSessionStore(cache_alias=ALIAS, key_prefix=unique_prefix(), ttl_ms=DEFAULT_TTL)

    machine = store_state_machine(make, clock_controlled=False)

    class CleaningMachine(machine):  # type: ignore[misc,valid-type]
        def teardown(self) -> None:
            try:
                self.run(drop_keys(cast(CacheSessionStore, self.store).key_prefix))
            finally:
                super().teardown()

    run_state_machine_as_test(
        CleaningMachine,
        settings=hypothesis_settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- a Redis of our own, for tests that break it or watch it ------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    need(binary is not None, "the redis-server binary")
    assert binary is not None
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, *args, "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"redis-server did not start on port {port}")


def stop_redis(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[int]:
    need_redis()
    port = free_port()
    proc = start_redis(port)
    try:
        yield port
    finally:
        stop_redis(proc)


async def store_commands(port: int, action: Callable[[], Awaitable[Any]]) -> list[str]:
    """The commands the server received from clients (not from scripts) during ``action``.

    Uses MONITOR on a private server, so it counts what really reached Redis,
    whatever the client library does; a marker command ends the window.
    """
    marker_client = Redis(port=port, decode_responses=True)
    watcher = Redis(port=port, decode_responses=True)
    await marker_client.ping()
    marker = f"end-{secrets.token_hex(4)}"
    seen: list[str] = []
    try:
        async with watcher.monitor() as monitor:
            await action()
            await marker_client.echo(marker)
            while True:
                info = await asyncio.wait_for(monitor.next_command(), timeout=5)
                if marker in info["command"]:
                    break
                if info["client_type"] != "lua":
                    seen.append(info["command"])
    finally:
        await marker_client.aclose()
        await watcher.aclose()
    return seen


async def test_each_operation_is_one_round_trip(settings: Any, private_redis: int) -> None:
    settings.CACHES = redis_caches(location=f"redis://127.0.0.1:{private_redis}/0")
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=unique_prefix())
    payer = "0x" + "ab" * 20
    try:
        # Warm up: connect and have the server cache every script once.
        await store.set_many(payer, {"a": "1", "b": "2"})
        await store.set(payer, "c", "3")
        await store.get(payer, "a")
        await store.get_many(payer, ["a"])
        await store.list(payer, limit=1)
        await store.delete(payer, "zz")
        await store.delete_many(payer, ["zz"])
        operations: list[Callable[[], Awaitable[Any]]] = [
            lambda: store.get(payer, "a"),
            lambda: store.get(payer, "missing"),
            lambda: store.set(payer, "d", "4", ttl_ms=5000),
            lambda: store.delete(payer, "d"),
            lambda: store.list(payer, limit=2),
            lambda: store.list(payer, prefix="a", keys_only=True),
            lambda: store.get_many(payer, ["a", "b", "x"]),
            lambda: store.set_many(payer, {"e": "5", "f": "6"}),
            lambda: store.delete_many(payer, ["e", "f"]),
        ]
        for operation in operations:
            commands = await store_commands(private_redis, operation)
            assert len(commands) == 1, commands
            assert commands[0].startswith("EVALSHA ")
    finally:
        await store.close()


async def test_unknown_script_falls_back_to_eval(settings: Any, private_redis: int) -> None:
    settings.CACHES = redis_caches(location=f"redis://127.0.0.1:{private_redis}/0")
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=unique_prefix())
    admin = Redis(port=private_redis)
    try:
        await admin.script_flush()
        await store.set("0xa", "k", "v")
        assert await store.get("0xa", "k") == "v"
    finally:
        await admin.aclose()
        await store.close()


async def test_redis_killed_mid_run_then_restarted(settings: Any) -> None:
    need_redis()
    port = free_port()
    proc = start_redis(port)
    settings.CACHES = redis_caches(location=f"redis://127.0.0.1:{port}/0")
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=unique_prefix(), ttl_ms=0)
    payer = "0x" + "cd" * 20
    try:
        await store.set(payer, "k", "before")
        assert await store.get(payer, "k") == "before"

        async def writer(i: int) -> None:
            for j in range(200):
                await store.set(payer, f"w{i}:{j}", "v")

        tasks = [asyncio.ensure_future(writer(i)) for i in range(8)]
        await asyncio.sleep(0.02)
        stop_redis(proc)  # mid-run: the writers are between commands or waiting on replies
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures, "the writers should have noticed Redis going away"
        for failure in failures:
            assert isinstance(failure, SessionStoreUnavailable), repr(failure)
            assert repr(ALIAS) in str(failure)
        for call in (
            lambda: store.get(payer, "k"),
            lambda: store.set(payer, "k", "v"),
            lambda: store.list(payer),
        ):
            with pytest.raises(SessionStoreUnavailable, match=repr(ALIAS)):
                await call()

        proc = start_redis(port)  # same port, empty data, no cached scripts
        await store.set(payer, "k", "after")
        assert await store.get(payer, "k") == "after"
        assert (await store.list(payer)).entries == {"k": "after"}
    finally:
        await store.close()
        stop_redis(proc)


# -- failures and configuration ---------------------------------------------------------------


async def test_closed_port_is_unavailable_naming_the_alias(settings: Any) -> None:
    settings.CACHES = redis_caches(location="redis://:hunter2@127.0.0.1:1/0")
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=unique_prefix())
    started = time.monotonic()
    try:
        for call in (
            lambda: store.get("0xa", "k"),
            lambda: store.set("0xa", "k", "v"),
            lambda: store.list("0xa"),
            lambda: store.get_many("0xa", ["k"]),
            lambda: store.delete("0xa", "k"),
        ):
            with pytest.raises(SessionStoreUnavailable) as info:
                await call()
            message = str(info.value)
            assert repr(ALIAS) in message and "127.0.0.1:1" in message
            assert "unavailable" in message
            assert "hunter2" not in message  # credentials never reach messages
    finally:
        await store.close()
    assert time.monotonic() - started < 10


def test_construction_does_not_connect(settings: Any) -> None:
    settings.CACHES = redis_caches(location="redis://127.0.0.1:1/0")
    store = CacheSessionStore(cache_alias=ALIAS)
    assert store.check() == []
    assert not store._clients


def test_unknown_alias_is_a_value_error(settings: Any) -> None:
    settings.CACHES = redis_caches()
    with pytest.raises(ValueError, match=r"'nope'.*settings\.CACHES"):
        CacheSessionStore(cache_alias="nope")


def test_unknown_alias_in_settings_is_a_check_error(settings: Any) -> None:
    settings.CACHES = redis_caches()
    settings.AIXYZ_SESSION_STORE = {"BACKEND": STORE_PATH, "OPTIONS": {"cache_alias": "nope"}}
    errors = check_session_store()
    assert len(errors) == 1 and "'nope'" in errors[0].msg


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b"])
def test_key_prefix_must_not_break_the_hash_tag(settings: Any, prefix: str) -> None:
    settings.CACHES = redis_caches()
    with pytest.raises(ValueError, match="key_prefix"):
        CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)


@pytest.mark.parametrize(
    ("backend", "location"),
    [
        ("django.core.cache.backends.locmem.LocMemCache", "x"),
        ("django.core.cache.backends.dummy.DummyCache", None),
        ("django.core.cache.backends.db.DatabaseCache", "aixyz_cache_table"),
        ("django.core.cache.backends.filebased.FileBasedCache", "/tmp/aixyz-cache"),
        ("django.core.cache.backends.memcached.PyMemcacheCache", "127.0.0.1:11211"),
    ],
)
def test_non_redis_backend_is_a_check_error(settings: Any, backend: str, location: Any) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        ALIAS: {"BACKEND": backend, "LOCATION": location},
    }
    settings.AIXYZ_SESSION_STORE = {"BACKEND": STORE_PATH, "OPTIONS": {"cache_alias": ALIAS}}
    errors = check_session_store()
    assert [e.id for e in errors] == ["aixyz_sessions.E020"]
    error = errors[0]
    assert repr(ALIAS) in error.msg and backend in error.msg
    assert all(supported in error.msg for supported in SUPPORTED_BACKENDS)
    assert error.hint and "LOCATION" in error.hint
    store = get_store()
    assert isinstance(store, CacheSessionStore)
    for call in (lambda: store.get("0xa", "k"), lambda: store.set("0xa", "k", "v")):
        with pytest.raises(SessionStoreError) as info:
            asyncio.run(call())
        assert str(info.value) == error.msg


@pytest.mark.parametrize("location", ["127.0.0.1:6379", "http://127.0.0.1:6379", []])
def test_unusable_location_is_a_check_error(settings: Any, location: Any) -> None:
    settings.CACHES = redis_caches(location=location)
    store = CacheSessionStore(cache_alias=ALIAS)
    errors = store.check()
    assert [e.id for e in errors] == ["aixyz_sessions.E021"]
    assert repr(ALIAS) in errors[0].msg


def test_django_redis_options(settings: Any) -> None:
    settings.CACHES = {
        ALIAS: {
            "BACKEND": DJANGO_REDIS,
            "LOCATION": ["redis://:urlpass@10.0.0.1:6380/2", "redis://10.0.0.2:6380/2"],
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "PASSWORD": "optpass",
                "USERNAME": "alice",
                "SOCKET_CONNECT_TIMEOUT": 1.5,
                "SOCKET_TIMEOUT": 4,
                "CONNECTION_POOL_KWARGS": {"max_connections": 7, "health_check_interval": 30},
                "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
            },
        }
    }
    target = resolve_cache_alias(ALIAS)
    assert target.problem is None and target.url == "redis://:urlpass@10.0.0.1:6380/2"
    assert target.where == "redis://***@10.0.0.1:6380/2"
    pool = target.new_client().connection_pool
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("10.0.0.1", 6380, 2)
    assert kwargs["password"] == "urlpass"  # the URL wins, as in django-redis
    assert kwargs["username"] == "alice"
    assert kwargs["socket_connect_timeout"] == 1.5 and kwargs["socket_timeout"] == 4
    assert kwargs["health_check_interval"] == 30 and pool.max_connections == 7
    assert kwargs["decode_responses"] is True


def test_django_builtin_redis_options(settings: Any) -> None:
    settings.CACHES = {
        ALIAS: {
            "BACKEND": DJANGO_BUILTIN_REDIS,
            "LOCATION": "redis://bob@10.0.0.1:6381/3;redis://10.0.0.2:6381/3",
            "OPTIONS": {
                "password": "optpass",
                "db": 9,
                "parser_class": "redis.connection.PythonParser",
                "pool_class": "redis.BlockingConnectionPool",
                "serializer": "django.core.cache.backends.redis.RedisSerializer",
            },
        }
    }
    target = resolve_cache_alias(ALIAS)
    kwargs = target.new_client().connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"]) == ("10.0.0.1", 6381)
    assert kwargs["db"] == 3  # the URL path wins over OPTIONS["db"]
    assert kwargs["username"] == "bob" and kwargs["password"] == "optpass"
    assert kwargs["socket_connect_timeout"] == 2.0  # a short default, so dead hosts fail fast
    assert "parser_class" not in target.options and "serializer" not in target.options


def test_unix_and_tls_locations(settings: Any) -> None:
    settings.CACHES = {
        "unix": {"BACKEND": DJANGO_BUILTIN_REDIS, "LOCATION": "unix:///tmp/redis.sock?db=4"},
        "tls": {
            "BACKEND": DJANGO_BUILTIN_REDIS,
            "LOCATION": "rediss://h:6390/0",
            "OPTIONS": {"ssl_cert_reqs": "none"},
        },
    }
    unix = resolve_cache_alias("unix").new_client().connection_pool.connection_kwargs
    assert unix["path"] == "/tmp/redis.sock" and unix["db"] == 4
    tls = resolve_cache_alias("tls")
    assert tls.options["ssl_cert_reqs"] == "none"
    assert type(tls.new_client().connection_pool.make_connection()).__name__ == "SSLConnection"


# -- key layout and isolation ----------------------------------------------------------------

AWKWARD_PAYERS = [
    "0x" + "12ab" * 10,
    "0x12AB",
    "a{b}c",
    "{x}",
    "a:b",
    "a}:{b",
    "p",
    "~70",  # would collide with the hex form of "p" if tags were not injective
    "ünï",
    "}{",
    "0xaaa:idx",
]
AWKWARD_KEYS = ["k", "{k}", "a}b", "idx", "v:x", "}:idx", "x}:v:y", "ключ"]


def hash_tag(redis_key: str) -> str:
    """The part Redis Cluster hashes (the first non-empty ``{...}``, else the whole key)."""
    start = redis_key.find("{")
    if start >= 0:
        end = redis_key.find("}", start + 1)
        if end > start + 1:
            return redis_key[start + 1 : end]
    return redis_key


async def test_one_hash_slot_per_payer(settings: Any) -> None:
    need_redis()
    settings.CACHES = redis_caches()
    prefix = unique_prefix()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix, ttl_ms=60_000)
    try:
        for payer in AWKWARD_PAYERS:
            await store.set_many(payer, {key: payer for key in AWKWARD_KEYS})
        by_tag: dict[str, list[str]] = {}
        for redis_key in await keys_under(prefix):
            by_tag.setdefault(hash_tag(redis_key), []).append(redis_key)
        # The payers index: a tag of its own, which no payer's tag can be.
        assert by_tag.pop("~payers") == [store.payers_key] == [f"{prefix}:{{~payers}}:index"]
        assert "~payers" not in {payer_tag(p) for p in AWKWARD_PAYERS}
        assert (await store.list_payers()).payers == sorted(AWKWARD_PAYERS)
        assert sorted(by_tag) == sorted(payer_tag(p) for p in AWKWARD_PAYERS)
        for tag, redis_keys in by_tag.items():
            assert len(redis_keys) == len(AWKWARD_KEYS) + 1  # values + the index
            assert len({key_slot(k.encode()) for k in redis_keys}) == 1, tag
            assert all(k.startswith(f"{prefix}:{{{tag}}}:") for k in redis_keys)
        assert payer_tag(AWKWARD_PAYERS[0]) == AWKWARD_PAYERS[0]  # plain addresses verbatim
        assert all(set(payer_tag(p)).isdisjoint("{}:") for p in AWKWARD_PAYERS)
    finally:
        await drop_keys(prefix)
        await store.close()


async def test_awkward_payers_and_keys_stay_apart(settings: Any) -> None:
    need_redis()
    settings.CACHES = redis_caches()
    prefix = unique_prefix()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix, ttl_ms=60_000)
    try:
        for payer in AWKWARD_PAYERS:
            await store.set_many(payer, {key: f"{payer}|{key}" for key in AWKWARD_KEYS})
            await store.set(payer, f"own:{payer}", payer)
        for payer in AWKWARD_PAYERS:
            expected = {key: f"{payer}|{key}" for key in AWKWARD_KEYS} | {f"own:{payer}": payer}
            assert (await store.list(payer)).entries == dict(sorted(expected.items()))
            for other in AWKWARD_PAYERS:
                if other != payer:
                    assert await store.get(payer, f"own:{other}") is None
                    assert (await store.list(payer, prefix=f"own:{other}")).entries == {}
            assert await store.get_many(payer, AWKWARD_KEYS) == {
                key: f"{payer}|{key}" for key in AWKWARD_KEYS
            }
        assert await store.delete_many("a}:{b", AWKWARD_KEYS) == len(AWKWARD_KEYS)
        assert await store.get("a:b", "k") == "a:b|k"
        assert await store.get("{x}", "}:idx") == "{x}|}:idx"
    finally:
        await drop_keys(prefix)
        await store.close()


# -- expiry bookkeeping ------------------------------------------------------------------------


async def test_page_skips_many_expired_entries(settings: Any) -> None:
    need_redis()
    settings.CACHES = redis_caches()
    prefix = unique_prefix()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)
    raw = Redis.from_url(REDIS_URL, decode_responses=True)
    payer = "0xfeed"
    try:
        await store.set_many(payer, {f"k{i:03d}": "gone" for i in range(0, 300)}, ttl_ms=100)
        await store.set_many(payer, {f"k{i:03d}x": "kept" for i in range(0, 300, 30)}, ttl_ms=0)
        await asyncio.sleep(0.25)
        page = await store.list(payer, limit=4)
        assert list(page.entries) == ["k000x", "k030x", "k060x", "k090x"]
        assert page.cursor is not None
        rest = await store.list(payer, cursor=page.cursor, limit=6)
        assert list(rest.entries) == [f"k{i:03d}x" for i in range(120, 300, 30)]
        assert rest.cursor is None
        idx = f"{prefix}:{{{payer}}}:idx"
        assert await raw.zcard(idx) == 10  # the walk dropped the expired members
    finally:
        await raw.aclose()
        await drop_keys(prefix)
        await store.close()


async def test_index_lives_as_long_as_its_entries(settings: Any) -> None:
    need_redis()
    settings.CACHES = redis_caches()
    prefix = unique_prefix()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)
    raw = Redis.from_url(REDIS_URL, decode_responses=True)
    idx = f"{prefix}:{{0xa}}:idx"
    try:
        await store.set("0xa", "short", "v", ttl_ms=300)
        assert 300 < await raw.pttl(idx) <= 600  # extended with room to spare: 2x the TTL
        await store.set("0xa", "long", "v", ttl_ms=60_000)
        assert 60_000 < await raw.pttl(idx) <= 120_000
        await store.set("0xa", "shorter", "v", ttl_ms=100)
        assert await raw.pttl(idx) > 60_000  # never shortened
        await store.set("0xa", "forever", "v", ttl_ms=0)
        assert await raw.pttl(idx) == -1
        await store.set("0xb", "brief", "v", ttl_ms=100)
        await asyncio.sleep(0.3)
        assert await raw.exists(f"{prefix}:{{0xb}}:idx") == 0  # an abandoned index goes away
    finally:
        await raw.aclose()
        await drop_keys(prefix)
        await store.close()


async def test_purge_expired_drops_stale_index_members(settings: Any) -> None:
    need_redis()
    settings.CACHES = redis_caches()
    prefix = unique_prefix()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)
    other = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix + "x")
    raw = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        for payer in ("0xa", "we{ird}:payer"):
            await store.set(payer, "keep", "v", ttl_ms=0)
            await store.set_many(payer, {f"e{i:04d}": "v" for i in range(700)}, ttl_ms=100)
            await store.set(
                payer, "x}:idx", "v", ttl_ms=100
            )  # a value key that looks like an index
        await other.set_many("0xa", {"keep": "v"}, ttl_ms=0)
        await other.set("0xa", "e0000", "v", ttl_ms=100)
        await asyncio.sleep(0.25)
        assert await store.purge_expired() == 2 * 701
        assert await store.purge_expired() == 0
        assert (await store.list("we{ird}:payer")).entries == {"keep": "v"}
        assert await raw.zcard(f"{prefix}x:{{0xa}}:idx") == 2  # another prefix is not touched
    finally:
        await raw.aclose()
        await drop_keys(prefix)
        await drop_keys(prefix + "x")
        await store.close()
        await other.close()


async def test_purge_expired_repairs_a_payers_index_from_an_older_version(
    settings: Any,
) -> None:
    """Data written before the payers index existed gets listed once purge_expired has run."""
    need_redis()
    settings.CACHES = redis_caches()
    prefix = unique_prefix()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)
    raw = Redis.from_url(REDIS_URL, decode_responses=True)
    payers = ["0x" + "ab" * 20, "0x" + "cd" * 20, "we{ird}:payer", "ünï"]
    try:
        for payer in payers:
            await store.set_many(payer, {"a": "1", "b": "2"}, ttl_ms=0)
        await store.set("0xstale", "k", "v", ttl_ms=100)
        assert await raw.delete(store.payers_key) == 1  # as an older version left it
        assert (await store.list_payers()).payers == []
        await raw.zadd(store.payers_key, {"0xnever": 0})  # a member with no key index
        await asyncio.sleep(0.25)  # 0xstale's entry and key index expire
        assert await store.purge_expired() == 0  # the count is entries, unchanged
        assert (await store.list_payers()).payers == sorted(payers)
        assert await raw.zrange(store.payers_key, 0, -1) == sorted(payers)
        # A payer's first write after the repair is listed as usual, a second purge is a no-op.
        await store.set("0xnew", "k", "v")
        assert await store.purge_expired() == 0
        assert (await store.list_payers(limit=2)).payers == ["0x" + "ab" * 20, "0x" + "cd" * 20]
        assert "0xnew" in (await store.list_payers()).payers
    finally:
        await raw.aclose()
        await drop_keys(prefix)
        await store.close()


async def test_list_payers_drops_members_whose_key_index_is_gone(settings: Any) -> None:
    """A payer whose key index expired is skipped and taken out of the payers index."""
    need_redis()
    settings.CACHES = redis_caches()
    prefix = unique_prefix()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)
    raw = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        for i in range(30):
            await store.set(f"0x{i:02d}", "k", "v", ttl_ms=0 if i % 10 == 9 else 50)
        await asyncio.sleep(0.2)  # the key indexes of 27 payers expire with their entries
        page = await store.list_payers(limit=2)
        assert page.payers == ["0x09", "0x19"] and page.cursor is not None
        rest = await store.list_payers(limit=2, cursor=page.cursor)
        assert rest.payers == ["0x29"] and rest.cursor is None
        assert await raw.zrange(store.payers_key, 0, -1) == ["0x09", "0x19", "0x29"]
    finally:
        await raw.aclose()
        await drop_keys(prefix)
        await store.close()


# -- event loops -------------------------------------------------------------------------------


def test_one_client_per_event_loop(settings: Any) -> None:
    need_redis()
    settings.CACHES = redis_caches(DJANGO_REDIS)
    prefix = unique_prefix()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix, ttl_ms=60_000)
    clients: list[Redis] = []

    async def use(value: str) -> None:
        await store.set("0xa", "k", value)
        assert await store.get("0xa", "k") == value
        clients.append(store._client())
        assert store._client() is clients[-1]  # stable within a loop
        assert len(store._clients) == 1

    def connected(client: Redis) -> bool:
        pool = client.connection_pool
        return any(
            c.is_connected for c in (*pool._available_connections, *pool._in_use_connections)
        )

    try:
        asyncio.run(use("1"))
        # asyncio.run closed the loop's client before closing the loop.
        assert not store._clients and not connected(clients[0])
        asyncio.run(use("2"))
        assert clients[0] is not clients[1] and not connected(clients[1])

        thread = threading.Thread(target=lambda: asyncio.run(use("3")))
        thread.start()
        thread.join()
        assert len(clients) == 3 and not store._clients

        # Sync code (e.g. a sync Django view) through async_to_sync, a loop per call.
        async def set_four() -> None:
            await store.set("0xa", "k", "4")

        async def read() -> str | None:
            return await store.get("0xa", "k")

        async_to_sync(set_four)()
        assert async_to_sync(read)() == "4"
        assert not store._clients and not connected(clients[-1])

        # A loop that is closed without shutting down its generators: the
        # client is dropped when another loop binds.
        loop = asyncio.new_event_loop()
        loop.run_until_complete(use("5"))
        loop.close()
        assert len(store._clients) == 1
        asyncio.run(use("6"))
    finally:

        async def finish() -> None:
            await drop_keys(prefix)
            await store.get("0xa", "k")
            assert len(store._clients) == 1
            await store.close()
            assert not store._clients

        asyncio.run(finish())


async def test_close_drops_other_loops_clients(settings: Any) -> None:
    need_redis()
    settings.CACHES = redis_caches()
    store = CacheSessionStore(cache_alias=ALIAS, key_prefix=unique_prefix())
    ready, release = threading.Event(), threading.Event()
    other: list[Redis] = []

    async def other_loop() -> None:
        await store.get("0xa", "k")
        other.append(store._client())
        ready.set()
        await asyncio.to_thread(release.wait, 5)
        assert store._client() is not other[0]  # dropped: a fresh client here
        await store.get("0xa", "k")

    thread = threading.Thread(target=lambda: asyncio.run(other_loop()))
    thread.start()
    try:
        assert await asyncio.to_thread(ready.wait, 5)
        await store.get("0xa", "k")
        assert len(store._clients) == 2
        await store.close()
        assert not store._clients
    finally:
        release.set()
        await asyncio.to_thread(thread.join)
    assert not store._clients
