"""Payment options against a real server: two networks on one route, metered ``upto`` prices.

uvicorn on loopback serves the one ASGI app (HTTP views and tools, the
WebSocket, MCP, the A2A agent); clients are the x402 SDK's (``x402Client``
with the exact and upto EVM schemes, its httpx and MCP clients). The
LocalFacilitator's ledger says what moved: a metered call settles what it
charged, a failed one nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http import (
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.upto import UptoEvmClientScheme
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements

from aixyz_sessions import get_store
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.local import get_local_facilitator
from tests import mcp_helpers
from tests.options_app import (
    BASE,
    BASE_SEPOLIA,
    METERED_TOOL,
    TWO_NETWORK_TOOL,
)
from tests.options_server import options_server

pytestmark = pytest.mark.django_db(transaction=True)
CHAIN = {BASE_SEPOLIA: 84532, BASE: 8453}


@pytest.fixture
def base() -> Iterator[str]:
    with options_server() as url:
        yield url


def signer(account: LocalAccount, network: str | None = None) -> x402Client:
    """The SDK's client with exact and upto; ``network`` picks that option of a 402."""

    def pick(version: int, options: list[Any]) -> Any:
        return next(o for o in options if network is None or o.network == network)

    client = x402Client(payment_requirements_selector=pick)
    register_exact_evm_client(client, account)
    client.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(account)))
    return client


def moved(payer: str) -> list[tuple[int, int]]:
    """``(chain id, atomic amount)`` of every transfer from ``payer``, in order."""
    ledger = get_local_facilitator().ledger
    return [(t.chain_id, t.amount) for t in ledger.transfers if t.payer.lower() == payer.lower()]


def settled(response_header: str) -> Any:
    return decode_payment_response_header(response_header)


# -- several networks on one route ------------------------------------------------------------


async def test_a_route_with_two_networks_lists_both_and_is_paid_on_either(base: str) -> None:
    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
    assert unpaid.status_code == 402
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    assert [(a.scheme, a.network, a.amount) for a in required.accepts] == [
        ("exact", BASE_SEPOLIA, "10000"),
        ("exact", BASE, "10000"),
    ]
    body = unpaid.json()
    assert [a["network"] for a in body["accepts"]] == [BASE_SEPOLIA, BASE]
    assert BASE_SEPOLIA in body["message"] and BASE in body["message"]

    async with x402HttpxClient(signer(account, BASE), base_url=base, timeout=30) as http:
        on_base = await http.get("/two-networks/", params={"key": "k", "value": "from base"})
    assert on_base.status_code == 200, on_base.text
    assert settled(on_base.headers["PAYMENT-RESPONSE"]).network == BASE
    async with x402HttpxClient(signer(account, BASE_SEPOLIA), base_url=base, timeout=30) as http:
        on_sepolia = await http.get("/two-networks/", params={"read": "k"})
    assert on_sepolia.status_code == 200, on_sepolia.text
    assert settled(on_sepolia.headers["PAYMENT-RESPONSE"]).network == BASE_SEPOLIA
    # One payer, one session, whichever network paid.
    assert on_sepolia.json() == {"payer": account.address, "value": "from base"}
    assert moved(account.address) == [(8453, 10000), (84532, 10000)]


async def test_a_payment_signed_for_one_network_cannot_claim_the_other(base: str) -> None:
    """The payload names Base Sepolia but says it accepted Base: no option matches it."""
    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        only_sepolia = required.model_copy(update={"accepts": required.accepts[:1]})
        payload = await signer(account).create_payment_payload(only_sepolia)
        assert isinstance(payload, PaymentPayload)
        forged = payload.model_copy(
            update={"accepted": payload.accepted.model_copy(update={"network": BASE})}
        )
        response = await plain.get(
            "/two-networks/",
            headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(forged)},
        )
    assert response.status_code == 402, response.text
    assert moved(account.address) == []


# -- metered prices (upto) over HTTP ------------------------------------------------------------


async def _metered(base: str, account: LocalAccount, body: dict[str, Any]) -> httpx.Response:
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        return await http.post("/metered/", json=body)


