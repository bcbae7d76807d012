"""Sign-in for tools on every transport (HTTP, WebSocket, MCP) and every built-in store.

A payer pays a tool once over HTTP; then signs in (the SDK's client helpers)
over each transport and reads the same session with no payment. A tool is
one resource on every transport: the payment recorded over HTTP opens it over
WebSocket and MCP. ``sign_in="required"`` tools need a sign-in and no payment.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from x402 import x402Client
from x402.extensions.sign_in_with_x import SIGN_IN_WITH_X
from x402.http import decode_payment_required_header
from x402.mechanisms.evm.exact import register_exact_evm_client

from aixyz_sessions import get_session
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.testing import PayingClient
from aixyz_sessions.testing.paying import sign_in_header
from aixyz_sessions.tools import tool
from aixyz_sessions.tools.mcp import SIGN_IN_META, mcp_asgi_app
from tests import mcp_helpers
from tests.payments_helpers import serve
from tests.test_staged_writes import store  # noqa: F401 - the fixture: memory, Redis, database
from tests.tools_app import Wallet, paid_ws_call, serving, websocket

pytestmark = pytest.mark.django_db(transaction=True)

NOTEBOOK, WHOAMI = "signed_notebook", "signed_whoami"


async def notebook(key: str, value: str | None = None) -> dict[str, Any]:
    session = get_session()
    assert session is not None
    if value is not None:
        await session.set(key, value)
    return {"payer": session.payer, "value": await session.get(key)}


async def whoami() -> dict[str, Any]:
    session = get_session()
    assert session is not None
    return {"payer": session.payer}


@pytest.fixture(autouse=True)
def tools(store: str) -> Iterator[None]:  # noqa: F811 - the imported fixture
    tool(notebook, name=NOTEBOOK, price="$0.01", sign_in="after_payment")
    tool(whoami, name=WHOAMI, sign_in="required")
    with serving(NOTEBOOK, WHOAMI):
        yield


async def _pay_over_http(client: PayingClient) -> None:
    response = await client.post(
        f"/tools/{NOTEBOOK}", json.dumps({"key": "k", "value": "paid"}), "application/json"
    )
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["result"] == {"payer": client.address, "value": "paid"}


# -- a sign-in per transport: (result or None, error body or None) --------------------------


async def over_http(client: PayingClient, name: str, args: dict[str, Any]) -> Any:
    asked = await client.post(f"/tools/{name}", json.dumps(args), "application/json", pay=False)
    assert asked.status_code == 402
    header = await sign_in_header(
        client.account, asked["PAYMENT-REQUIRED"], f"http://testserver/tools/{name}"
    )
    response = await client.post(
        f"/tools/{name}",
        json.dumps(args),
        "application/json",
        headers={"SIGN-IN-WITH-X": header},
        pay=False,
    )
    assert response.status_code == 200, response.content
    assert "PAYMENT-RESPONSE" not in response
    return json.loads(response.content)["result"]


async def over_websocket(client: PayingClient, name: str, args: dict[str, Any]) -> Any:
    async with websocket() as ws:
        await ws.send_json_to({"id": "probe", "tool": name, "arguments": args})
        probe = await ws.receive_json_from(timeout=10)
        required = probe["error"]["payment_required"]
        assert SIGN_IN_WITH_X in required["extensions"]
        header = await sign_in_header(client.account, required, "http://localhost/ws/tools/")
        await ws.send_json_to({"id": "in", "tool": name, "arguments": args, "sign_in": header})
        reply = await ws.receive_json_from(timeout=10)
    assert "result" in reply, reply
    assert "payment_response" not in reply
    return reply["result"]


async def over_mcp(client: PayingClient, name: str, args: dict[str, Any]) -> Any:
    with serve(mcp_asgi_app()) as base:
        async with mcp_helpers.connect(base) as session:
            asked = await session.call_tool(name, args)
            required = mcp_helpers.payment_required(asked) or (asked.structuredContent or {}).get(
                "payment_required"
            )
            assert required is not None, asked
            header = await sign_in_header(client.account, required, f"{base}/mcp")
            result = await session.call_tool(name, args, meta={SIGN_IN_META: header})
    assert not result.isError, result
    return json.loads(mcp_helpers.text(result))


TRANSPORTS = {"http": over_http, "websocket": over_websocket, "mcp": over_mcp}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pay_once_then_sign_in_reads_the_session(transport: str) -> None:
    client = PayingClient()
    await _pay_over_http(client)
    settled = get_local_facilitator().ledger.settled_count
    result = await TRANSPORTS[transport](client, NOTEBOOK, {"key": "k"})
    assert result == {"payer": client.address, "value": "paid"}
    assert get_local_facilitator().ledger.settled_count == settled  # nothing charged


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_sign_in_only_tool_needs_no_payment(transport: str) -> None:
    client = PayingClient()  # never paid
    result = await TRANSPORTS[transport](client, WHOAMI, {})
    assert result == {"payer": client.address}


async def test_a_stranger_cannot_sign_in_over_websocket() -> None:
    stranger = PayingClient()
    async with websocket() as ws:
        await ws.send_json_to({"id": "probe", "tool": NOTEBOOK, "arguments": {"key": "k"}})
        probe = await ws.receive_json_from(timeout=10)
        header = await sign_in_header(
            stranger.account, probe["error"]["payment_required"], "http://localhost/ws/tools/"
        )
        await ws.send_json_to(
            {"id": "in", "tool": NOTEBOOK, "arguments": {"key": "k"}, "sign_in": header}
        )
        reply = await ws.receive_json_from(timeout=10)
        assert reply["error"]["code"] == "invalid_sign_in"
        assert "has not paid" in reply["error"]["message"]
        assert SIGN_IN_WITH_X in reply["error"]["payment_required"]["extensions"]
        # Garbage in the sign_in field is a refusal too, and the socket keeps working.
        await ws.send_json_to(
            {"id": "bad", "tool": NOTEBOOK, "arguments": {"key": "k"}, "sign_in": [1, {"x": 2}]}
        )
        bad = await ws.receive_json_from(timeout=10)
        assert bad["error"]["code"] == "invalid_sign_in"


async def test_a_sign_in_for_one_tool_does_not_open_another_over_mcp() -> None:
    client = PayingClient()
    await _pay_over_http(client)
    with serve(mcp_asgi_app()) as base:
        async with mcp_helpers.connect(base) as session:
            asked = await session.call_tool(WHOAMI, {})
            required = (asked.structuredContent or {})["payment_required"]
            for_whoami = await sign_in_header(client.account, required, f"{base}/mcp")
            result = await session.call_tool(
                NOTEBOOK, {"key": "k"}, meta={SIGN_IN_META: for_whoami}
            )
    assert result.isError
    assert (result.structuredContent or {})["error"] == "invalid_sign_in"


async def test_the_tool_list_names_the_policy() -> None:
    response = await PayingClient().get("/tools/")
    tools = {t["name"]: t for t in json.loads(response.content)["tools"]}
    assert tools[NOTEBOOK]["sign_in"] == "after_payment" and tools[NOTEBOOK]["price"] == "$0.01"
    assert tools[WHOAMI]["sign_in"] == "required" and tools[WHOAMI]["price"] is None
    required = await PayingClient().post(f"/tools/{WHOAMI}", "{}", "application/json", pay=False)
    offered = decode_payment_required_header(required["PAYMENT-REQUIRED"])
    assert offered.accepts == [] and SIGN_IN_WITH_X in offered.extensions


async def _pay_over_websocket(client: PayingClient) -> None:
    wallet = Wallet()
    wallet.account = client.account  # the same wallet pays over the socket
    wallet.client = x402Client()
    register_exact_evm_client(wallet.client, client.account)  # type: ignore[arg-type]
    async with websocket() as ws:
        reply = await paid_ws_call(ws, wallet, NOTEBOOK, {"key": "k", "value": "paid"})
    assert reply["result"] == {"payer": client.address, "value": "paid"}, reply


async def _pay_over_mcp(client: PayingClient) -> None:
    payer = mcp_helpers.Payer()
    payer.account = client.account
    payer.client = x402Client()
    register_exact_evm_client(payer.client, client.account)  # type: ignore[arg-type]
    with serve(mcp_asgi_app()) as base:
        async with mcp_helpers.connect(base) as session:
            result = await payer.session(session).call_tool(NOTEBOOK, {"key": "k", "value": "paid"})
    assert not result.is_error, result


@pytest.mark.parametrize("paid_over", ["websocket", "mcp"])
async def test_a_payment_over_any_transport_opens_sign_in(paid_over: str) -> None:
    client = PayingClient()
    await {"websocket": _pay_over_websocket, "mcp": _pay_over_mcp}[paid_over](client)
    result = await over_http(client, NOTEBOOK, {"key": "k"})
    assert result == {"payer": client.address, "value": "paid"}


async def test_the_test_kit_signs_in_with_a_json_body() -> None:
    """``PayingClient.sign_in`` takes the body as ``post()`` does: a dict is sent as JSON."""
    client = PayingClient()
    await _pay_over_http(client)
    back = await client.sign_in("POST", f"/tools/{NOTEBOOK}", {"key": "k"})
    assert back.status_code == 200, back.content
    assert json.loads(back.content)["result"] == {"payer": client.address, "value": "paid"}
