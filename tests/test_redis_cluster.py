"""RedisSessionStore: the contract on a 3-primary Redis Cluster and on a plain Redis URL.

The module starts its own cluster from the installed ``redis-server`` (three
primaries, no replicas, on free loopback ports, no persistence, in a
temporary directory) and stops it at the end. Without ``redis-server`` or
``redis-cli`` the cluster tests skip with a reason (under ``CI=true`` they
fail). The plain-URL tests use the Redis at 127.0.0.1:6379 (``need_redis()``).
Every test writes under its own random key prefix and deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import run_state_machine_as_test
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from aixyz_sessions.checks.store import check_session_store
from aixyz_sessions.exceptions import SessionStoreError, SessionStoreUnavailable
from aixyz_sessions.replay import Record
from aixyz_sessions.stores.redis import RedisReplayGuard, RedisSessionStore, payer_tag
from aixyz_sessions.testing import ManualClock, StoreConformance
from aixyz_sessions.testing.properties import DEFAULT_TTL, store_state_machine
from tests.services import REDIS_HOST, REDIS_PORT, need, need_redis

PLAIN_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
STORE_PATH = "aixyz_sessions.stores.redis.RedisSessionStore"
NODES = 3


def unique_prefix() -> str:
    return f"aixyz:test:{secrets.token_hex(6)}"


# -- a cluster of our own ------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_ports(count: int) -> list[int]:
    """Free loopback ports whose cluster bus ports (+10000) are free too."""
    picked: list[int] = []
    candidates = random.sample(range(20_000, 40_000), 400)
    for port in candidates:
        if port not in picked and _port_free(port) and _port_free(port + 10_000):
            picked.append(port)
            if len(picked) == count:
                return picked
    raise RuntimeError("no free loopback ports for a Redis Cluster")


def _ask(port: int, *command: str) -> str:
    """One command over a raw socket (inline protocol); the reply, undecoded."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall((" ".join(command) + "\r\n").encode())
        sock.settimeout(1)
        data = b""
        while True:
            chunk = sock.recv(65536)
            data += chunk
            if not chunk or data.endswith(b"\r\n"):
                return data.decode(errors="replace")


def _wait(what: str, ready: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"Redis Cluster: timed out waiting for {what}")


