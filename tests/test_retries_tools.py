"""Exactly-once paid tool calls over WebSocket and MCP (x402 payment-identifier), every store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    generate_payment_id,
)
from x402.mcp import MCP_PAYMENT_META_KEY
from x402.schemas import PaymentRequired

from aixyz_sessions import get_session, get_store
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.tools import tool
from aixyz_sessions.tools.mcp import mcp_asgi_app
from tests import mcp_helpers
from tests.payments_helpers import serve
from tests.test_staged_writes import store  # noqa: F401 - the fixture: memory, Redis, database
from tests.tools_app import Wallet, serving, websocket

pytestmark = pytest.mark.django_db(transaction=True)

COUNTER = "retried_counter"


async def counter(step: int = 1) -> dict[str, Any]:
    session = get_session()
    assert session is not None
    await asyncio.sleep(0.2)  # long enough for concurrent retries to arrive while it runs
    count = int(await session.get("count") or "0") + step
    await session.set("count", str(count))
    return {"count": count}


@pytest.fixture(autouse=True)
def tools(store: str) -> Iterator[None]:  # noqa: F811 - the imported fixture
    tool(counter, name=COUNTER, price="$0.01")
    with serving(COUNTER):
        yield


def _settled() -> int:
    return get_local_facilitator().ledger.settled_count


async def _pay(signer: Any, required: Any, payment_id: str) -> dict[str, Any]:
    """A payment (JSON object) for ``required``, carrying ``payment_id`` (SDK helpers)."""
    required = PaymentRequired.model_validate(required)
    extensions = dict(required.extensions or {})
    assert PAYMENT_IDENTIFIER in extensions  # declared on every transport
    append_payment_identifier_to_extensions(extensions, payment_id)
    payload = await signer.create_payment_payload(required, extensions=extensions)
    data: dict[str, Any] = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
    return data


async def _count(address: str) -> str | None:
    return await get_store().get(address.lower(), "count")


async def test_websocket_retries_get_the_kept_reply_and_run_once() -> None:
    wallet, pid = Wallet(), generate_payment_id()
    async with websocket() as ws:
        await ws.send_json_to({"id": "probe", "tool": COUNTER, "arguments": {}})
        probe = await ws.receive_json_from(timeout=10)
        payment = await _pay(wallet.client, probe["error"]["payment_required"], pid)
        before = _settled()
        for n in range(8):  # eight copies at once, as a client retrying in a hurry
            await ws.send_json_to({"id": n, "tool": COUNTER, "arguments": {}, "payment": payment})
        replies = [await ws.receive_json_from(timeout=20) for _ in range(8)]
        assert all("result" in r for r in replies), replies
        assert {json.dumps(r["result"]) for r in replies} == {'{"count": 1}'}
        assert len({r["payment_response"] for r in replies}) == 1
        assert _settled() == before + 1
        # The same id for other arguments is a conflict.
        await ws.send_json_to(
            {"id": "other", "tool": COUNTER, "arguments": {"step": 2}, "payment": payment}
        )
        other = await ws.receive_json_from(timeout=20)
        assert other["error"]["code"] == "payment_identifier_conflict"
    assert await _count(wallet.address) == "1"


async def test_mcp_retries_get_the_kept_result_and_run_once() -> None:
    payer, pid = mcp_helpers.Payer(), generate_payment_id()
    with serve(mcp_asgi_app()) as base:
        async with mcp_helpers.connect(base) as session:
            asked = await session.call_tool(COUNTER, {})
            required = mcp_helpers.payment_required(asked)
            assert required is not None
            meta = {MCP_PAYMENT_META_KEY: await _pay(payer.client, required, pid)}
            before = _settled()
            first = await session.call_tool(COUNTER, {}, meta=meta)
            again = await session.call_tool(COUNTER, {}, meta=meta)  # the answer was lost
            assert not first.isError and json.loads(mcp_helpers.text(first)) == {"count": 1}
            assert again.content == first.content and again.meta == first.meta
            assert _settled() == before + 1
            conflict = await session.call_tool(COUNTER, {"step": 3}, meta=meta)
            assert conflict.isError
            assert (conflict.structuredContent or {})["error"] == "payment_identifier_conflict"
    assert await _count(payer.address) == "1"