async def test_the_402_of_a_metered_view_asks_for_an_upto_maximum(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.post("/metered/", json={})
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    (accept,) = required.accepts
    assert (accept.scheme, accept.amount) == ("upto", "50000")
    assert accept.extra["assetTransferMethod"] == "permit2"
    assert accept.extra["facilitatorAddress"]  # the witness binds the facilitator
    assert unpaid.json()["price"] == "up to $0.05"
    assert "at most 50000 atomic units" in unpaid.json()["message"]


async def test_an_upto_view_that_charges_0_012_of_0_05_settles_12000(base: str) -> None:
    account = Account.create()
    response = await _metered(base, account, {"charge": "$0.012", "key": "k"})
    assert response.status_code == 200, response.text
    receipt = settled(response.headers["PAYMENT-RESPONSE"])
    assert receipt.success and receipt.amount == "12000" and receipt.payer == account.address
    assert moved(account.address) == [(84532, 12000)]
    assert await get_store().get(account.address.lower(), "k") == "written"


async def test_an_upto_view_that_never_charges_settles_the_maximum(base: str) -> None:
    account = Account.create()
    response = await _metered(base, account, {})
    assert response.status_code == 200, response.text
    assert settled(response.headers["PAYMENT-RESPONSE"]).amount == "50000"
    assert moved(account.address) == [(84532, 50000)]


async def test_charging_nothing_settles_nothing_and_keeps_the_writes(base: str) -> None:
    account = Account.create()
    response = await _metered(base, account, {"charge": 0, "key": "free"})
    assert response.status_code == 200, response.text
    receipt = settled(response.headers["PAYMENT-RESPONSE"])
    assert receipt.success and receipt.amount == "0" and not receipt.transaction
    assert moved(account.address) == []
    assert await get_store().get(account.address.lower(), "free") == "written"


async def test_a_failing_upto_view_settles_nothing_and_delivers_nothing(base: str) -> None:
    account = Account.create()
    response = await _metered(base, account, {"charge": "$0.01", "fail": True, "key": "lost"})
    assert response.status_code == 500
    assert "PAYMENT-RESPONSE" not in response.headers
    assert moved(account.address) == []
    assert await get_store().get(account.address.lower(), "lost") is None


async def test_charging_above_the_maximum_is_refused_in_the_call(base: str) -> None:
    account = Account.create()
    # Uncaught, the refusal fails the view: nothing settles, nothing is stored.
    failed = await _metered(base, account, {"charge": "$0.06", "key": "over"})
    assert failed.status_code == 500
    assert (
        moved(account.address) == []
        and await get_store().get(account.address.lower(), "over") is None
    )
    # Caught, the call goes on with what it charged before (here: nothing, so the maximum).
    caught = await _metered(base, account, {"charge": "$0.06", "catch": True})
    assert caught.status_code == 200, caught.text
    assert "above the 50000" in caught.json()["refused"]
    assert settled(caught.headers["PAYMENT-RESPONSE"]).amount == "50000"
    # In atomic units too.
    atomic = await _metered(base, account, {"charge": 50001, "catch": True})
    assert "above" in atomic.json()["refused"]


async def test_an_upto_payment_is_spent_once_and_cannot_pay_a_dearer_route(base: str) -> None:
    """Replaying the authorization, or spending one signed for a cheaper maximum, fails."""
    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.post("/metered/", json={})
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        cheaper = required.model_copy(
            update={"accepts": [required.accepts[0].model_copy(update={"amount": "1000"})]}
        )
        low = await signer(account).create_payment_payload(cheaper)
        refused = await plain.post(
            "/metered/",
            json={},
            headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(low)},
        )
        assert refused.status_code == 402
        payload = await signer(account).create_payment_payload(required)
        header = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
        # Charged nothing, so nothing on chain spent the nonce: the replay guard must.
        first = await plain.post("/metered/", json={"charge": 0}, headers=header)
        again = await plain.post("/metered/", json={"charge": "$0.001"}, headers=header)
    assert first.status_code == 200, first.text
    assert again.status_code == 402 and again.json()["reason"] == REPLAYED, again.text
    assert moved(account.address) == []


