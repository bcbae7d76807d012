"""A paid call's session writes take effect only if its payment settles.

On every transport (HTTP, WebSocket, MCP) and every built-in store (memory,
Redis, the database): a tool that writes and then its settlement fails, or
that writes and then fails, leaves the session as it was; the same call that
settles stores its writes. Reads inside the call see its own pending writes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from aixyz_sessions import get_session, get_store
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.testing import PayingClient
from aixyz_sessions.tools import ToolError, tool
from aixyz_sessions.tools.mcp import mcp_asgi_app
from tests import mcp_helpers
from tests.payments_helpers import serve
from tests.test_replay_guard import (
    ALIAS,
    CACHE_STORE,
    DB_STORE,
    _close_database_thread_connections,
    drop_keys,
    redis_caches,
    unique_prefix,
)
from tests.tools_app import Wallet, paid_ws_call, serving, websocket

pytestmark = pytest.mark.django_db(transaction=True)

WRITE, WRITE_FAIL = "staged_write", "staged_write_then_fail"


async def write(key: str, value: str) -> dict[str, Any]:
    """Writes three ways, then reads its own writes back."""
    session = get_session()
    assert session is not None
    await session.set(key, value)
    await session.set_many({f"{key}.a": "1", f"{key}.b": "2"})
    await session.delete(f"{key}.b")
    seen = await session.get(key)
    listed = await session.list(prefix=key)
    return {"seen": seen, "listed": listed.entries}


async def write_then_fail(key: str, value: str) -> None:
    session = get_session()
    assert session is not None
    await session.set(key, value)
    raise ToolError("failed after writing")


@pytest.fixture(params=["memory", "redis", "database"])
def store(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "memory":
        yield "memory"
        return
    if request.param == "database":
        with override_settings(AIXYZ_SESSION_STORE=DB_STORE):
            yield "database"
        _close_database_thread_connections()
        return
    from tests.services import need_redis

    need_redis()
    prefix = unique_prefix()
    options = {"cache_alias": ALIAS, "key_prefix": prefix}
    with override_settings(
        CACHES=redis_caches(), AIXYZ_SESSION_STORE={"BACKEND": CACHE_STORE, "OPTIONS": options}
    ):
        yield "redis"
    asyncio.run(drop_keys(prefix))


@pytest.fixture(autouse=True)
def tools(store: str) -> Iterator[None]:
    tool(write, name=WRITE, price="$0.01")
    tool(write_then_fail, name=WRITE_FAIL, price="$0.01")
    with serving(WRITE, WRITE_FAIL):
        yield


ARGUMENTS = {"key": "note", "value": "v"}
EXPECTED = {"seen": "v", "listed": {"note": "v", "note.a": "1"}}


async def _stored(payer: str) -> dict[str, str]:
    return (await get_store().list(payer.lower(), prefix="note")).entries


# -- one paid call per transport: (payer address, result or None, error code or None) ----------


async def over_http(name: str) -> tuple[str, Any, str | None]:
    client = PayingClient()
    response = await client.post(f"/tools/{name}", json.dumps(ARGUMENTS), "application/json")
    body = json.loads(response.content)
    if response.status_code == 200:
        return client.address, body["result"], None
    return client.address, None, body["error"]


async def over_websocket(name: str) -> tuple[str, Any, str | None]:
    wallet = Wallet()
    async with websocket() as ws:
        reply = await paid_ws_call(ws, wallet, name, ARGUMENTS)
    if "result" in reply:
        return wallet.address, reply["result"], None
    return wallet.address, None, reply["error"]["code"]


async def over_mcp(name: str) -> tuple[str, Any, str | None]:
    payer = mcp_helpers.Payer()
    with serve(mcp_asgi_app()) as base:
        async with mcp_helpers.connect(base) as session:
            result = await payer.session(session).call_tool(name, ARGUMENTS)
    if not result.is_error:
        return payer.address, json.loads(mcp_helpers.text(result.raw_result)), None
    structured = result.raw_result.structuredContent or {}
    return payer.address, None, structured.get("error") or "tool_error"


TRANSPORTS = {"http": over_http, "websocket": over_websocket, "mcp": over_mcp}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_settled_call_stores_its_writes(transport: str) -> None:
    payer, result, error = await TRANSPORTS[transport](WRITE)
    assert error is None and result == EXPECTED
    assert await _stored(payer) == {"note": "v", "note.a": "1"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failed_settlement_after_the_tool_ran_stores_nothing(transport: str) -> None:
    ledger = get_local_facilitator().ledger
    ledger.fail_settlements = "ERC20: transfer amount exceeds balance"
    before = ledger.settled_count
    payer, result, error = await TRANSPORTS[transport](WRITE)
    assert result is None and error is not None
    assert await _stored(payer) == {}
    assert ledger.settled_count == before


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_tool_that_fails_after_writing_stores_nothing(transport: str) -> None:
    payer, result, error = await TRANSPORTS[transport](WRITE_FAIL)
    assert result is None and error is not None
    assert await _stored(payer) == {}
