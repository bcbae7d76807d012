"""The MCP endpoint under a real uvicorn, driven by the official MCP client and x402.mcp."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp.types import TextContent

from aixyz_sessions import get_store
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import get_runtime, reset_runtime
from aixyz_sessions.replay import InMemoryReplayGuard
from aixyz_sessions.tools import registry, tool
from aixyz_sessions.tools.mcp import (
    REPLAYED,
    MCPApp,
    build_mcp_server,
    mcp_asgi_app,
    reset_mcp_server,
)
from tests.mcp_helpers import (
    ECHO,
    FAIL,
    GET,
    PAID_FAIL,
    PUT,
    Payer,
    connect,
    payload,
    payment_required,
    register_examples,
    text,
    unregister_examples,
)
from tests.payments_helpers import LOCAL, NETWORK, PAY_TO, assert_one_requirement, free_port, serve


@pytest.fixture
def url(settings: Any) -> Iterator[str]:
    """``mcp_asgi_app()`` alone under uvicorn (no lifespan, as behind channels)."""
    settings.AIXYZ_X402 = LOCAL
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    register_examples()
    reset_runtime()
    reset_mcp_server()
    try:
        with serve(mcp_asgi_app()) as base:
            yield base
    finally:
        unregister_examples()
        reset_runtime()
        reset_mcp_server()
        get_local_facilitator().ledger.fail_settlements = None


def guard() -> InMemoryReplayGuard:
    replay_guard = get_runtime().replay_guard
    assert isinstance(replay_guard, InMemoryReplayGuard)
    return replay_guard


async def test_lists_every_registry_tool_with_its_schema(url: str) -> None:
    async with connect(url) as session:
        listed = (await session.list_tools()).tools
    assert [(t.name, t.description, t.inputSchema) for t in listed] == [
        (t.name, t.description, t.input_schema) for t in registry
    ]
    assert {ECHO, PUT, GET, FAIL, PAID_FAIL} <= {t.name for t in listed}


async def test_free_tool_runs_without_a_payer(url: str) -> None:
    async with connect(url) as session:
        result = await session.call_tool(ECHO, {"text": "hi", "times": 2})
    assert not result.isError
    assert payload(result) == {"echo": "hihi", "payer": None}
    assert not (result.meta or {}).get("x402/payment-response")


async def test_paid_tool_without_payment_asks_for_it(url: str) -> None:
    payer = Payer()
    async with connect(url) as session:
        raw = await session.call_tool(PUT, {"key": "k", "value": "v"})
        unpaid = await payer.session(session, auto_payment=False).call_tool(
            PUT, {"key": "k", "value": "v"}
        )
    assert raw.isError
    required = payment_required(raw)
    assert required is not None and required.x402_version == 2
    assert_one_requirement(required, amount="10000")
    assert required.resource is not None and required.resource.url == f"mcp://tool/{PUT}"
    assert unpaid.is_error and not unpaid.payment_made
    assert await get_store().get(payer.address.lower(), "k") is None


async def test_paid_tool_with_payment_runs_in_the_payers_session(url: str) -> None:
    payer = Payer()
    async with connect(url) as session:
        paying = payer.session(session)
        stored = await paying.call_tool(PUT, {"key": "colour", "value": "teal"})
        read = await paying.call_tool(GET, {"key": "colour"})
    assert stored.payment_made and not stored.is_error, stored.content
    assert stored.raw_result.meta["x402/payment-response"]["success"] is True
    settlement = stored.payment_response
    assert settlement is not None and not isinstance(settlement, dict)
    assert settlement.success and settlement.payer == payer.address
    assert settlement.network == NETWORK
    block = stored.content[0]
    assert isinstance(block, TextContent)
    assert block.text == f'{{"stored": "colour", "payer": "{payer.address}"}}'
    assert await get_store().get(payer.address.lower(), "colour") == "teal"
    assert read.payment_made and payload(read.raw_result) == {"key": "colour", "value": "teal"}
    # Both authorizations spent (payment records for sign-in may sit beside them).
    spent = [nonce for _, nonce in guard()._claims if nonce.startswith("0x")]
    assert len(spent) == 2


async def test_replayed_payment_is_refused(url: str) -> None:
    payer = Payer()
    async with connect(url) as session:
        required = payment_required(await session.call_tool(PUT, {"key": "k", "value": "1"}))
        assert required is not None
        meta = await payer.pay(required)
        first = await session.call_tool(PUT, {"key": "k", "value": "1"}, meta=meta)
        again = await session.call_tool(PUT, {"key": "k", "value": "2"}, meta=meta)
    assert not first.isError, text(first)
    assert again.isError and payment_required(again) is not None
    assert not (again.meta or {}).get("x402/payment-response")
    assert await get_store().get(payer.address.lower(), "k") == "1"


async def test_claimed_authorization_is_refused_by_the_replay_guard(url: str) -> None:
    payer = Payer()
    async with connect(url) as session:
        required = payment_required(await session.call_tool(PUT, {"key": "k", "value": "v"}))
        assert required is not None
        meta = await payer.pay(required)
        nonce = meta["x402/payment"]["payload"]["authorization"]["nonce"]
        # The same authorization in flight elsewhere (verified, not yet settled).
        assert await guard().claim(payer.address, nonce, 2**40)
        refused = await session.call_tool(PUT, {"key": "k", "value": "v"}, meta=meta)
        assert refused.isError
        assert refused.structuredContent is not None
        assert refused.structuredContent["error"] == REPLAYED
        assert payment_required(refused) is not None
        assert await get_store().get(payer.address.lower(), "k") is None
        await guard().release(payer.address, nonce)
        accepted = await session.call_tool(PUT, {"key": "k", "value": "v"}, meta=meta)
    assert not accepted.isError, text(accepted)
    assert await get_store().get(payer.address.lower(), "k") == "v"


async def test_two_payers_are_isolated(url: str) -> None:
    alice, bob = Payer(), Payer()
    async with connect(url) as session:
        await alice.session(session).call_tool(PUT, {"key": "note", "value": "alice"})
        await bob.session(session).call_tool(PUT, {"key": "note", "value": "bob"})
        seen_by_alice = await alice.session(session).call_tool(GET, {"key": "note"})
        seen_by_bob = await bob.session(session).call_tool(GET, {"key": "note"})
    assert payload(seen_by_alice.raw_result)["value"] == "alice"
    assert payload(seen_by_bob.raw_result)["value"] == "bob"
    store = get_store()
    assert await store.get(alice.address.lower(), "note") == "alice"
    assert await store.get(bob.address.lower(), "note") == "bob"


async def test_invalid_arguments_are_an_error_result_naming_the_field(url: str) -> None:
    async with connect(url) as session:
        wrong_type = await session.call_tool(ECHO, {"text": "x", "times": "many"})
        missing = await session.call_tool(ECHO, {})
        extra = await session.call_tool(ECHO, {"text": "x", "loud": True})
        paid = await session.call_tool(PUT, {"key": "k"})  # checked before payment
    assert wrong_type.isError and "times" in text(wrong_type)
    assert missing.isError and "text" in text(missing)
    assert extra.isError and "loud" in text(extra)
    assert paid.isError and "value" in text(paid) and payment_required(paid) is None
    assert wrong_type.structuredContent is not None
    assert wrong_type.structuredContent["errors"][0]["field"] == "times"


async def test_tool_error_is_an_error_result_with_its_message(url: str) -> None:
    async with connect(url) as session:
        result = await session.call_tool(FAIL, {"reason": "closed"})
    assert result.isError
    assert text(result) == "refused: closed"


async def test_failing_paid_tool_is_not_settled_and_spends_the_authorization(url: str) -> None:
    payer = Payer()
    ledger = get_local_facilitator().ledger
    settled = ledger.settled_count
    async with connect(url) as session:
        result = await payer.session(session).call_tool(PAID_FAIL, {})
    assert result.payment_made and result.is_error
    block = result.content[0]
    assert isinstance(block, TextContent) and "backend down" in block.text
    assert result.payment_response is None
    assert ledger.settled_count == settled
    assert len(guard()) == 1  # the tool ran: its authorization cannot start another call


async def test_failed_settlement_is_an_error_and_spends_the_authorization(url: str) -> None:
    payer = Payer()
    get_local_facilitator().ledger.fail_settlements = "insufficient funds"
    async with connect(url) as session:
        result = await payer.session(session).call_tool(PUT, {"key": "k", "value": "v"})
    assert result.payment_made and result.is_error
    structured = result.raw_result.structuredContent
    assert structured["x402/payment-response"]["success"] is False
    assert len(guard()) == 1  # the tool ran: its authorization cannot start another call


async def test_unreachable_facilitator_is_an_error_not_a_payment_request(
    url: str, settings: Any
) -> None:
    settings.AIXYZ_X402 = {
        "PAY_TO": PAY_TO,
        "NETWORK": NETWORK,
        "FACILITATOR_URL": f"http://127.0.0.1:{free_port()}",
        "FACILITATOR_TIMEOUT": 2,
    }
    reset_runtime()
    async with connect(url) as session:
        result = await session.call_tool(PUT, {"key": "k", "value": "v"})
        free = await session.call_tool(ECHO, {"text": "still up"})
    assert result.isError and payment_required(result) is None
    assert result.structuredContent is not None
    assert result.structuredContent["error"] == "facilitator_unavailable"
    assert "facilitator unavailable" in text(result)
    assert payload(free)["echo"] == "still up"


async def test_concurrent_first_requests_share_one_start(url: str) -> None:
    async def one(i: int) -> Any:
        async with connect(url) as session:
            return payload(await session.call_tool(ECHO, {"text": str(i)}))

    results = await asyncio.gather(*(one(i) for i in range(8)))
    assert [r["echo"] for r in results] == [str(i) for i in range(8)]


async def test_reset_serves_tools_registered_later(url: str) -> None:
    async def late() -> str:
        """Registered after the server started."""
        return "late"

    async with connect(url) as session:
        await session.list_tools()
        tool(late, name="mcp_test_late")
        try:
            before = {t.name for t in (await session.list_tools()).tools}
            reset_mcp_server()
            after = {t.name for t in (await session.list_tools()).tools}
            result = await session.call_tool("mcp_test_late", {})
        finally:
            registry.unregister("mcp_test_late")
    assert "mcp_test_late" not in before and "mcp_test_late" in after
    assert text(result) == "late"


async def test_other_paths_and_hosts_are_refused(url: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx.AsyncClient(base_url=url) as client:
        elsewhere = await client.post("/mcp-not/", json=body)
        foreign = await client.post("/mcp", json=body, headers={"Host": "evil.example"})
    assert elsewhere.status_code == 404
    assert foreign.status_code == 400 and "ALLOWED_HOSTS" in foreign.json()["message"]


async def test_build_mcp_server_advertises_registry_schemas() -> None:
    register_examples()
    try:
        server = build_mcp_server()
        listed = {t.name: t.inputSchema for t in await server.list_tools()}
    finally:
        unregister_examples()
    assert listed[PUT] == {
        "additionalProperties": False,
        "properties": {
            "key": {"title": "Key", "type": "string"},
            "value": {"title": "Value", "type": "string"},
        },
        "required": ["key", "value"],
        "title": "McpTestPutArguments",
        "type": "object",
    }


async def test_lifespan_shutdown_stops_the_session_manager() -> None:
    app = MCPApp()
    await app.manager()
    running = app.server()
    assert running is not None
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        outbox.append(dict(message))

    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})
    await app({"type": "lifespan"}, inbox.get, send)
    assert [m["type"] for m in outbox] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert app.server() is None