async def test_an_exact_payment_cannot_pay_a_metered_route(base: str) -> None:
    """An exact authorization of the maximum's amount is not an upto one: no option matches."""
    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.post("/metered/", json={})
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        (upto,) = required.accepts
        exact = PaymentRequirements.model_validate(
            {
                **upto.model_dump(by_alias=True),
                "scheme": "exact",
                "extra": {"name": upto.extra.get("name"), "version": upto.extra.get("version")},
            }
        )
        payload = await signer(account).create_payment_payload(
            required.model_copy(update={"accepts": [exact]})
        )
        response = await plain.post(
            "/metered/",
            json={"charge": "$0.001"},
            headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)},
        )
    assert response.status_code == 402, response.text
    assert moved(account.address) == []


# -- an upto tool on every transport ----------------------------------------------------------


def _rpc(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    message = {
        "role": "user",
        "messageId": uuid.uuid4().hex,
        "parts": [{"kind": "data", "data": {"tool": tool, "arguments": arguments}}],
    }
    return {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}}


async def _over_http(base: str, account: LocalAccount, arguments: dict[str, Any]) -> str:
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        response = await http.post(f"/tools/{METERED_TOOL}", json=arguments)
    assert response.status_code == 200, response.text
    return str(settled(response.headers["PAYMENT-RESPONSE"]).amount)


async def _over_websocket(base: str, account: LocalAccount, arguments: dict[str, Any]) -> str:
    async with websockets.connect(base.replace("http", "ws") + "/ws/tools/") as ws:

        async def ask(message: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps(message))
            reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
            return reply

        probe = await ask({"id": 1, "tool": METERED_TOOL, "arguments": arguments})
        required = PaymentRequired.model_validate(probe["error"]["payment_required"])
        payload = await signer(account).create_payment_payload(required)
        payment = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
        reply = await ask(
            {"id": 2, "tool": METERED_TOOL, "arguments": arguments, "payment": payment}
        )
    assert "result" in reply, reply
    return str(settled(reply["payment_response"]).amount)


async def _over_mcp(base: str, account: LocalAccount, arguments: dict[str, Any]) -> str:
    from x402.mcp import x402MCPSession

    async with mcp_helpers.connect(base) as session:
        paying = x402MCPSession(session, signer(account), auto_payment=True)
        result = await paying.call_tool(METERED_TOOL, arguments)
    assert result.payment_made and not result.is_error, result.content
    receipt = result.payment_response
    assert receipt is not None and not isinstance(receipt, dict)
    return str(receipt.amount)


async def _over_a2a(base: str, account: LocalAccount, arguments: dict[str, Any]) -> str:
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        response = await http.post("/agent", json=_rpc(METERED_TOOL, arguments))
    assert response.status_code == 200, response.text
    assert response.json()["result"]["status"]["state"] == "completed", response.text
    return str(settled(response.headers["PAYMENT-RESPONSE"]).amount)


