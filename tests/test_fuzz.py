"""Hostile input everywhere: the answer is a 4xx or a clear exception, never a 500 or a traceback.

* payment decoding (header strings, message payloads, MCP ``_meta``);
* cursor decoding (junk, mutated cursors, another payer's cursor);
* tool arguments over HTTP, WebSocket and MCP;
* the store API with at least one bad argument: ``TypeError`` / ``ValueError``
  only, and the store's content is unchanged afterwards.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator  # type: ignore[import-untyped]
from django.test import override_settings
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aixyz_sessions import get_store
from aixyz_sessions.asgi import get_asgi_application
from aixyz_sessions.payments.authorization import PaymentHeaderError, read_payment
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.messages import payment_header_of
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.stores.base import SessionStore
from aixyz_sessions.stores.cache import CacheSessionStore
from aixyz_sessions.stores.db import DatabaseSessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.testing import PayingClient
from aixyz_sessions.tools.mcp import mcp_asgi_app, reset_mcp_server
from tests import mcp_helpers
from tests.payments_helpers import LOCAL, MIDDLEWARE, serve
from tests.services import REDIS_HOST, REDIS_PORT, need_redis
from tests.tools_app import example_tools


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


def b64json(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


# -- payment decoding ----------------------------------------------------------------------------


@fuzz(300)
@given(
    header=st.one_of(
        st.text(max_size=80),
        st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
        json_values.map(b64json),
        st.fixed_dictionaries(
            {
                "x402Version": st.sampled_from([2, 1, "2"]),
                "payload": json_values,
                "accepted": json_values,
            }
        ).map(b64json),
    )
)
def test_payment_header_decoding_raises_only_payment_header_error(header: str) -> None:
    try:
        read_payment(header)
    except PaymentHeaderError as exc:
        assert str(exc)


@fuzz(300)
@given(
    payment=json_values
    | st.fixed_dictionaries(
        {
            "x402Version": st.sampled_from([2, 1]),
            "payload": st.fixed_dictionaries(
                {"authorization": json_values, "signature": json_values}
            ),
            "accepted": json_values,
        }
    )
)
def test_message_payment_decoding_raises_only_payment_header_error(payment: Any) -> None:
    try:
        read_payment(payment_header_of(payment))  # what call_tool screens, then explains
    except PaymentHeaderError as exc:
        assert str(exc)


# -- cursors -------------------------------------------------------------------------------------


PAYER, OTHER = "0x" + "1" * 40, "0x" + "2" * 40
KEYS = [f"k{i:02d}" for i in range(12)]


def call_store(coro: Awaitable[Any]) -> Any:
    async def run() -> Any:
        return await coro

    return async_to_sync(run)()


def snapshot(store: SessionStore) -> dict[str, dict[str, str]]:
    return {p: call_store(store.list(p)).entries for p in (PAYER, OTHER)}


def fill(store: SessionStore) -> None:
    call_store(store.set_many(PAYER, {k: f"a-{k}" for k in KEYS}, ttl_ms=0))
    call_store(store.set_many(OTHER, {k: f"b-{k}" for k in KEYS}, ttl_ms=0))


@pytest.fixture
def redis_cache(settings: Any) -> None:
    need_redis()
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sessions": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        },
    }


def make_store(kind: str) -> SessionStore:
    options: dict[str, Any] = {"max_value_bytes": 64, "max_batch": 16}
    if kind == "memory":
        return InMemorySessionStore(**options)
    if kind == "redis":
        prefix = f"aixyz:fuzz:{secrets.token_hex(6)}"
        return CacheSessionStore(cache_alias="sessions", key_prefix=prefix, **options)
    return DatabaseSessionStore(using="default", **options)


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[SessionStore]:
    kind = request.param
    if kind == "redis":
        request.getfixturevalue("redis_cache")
    if kind == "sqlite":
        request.getfixturevalue("transactional_db")
    made = make_store(kind)
    fill(made)
    yield made
    for payer in (PAYER, OTHER):
        keys = list(call_store(made.list(payer, keys_only=True)).entries)
        for start in range(0, len(keys), made.max_batch):
            call_store(made.delete_many(payer, keys[start : start + made.max_batch]))
    call_store(made.close())


def mutate(cursor: str, data: st.DataObject) -> str:
    position = data.draw(st.integers(min_value=0, max_value=len(cursor)))
    kind = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
    char = data.draw(st.characters(max_codepoint=0x2FF))
    if kind == "replace" and position < len(cursor):
        return cursor[:position] + char + cursor[position + 1 :]
    if kind == "insert":
        return cursor[:position] + char + cursor[position:]
    if kind == "delete" and position < len(cursor):
        return cursor[:position] + cursor[position + 1 :]
    return cursor[:position]


@fuzz(60)
@given(data=st.data())
def test_cursor_decoding(store: SessionStore, data: st.DataObject) -> None:
    before = snapshot(store)
    first = call_store(store.list(PAYER, limit=3))
    assert first.cursor is not None
    expected_next = call_store(store.list(PAYER, cursor=first.cursor, limit=3))
    source = data.draw(st.sampled_from(["junk", "mutated", "other_payer"]))
    if source == "junk":
        cursor = data.draw(st.text(max_size=120))
    elif source == "mutated":
        cursor = mutate(first.cursor, data)
    else:
        cursor = first.cursor
    payer = OTHER if source == "other_payer" else PAYER
    try:
        page = call_store(store.list(payer, cursor=cursor, limit=3))
    except ValueError as exc:
        assert "cursor" in str(exc)
    else:
        # Only a cursor that still names the same position may work (base64 has
        # slack bits): then it is exactly the page that follows.
        assert payer == PAYER and cursor != ""
        assert page == expected_next, (cursor, first.cursor)
    assert snapshot(store) == before


# -- the store API: at least one bad argument ---------------------------------------------------


def _bad_text(limit_bytes: int) -> st.SearchStrategy[Any]:
    """Bad keys; all hashable, since they also serve as dict keys."""
    return st.one_of(
        st.just(""),
        st.text(min_size=1, max_size=5).map(lambda s: s + "\x00"),
        st.just("a\ud800b"),
        st.just("é" * (limit_bytes // 2 + 1)),
        st.none() | st.integers() | st.binary(max_size=4) | st.tuples(st.text(max_size=3)),
    )


bad_payers = st.one_of(
    st.just(""),
    st.just("x" * 257),
    st.just("0x\x00"),
    st.just("\udfff"),
    st.integers() | st.binary(max_size=4) | st.none(),
)
bad_keys = _bad_text(512)
bad_values = st.one_of(
    st.just("v" * 65),
    st.just("é" * 33),
    st.just("v\x00"),
    st.just("\ud800"),
    st.integers() | st.none() | st.binary(max_size=4),
)
bad_ttls = st.one_of(st.integers(max_value=-1), st.floats(), st.booleans(), st.text(max_size=3))
bad_limits = st.one_of(st.integers(max_value=-1), st.floats(), st.booleans(), st.text(max_size=3))
bad_prefixes = st.one_of(
    st.just("é" * 257), st.just("\ud800"), st.integers(), st.binary(min_size=1, max_size=4)
)
bad_cursors = st.one_of(
    st.just(""), st.text(min_size=1, max_size=40), st.integers(), st.binary(max_size=4)
)
bad_flags = st.one_of(st.none(), st.integers(), st.text(max_size=2))
good_keys = st.sampled_from(["k00", "new", "é", "😀"])
good_values = st.text(max_size=8).filter(lambda s: "\x00" not in s and s.isascii())


def _call(kind: str, bad: str) -> st.SearchStrategy[Callable[[SessionStore], Awaitable[Any]]]:
    """One call of ``kind`` whose argument ``bad`` is bad and the others good."""

    def pick(name: str, good: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> Any:
        return wrong if name == bad else good

    payer = pick("payer", st.just(PAYER), bad_payers)
    key = pick("key", good_keys, bad_keys)
    if kind == "set":
        return st.builds(
            lambda p, k, v, t: lambda s: s.set(p, k, v, ttl_ms=t),
            payer,
            key,
            pick("value", good_values, bad_values),
            pick("ttl", st.none() | st.integers(0, 10**6), bad_ttls),
        )
    if kind in ("get", "delete"):
        return st.builds(lambda p, k: lambda s: getattr(s, kind)(p, k), payer, key)
    if kind == "list":
        return st.builds(
            lambda p, pre, c, lim, ko: (
                lambda s: s.list(p, prefix=pre, cursor=c, limit=lim, keys_only=ko)
            ),
            payer,
            pick("prefix", st.none() | st.just("k"), bad_prefixes),
            pick("cursor", st.none(), bad_cursors),
            pick("limit", st.none() | st.integers(0, 5), bad_limits),
            pick("keys_only", st.booleans(), bad_flags),
        )
    if kind == "set_many":
        good_entries = st.dictionaries(good_keys, good_values, max_size=3)
        bad_entries = st.one_of(
            st.dictionaries(bad_keys, good_values, min_size=1, max_size=2),
            st.dictionaries(good_keys, bad_values, min_size=1, max_size=2),
            st.just({f"k{i}": "v" for i in range(17)}),
            st.lists(st.tuples(good_keys, good_values), max_size=2),
            st.text(max_size=3) | st.none(),
        )
        return st.builds(
            lambda p, e, t: lambda s: s.set_many(p, e, ttl_ms=t),
            payer,
            pick("entries", good_entries, bad_entries),
            pick("ttl", st.none(), bad_ttls),
        )
    good_list = st.lists(good_keys, max_size=3)
    bad_list = st.one_of(
        st.lists(bad_keys, min_size=1, max_size=2),
        st.just([f"k{i}" for i in range(17)]),
        st.text(max_size=3),
        st.integers() | st.none(),
    )
    return st.builds(
        lambda p, ks: lambda s: getattr(s, kind)(p, ks), payer, pick("keys", good_list, bad_list)
    )


BAD_CALLS = st.one_of(
    *(
        _call(kind, bad)
        for kind, params in {
            "set": ["payer", "key", "value", "ttl"],
            "get": ["payer", "key"],
            "delete": ["payer", "key"],
            "list": ["payer", "prefix", "cursor", "limit", "keys_only"],
            "set_many": ["payer", "entries", "ttl"],
            "get_many": ["payer", "keys"],
            "delete_many": ["payer", "keys"],
        }.items()
        for bad in params
    )
)


@fuzz(120)
@given(call=BAD_CALLS)
def test_store_api_refuses_bad_arguments_and_changes_nothing(
    store: SessionStore, call: Callable[[SessionStore], Awaitable[Any]]
) -> None:
    before = snapshot(store)
    with pytest.raises((TypeError, ValueError)) as info:
        call_store(call(store))
    assert str(info.value)
    assert snapshot(store) == before


# -- tool arguments over HTTP ---------------------------------------------------------------------

tool_names = st.sampled_from(["put", "get", "echo", "explode", "nope", "whoami"])
argument_objects = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "key": st.one_of(
                st.text(max_size=20),
                st.just(""),
                st.just("é" * 300),
                st.just("k\x00"),
                json_scalars,
            ),
            "value": st.one_of(st.text(max_size=20), st.just("v\x00"), json_scalars),
            "text": json_scalars,
            "times": st.integers(min_value=-3, max_value=50) | json_scalars,
            "delay": st.floats(min_value=-1, max_value=0.01) | json_scalars,
            "extra": json_values,
        },
    ),
)
raw_bodies = st.one_of(
    argument_objects.map(lambda a: json.dumps(a).encode()),
    st.binary(max_size=60),
    st.just(b"[" * 100_000),
    st.just(b'{"key": "\\ud800", "value": "v"}'),
)


@pytest.mark.django_db
@fuzz(80)
@given(name=tool_names, body=raw_bodies)
@example(name="echo", body=b"[" * 100_000)
@example(name="put", body=b'{"key": "", "value": "v"}')
@example(name="put", body=json.dumps({"key": "\u00e9" * 300, "value": "v"}).encode())
@example(name="put", body=b'{"key": "k\\u0000", "value": "v"}')
@example(name="put", body=b'{"key": "\\ud800", "value": "v"}')
def test_tool_arguments_over_http(name: str, body: bytes) -> None:
    ledger = get_local_facilitator().ledger
    with (
        example_tools(),
        override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=LOCAL),
    ):
        client = PayingClient()
        payer = client.address.lower()
        before = ledger.settled_count
        response = async_to_sync(client.post)(
            f"/tools/{name}", body, content_type="application/json"
        )
        assert response.status_code < 500, response.content
        assert response["Content-Type"] == "application/json"
        assert b"Traceback" not in response.content
        stored = call_store(get_store().list(payer)).entries
        if response.status_code >= 400:
            assert stored == {}, "a refused call changed the store"
            assert ledger.settled_count == before, "a refused call was settled"


# -- tool arguments and whole messages over the WebSocket ---------------------------------------

messages = st.one_of(
    st.text(min_size=1, max_size=60),  # the test client cannot send an empty frame
    json_values.map(json.dumps),
    st.builds(
        lambda i, t, a, p: json.dumps({"id": i, "tool": t, "arguments": a, "payment": p}),
        st.one_of(st.integers(), st.text(max_size=5), json_scalars),
        tool_names,
        argument_objects,
        st.none() | json_values | st.text(max_size=30),
    ),
    st.just("[" * 100_000),
)


@pytest.mark.django_db
@fuzz(80)
@given(batch=st.lists(messages, min_size=1, max_size=4))
@example(batch=["[" * 100_000])
@example(batch=[json.dumps({"id": 1, "tool": "echo", "arguments": {"text": "x", "times": "y"}})])
def test_messages_over_websocket(batch: list[str]) -> None:
    async def exchange() -> None:
        ws = WebsocketCommunicator(get_asgi_application(), "/ws/tools/")
        accepted, _ = await ws.connect(timeout=5)
        assert accepted
        try:
            for text in batch:
                await ws.send_to(text_data=text)
                reply = await ws.receive_json_from(timeout=10)
                error = reply.get("error")
                assert "result" in reply or error, reply
                if error:
                    assert error["code"] != "internal_error", (text[:200], reply)
                    assert "Traceback" not in error["message"]
            await ws.send_json_to({"id": "last", "tool": "echo", "arguments": {"text": "ok"}})
            assert (await ws.receive_json_from(timeout=10))["result"]["text"] == "ok"
        finally:
            await ws.disconnect()

    with (
        example_tools(),
        override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=LOCAL),
    ):
        async_to_sync(exchange)()


# -- tool arguments, payments and raw bodies over MCP -------------------------------------------


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with override_settings(AIXYZ_X402=LOCAL, ALLOWED_HOSTS=["127.0.0.1"]):
        mcp_helpers.register_examples()
        reset_runtime()
        reset_mcp_server()
        try:
            with serve(mcp_asgi_app()) as base:
                yield base + "/mcp"
        finally:
            mcp_helpers.unregister_examples()
            reset_runtime()
            reset_mcp_server()


MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
mcp_tools = st.sampled_from([mcp_helpers.ECHO, mcp_helpers.PUT, mcp_helpers.FAIL, "nope"])
mcp_bodies = st.one_of(
    st.builds(
        lambda name, arguments, meta: {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments, **meta},
        },
        mcp_tools,
        argument_objects,
        st.one_of(
            st.just({}),
            json_values.map(lambda p: {"_meta": {"x402/payment": p}}),
        ),
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.just("[" * 100_000),
)


@fuzz(80)
@given(body=mcp_bodies)
@example(body="[" * 100_000)
@example(body='{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}')
def test_mcp_requests(mcp_url: str, body: str) -> None:
    with httpx.Client(timeout=10) as client:
        response = client.post(mcp_url, content=body.encode(), headers=MCP_HEADERS)
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    if response.status_code == 200:
        answer = response.json()
        assert "result" in answer or "error" in answer
