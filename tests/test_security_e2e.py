"""Attacks against the real demo server (uvicorn, its one ASGI app) on every transport.

* A Permit2 payment signed by the attacker with an unsigned EIP-3009
  ``authorization`` naming the victim (the "decoy") once ran the tool in the
  victim's session: it must be refused on HTTP, WebSocket and MCP, and the
  victim's data must stay as it was. An honest Permit2 payment still works.
* Another spelling of a spent Permit2 nonce must not buy a second call.
* JSON nested 200,000 deep once killed the process (the C decoder overflows
  the stack under py_ecc's recursion limit): every entry point answers a
  client error and the server keeps answering.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from eth_account import Account
from eth_account.signers.local import LocalAccount
from mcp.types import TextContent
from x402 import x402Client
from x402.http import decode_payment_required_header
from x402.http.clients.httpx import x402HttpxClient
from x402.mcp import MCP_PAYMENT_META_KEY
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import PaymentRequired

from tests.attacks import as_dict, as_header, nested, permit2_payment
from tests.demo_server import DemoServer, demo_server
from tests.mcp_helpers import connect, payment_required

DEEP = 200_000
SECRET = "victim's own data"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("attack")) as running:
        yield running


def _alive(server: DemoServer) -> None:
    """The process still serves requests (and has not crashed)."""
    response = httpx.get(f"{server.url}/tools/", timeout=10)
    assert response.status_code == 200, response.text


async def _sdk_call(server: DemoServer, account: LocalAccount, tool: str, args: Any) -> Any:
    """A paid call as an ordinary SDK client (EIP-3009); the tool's result."""
    client = x402Client()
    register_exact_evm_client(client, account)
    async with x402HttpxClient(client, base_url=server.url, timeout=30) as http:
        response = await http.post(f"/tools/{tool}", json=args)
    assert response.status_code == 200, response.text
    return response.json()["result"]


@pytest.fixture(scope="module")
def victim(server: DemoServer) -> LocalAccount:
    account: LocalAccount = Account.create()
    put = {"key": "secret", "value": SECRET}
    assert asyncio.run(_sdk_call(server, account, "put-content", put))["success"] is True
    return account


async def _victim_still_has_its_data(server: DemoServer, victim: LocalAccount) -> None:
    result = await _sdk_call(server, victim, "get-content", {"key": "secret"})
    assert result == {"success": True, "key": "secret", "value": SECRET}


async def _http_required(http: httpx.AsyncClient, tool: str, args: Any) -> PaymentRequired:
    response = await http.post(f"/tools/{tool}", json=args)
    assert response.status_code == 402
    required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return required


# -- the Permit2 decoy ----------------------------------------------------------------------