def _cluster_ok(port: int) -> bool:
    info = _ask(port, "CLUSTER", "INFO")
    return (
        "cluster_state:ok" in info
        and f"cluster_known_nodes:{NODES}" in info
        and "cluster_slots_ok:16384" in info
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    need(server is not None and cli is not None, "redis-server and redis-cli (for a cluster)")
    assert server is not None and cli is not None
    workdir = tempfile.mkdtemp(prefix="aixyz-cluster-")
    ports = _cluster_ports(NODES)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            args = [
                server,
                *("--port", str(port), "--bind", "127.0.0.1"),
                *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                *("--cluster-node-timeout", "2000", "--dir", workdir),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ]
            procs.append(
                subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in ports:
            _wait(f"redis-server on port {port}", lambda p=port: "PONG" in _ask(p, "PING"))
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{port}" for port in ports],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout!r}")
        for port in ports:
            _wait(f"cluster_state:ok on port {port}", lambda p=port: _cluster_ok(p))
        yield Cluster(tuple(ports))
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


async def drop_cluster_keys(cluster: Cluster, prefix: str) -> int:
    """Delete every key under ``prefix`` on every primary (straight to each node)."""
    dropped = 0
    for port in cluster.ports:
        node = Redis(port=port, decode_responses=True)
        try:
            keys = [key async for key in node.scan_iter(match=f"{prefix}:*", count=1000)]
            for key in keys:  # one key per command: a node refuses cross-slot DELs
                dropped += await node.delete(key)
        finally:
            await node.aclose()
    return dropped


async def keys_by_node(cluster: Cluster, prefix: str) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for port in cluster.ports:
        node = Redis(port=port, decode_responses=True)
        try:
            found[port] = sorted([k async for k in node.scan_iter(match=f"{prefix}:*")])
        finally:
            await node.aclose()
    return found


def cluster_store(cluster: Cluster, **options: Any) -> RedisSessionStore:
    options.setdefault("key_prefix", unique_prefix())
    return RedisSessionStore(url=cluster.url, cluster=True, **options)


# -- the contract -----------------------------------------------------------------------------


class TestClusterConformance(StoreConformance):
    clock_controlled = False
    ttl_unit_ms = 120
    prefix: str
    where: Cluster

    @pytest.fixture(autouse=True)
    def _on_cluster(self, cluster: Cluster) -> None:
        self.where = cluster
        self.prefix = unique_prefix()

    def make_store(self, clock: ManualClock, **options: Any) -> RedisSessionStore:
        return cluster_store(self.where, key_prefix=self.prefix, **options)

    async def cleanup_store(self, store: Any) -> None:
        await store.close()
        await drop_cluster_keys(self.where, store.key_prefix)


class TestPlainUrlConformance(StoreConformance):
    clock_controlled = False
    ttl_unit_ms = 120
    prefix: str

    @pytest.fixture(autouse=True)
    def _plain_redis(self) -> None:
        need_redis()
        self.prefix = unique_prefix()

    def make_store(self, clock: ManualClock, **options: Any) -> RedisSessionStore:
        return RedisSessionStore(url=PLAIN_URL, key_prefix=self.prefix, **options)

    async def cleanup_store(self, store: Any) -> None:
        await store.close()
        client = Redis.from_url(PLAIN_URL, decode_responses=True)
        try:
            keys = [k async for k in client.scan_iter(match=f"{store.key_prefix}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


def test_state_machine_on_the_cluster(cluster: Cluster) -> None:
    def make(clock: ManualClock) -> RedisSessionStore:
        return cluster_store(cluster, ttl_ms=DEFAULT_TTL)

    machine = store_state_machine(make, clock_controlled=False)

    class CleaningMachine(machine):  # type: ignore[misc,valid-type]
        def teardown(self) -> None:
            try:
                prefix = cast(RedisSessionStore, self.store).key_prefix
                self.run(drop_cluster_keys(cluster, prefix))
            finally:
                super().teardown()

    run_state_machine_as_test(
        CleaningMachine,
        settings=hypothesis_settings(
            max_examples=20,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# -- layout and routing on the cluster ------------------------------------------------------------

PAYERS = ["0x" + secrets.token_hex(20) for _ in range(24)] + ["a{b}c", "ünï", "x:y"]


async def test_one_slot_per_payer_and_payers_spread_over_the_nodes(cluster: Cluster) -> None:
    store = cluster_store(cluster, ttl_ms=60_000)
    try:
        for payer in PAYERS:
            await store.set_many(payer, {"a": payer, "b:1": "x", "{c}": "y"})
            await store.replay_guard().claim(payer, "0x01", int(time.time()) + 60)
        by_node = await keys_by_node(cluster, store.key_prefix)
        # The payers index: one key with a hash tag no payer can have, on one node.
        assert sum(store.payers_key in keys for keys in by_node.values()) == 1
        assert (await store.list_payers()).payers == sorted(PAYERS)
        by_node = {
            port: [k for k in keys if k != store.payers_key] for port, keys in by_node.items()
        }
        nodes_of_payer: dict[str, set[int]] = {}
        slots_of_payer: dict[str, set[int]] = {}
        for port, keys in by_node.items():
            for key in keys:
                tag = key[key.index("{") + 1 : key.index("}")]
                nodes_of_payer.setdefault(tag, set()).add(port)
                slots_of_payer.setdefault(tag, set()).add(key_slot(key.encode()))
        assert sorted(nodes_of_payer) == sorted(payer_tag(p) for p in PAYERS)
        assert all(len(ports) == 1 for ports in nodes_of_payer.values())
        assert all(len(slots) == 1 for slots in slots_of_payer.values())
        # 4 keys per payer: 3 values, the index, and the replay claim.
        assert sum(len(keys) for keys in by_node.values()) == 5 * len(PAYERS)
        assert all(by_node[port] for port in cluster.ports), "some primary holds no payer"
        for payer in PAYERS:
            assert (await store.list(payer)).entries == {"a": payer, "b:1": "x", "{c}": "y"}
    finally:
        await store.close()
        await drop_cluster_keys(cluster, store.key_prefix)


async def _stats(cluster: Cluster) -> dict[int, dict[str, Any]]:
    stats: dict[int, dict[str, Any]] = {}
    for port in cluster.ports:
        node = Redis(port=port, decode_responses=True)
        try:
            stats[port] = {
                **await node.info("errorstats"),
                **await node.info("commandstats"),
            }
        finally:
            await node.aclose()
    return stats


async def _reset_stats(cluster: Cluster, *, flush_scripts: bool = False) -> None:
    for port in cluster.ports:
        node = Redis(port=port, decode_responses=True)
        try:
            await node.config_resetstat()
            if flush_scripts:
                await node.script_flush()
        finally:
            await node.aclose()


def _spread_payers(per_third: int) -> list[str]:
    """``per_third`` random payers in each primary's slots (``redis-cli --cluster create``).

    Twelve random payers miss one of three primaries about 2% of the time; a
    test of "every primary" must not depend on that draw.
    """
    from redis.crc import key_slot

    chosen: dict[int, list[str]] = {0: [], 1: [], 2: []}
    while any(len(group) < per_third for group in chosen.values()):
        payer = "0x" + secrets.token_hex(20)
        slot = key_slot(payer_tag(payer).encode())
        third = 0 if slot <= 5460 else 1 if slot <= 10922 else 2  # redis-cli's split
        if len(chosen[third]) < per_third:
            chosen[third].append(payer)
    return [payer for group in chosen.values() for payer in group]


async def test_every_operation_goes_straight_to_the_owning_primary(cluster: Cluster) -> None:
    """EVALSHA of every operation lands on the slot's primary: no MOVED, no NOSCRIPT twice."""
    store = cluster_store(cluster, ttl_ms=60_000)
    payers = _spread_payers(4)  # every primary owns some: each must see EVALSHA

    async def every_operation(payer: str) -> None:
        await store.set(payer, "k", "v")
        await store.set_many(payer, {"a": "1", "b": "2"}, ttl_ms=0)
        assert await store.get(payer, "k") == "v"
        assert await store.get_many(payer, ["a", "b", "zz"]) == {"a": "1", "b": "2", "zz": None}
        assert (await store.list(payer, limit=2)).entries == {"a": "1", "b": "2"}
        assert (await store.list(payer, prefix="k", keys_only=True)).entries == {"k": ""}
        assert await store.delete(payer, "k") is True
        assert await store.delete_many(payer, ["a", "b", "zz"]) == 2

    try:
        await store.get(payers[0], "warm-up")  # the client learns the slot map
        await _reset_stats(cluster, flush_scripts=True)  # and no node knows the scripts
        for payer in payers:
            await every_operation(payer)
        assert await store.purge_expired() == 0
        stats = await _stats(cluster)
        errors = {
            port: {k: v for k, v in s.items() if k.startswith("errorstat_")}
            for port, s in stats.items()
        }
        # No redirection (MOVED/ASK), no cross-slot refusal. (Each new connection
        # costs a few ERRs on Redis 7.0: redis-py's CLIENT SETINFO handshake.)
        refused = {"MOVED", "ASK", "CROSSSLOT", "TRYAGAIN", "CLUSTERDOWN"}
        assert not any(f"errorstat_{r}" in e for e in errors.values() for r in refused), errors
        # NOSCRIPT at most once per script and node, then EVALSHA only.
        for port, node_errors in errors.items():
            assert node_errors.get("errorstat_NOSCRIPT", {}).get("count", 0) <= 8, (port, errors)
        evalsha = {port: s.get("cmdstat_evalsha", {}).get("calls", 0) for port, s in stats.items()}
        assert sum(evalsha.values()) >= 8 * len(payers) and all(evalsha.values()), evalsha
    finally:
        await store.close()
        await drop_cluster_keys(cluster, store.key_prefix)


async def test_many_concurrent_operations_on_one_loop(cluster: Cluster) -> None:
    """More concurrent calls than redis-py's default cluster pool (100 per node) allows.

    They are a fresh client's first calls, for a payer the default node does
    not own: each must go straight to the owner. (redis-py's cluster client
    sent calls made before its first slot map to the default node; the
    MOVED replies made it close every connection, failing calls in flight.)
    """
    store = cluster_store(cluster, ttl_ms=60_000)
    payer = _spread_payers(1)[-1]  # one payer: every call goes to the third primary
    try:
        await _reset_stats(cluster)
        await asyncio.gather(*[store.set(payer, f"k{i:03d}", str(i)) for i in range(300)])
        values = await asyncio.gather(*[store.get(payer, f"k{i:03d}") for i in range(300)])
        assert values == [str(i) for i in range(300)]
        moved = {
            port: s.get("errorstat_MOVED", {}).get("count", 0)
            for port, s in (await _stats(cluster)).items()
        }
        assert sum(moved.values()) == 0, moved
    finally:
        await store.close()
        await drop_cluster_keys(cluster, store.key_prefix)


async def test_purge_expired_covers_every_primary(cluster: Cluster) -> None:
    store = cluster_store(cluster)
    try:
        for payer in PAYERS:
            await store.set(payer, "keep", "v", ttl_ms=0)
            await store.set_many(payer, {"gone1": "v", "gone2": "v"}, ttl_ms=100)
        await asyncio.sleep(0.3)
        assert await store.purge_expired() == 2 * len(PAYERS)
        assert await store.purge_expired() == 0
        assert (await store.list(PAYERS[0])).entries == {"keep": "v"}
    finally:
        await store.close()
        await drop_cluster_keys(cluster, store.key_prefix)


async def test_replay_guard_on_the_cluster(cluster: Cluster) -> None:
    prefix = unique_prefix()
    first, second = (
        cluster_store(cluster, key_prefix=prefix),
        cluster_store(cluster, key_prefix=prefix),
    )
    payer, nonce = "0x" + "Ab" * 20, "0x" + "cd" * 32
    valid_before = int(time.time()) + 100
    try:
        guard = first.replay_guard()
        assert isinstance(guard, RedisReplayGuard) and guard.store is first
        assert await guard.claim(payer, nonce, valid_before)
        assert not await guard.claim(payer, nonce, valid_before)  # a replay
        assert not await second.replay_guard().claim(payer.lower(), nonce.upper(), valid_before)
        results = await asyncio.gather(
            *[second.replay_guard().claim(payer, "0x02", valid_before) for _ in range(10)]
        )
        assert results.count(True) == 1
        await guard.release(payer, nonce)
        assert await second.replay_guard().claim(payer, nonce, valid_before)
        key = guard.key(payer, nonce)
        value_key = f"{prefix}:{{{payer_tag(payer.lower())}}}:idx"
        assert key_slot(key.encode()) == key_slot(value_key.encode())
        by_node = await keys_by_node(cluster, prefix)
        assert sum(key in keys for keys in by_node.values()) == 1
    finally:
        await first.close()
        await second.close()
        await drop_cluster_keys(cluster, prefix)


async def test_commit_and_take_run_on_the_cluster(cluster: Cluster) -> None:
    """One script per paid call's commit (writes, records) on the payer's primary; the
    payers index follows as its own command: no MOVED, no CROSSSLOT."""
    store = cluster_store(cluster, ttl_ms=60_000)
    guard = store.replay_guard()
    payers = [*_spread_payers(2), "a{b}c", "ünï"]
    try:
        await store.get(payers[0], "warm-up")  # the client learns the slot map
        await _reset_stats(cluster, flush_scripts=True)
        for payer in payers:
            records = [
                Record(payer, "paid:*", "1", time.time() + 60),
                Record(payer, "pid:x", '{"state": "done"}', time.time() + 60),
            ]
            writes = {"a": ("1", None), "b": ("2", 0), "c": ("3", 100)}
            assert await store.commit(payer, writes, records=records, guard=guard) is True
            assert await store.commit(payer, {}, records=records[:1], guard=guard) is True
            assert await store.commit(payer, {"c": None}, guard=guard) is False
            assert await guard.take(payer, "pid:y", "mine", time.time() + 60) is None
            assert await guard.take(payer, "pid:y", "theirs", time.time() + 60) == "mine"
        assert (await store.list_payers()).payers == sorted(payers)
        for payer in payers:
            assert (await store.list(payer)).entries == {"a": "1", "b": "2"}
            assert await guard.recall(payer, "pid:x") == '{"state": "done"}'
            assert await guard.recall(payer, "paid:*") == "1"
            assert await store.commit(payer, {"a": None, "b": None}) is False  # empties it
        assert (await store.list_payers()).payers == []
        stats = await _stats(cluster)
        refused = {"MOVED", "ASK", "CROSSSLOT", "TRYAGAIN", "CLUSTERDOWN"}
        errors = {k for s in stats.values() for k in s if k.startswith("errorstat_")}
        assert not {f"errorstat_{r}" for r in refused} & errors, errors
        evalsha = {port: s.get("cmdstat_evalsha", {}).get("calls", 0) for port, s in stats.items()}
        assert all(evalsha.values()), evalsha  # every primary ran the scripts
    finally:
        await store.close()
        await drop_cluster_keys(cluster, store.key_prefix)


async def test_client_factory_with_a_cluster_client(cluster: Cluster) -> None:
    made: list[RedisCluster] = []

    def factory() -> RedisCluster:
        made.append(RedisCluster(host="127.0.0.1", port=cluster.ports[1], decode_responses=True))
        return made[-1]

    store = RedisSessionStore(client_factory=factory, key_prefix=unique_prefix())
    try:
        for payer in PAYERS[:6]:
            await store.set(payer, "k", payer)
        assert [await store.get(p, "k") for p in PAYERS[:6]] == PAYERS[:6]
        assert len(made) == 1 and "client_factory" in repr(store)
    finally:
        await store.close()
        await drop_cluster_keys(cluster, store.key_prefix)


# -- failures and configuration -------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_cluster_is_unavailable() -> None:
    port = _closed_port()
    store = RedisSessionStore(url=f"redis://:hunter2@127.0.0.1:{port}", cluster=True)
    started = time.monotonic()
    try:
        for call in (
            lambda: store.get("0xa", "k"),
            lambda: store.set("0xa", "k", "v"),
            lambda: store.list("0xa"),
            lambda: store.replay_guard().claim("0xa", "0x01", int(time.time()) + 60),
        ):
            with pytest.raises(SessionStoreUnavailable) as info:
                await call()
            message = str(info.value)
            assert "Redis Cluster at" in message and f"127.0.0.1:{port}" in message
            assert "unavailable" in message and "hunter2" not in message
    finally:
        await store.close()
    assert time.monotonic() - started < 15


async def test_plain_redis_unreachable_is_unavailable() -> None:
    store = RedisSessionStore(url=f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        with pytest.raises(SessionStoreUnavailable, match=r"Redis at redis://127\.0\.0\.1"):
            await store.get("0xa", "k")
    finally:
        await store.close()


async def test_cluster_mode_against_a_plain_redis_is_a_clear_error() -> None:
    need_redis()
    store = RedisSessionStore(url=f"redis://{REDIS_HOST}:{REDIS_PORT}", cluster=True)
    try:
        with pytest.raises(SessionStoreError, match="Cluster mode is not enabled") as info:
            await store.get("0xa", "k")
        assert not isinstance(info.value, SessionStoreUnavailable)
    finally:
        await store.close()


async def test_factory_client_must_decode_responses() -> None:
    store = RedisSessionStore(client_factory=lambda: Redis(port=_closed_port()))
    with pytest.raises(SessionStoreError, match="decode_responses=True"):
        await store.get("0xa", "k")
    bad = RedisSessionStore(client_factory=lambda: cast(Any, "not a client"))
    with pytest.raises(SessionStoreError, match="RedisCluster client, got str"):
        await bad.get("0xa", "k")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of url= .* and client_factory="),
        ({"url": PLAIN_URL, "client_factory": lambda: None}, "exactly one"),
        ({"url": "127.0.0.1:6379"}, "is not a Redis URL"),
        ({"url": "http://127.0.0.1:6379"}, "is not a Redis URL"),
        ({"url": "unix:///tmp/redis.sock", "cluster": True}, "cannot name a cluster node"),
        ({"url": "redis://127.0.0.1:7000/2", "cluster": True}, "only database 0"),
        ({"url": PLAIN_URL, "options": {"no_such_option": 1}}, "no_such_option"),
        ({"url": PLAIN_URL, "cluster": True, "options": {"no_such_option": 1}}, "no_such"),
        ({"client_factory": lambda: None, "cluster": True}, "apply to url="),
        ({"url": PLAIN_URL, "key_prefix": "a{b"}, "key_prefix"),
    ],
)
def test_construction_errors_are_value_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisSessionStore(**kwargs)


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError, match="url"):
        RedisSessionStore(url=cast(Any, 6379))
    with pytest.raises(TypeError, match="cluster"):
        RedisSessionStore(url=PLAIN_URL, cluster=cast(Any, "yes"))
    with pytest.raises(TypeError, match="client_factory"):
        RedisSessionStore(client_factory=cast(Any, "redis://x"))


def test_construction_does_not_connect_and_redacts() -> None:
    store = RedisSessionStore(url="rediss://bob:hunter2@10.0.0.1:6390", cluster=True)
    assert store.check() == [] and not store._clients
    assert "hunter2" not in repr(store) and "rediss://***@10.0.0.1:6390" in repr(store)


def test_bad_url_in_settings_is_a_check_error(settings: Any) -> None:
    settings.AIXYZ_SESSION_STORE = {
        "BACKEND": STORE_PATH,
        "OPTIONS": {"url": "redis://127.0.0.1:7000/1", "cluster": True},
    }
    errors = check_session_store()
    assert [e.id for e in errors] == ["aixyz_sessions.E003"]
    assert "only database 0" in errors[0].msg
