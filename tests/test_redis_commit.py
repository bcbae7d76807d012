"""Issue 21, "Round trips": a paid call's Redis round trips, against the real Redis.

The store's ``commit`` (one ``EVALSHA commit`` carrying the staged writes, the
payment's records and, on a plain Redis, the payers index), the guard's
``take`` (a payment identifier taken with its "running" record in one step),
the pre-settlement probe that a claim just answered stands in for, and a
paid call counted on the wire: every guarantee of the longer sequence holds.
The cluster side is in ``test_redis_cluster.py``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.test import AsyncClient, override_settings
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot
from x402.extensions.payment_identifier import (
    append_payment_identifier_to_extensions,
    generate_payment_id,
)
from x402.http import decode_payment_required_header, encode_payment_signature_header

from aixyz_sessions import SessionArgumentError, get_store
from aixyz_sessions.exceptions import SessionStoreUnavailable
from aixyz_sessions.payments.failures import NOT_STORED
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.replay import InMemoryReplayGuard, Record
from aixyz_sessions.staging import StagedSession
from aixyz_sessions.stores import redis_scripts as lua
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.stores.redis import RedisSessionStore, payer_tag
from aixyz_sessions.testing import PayingClient
from tests.payments_helpers import LOCAL, MIDDLEWARE
from tests.services import REDIS_HOST, REDIS_PORT, need_redis
from tests.test_replay_guard import drop_keys, unique_prefix

URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
PAYER = "0x" + "Ab" * 20


class Trips:
    """Every request written to Redis while counting (one call is one round trip)."""

    def __init__(self) -> None:
        self.on = False
        self.commands: list[list[str]] = []

    def names(self) -> list[str]:
        return [" ".join([*c[:1], lua_name(c)]).strip() for c in self.commands]

    def __len__(self) -> int:
        return len(self.commands)

    def start(self) -> None:
        self.on, self.commands = True, []


SCRIPTS = {s.sha: s.name for s in vars(lua).values() if isinstance(s, lua.LuaScript)}


def lua_name(command: list[str]) -> str:
    """A command's script name (``EVALSHA``), or its key's last part."""
    if command[0].upper() == "EVALSHA":
        return SCRIPTS.get(command[1], "?")
    return ""


def _first_args(packed: bytes) -> list[str]:
    """The first command of a packed RESP request: its name and first argument."""
    parts = packed.split(b"\r\n")
    return [parts[2].decode(), parts[4].decode(errors="replace") if len(parts) > 4 else ""]


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Trips:
    counted = Trips()
    original = AbstractConnection.send_packed_command

    async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        if counted.on:
            data = command if isinstance(command, bytes) else b"".join(map(bytes, command))
            counted.commands.append(_first_args(data))
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send_packed_command)
    return counted


@pytest.fixture
async def store() -> AsyncIterator[RedisSessionStore]:
    need_redis()
    made = RedisSessionStore(url=URL, key_prefix=unique_prefix())
    try:
        yield made
    finally:
        await made.close()
        await drop_keys(made.key_prefix)


async def _raw(command: str, *args: Any) -> Any:
    client = Redis.from_url(URL, decode_responses=True)
    try:
        return await client.execute_command(command, *args)
    finally:
        await client.aclose()


async def _warm(store: RedisSessionStore) -> None:
    """The connection and the commit script, loaded, so that counting sees the steady state."""
    guard = store.replay_guard()
    warm = "0x" + secrets.token_hex(20)
    await store.commit(
        warm, {"w": ("1", None)}, records=[Record(warm, "r", "1", 1e10)], guard=guard
    )


# -- the store's commit -----------------------------------------------------------------------


async def test_commit_is_one_round_trip_with_records_and_the_payers_index(
    store: RedisSessionStore, trips: Trips
) -> None:
    guard = store.replay_guard()
    payer = PAYER.lower()
    await _warm(store)
    now = time.time()
    records = [
        Record(PAYER, "paid:x", "1.000", now + 600),  # the payer in any case: the same tag
        Record(payer, "pid:y", '{"state": "done"}', now + 300),
    ]
    writes = {"a": ("1", None), "b": ("2", 0), "c": ("3", 5_000), "gone": None}
    trips.start()
    assert await store.commit(payer, writes, records=records, guard=guard) is True
    trips.on = False
    assert trips.names() == ["EVALSHA commit"]  # a new payer listed in the same step
    assert await store.get_many(payer, ["a", "b", "c", "gone"]) == {
        "a": "1",
        "b": "2",
        "c": "3",
        "gone": None,
    }
    a_ttl, b_ttl, c_ttl = [await store.entry_ttl_ms(payer, k) for k in "abc"]
    assert a_ttl is not None and 3_000_000 < a_ttl <= store.default_ttl_ms
    assert b_ttl is None and c_ttl is not None and 0 < c_ttl <= 5_000
    base = f"{store.key_prefix}:{{{payer_tag(payer)}}}:"
    assert await _raw("PTTL", base + "idx") == -1  # an entry never expires: nor does the index
    assert (await store.list_payers()).payers.count(payer) == 1
    assert await guard.recall(payer, "paid:x") == "1.000"
    assert await guard.recall(payer, "pid:y") == '{"state": "done"}'
    for record in records:  # records expire as remember() makes them
        expires = await _raw("PEXPIRETIME", guard.key(record.payer, record.key))
        assert expires == int(record.expires_at * 1000)


async def test_the_index_outlives_the_longest_entry_of_a_commit(store: RedisSessionStore) -> None:
    payer = "0x" + secrets.token_hex(20)
    await store.commit(payer, {"short": ("1", 1_000), "long": ("2", 60_000)})
    left = await _raw("PTTL", f"{store.key_prefix}:{{{payer_tag(payer)}}}:idx")
    assert 60_000 < left <= 120_000


async def test_a_commit_that_empties_the_session_unlists_the_payer(
    store: RedisSessionStore,
) -> None:
    payer = "0x" + secrets.token_hex(20)
    await store.set(payer, "only", "v")
    assert payer in (await store.list_payers()).payers
    assert await store.commit(payer, {"only": None}) is False  # no records: none written
    assert await store.get(payer, "only") is None
    assert payer not in (await store.list_payers()).payers


async def test_records_alone_are_one_round_trip_and_make_no_session(
    store: RedisSessionStore, trips: Trips
) -> None:
    guard = store.replay_guard()
    payer = "0x" + secrets.token_hex(20)
    await _warm(store)
    records = [Record(payer, "paid:a", "1", time.time() + 60), Record(payer, "paid:*", "1", 1e10)]
    trips.start()
    assert await store.commit(payer, {}, records=records, guard=guard) is True
    trips.on = False
    assert trips.names() == ["EVALSHA commit"]
    assert await guard.recall(payer, "paid:a") == "1" and await guard.recall(payer, "paid:*")
    assert await _raw("EXISTS", f"{store.key_prefix}:{{{payer_tag(payer)}}}:idx") == 0
    assert payer not in (await store.list_payers()).payers


async def test_records_go_along_only_when_the_store_keeps_them(store: RedisSessionStore) -> None:
    payer = "0x" + secrets.token_hex(20)
    record = Record(payer, "paid:x", "1", time.time() + 60)
    other_store = RedisSessionStore(url=URL, key_prefix=store.key_prefix)
    try:
        for guard in (InMemoryReplayGuard(), other_store.replay_guard(), None):
            assert (
                await store.commit(payer, {"k": ("v", None)}, records=[record], guard=guard)
                is False
            )
        foreign = Record("0x" + "ef" * 20, "paid:x", "1", time.time() + 60)  # another payer's
        assert (
            await store.commit(
                payer, {"k": ("v", None)}, records=[foreign], guard=store.replay_guard()
            )
            is False
        )
    finally:
        await other_store.close()
    assert await store.replay_guard().recall(payer, "paid:x") is None
    assert await store.replay_guard().recall(foreign.payer, "paid:x") is None
    assert await store.get(payer, "k") == "v"  # the writes landed every time


async def test_more_writes_than_a_batch_take_the_batched_path(store: RedisSessionStore) -> None:
    small = RedisSessionStore(url=URL, key_prefix=store.key_prefix, max_batch=2)
    payer = "0x" + secrets.token_hex(20)
    record = Record(payer, "paid:x", "1", time.time() + 60)
    try:
        writes = {f"k{i}": (str(i), None) for i in range(5)}
        assert (
            await small.commit(payer, writes, records=[record], guard=small.replay_guard()) is False
        )
        assert (await small.list(payer)).entries == {f"k{i}": str(i) for i in range(5)}
        assert payer in (await small.list_payers()).payers
        assert await small.replay_guard().recall(payer, "paid:x") is None  # the caller's to write
    finally:
        await small.close()


@pytest.mark.parametrize(
    ("writes", "error"),
    [
        ({"": ("v", None)}, SessionArgumentError),
        ({"k": ("v\x00", None)}, SessionArgumentError),
        ({"k": ("v", -1)}, SessionArgumentError),
        ({"k": "v"}, TypeError),
        ({"k": (1, None)}, TypeError),
        ([("k", "v")], TypeError),
    ],
)
async def test_commit_arguments_are_checked_and_nothing_is_written(
    store: RedisSessionStore, writes: Any, error: type[Exception]
) -> None:
    payer = "0x" + secrets.token_hex(20)
    memory = InMemorySessionStore()
    for each in (store, memory):
        with pytest.raises(error):
            await each.commit(
                payer, {"ok": ("1", None), **writes} if isinstance(writes, dict) else writes
            )
        assert await each.get(payer, "ok") is None
    with pytest.raises(TypeError, match="Record"):
        await store.commit(payer, {}, records=[("paid:x", "1")], guard=store.replay_guard())  # type: ignore[list-item]


async def test_the_base_commit_keeps_the_old_sequence() -> None:
    """A store without its own commit (memory, database, custom): set_many per TTL, then
    delete_many; the records stay with the caller."""
    calls: list[tuple[str, Any]] = []

    class Recording(InMemorySessionStore):
        async def set_many(self, payer: str, entries: Any, *, ttl_ms: int | None = None) -> None:
            calls.append(("set_many", (dict(entries), ttl_ms)))
            await super().set_many(payer, entries, ttl_ms=ttl_ms)

        async def delete_many(self, payer: str, keys: Any) -> int:
            calls.append(("delete_many", list(keys)))
            return await super().delete_many(payer, keys)

    store = Recording(max_batch=2)
    guard = InMemoryReplayGuard()
    await store.set("p", "old", "x")  # set: not recorded
    record = Record("p", "paid:x", "1", time.time() + 60)
    writes = {"a": ("1", None), "b": ("2", 0), "c": ("3", None), "d": ("4", None), "old": None}
    assert await store.commit("p", writes, records=[record], guard=guard) is False
    assert calls == [
        ("set_many", ({"a": "1", "c": "3"}, None)),
        ("set_many", ({"d": "4"}, None)),
        ("set_many", ({"b": "2"}, 0)),
        ("delete_many", ["old"]),
    ]
    assert (await store.list("p")).entries == {"a": "1", "b": "2", "c": "3", "d": "4"}
    assert await guard.recall("p", "paid:x") is None


def test_a_payers_claims_records_and_session_keys_share_one_slot() -> None:
    """What lets one script carry a whole commit on a cluster (no CROSSSLOT)."""
    store = RedisSessionStore(url=URL, key_prefix="aixyz:sess")
    guard = store.replay_guard()
    for payer in [PAYER, "0x" + secrets.token_hex(20), "a{b}c", "ünï", "x:y", "~payers"]:
        lower = payer.lower()
        base = f"aixyz:sess:{{{payer_tag(lower)}}}:"
        keys = [
            base + "idx",
            base + "v:note",
            base + "v:{other}",
            guard.key(payer, "0x" + "cd" * 32),  # a claim
            guard.key(payer, "paid:*"),  # a sign-in record
            guard.key(payer, "pid:" + "ab" * 20),  # a kept answer
        ]
        assert len({key_slot(key.encode()) for key in keys}) == 1, (payer, keys)


# -- the guard's take -------------------------------------------------------------------------


async def test_take_is_one_round_trip_and_a_lost_reply_is_still_ours(
    store: RedisSessionStore, trips: Trips, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = store.replay_guard()
    await guard.take(PAYER, "warm", "x", time.time() + 60)  # load the script
    trips.start()
    assert await guard.take(PAYER, "pid:a", "mine-1", time.time() + 60) is None
    assert await guard.take(PAYER, "pid:a", "theirs", time.time() + 60) == "mine-1"
    trips.on = False
    assert trips.names() == ["EVALSHA take", "EVALSHA take"]
    expires = time.time() + 30
    real_run = store._run

    async def lost_reply(*args: Any) -> Any:
        await real_run(*args)  # it landed; the client's retry then finds it
        return await real_run(*args)

    monkeypatch.setattr(store, "_run", lost_reply)
    assert await guard.take(PAYER, "pid:b", "mine-2", expires) is None
    assert await _raw("PEXPIRETIME", guard.key(PAYER, "pid:b")) == int(expires * 1000)


# -- the probe before settlement --------------------------------------------------------------


class CountingStore(InMemorySessionStore):
    def __init__(self) -> None:
        super().__init__()
        self.probes = 0

    async def get_many(self, payer: str, keys: Any) -> dict[str, str | None]:
        self.probes += 1
        return await super().get_many(payer, keys)


async def test_ready_probes_unless_the_store_just_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = CountingStore()
    session = StagedSession(PAYER, store)
    await session.ready()
    assert store.probes == 0  # nothing pending: nothing to prove
    await session.set("k", "v")
    await session.ready()
    assert store.probes == 1  # nobody answered yet: the probe
    session.answered()
    await session.ready()
    assert store.probes == 1  # answered just now (the claim): that is the proof
    monkeypatch.setattr("aixyz_sessions.staging.READY_WITHIN", 0.0)
    await session.ready()
    assert store.probes == 2  # too long ago: the probe again
    monkeypatch.undo()
    fresh = StagedSession(PAYER, store)
    await fresh.get("other")  # the session's own read answered
    await fresh.set("k", "v")
    await fresh.ready()
    assert store.probes == 2


def test_only_the_stores_own_guard_shares_its_server() -> None:
    store = RedisSessionStore(url=URL, key_prefix=unique_prefix())
    other = RedisSessionStore(url=URL, key_prefix=store.key_prefix)
    assert store.replay_guard().shares_server(store)
    assert not other.replay_guard().shares_server(store)
    assert not InMemoryReplayGuard().shares_server(InMemorySessionStore())


# -- a paid call, counted on the wire ---------------------------------------------------------


@pytest.fixture
def paid_on_redis() -> Iterator[RedisSessionStore]:
    """``tests.payments_urls`` with sessions and claims in one RedisSessionStore."""
    need_redis()
    prefix = unique_prefix()
    setting = {
        "BACKEND": "aixyz_sessions.stores.redis.RedisSessionStore",
        "OPTIONS": {"url": URL, "key_prefix": prefix},
    }
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.payments_urls",
        AIXYZ_X402=LOCAL,
        AIXYZ_SESSION_STORE=setting,
    ):
        reset_runtime()
        store = get_store()
        assert isinstance(store, RedisSessionStore)
        yield store
        reset_runtime()
    get_local_facilitator().ledger.fail_settlements = None
    import asyncio

    asyncio.run(drop_keys(prefix))


async def _signed(client: PayingClient, path: str, payment_id: str | None = None) -> dict[str, str]:
    asked = await AsyncClient().get(path)
    required = decode_payment_required_header(asked["PAYMENT-REQUIRED"])
    extensions: dict[str, Any] = dict(required.extensions or {})
    if payment_id is not None:
        append_payment_identifier_to_extensions(extensions, payment_id)
    payload = await client.signer.create_payment_payload(required, extensions=extensions)
    return {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}


async def _counted(trips: Trips, path: str, headers: dict[str, str]) -> Any:
    trips.start()
    try:
        return await AsyncClient().get(path, headers=headers)
    finally:
        trips.on = False


@pytest.mark.django_db(transaction=True)
async def test_a_paid_call_makes_one_round_trip_beyond_its_own(
    paid_on_redis: RedisSessionStore, trips: Trips
) -> None:
    client = PayingClient()
    warm = await AsyncClient().get("/paid/", headers=await _signed(client, "/paid/"))
    assert warm.status_code == 200
    await AsyncClient().get(
        "/paid/", headers=await _signed(client, "/paid/", generate_payment_id())
    )
    # /paid/ reads "count" and writes it: the claim, its read, the commit.
    first = await _counted(trips, "/paid/", await _signed(PayingClient(), "/paid/"))
    assert first.status_code == 200, first.content
    assert trips.names() == ["SET", "EVALSHA get", "EVALSHA commit"]
    # Sign-in declared (after_payment here, after_any_payment elsewhere): the records ride along.
    notes = await _counted(trips, "/notes/", await _signed(client, "/notes/"))
    assert notes.status_code == 200, notes.content
    assert trips.names() == ["SET", "EVALSHA get", "EVALSHA commit"]
    payer = client.address.lower()
    guard = paid_on_redis.replay_guard()
    assert await guard.recall(payer, "paid:*") is not None
    # A payment identifier: taken in one step; its retry is one round trip.
    headers = await _signed(client, "/paid/", generate_payment_id())
    once = await _counted(trips, "/paid/", headers)
    assert once.status_code == 200
    assert trips.names() == ["EVALSHA take", "SET", "EVALSHA get", "EVALSHA commit"]
    again = await _counted(trips, "/paid/", headers)
    assert again.status_code == 200 and again.content == once.content
    assert trips.names() == ["EVALSHA take"]


@pytest.mark.django_db(transaction=True)
async def test_slow_work_still_probes_the_store_before_settling(
    paid_on_redis: RedisSessionStore, trips: Trips, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = PayingClient()
    monkeypatch.setattr("aixyz_sessions.staging.READY_WITHIN", 0.0)  # the work took "long"
    await AsyncClient().get("/paid/", headers=await _signed(client, "/paid/"))  # warm-up
    response = await _counted(trips, "/paid/", await _signed(client, "/paid/"))
    assert response.status_code == 200
    assert trips.names() == ["SET", "EVALSHA get", "EVALSHA get_many", "EVALSHA commit"]


@pytest.mark.django_db(transaction=True)
async def test_a_commit_that_fails_after_settlement_is_reported_with_it(
    paid_on_redis: RedisSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store dies between the claim and the commit: settled, not stored, said so."""
    client = PayingClient()
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    pid = generate_payment_id()
    headers = await _signed(client, "/paid/", pid)

    async def down(*args: Any, **kwargs: Any) -> bool:
        raise SessionStoreUnavailable("Redis is unavailable: commit failed")

    monkeypatch.setattr(paid_on_redis, "commit", down)
    response = await AsyncClient().get("/paid/", headers=headers)
    assert response.status_code == 503, response.content
    body = json.loads(response.content)
    assert body["error"] == "session_store_unavailable" and NOT_STORED in body["message"]
    assert response["PAYMENT-RESPONSE"]
    assert ledger.settled_count == before + 1
    assert await paid_on_redis.get(client.address.lower(), "count") is None
    monkeypatch.undo()
    # Its retry is not run again (it was paid): a clear 409, no kept answer.
    retry = await AsyncClient().get("/paid/", headers=headers)
    assert retry.status_code == 409, retry.content
    assert ledger.settled_count == before + 1