async def test_http_permit2_decoy_is_refused(server: DemoServer, victim: LocalAccount) -> None:
    attacker: LocalAccount = Account.create()
    overwrite = {"key": "secret", "value": "overwritten by the attacker"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for tool, args in (("put-content", overwrite), ("get-content", {"key": "secret"})):
            required = await _http_required(http, tool, args)
            decoy = permit2_payment(attacker, required, decoy_payer=victim.address)
            response = await http.post(
                f"/tools/{tool}", json=args, headers={"PAYMENT-SIGNATURE": as_header(decoy)}
            )
            assert response.status_code == 402, response.text
            body = response.json()
            assert body["error"] == "invalid_payment"
            assert "both" in body["reason"] and SECRET not in response.text
            assert "PAYMENT-RESPONSE" not in response.headers
    await _victim_still_has_its_data(server, victim)


async def test_http_honest_permit2_payment_binds_its_signer(
    server: DemoServer, victim: LocalAccount
) -> None:
    payer: LocalAccount = Account.create()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        args = {"key": "secret", "value": "permit2 payer's own"}
        required = await _http_required(http, "put-content", args)
        payment = permit2_payment(payer, required)
        header = {"PAYMENT-SIGNATURE": as_header(payment)}
        paid = await http.post("/tools/put-content", json=args, headers=header)
        assert paid.status_code == 200, paid.text
        assert "PAYMENT-RESPONSE" in paid.headers

        # The same signature again, and other spellings of its nonce: refused, unsettled.
        nonce = payment.payload["permit2Authorization"]["nonce"]
        fullwidth = nonce.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
        for spelling in (None, "0" + nonce, "00" + nonce, fullwidth, " " + nonce):
            if spelling is None:
                replay = payment
            else:
                replay = payment.model_copy(deep=True)
                replay.payload["permit2Authorization"]["nonce"] = spelling
            again = await http.post(
                "/tools/put-content",
                json={"key": "secret", "value": "replayed"},
                headers={"PAYMENT-SIGNATURE": as_header(replay)},
            )
            assert again.status_code == 402, (spelling, again.text)
            assert "PAYMENT-RESPONSE" not in again.headers
            if spelling is not None:  # refused by the nonce rule, before any facilitator
                assert "uint256" in again.json()["reason"], again.text

    # The permit2 payer got its own session, with the first write only.
    result = await _permit2_read(server, payer, "secret")
    assert result == {"success": True, "key": "secret", "value": "permit2 payer's own"}
    await _victim_still_has_its_data(server, victim)


async def _permit2_read(server: DemoServer, account: LocalAccount, key: str) -> Any:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        required = await _http_required(http, "get-content", {"key": key})
        header = {"PAYMENT-SIGNATURE": as_header(permit2_payment(account, required))}
        response = await http.post("/tools/get-content", json={"key": key}, headers=header)
    assert response.status_code == 200, response.text
    return response.json()["result"]


@asynccontextmanager
async def _socket(server: DemoServer) -> AsyncIterator[Any]:
    url = server.url.replace("http://", "ws://") + "/ws/tools/"
    async with websockets.connect(url, max_size=None) as ws:
        yield ws


async def _ask(ws: Any, message: dict[str, Any] | str) -> dict[str, Any]:
    await ws.send(message if isinstance(message, str) else json.dumps(message))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return reply


async def test_websocket_permit2_decoy_is_refused(server: DemoServer, victim: LocalAccount) -> None:
    attacker: LocalAccount = Account.create()
    async with _socket(server) as ws:
        for tool, args in (
            ("put-content", {"key": "secret", "value": "overwritten over ws"}),
            ("get-content", {"key": "secret"}),
        ):
            asked = await _ask(ws, {"id": 1, "tool": tool, "arguments": args})
            required = PaymentRequired.model_validate(asked["error"]["payment_required"])
            decoy = permit2_payment(attacker, required, decoy_payer=victim.address)
            for payment in (as_dict(decoy), as_header(decoy)):
                message = {"id": 2, "tool": tool, "arguments": args, "payment": payment}
                reply = await _ask(ws, message)
                assert "result" not in reply and reply["error"]["code"] == "invalid_payment"
                assert SECRET not in json.dumps(reply)

        # An honest Permit2 payment over the socket binds its own signer.
        args = {"key": "secret", "value": "attacker's own, over ws"}
        asked = await _ask(ws, {"id": 3, "tool": "put-content", "arguments": args})
        required = PaymentRequired.model_validate(asked["error"]["payment_required"])
        honest = as_dict(permit2_payment(attacker, required))
        reply = await _ask(
            ws, {"id": 4, "tool": "put-content", "arguments": args, "payment": honest}
        )
        assert reply["result"]["success"] is True, reply
    result = await _permit2_read(server, attacker, "secret")
    assert result["value"] == "attacker's own, over ws"
    await _victim_still_has_its_data(server, victim)


async def test_mcp_permit2_decoy_is_refused(server: DemoServer, victim: LocalAccount) -> None:
    attacker: LocalAccount = Account.create()
    async with connect(server.url) as session:
        for tool, args in (
            ("put-content", {"key": "secret", "value": "overwritten over mcp"}),
            ("get-content", {"key": "secret"}),
        ):
            required = payment_required(await session.call_tool(tool, args))
            assert required is not None
            decoy = permit2_payment(attacker, required, decoy_payer=victim.address)
            result = await session.call_tool(
                tool, args, meta={MCP_PAYMENT_META_KEY: as_dict(decoy)}
            )
            assert result.isError and payment_required(result) is not None
            assert not (result.meta or {}).get("x402/payment-response")
            block = result.content[0]
            assert isinstance(block, TextContent) and SECRET not in block.text

        args = {"key": "secret", "value": "attacker's own, over mcp"}
        required = payment_required(await session.call_tool("put-content", args))
        assert required is not None
        honest = as_dict(permit2_payment(attacker, required))
        paid = await session.call_tool("put-content", args, meta={MCP_PAYMENT_META_KEY: honest})
        assert not paid.isError, paid.content
    result = await _permit2_read(server, attacker, "secret")
    assert result["value"] == "attacker's own, over mcp"
    await _victim_still_has_its_data(server, victim)


# -- deeply nested JSON -----------------------------------------------------------------------


def test_deep_json_to_mcp_is_a_parse_error(server: DemoServer) -> None:
    response = httpx.post(
        f"{server.url}/mcp",
        content=nested(DEEP),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == -32700
    _alive(server)


async def test_deep_json_message_over_websocket_is_an_error_reply(server: DemoServer) -> None:
    async with _socket(server) as ws:
        reply = await _ask(ws, nested(DEEP))
        assert reply == {
            "id": None,
            "error": {"code": "invalid_message", "message": reply["error"]["message"]},
        }
        assert "deeper than" in reply["error"]["message"]
        # The connection itself still works.
        listed = await _ask(ws, {"id": 9, "tool": "nope"})
        assert listed["error"]["code"] == "unknown_tool"
    _alive(server)


async def test_deep_json_body_of_a_paid_tool_call_is_refused_unsettled(
    server: DemoServer,
) -> None:
    payer: LocalAccount = Account.create()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        required = await _http_required(http, "get-content", {})
        header = {"PAYMENT-SIGNATURE": as_header(permit2_payment(payer, required))}
        response = await http.post(
            "/tools/get-content",
            content=nested(DEEP),
            headers={**header, "Content-Type": "application/json"},
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_arguments"
    assert "PAYMENT-RESPONSE" not in response.headers
    _alive(server)


@pytest.mark.parametrize("depth", [DEEP, 4_000])
def test_deep_json_in_the_payment_header_is_refused(server: DemoServer, depth: int) -> None:
    # 200,000 levels exceed any server's header limit (h11 answers 4xx itself);
    # 4,000 levels fit in a header and reach the app.
    header = base64.b64encode(nested(depth).encode()).decode()
    response = httpx.post(
        f"{server.url}/tools/get-content",
        json={},
        headers={"PAYMENT-SIGNATURE": header},
        timeout=30,
    )
    assert 400 <= response.status_code < 500, response.text
    if depth < DEEP:
        assert response.status_code == 402
        assert response.json()["error"] == "invalid_payment"
    _alive(server)
