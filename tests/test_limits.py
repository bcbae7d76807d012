"""Limits, each refused clearly: oversize keys and values, oversize batches, huge request bodies.

The request-size limit of every tool transport is Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB by default): HTTP answers 413 JSON,
the WebSocket replies ``message_too_large``, MCP answers 413 JSON. A key or
value the session store refuses is the caller's mistake on every transport
(400 / ``invalid_arguments``), never a 500, and is not settled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator  # type: ignore[import-untyped]
from django.test import override_settings

from aixyz_sessions import get_store
from aixyz_sessions.asgi import get_asgi_application
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.stores.db import DatabaseSessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.stores.validation import DEFAULT_MAX_VALUE_BYTES, MAX_KEY_BYTES
from aixyz_sessions.testing import PayingClient
from aixyz_sessions.tools.mcp import mcp_asgi_app, reset_mcp_server
from tests import mcp_helpers
from tests.payments_helpers import LOCAL, MIDDLEWARE, serve
from tests.tools_app import Wallet, example_tools

pytestmark = pytest.mark.django_db

SMALL_LIMIT = 10_000
OVERSIZE_KEY = "é" * (MAX_KEY_BYTES // 2) + "x"  # 513 UTF-8 bytes, 257 characters


def ledger() -> Any:
    return get_local_facilitator().ledger


@pytest.fixture
def tools() -> Iterator[None]:
    with (
        example_tools(),
        override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=LOCAL),
    ):
        yield


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response.content)
    assert "PAYMENT-RESPONSE" not in response
    return body


# -- HTTP ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["echo", "put"])
async def test_http_body_over_the_limit_is_413(tools: None, tool: str) -> None:
    def body(size: int) -> str:
        arguments = {"text": "x" * size} if tool == "echo" else {"key": "k", "value": "v" * size}
        return json.dumps(arguments)

    before = ledger().settled_count
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=SMALL_LIMIT):
        client = PayingClient()
        response = await client.post(f"/tools/{tool}", body(SMALL_LIMIT), "application/json")
        error = error_of(response, 413)
        assert error["error"] == "request_too_large"
        assert str(SMALL_LIMIT) in error["message"]
        assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in error["message"]
        assert await get_store().get(client.address.lower(), "k") is None
        assert ledger().settled_count == before
        # just under the limit is fine
        response = await client.post(f"/tools/{tool}", body(SMALL_LIMIT // 2), "application/json")
        assert response.status_code == 200, response.content
    assert ledger().settled_count == before + (tool == "put")


async def test_http_default_limit_is_djangos(tools: None) -> None:
    body = json.dumps({"text": "x" * (2_621_440 + 1)})  # DATA_UPLOAD_MAX_MEMORY_SIZE default
    response = await PayingClient().post("/tools/echo", body, content_type="application/json")
    assert error_of(response, 413)["error"] == "request_too_large"


@pytest.mark.parametrize(
    ("key", "value", "limit"),
    [
        (OVERSIZE_KEY, "v", str(MAX_KEY_BYTES)),
        ("", "v", str(MAX_KEY_BYTES)),
        ("k", "v" * (DEFAULT_MAX_VALUE_BYTES + 1), str(DEFAULT_MAX_VALUE_BYTES)),
        ("k", "é" * (DEFAULT_MAX_VALUE_BYTES // 2) + "x", str(DEFAULT_MAX_VALUE_BYTES)),
        ("k\x00", "v", "NUL"),
    ],
)
async def test_http_oversize_key_or_value_is_400_and_not_settled(
    tools: None, key: str, value: str, limit: str
) -> None:
    before = ledger().settled_count
    client = PayingClient()
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=4 * DEFAULT_MAX_VALUE_BYTES):
        response = await client.post(
            "/tools/put", {"key": key, "value": value}, content_type="application/json"
        )
    error = error_of(response, 400)
    assert error["error"] == "invalid_arguments"
    assert limit in error["message"]
    assert ledger().settled_count == before
    assert (await get_store().list(client.address.lower())).entries == {}


# -- WebSocket -------------------------------------------------------------------------------------


async def test_websocket_message_over_the_limit(tools: None) -> None:
    wallet = Wallet()
    before = ledger().settled_count
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=SMALL_LIMIT):
        ws = WebsocketCommunicator(get_asgi_application(), "/ws/tools/")
        accepted, _ = await ws.connect(timeout=5)
        assert accepted
        try:
            big = {"id": 1, "tool": "echo", "arguments": {"text": "é" * (SMALL_LIMIT // 2 + 1)}}
            await ws.send_json_to(big)
            reply = await ws.receive_json_from(timeout=5)
            assert reply["error"]["code"] == "message_too_large", reply
            assert str(SMALL_LIMIT) in reply["error"]["message"]
            # still usable, and a message just under the limit works
            ok = {"id": 2, "tool": "echo", "arguments": {"text": "x" * (SMALL_LIMIT - 100)}}
            await ws.send_json_to(ok)
            assert (await ws.receive_json_from(timeout=5))["id"] == 2
            # a key the store refuses: invalid_arguments, not settled
            arguments = {"key": OVERSIZE_KEY, "value": "v"}
            await ws.send_json_to({"id": 3, "tool": "put", "arguments": arguments})
            probe = await ws.receive_json_from(timeout=5)
            payment = await wallet.pay(probe["error"]["payment_required"])
            await ws.send_json_to(
                {"id": 4, "tool": "put", "arguments": arguments, "payment": payment}
            )
            reply = await ws.receive_json_from(timeout=5)
            assert reply["error"]["code"] == "invalid_arguments", reply
            assert str(MAX_KEY_BYTES) in reply["error"]["message"]
        finally:
            await ws.disconnect()
    assert ledger().settled_count == before


# -- MCP -------------------------------------------------------------------------------------------


@pytest.fixture
def mcp_url(settings: Any) -> Iterator[str]:
    settings.AIXYZ_X402 = LOCAL
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = SMALL_LIMIT
    mcp_helpers.register_examples()
    reset_runtime()
    reset_mcp_server()
    try:
        with serve(mcp_asgi_app()) as base:
            yield base
    finally:
        mcp_helpers.unregister_examples()
        reset_runtime()
        reset_mcp_server()


def call_body(name: str, arguments: dict[str, Any]) -> bytes:
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }
    return json.dumps(request).encode()


HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_mcp_body_over_the_limit_is_413(mcp_url: str) -> None:
    big = call_body(mcp_helpers.ECHO, {"text": "x" * SMALL_LIMIT})
    small = call_body(mcp_helpers.ECHO, {"text": "x" * (SMALL_LIMIT // 2)})

    def chunked(data: bytes) -> Iterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(data), 1000):
            yield data[start : start + 1000]

    with httpx.Client(timeout=10) as client:
        for content in (big, chunked(big)):
            response = client.post(mcp_url + "/mcp", content=content, headers=HEADERS)
            assert response.status_code == 413, response.text
            assert response.json()["error"] == "request_too_large"
            assert str(SMALL_LIMIT) in response.json()["message"]
        for content in (small, chunked(small)):
            response = client.post(mcp_url + "/mcp", content=content, headers=HEADERS)
            assert response.status_code == 200, response.text
            assert not response.json()["result"]["isError"]


async def test_mcp_oversize_key_is_invalid_arguments_and_not_settled(mcp_url: str) -> None:
    before = ledger().settled_count
    payer = mcp_helpers.Payer()
    arguments = {"key": OVERSIZE_KEY, "value": "v"}
    async with mcp_helpers.connect(mcp_url) as session:
        required = mcp_helpers.payment_required(await session.call_tool(mcp_helpers.PUT, arguments))
        assert required is not None
        result = await session.call_tool(mcp_helpers.PUT, arguments, meta=await payer.pay(required))
    assert result.isError
    assert result.structuredContent is not None
    assert result.structuredContent["error"] == "invalid_arguments"
    assert str(MAX_KEY_BYTES) in mcp_helpers.text(result)
    assert ledger().settled_count == before


# -- batches on the store API ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_batches_over_max_batch_are_refused_and_write_nothing(kind: str) -> None:
    store = (
        InMemorySessionStore(max_batch=5)
        if kind == "memory"
        else DatabaseSessionStore(using="default", max_batch=5)
    )
    payer = "0x" + "5" * 40

    async def scenario() -> None:
        await store.set_many(payer, {f"k{i}": "v" for i in range(5)})  # exactly the limit
        for call in (
            lambda: store.set_many(payer, {f"n{i}": "v" for i in range(6)}),
            lambda: store.get_many(payer, [f"k{i}" for i in range(6)]),
            lambda: store.delete_many(payer, [f"k{i}" for i in range(6)]),
        ):
            with pytest.raises(ValueError, match=r"too many .* in one batch: 6 > 5"):
                await call()
        assert (await store.list(payer)).entries == {f"k{i}": "v" for i in range(5)}
        assert await store.delete_many(payer, [f"k{i}" for i in range(5)]) == 5

    async_to_sync(scenario)()