TRANSPORTS = {
    "http": _over_http,
    "websocket": _over_websocket,
    "mcp": _over_mcp,
    "a2a": _over_a2a,
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_each_transport_pays_an_upto_tool_what_it_charged(base: str, transport: str) -> None:
    account = Account.create()
    call = TRANSPORTS[transport]
    amount = await call(base, account, {"key": transport, "amount": "$0.0123"})
    assert amount == "12300"
    assert await call(base, account, {"key": f"{transport}-max"}) == "50000"
    assert moved(account.address) == [(84532, 12300), (84532, 50000)]
    assert await get_store().get(account.address.lower(), transport) == "by tool"


async def test_a_failing_upto_tool_settles_nothing_on_any_transport(base: str) -> None:
    account = Account.create()
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        response = await http.post(f"/tools/{METERED_TOOL}", json={"key": "x", "amount": "fail"})
        task = await http.post("/agent", json=_rpc(METERED_TOOL, {"key": "y", "amount": "fail"}))
    assert response.status_code >= 400 and "PAYMENT-RESPONSE" not in response.headers
    assert task.status_code >= 400 and "PAYMENT-RESPONSE" not in task.headers
    assert moved(account.address) == []
    assert await get_store().get(account.address.lower(), "x") is None


async def test_a_two_network_tool_is_paid_on_either_over_the_websocket(base: str) -> None:
    account = Account.create()
    async with websockets.connect(base.replace("http", "ws") + "/ws/tools/") as ws:
        for index, network in enumerate((BASE, BASE_SEPOLIA)):
            message = {"id": index, "tool": TWO_NETWORK_TOOL, "arguments": {"key": "k"}}
            await ws.send(json.dumps(message))
            probe = json.loads(await asyncio.wait_for(ws.recv(), 30))
            required = PaymentRequired.model_validate(probe["error"]["payment_required"])
            assert [a.network for a in required.accepts] == [BASE_SEPOLIA, BASE]
            payload = await signer(account, network).create_payment_payload(required)
            message["payment"] = json.loads(
                payload.model_dump_json(by_alias=True, exclude_none=True)
            )
            await ws.send(json.dumps(message))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
            assert reply["result"]["payer"] == account.address, reply
            assert settled(reply["payment_response"]).network == network
    assert moved(account.address) == [(8453, 10000), (84532, 10000)]


async def test_a_metered_retry_with_its_payment_identifier_gets_the_answer_settled_once(
    base: str,
) -> None:
    from x402.extensions.payment_identifier import (
        append_payment_identifier_to_extensions,
        generate_payment_id,
    )

    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.post("/metered/", json={})
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        extensions: dict[str, Any] = dict(required.extensions or {})
        append_payment_identifier_to_extensions(extensions, generate_payment_id())
        payload = await signer(account).create_payment_payload(required, extensions=extensions)
        header = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
        body = {"charge": "$0.002", "key": "once"}
        first = await plain.post("/metered/", json=body, headers=header)
        again = await plain.post("/metered/", json=body, headers=header)  # the answer was lost
        other = await plain.post("/metered/", json={**body, "charge": "$0.04"}, headers=header)
    assert first.status_code == 200 and again.status_code == 200, again.text
    assert again.content == first.content
    assert settled(again.headers["PAYMENT-RESPONSE"]).amount == "2000"
    assert other.status_code == 409, other.text  # another request under the same id
    assert moved(account.address) == [(84532, 2000)]


@pytest.mark.parametrize(
    ("amount", "settles"), [("$0.003", "3000"), ("25%", "12500"), ("700", "700")]
)
async def test_a_view_ported_from_the_sdk_charges_with_its_settlement_overrides_header(
    base: str, amount: str, settles: str
) -> None:
    account = Account.create()
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        response = await http.post("/metered-header/", json={"amount": amount})
        over = await http.post("/metered-header/", json={"amount": "$0.06"})
    assert response.status_code == 200, response.text
    assert "Settlement-Overrides" not in response.headers  # ours to read, not the client's
    assert settled(response.headers["PAYMENT-RESPONSE"]).amount == settles
    assert over.status_code == 500  # above the maximum: the view's bug, nothing settles
    assert moved(account.address) == [(84532, int(settles))]


async def test_a_charge_from_a_streamed_body_is_refused_not_lost(base: str) -> None:
    """The payment settles before the body streams: a late charge() raises in the body."""
    account = Account.create()
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        response = await http.get("/metered-stream/")
    assert response.status_code == 200, response.text
    assert response.text.startswith("late charge refused: charge(): this call's payment")
    assert settled(response.headers["PAYMENT-RESPONSE"]).amount == "1000"
    assert moved(account.address) == [(84532, 1000)]


async def test_a_metered_call_that_charged_nothing_opens_no_sign_in(base: str) -> None:
    """sign_in="after_payment" reads settled payments: a charge of 0 paid nothing."""
    from aixyz_sessions.testing.paying import sign_in_header

    async def sign_in(account: LocalAccount) -> int:
        async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
            asked = await plain.post("/metered-sign-in/", json={})
            header = await sign_in_header(
                account, asked.headers["PAYMENT-REQUIRED"], f"{base}/metered-sign-in/"
            )
            response = await plain.post(
                "/metered-sign-in/", json={}, headers={"SIGN-IN-WITH-X": header}
            )
        assert response.status_code in (200, 402), response.text
        return response.status_code

    free, paying = Account.create(), Account.create()
    async with x402HttpxClient(signer(free), base_url=base, timeout=30) as http:
        zero = await http.post("/metered-sign-in/", json={"charge": 0})
    async with x402HttpxClient(signer(paying), base_url=base, timeout=30) as http:
        some = await http.post("/metered-sign-in/", json={"charge": "$0.001"})
    assert zero.status_code == 200 and some.status_code == 200
    assert await sign_in(free) == 402  # paid nothing: no sign-in
    assert await sign_in(paying) == 200
