"""Attacks on payment options and metered (``upto``) prices, against a real server.

The rule under attack: the work a payment causes and what it settles must not
come apart, and the payer bound to the session is the one the facilitator
verified. uvicorn on loopback serves the one ASGI app (HTTP views and tools,
the WebSocket, MCP, the A2A agent) over the LocalFacilitator, whose ledger
says what moved. Every test asserts the safe behaviour. Three of them found
holes, since closed: a token contract named as the payer (the
LocalFacilitator takes EOA payers only), a refused ``charge()`` inside an
agent turn escaping it (the turn went uncharged), and a tool failing inside a
turn keeping its writes.

This module is also the URLconf of its server: the views of
:mod:`tests.options_app` plus a few of its own (an option list with one
network twice, an exact and an upto option on one route, a second metered
view, a tool that charges and then fails).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import websockets
from django.http import HttpRequest, JsonResponse
from django.test import override_settings
from django.urls import path
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402.http import (
    decode_payment_required_header,
    decode_payment_response_header,
)
from x402.mcp import MCP_PAYMENT_META_KEY
from x402.mechanisms.evm.constants import (
    X402_EXACT_PERMIT2_PROXY_ADDRESS,
    X402_UPTO_PERMIT2_PROXY_ADDRESS,
)
from x402.mechanisms.evm.default_assets import get_default_asset
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.types import UptoPermit2Payload
from x402.mechanisms.evm.upto.client import _build_upto_permit2_typed_data
from x402.schemas import PaymentRequired, PaymentRequirements

from aixyz_sessions import get_session, get_store
from aixyz_sessions.agent.loop import ToolLoopAgent
from aixyz_sessions.agent.server import reset_agent
from aixyz_sessions.asgi import get_asgi_application
from aixyz_sessions.payments import charge, paid
from aixyz_sessions.payments.conf import X402ConfigError
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.tools import ToolError, registry, tool
from aixyz_sessions.tools.mcp import reset_mcp_server
from tests import mcp_helpers, options_app
from tests.agent_app import AGENT
from tests.fake_openai import FakeModel
from tests.options_app import BASE, BASE_SEPOLIA, MAXIMUM, METERED_TOOL, options_tools
from tests.payments_helpers import LOCAL, MIDDLEWARE, PAY_TO, serve
from tests.settings import LOOPBACK_HOSTS
from tests.test_payment_options_e2e import signer

pytestmark = pytest.mark.django_db(transaction=True)

CHAIN = {BASE_SEPOLIA: 84532, BASE: 8453}
MAX_UNITS = 50_000  # MAXIMUM in atomic units of USDC
OTHER_PAY_TO = "0x" + "cd" * 20
USDC = get_default_asset(BASE_SEPOLIA)["asset"]
FAILING_TOOL = "attack_charge_then_fail"

# -- this module's own routes ------------------------------------------------------------------

#: One network twice: the dearer option to PAY_TO first, a cheaper one to another recipient.
SAME_NETWORK_TWICE = [
    {"price": "$0.05", "network": BASE_SEPOLIA},
    {"price": "$0.01", "network": BASE_SEPOLIA, "pay_to": OTHER_PAY_TO},
]
#: An exact and an upto option on one network and recipient.
EXACT_OR_UPTO = [
    {"price": "$0.01", "network": BASE_SEPOLIA},
    {"price": "$0.05", "network": BASE_SEPOLIA, "scheme": "upto"},
]


async def _payer_writes(request: HttpRequest) -> JsonResponse:
    session = get_session()
    assert session is not None
    body = json.loads(request.body or b"{}")
    await session.set(body.get("key", "k"), "written")
    charged = charge(body["charge"]) if "charge" in body else None
    return JsonResponse({"payer": session.payer, "charged": charged})


same_network_twice = paid(accepts=SAME_NETWORK_TWICE)(_payer_writes)
exact_or_upto = paid(accepts=EXACT_OR_UPTO)(_payer_writes)
metered_twin = paid(upto=MAXIMUM)(_payer_writes)


async def charge_then_fail(key: str, amount: str) -> None:
    """Write ``key``, charge ``amount``, then fail: nothing may settle or be kept."""
    session = get_session()
    assert session is not None
    await session.set(key, "by a failing tool")
    charge(amount)
    raise ToolError("failed after charging")


urlpatterns = [
    path("attack/same-network-twice/", same_network_twice),
    path("attack/exact-or-upto/", exact_or_upto),
    path("attack/metered-twin/", metered_twin),
    *options_app.urlpatterns,
]


@contextmanager
def _server(**settings: Any) -> Iterator[str]:
    values = {
        "MIDDLEWARE": MIDDLEWARE,
        "AIXYZ_X402": LOCAL,
        "AIXYZ_AGENT": AGENT,
        "ROOT_URLCONF": __name__,
        "ALLOWED_HOSTS": LOOPBACK_HOSTS,
        **settings,
    }
    tool(charge_then_fail, name=FAILING_TOOL, upto=MAXIMUM)
    try:
        with options_tools(), override_settings(**values):
            reset_runtime()
            reset_agent()
            reset_mcp_server()
            try:
                with serve(get_asgi_application(), lifespan="on") as url:
                    yield url
            finally:
                get_local_facilitator().ledger.fail_settlements = None
                reset_runtime()
                reset_agent()
                reset_mcp_server()
    finally:
        registry.unregister(FAILING_TOOL)


@pytest.fixture
def base() -> Iterator[str]:
    with _server() as url:
        yield url


# -- helpers -----------------------------------------------------------------------------------


def moved(payer: str) -> list[tuple[int, int]]:
    """``(chain id, atomic amount)`` of every transfer from ``payer``, in order."""
    ledger = get_local_facilitator().ledger
    return [(t.chain_id, t.amount) for t in ledger.transfers if t.payer.lower() == payer.lower()]


def transfers_from(payer: str) -> list[Any]:
    ledger = get_local_facilitator().ledger
    return [t for t in ledger.transfers if t.payer.lower() == payer.lower()]


async def stored(payer: str, key: str) -> str | None:
    value: str | None = await get_store().get(payer.lower(), key)
    return value


async def required_of(base: str, path: str, body: dict[str, Any] | None = None) -> PaymentRequired:
    """What an unpaid POST to ``path`` asks for."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.post(path, json=body or {})
    assert unpaid.status_code == 402, unpaid.text
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return required


def _sign_upto(account: LocalAccount, auth: dict[str, Any], chain_id: int) -> str:
    parsed = UptoPermit2Payload.from_dict({"permit2Authorization": auth})
    domain, types, primary, message = _build_upto_permit2_typed_data(
        parsed.permit2_authorization, chain_id
    )
    signed = EthAccountSigner(account).sign_typed_data(
        domain,  # type: ignore[arg-type]  # the SDK's own client passes its dict too
        types,
        primary,
        message,
    )
    return "0x" + signed.hex()


def upto_payment(
    account: LocalAccount,
    required: PaymentRequired,
    *,
    option: int = 0,
    signed: dict[str, Any] | None = None,
    witness: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    accepted: dict[str, Any] | None = None,
    signer_account: LocalAccount | None = None,
    chain_id: int | None = None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An upto Permit2 payment (the payload object) for ``required.accepts[option]``.

    ``signed`` / ``witness`` change the authorization before it is signed (the
    signature covers them), ``after`` changes it after (the signature does
    not); ``accepted`` changes what the payment says it accepted;
    ``signer_account`` signs instead of ``account`` (whose address is ``from``).
    """
    requirement = required.accepts[option]
    assert isinstance(requirement, PaymentRequirements)
    extra = requirement.extra or {}
    auth: dict[str, Any] = {
        "from": account.address,
        "permitted": {"token": requirement.asset, "amount": requirement.amount},
        "spender": X402_UPTO_PERMIT2_PROXY_ADDRESS,
        "nonce": str(int.from_bytes(uuid.uuid4().bytes + uuid.uuid4().bytes, "big")),
        "deadline": str(int(time.time()) + (requirement.max_timeout_seconds or 300)),
        "witness": {
            "to": requirement.pay_to,
            "facilitator": extra.get("facilitatorAddress", ""),
            "validAfter": "0",
        },
    }
    for key, value in (signed or {}).items():
        if key == "amount" or key == "token":
            auth["permitted"][key] = value
        else:
            auth[key] = value
    auth["witness"].update(witness or {})
    chain = chain_id if chain_id is not None else CHAIN[requirement.network]
    signature = _sign_upto(signer_account or account, auth, chain)
    for key, value in (after or {}).items():
        auth[key] = value
    accepted_json = requirement.model_dump(by_alias=True, exclude_none=True)
    accepted_json.update(accepted or {})
    payment: dict[str, Any] = {
        "x402Version": 2,
        "payload": {"permit2Authorization": auth, "signature": signature},
        "accepted": accepted_json,
    }
    if required.resource is not None:
        payment["resource"] = required.resource.model_dump(by_alias=True, exclude_none=True)
    if extensions:
        payment["extensions"] = extensions
    return payment


def header_of(payment: dict[str, Any]) -> dict[str, str]:
    """The payment as the ``PAYMENT-SIGNATURE`` header."""
    encoded = base64.b64encode(json.dumps(payment).encode()).decode()
    return {"PAYMENT-SIGNATURE": encoded}


def with_payment_id(
    payment: dict[str, Any], required: PaymentRequired, payment_id: str | None = None
) -> dict[str, Any]:
    """``payment`` carrying a payment-identifier id (the declaration echoed, as the SDK does)."""
    from x402.extensions.payment_identifier import (
        append_payment_identifier_to_extensions,
        generate_payment_id,
    )

    extensions: dict[str, Any] = dict(required.extensions or {})
    append_payment_identifier_to_extensions(extensions, payment_id or generate_payment_id())
    return {**payment, "extensions": {"payment-identifier": extensions["payment-identifier"]}}


async def pay_http(
    base: str, path: str, payment: dict[str, Any], body: dict[str, Any] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        return await plain.post(path, json=body or {}, headers=header_of(payment))


async def ws_call(
    base: str, tool_name: str, arguments: dict[str, Any], payment: dict[str, Any] | None = None
) -> dict[str, Any]:
    async with websockets.connect(base.replace("http", "ws") + "/ws/tools/") as ws:
        message: dict[str, Any] = {"id": 1, "tool": tool_name, "arguments": arguments}
        if payment is not None:
            message["payment"] = payment
        await ws.send(json.dumps(message))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
        return reply


async def mcp_call(
    base: str, tool_name: str, arguments: dict[str, Any], payment: dict[str, Any] | None = None
) -> Any:
    meta = None if payment is None else {MCP_PAYMENT_META_KEY: payment}
    async with mcp_helpers.connect(base) as session:
        return await session.call_tool(tool_name, arguments, meta=meta)


def rpc_invoke(tool_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    message = {
        "role": "user",
        "messageId": uuid.uuid4().hex,
        "parts": [{"kind": "data", "data": {"tool": tool_name, "arguments": arguments}}],
    }
    return {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}}


async def a2a_call(
    base: str, tool_name: str, arguments: dict[str, Any], payment: dict[str, Any] | None = None
) -> httpx.Response:
    headers = {} if payment is None else header_of(payment)
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        return await plain.post("/agent", json=rpc_invoke(tool_name, arguments), headers=headers)


def mcp_paid(result: Any) -> bool:
    return not result.isError and bool((result.meta or {}).get("x402/payment-response"))


def mcp_amount(result: Any) -> str | None:
    receipt = (result.meta or {}).get("x402/payment-response")
    return None if not isinstance(receipt, dict) else receipt.get("amount")


# -- 1. an upto payload that differs from the offered option -----------------------------------

LATER = str(int(time.time()) + 10**6)
TAMPERED: dict[str, dict[str, Any]] = {
    "permitted amount above": {"signed": {"amount": str(MAX_UNITS + 1)}},
    "permitted amount below": {"signed": {"amount": str(MAX_UNITS - 1)}},
    "another token": {"signed": {"token": get_default_asset(BASE)["asset"]}},
    "exact proxy as spender": {"signed": {"spender": X402_EXACT_PERMIT2_PROXY_ADDRESS}},
    "witness.to another recipient": {"witness": {"to": OTHER_PAY_TO}},
    "witness.facilitator another": {"witness": {"facilitator": "0x" + "fb" * 20}},
    "deadline passed": {"signed": {"deadline": str(int(time.time()) - 10)}},
    "deadline within 6 s": {"signed": {"deadline": str(int(time.time()) + 2)}},
    "validAfter in the future": {"witness": {"validAfter": LATER}},
    "signed for another chain": {"chain_id": 8453},
    "amount raised after signing": {"after": {"permitted": {"token": USDC, "amount": "1"}}},
    "deadline moved after signing": {"after": {"deadline": LATER}},
}


@pytest.mark.parametrize("case", list(TAMPERED))
async def test_an_upto_payload_unlike_the_offered_option_is_refused(base: str, case: str) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required, **TAMPERED[case])
    response = await pay_http(base, "/metered/", payment, {"charge": "$0.001", "key": "t"})
    assert response.status_code == 402, response.text
    assert "PAYMENT-RESPONSE" not in response.headers
    assert moved(account.address) == []
    assert await stored(account.address, "t") is None


async def test_an_untampered_hand_built_upto_payload_is_accepted(base: str) -> None:
    """The control for the attacks above: the hand-built payload itself is a good one."""
    account = Account.create()
    required = await required_of(base, "/metered/")
    response = await pay_http(
        base, "/metered/", upto_payment(account, required), {"charge": "$0.001"}
    )
    assert response.status_code == 200, response.text
    assert moved(account.address) == [(84532, 1000)]


# -- 2. who signed: from = another address -----------------------------------------------------


async def test_an_upto_authorization_signed_by_a_naming_b_is_refused(base: str) -> None:
    signer_a, victim_b = Account.create(), Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(victim_b, required, signer_account=signer_a)
    response = await pay_http(base, "/metered/", payment, {"charge": 0, "key": "t"})
    assert response.status_code == 402, response.text
    # Signed correctly by A, then relabelled as B's.
    relabelled = upto_payment(signer_a, required, after={"from": victim_b.address})
    again = await pay_http(base, "/metered/", relabelled, {"charge": 0, "key": "t"})
    assert again.status_code == 402, again.text
    assert moved(victim_b.address) == [] and moved(signer_a.address) == []
    assert await stored(victim_b.address, "t") is None


@pytest.mark.parametrize("contract", ["usdc on base sepolia", "usdc on base"])
async def test_an_upto_payment_from_a_token_contract_needs_a_real_signature(
    base: str, contract: str
) -> None:
    """``from`` = an address with code (the token contract) and a signature of nobody's."""
    address = get_default_asset(BASE_SEPOLIA if "sepolia" in contract else BASE)["asset"]
    forger = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(forger, required, after={"from": address})
    response = await pay_http(base, "/metered/", payment, {"charge": 0, "key": "forged"})
    assert response.status_code == 402, response.text
    assert await stored(address, "forged") is None


async def test_an_exact_payment_from_a_token_contract_needs_a_real_signature(base: str) -> None:
    """The same forgery on an exact route (EIP-3009 branch): ``from`` = USDC's own contract."""
    forger = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    payment = exact_payment(forger, required, after_auth={"from": USDC})
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        response = await plain.get(
            "/two-networks/", params={"key": "forged"}, headers=header_of(payment)
        )
    assert response.status_code == 402, response.text
    assert await stored(USDC, "forged") is None


def exact_payment(
    account: LocalAccount,
    required: PaymentRequired,
    *,
    option: int = 0,
    sign_for: dict[str, Any] | None = None,
    accepted: dict[str, Any] | None = None,
    after_auth: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An exact payment for ``required.accepts[option]`` (EIP-3009 unless the requirement's
    extra says Permit2); ``sign_for`` changes the requirement it is signed for,
    ``accepted`` what it says it accepted, ``after_auth`` its authorization after signing."""
    from x402.mechanisms.evm.exact.client import ExactEvmScheme

    requirement = required.accepts[option]
    assert isinstance(requirement, PaymentRequirements)
    signing = requirement.model_copy(update=sign_for or {})
    inner = ExactEvmScheme(EthAccountSigner(account)).create_payment_payload(signing)
    branch = "permit2Authorization" if "permit2Authorization" in inner else "authorization"
    inner[branch].update(after_auth or {})
    accepted_json = requirement.model_dump(by_alias=True, exclude_none=True)
    accepted_json.update(accepted or {})
    payment: dict[str, Any] = {"x402Version": 2, "payload": inner, "accepted": accepted_json}
    if required.resource is not None:
        payment["resource"] = required.resource.model_dump(by_alias=True, exclude_none=True)
    return payment


# -- 3. both branches, the wrong branch --------------------------------------------------------


async def test_an_upto_payment_with_an_authorization_branch_beside_it_is_refused(
    base: str,
) -> None:
    """A valid Permit2 branch by A, an EIP-3009 branch naming B: neither may be bound."""
    payer_a, victim_b = Account.create(), Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(payer_a, required)
    exact_required = await _two_network_required(base)
    other = exact_payment(victim_b, exact_required)
    payment["payload"]["authorization"] = other["payload"]["authorization"]
    response = await pay_http(base, "/metered/", payment, {"charge": 0, "key": "both"})
    assert response.status_code == 402, response.text
    assert "both" in response.json()["reason"]
    assert await stored(payer_a.address, "both") is None
    assert await stored(victim_b.address, "both") is None
    # Nothing was spent by the refusal: A's authorization alone still buys its one call.
    alone = upto_payment(payer_a, required)
    ok = await pay_http(base, "/metered/", alone, {"charge": "$0.001"})
    assert ok.status_code == 200, ok.text
    assert moved(payer_a.address) == [(84532, 1000)] and moved(victim_b.address) == []


async def test_an_exact_payment_with_a_permit2_branch_beside_it_is_refused(base: str) -> None:
    payer_a, victim_b = Account.create(), Account.create()
    exact_required = await _two_network_required(base)
    payment = exact_payment(payer_a, exact_required)
    upto_required = await required_of(base, "/metered/")
    payment["payload"]["permit2Authorization"] = upto_payment(victim_b, upto_required)["payload"][
        "permit2Authorization"
    ]
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        response = await plain.get(
            "/two-networks/", params={"key": "both"}, headers=header_of(payment)
        )
    assert response.status_code == 402, response.text
    assert moved(payer_a.address) == [] and moved(victim_b.address) == []
    assert await stored(victim_b.address, "both") is None


async def test_an_eip3009_authorization_cannot_pay_an_upto_route(base: str) -> None:
    """An EIP-3009 transfer of the maximum, presented as the upto option."""
    account = Account.create()
    required = await required_of(base, "/metered/")
    upto = required.accepts[0]
    as_exact = required.model_copy(
        update={
            "accepts": [
                upto.model_copy(
                    update={"scheme": "exact", "extra": {"name": "USDC", "version": "2"}}
                )
            ]
        }
    )
    payment = exact_payment(account, as_exact)
    payment["accepted"] = upto.model_dump(by_alias=True, exclude_none=True)
    response = await pay_http(base, "/metered/", payment, {"charge": "$0.001", "key": "k"})
    assert response.status_code == 402, response.text
    assert moved(account.address) == [] and await stored(account.address, "k") is None


async def _two_network_required(base: str) -> PaymentRequired:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return required


# -- 4. non-canonical, huge nonces ------------------------------------------------------------


def _spellings(nonce: int) -> dict[str, Any]:
    return {
        "leading zero": "0" + str(nonce),
        "many leading zeros": "000000" + str(nonce),
        "hex": hex(nonce),
        "json number": nonce,
        "space before": " " + str(nonce),
        "space after": str(nonce) + " ",
        "underscore": f"{nonce:_}",
        "plus sign": "+" + str(nonce),
        "arabic-indic digits": str(nonce).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
        "wrapped by 2**256": str(nonce + 2**256),
    }


async def test_one_signed_upto_nonce_spelled_many_ways_buys_one_call(base: str) -> None:
    """The SDK signs ``int(nonce)``: every spelling of one nonce is one signature."""
    account = Account.create()
    required = await required_of(base, "/metered/")
    nonce = 123456789
    for name, spelling in _spellings(nonce).items():
        payment = upto_payment(account, required, signed={"nonce": str(nonce)})
        payment["payload"]["permit2Authorization"]["nonce"] = spelling
        response = await pay_http(base, "/metered/", payment, {"charge": 0, "key": name})
        assert response.status_code in (400, 402), (name, response.status_code, response.text)
        assert await stored(account.address, name) is None
    canonical = upto_payment(account, required, signed={"nonce": str(nonce)})
    first = await pay_http(base, "/metered/", canonical, {"charge": 0, "key": "canonical"})
    assert first.status_code == 200, first.text
    for name, spelling in _spellings(nonce).items():
        payment = upto_payment(account, required, signed={"nonce": str(nonce)})
        payment["payload"]["permit2Authorization"]["nonce"] = spelling
        again = await pay_http(base, "/metered/", payment, {"charge": 0, "key": f"again {name}"})
        assert again.status_code in (400, 402), (name, again.text)
        assert await stored(account.address, f"again {name}") is None
    assert moved(account.address) == []  # every call charged 0: only the guard refuses


@pytest.mark.parametrize(
    "nonce", ["9" * 78, "1" + "0" * 10_000, str(2**256), "-1", "", "1e30", "0x" + "f" * 64]
)
async def test_an_absurd_upto_nonce_is_a_402_not_a_crash(base: str, nonce: str) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required, after={"nonce": nonce})
    response = await pay_http(base, "/metered/", payment, {"charge": 0, "key": "k"})
    assert response.status_code in (400, 402), response.text
    assert await stored(account.address, "k") is None


async def test_the_largest_uint256_nonce_buys_exactly_one_call(base: str) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required, signed={"nonce": str(2**256 - 1)})
    first = await pay_http(base, "/metered/", payment, {"charge": 0})
    again = await pay_http(base, "/attack/metered-twin/", payment, {"charge": "$0.01"})
    assert first.status_code == 200, first.text
    assert again.status_code == 402 and again.json()["reason"] == REPLAYED, again.text
    assert moved(account.address) == []


# -- 5. accepted names an option the route does not offer ----------------------------------------


UNOFFERED_UPTO: dict[str, dict[str, Any]] = {
    "another network": {
        "accepted": {"network": BASE, "asset": get_default_asset(BASE)["asset"]},
        "signed": {"token": get_default_asset(BASE)["asset"]},
        "chain_id": 8453,
    },
    "another pay_to": {"accepted": {"payTo": OTHER_PAY_TO}, "witness": {"to": OTHER_PAY_TO}},
    "a lower maximum": {"accepted": {"amount": "1000"}, "signed": {"amount": "1000"}},
    "a longer timeout": {"accepted": {"maxTimeoutSeconds": 10**6}},
    "exact scheme": {"accepted": {"scheme": "exact"}},
    "another asset": {
        "accepted": {"asset": get_default_asset(BASE)["asset"]},
        "signed": {"token": get_default_asset(BASE)["asset"]},
    },
    "another facilitator in extra": {
        "accepted": {"extra": {"facilitatorAddress": "0x" + "fb" * 20}},
        "witness": {"facilitator": "0x" + "fb" * 20},
    },
}


@pytest.mark.parametrize("case", list(UNOFFERED_UPTO))
async def test_an_upto_payment_for_an_option_not_offered_is_refused(base: str, case: str) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required, **UNOFFERED_UPTO[case])
    response = await pay_http(base, "/metered/", payment, {"charge": "$0.001", "key": "k"})
    assert response.status_code == 402, response.text
    assert moved(account.address) == [] and await stored(account.address, "k") is None


async def test_an_upto_payment_cannot_pay_an_exact_route(base: str) -> None:
    """/two-networks/ offers exact $0.01 only: an upto authorization of $0.01 is not one."""
    account = Account.create()
    exact_required = await _two_network_required(base)
    upto_required = await required_of(base, "/metered/")
    as_upto = upto_required.model_copy(
        update={
            "accepts": [
                upto_required.accepts[0].model_copy(update={"amount": "10000", "resource": None})
            ]
        }
    )
    payment = upto_payment(account, as_upto)
    for accepted in (
        exact_required.accepts[0].model_dump(by_alias=True, exclude_none=True),
        {
            **exact_required.accepts[0].model_dump(by_alias=True, exclude_none=True),
            "scheme": "upto",
        },
    ):
        payment["accepted"] = accepted
        async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
            response = await plain.get(
                "/two-networks/", params={"key": "k"}, headers=header_of(payment)
            )
        assert response.status_code == 402, response.text
    assert moved(account.address) == [] and await stored(account.address, "k") is None


# -- 6. one network twice in one option list ---------------------------------------------------


async def test_one_network_twice_each_option_pays_its_own_price_to_its_own_recipient(
    base: str,
) -> None:
    required = await required_of(base, "/attack/same-network-twice/")
    assert [(a.network, a.amount, a.pay_to) for a in required.accepts] == [
        (BASE_SEPOLIA, "50000", PAY_TO),
        (BASE_SEPOLIA, "10000", OTHER_PAY_TO),
    ]
    dear, cheap = Account.create(), Account.create()
    for account, option in ((dear, 0), (cheap, 1)):
        payment = exact_payment(account, required, option=option)
        response = await pay_http(base, "/attack/same-network-twice/", payment, {"key": "k"})
        assert response.status_code == 200, response.text
    assert [(t.pay_to.lower(), t.amount) for t in transfers_from(dear.address)] == [(PAY_TO, 50000)]
    assert [(t.pay_to.lower(), t.amount) for t in transfers_from(cheap.address)] == [
        (OTHER_PAY_TO, 10000)
    ]


MIXED_UP: dict[str, dict[str, Any]] = {
    # Signed for the cheap option, says it accepted the dear one.
    "cheap signed, dear accepted": {"option": 1, "accepted": {"amount": "50000", "payTo": PAY_TO}},
    # The cheap amount to the dear option's recipient: an option nobody offered.
    "cheap amount to the dear recipient": {
        "option": 1,
        "sign_for": {"pay_to": PAY_TO},
        "accepted": {"payTo": PAY_TO},
    },
    # Says the cheap option, pays the cheap amount to the dear recipient.
    "cheap accepted, paid to the dear recipient": {"option": 1, "sign_for": {"pay_to": PAY_TO}},
    # Says the dear option, signed for its recipient at the cheap amount.
    "dear accepted, cheap amount": {"option": 0, "sign_for": {"amount": "10000"}},
}


@pytest.mark.parametrize("case", list(MIXED_UP))
async def test_one_network_twice_cannot_be_mixed_up(base: str, case: str) -> None:
    account = Account.create()
    required = await required_of(base, "/attack/same-network-twice/")
    payment = exact_payment(account, required, **MIXED_UP[case])
    response = await pay_http(base, "/attack/same-network-twice/", payment, {"key": "k"})
    assert response.status_code == 402, response.text
    assert moved(account.address) == [] and await stored(account.address, "k") is None


def test_the_same_option_twice_is_refused_where_it_is_declared() -> None:
    with pytest.raises(X402ConfigError) as raised:
        paid(accepts=[{"price": "$0.01", "network": BASE}, {"price": "$0.01", "network": BASE}])
    assert raised.value.id == "aixyz_sessions.E112"
    with pytest.raises(X402ConfigError):
        paid(accepts=[{"price": "$0.01", "network": BASE}, {"price": "$0.01", "network": BASE}])(
            _payer_writes
        )


async def test_exact_and_upto_on_one_network_cannot_be_swapped(base: str) -> None:
    required = await required_of(base, "/attack/exact-or-upto/")
    assert [(a.scheme, a.amount) for a in required.accepts] == [
        ("exact", "10000"),
        ("upto", "50000"),
    ]
    account = Account.create()
    # An upto authorization (Permit2, upto proxy) that says it accepted the exact option.
    upto = upto_payment(account, required, option=1)
    upto["accepted"] = required.accepts[0].model_dump(by_alias=True, exclude_none=True)
    # An exact EIP-3009 transfer that says it accepted the upto option.
    exact = exact_payment(account, required, option=0)
    exact["accepted"] = required.accepts[1].model_dump(by_alias=True, exclude_none=True)
    # An exact transfer of the upto maximum that says it accepted the upto option.
    dear = exact_payment(account, required, option=0, sign_for={"amount": "50000"})
    dear["accepted"] = required.accepts[1].model_dump(by_alias=True, exclude_none=True)
    for payment in (upto, exact, dear):
        response = await pay_http(
            base, "/attack/exact-or-upto/", payment, {"charge": "$0.001", "key": "k"}
        )
        assert response.status_code == 402, response.text
    assert moved(account.address) == [] and await stored(account.address, "k") is None
    # Each honest payment settles what its own option says.
    exact_ok = await pay_http(
        base, "/attack/exact-or-upto/", exact_payment(account, required), {"charge": "$0.001"}
    )
    upto_ok = await pay_http(
        base,
        "/attack/exact-or-upto/",
        upto_payment(account, required, option=1),
        {"charge": "$0.001"},
    )
    assert exact_ok.status_code == 200 and upto_ok.status_code == 200, upto_ok.text
    assert moved(account.address) == [(84532, 10000), (84532, 1000)]


# -- 7. one upto authorization on several routes and transports (charged 0: unspent on chain) ---

PLACES = ["http-view", "http-view-twin", "http-tool", "websocket", "mcp", "a2a"]


async def attempt(
    base: str, place: str, payment: dict[str, Any], key: str, dollars: str
) -> tuple[bool, str | None]:
    """Spend ``payment`` at ``place`` (charging ``dollars``): whether it was served, and the
    amount its receipt says settled."""
    arguments = {"key": key, "amount": dollars}
    if place in ("http-view", "http-view-twin"):
        where = "/metered/" if place == "http-view" else "/attack/metered-twin/"
        response = await pay_http(base, where, payment, {"charge": dollars, "key": key})
        receipt = response.headers.get("PAYMENT-RESPONSE")
        served = response.status_code == 200
        return served, decode_payment_response_header(receipt).amount if receipt else None
    if place == "http-tool":
        response = await pay_http(base, f"/tools/{METERED_TOOL}", payment, arguments)
        receipt = response.headers.get("PAYMENT-RESPONSE")
        served = response.status_code == 200
        return served, decode_payment_response_header(receipt).amount if receipt else None
    if place == "websocket":
        reply = await ws_call(base, METERED_TOOL, arguments, payment)
        receipt = reply.get("payment_response")
        served = "result" in reply
        return served, decode_payment_response_header(receipt).amount if receipt else None
    if place == "mcp":
        result = await mcp_call(base, METERED_TOOL, arguments, payment)
        return not result.isError, mcp_amount(result)
    assert place == "a2a"
    response = await a2a_call(base, METERED_TOOL, arguments, payment)
    receipt = response.headers.get("PAYMENT-RESPONSE")
    served = response.status_code == 200 and (
        response.json().get("result", {}).get("status", {}).get("state") == "completed"
    )
    return served, decode_payment_response_header(receipt).amount if receipt else None


@pytest.mark.parametrize("first", PLACES)
async def test_an_upto_authorization_charged_nothing_buys_no_second_call_anywhere(
    base: str, first: str
) -> None:
    """Charged 0, nothing on chain spent the nonce: only the replay guard stands in the way."""
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required)
    served, amount = await attempt(base, first, payment, "first", "$0")
    assert served and amount == "0", (first, amount)
    for place in PLACES:
        again, _ = await attempt(base, place, payment, f"replay-{place}", "$0.04")
        assert not again, f"paid at {first}, spent again at {place}"
        assert await stored(account.address, f"replay-{place}") is None
    assert moved(account.address) == []
    assert await stored(account.address, "first") is not None


async def test_one_upto_authorization_raced_everywhere_at_once_is_served_once(base: str) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required)
    outcomes = await asyncio.gather(
        *(attempt(base, place, payment, f"race-{place}", "$0") for place in PLACES for _ in (1, 2))
    )
    assert sum(served for served, _ in outcomes) == 1, outcomes
    assert moved(account.address) == []


async def test_a_second_payment_identifier_does_not_revive_a_zero_charged_authorization(
    base: str,
) -> None:
    """Same signed authorization, new payment-identifier id (so new payment bytes)."""
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required)
    first = await pay_http(
        base, "/metered/", with_payment_id(payment, required, "pay_" + "a" * 20), {"charge": 0}
    )
    assert first.status_code == 200, first.text
    for payment_id in ("pay_" + "b" * 20, "pay_" + "c" * 20):
        again = await pay_http(
            base,
            "/metered/",
            with_payment_id(payment, required, payment_id),
            {"charge": "$0.03", "key": payment_id},
        )
        assert again.status_code == 402 and again.json()["reason"] == REPLAYED, again.text
    stripped = await pay_http(base, "/metered/", payment, {"charge": "$0.03", "key": "bare"})
    assert stripped.status_code == 402, stripped.text
    assert moved(account.address) == []


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.redis)])
def shared_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """A session store (and so replay guard) shared by every worker process."""
    if request.param == "database":
        setting: Any = "aixyz_sessions.stores.db.DatabaseSessionStore"
    else:
        from tests.services import REDIS_HOST, REDIS_PORT, need_redis
        from tests.test_replay_guard import unique_prefix

        need_redis()
        setting = {
            "BACKEND": "aixyz_sessions.stores.redis.RedisSessionStore",
            "OPTIONS": {
                "url": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
                "key_prefix": unique_prefix(),
            },
        }
    with override_settings(AIXYZ_SESSION_STORE=setting), _server() as url:
        yield url


async def test_a_zero_charged_authorization_is_refused_by_another_worker(
    shared_store: str,
) -> None:
    """Worker 1 served it (charged 0); worker 2 (a fresh runtime and store) gets it next."""
    from aixyz_sessions.conf import reset_store

    base = shared_store
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required)
    served, amount = await attempt(base, "http-view", payment, "first", "$0")
    assert served and amount == "0"
    for place in ("websocket", "http-tool", "mcp"):
        reset_runtime()  # another worker: its own runtime, guard object and store client
        reset_store()
        reset_mcp_server()
        again, _ = await attempt(base, place, payment, f"replay-{place}", "$0.02")
        assert not again, place
    assert moved(account.address) == []


# -- 8. charge races: one payer, many metered calls at once --------------------------------------


async def test_concurrent_metered_views_of_one_payer_each_settle_their_own_charge(
    base: str,
) -> None:
    account = Account.create()
    charges = [1000 + 7 * i for i in range(12)]
    async with httpx.AsyncClient(base_url=base, timeout=60) as plain:
        unpaid = await plain.post("/metered/", json={})
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        payments = [upto_payment(account, required) for _ in charges]
        where = ["/metered/", "/attack/metered-twin/"]

        async def one(i: int) -> tuple[int, str | None]:
            response = await plain.post(
                where[i % 2],
                json={"charge": charges[i], "key": f"k{i}"},
                headers=header_of(payments[i]),
            )
            assert response.status_code == 200, response.text
            return charges[i], decode_payment_response_header(
                response.headers["PAYMENT-RESPONSE"]
            ).amount

        results = await asyncio.gather(*(one(i) for i in range(len(charges))))
    assert all(str(charged) == amount for charged, amount in results), results
    assert sorted(amount for _, amount in moved(account.address)) == sorted(charges)


async def test_concurrent_metered_tool_calls_over_every_transport_settle_their_own_charge(
    base: str,
) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    places = ["http-tool", "websocket", "mcp", "a2a"] * 3
    amounts = [f"$0.00{i + 1}{i % 10}" for i in range(len(places))]

    async def one(i: int) -> tuple[str, str | None]:
        served, amount = await attempt(
            base, places[i], upto_payment(account, required), f"c{i}", amounts[i]
        )
        assert served, places[i]
        return amounts[i], amount

    results = await asyncio.gather(*(one(i) for i in range(len(places))))
    from decimal import Decimal

    expected = [int(Decimal(a.removeprefix("$")) * 10**6) for a in amounts]
    assert all(str(int(Decimal(a.removeprefix("$")) * 10**6)) == got for a, got in results)
    assert sorted(amount for _, amount in moved(account.address)) == sorted(expected)


# -- 9. a metered call that charges and then fails ---------------------------------------------


@pytest.mark.parametrize("place", ["http-tool", "websocket", "mcp", "a2a"])
async def test_a_tool_that_charges_then_fails_settles_nothing_and_its_payment_is_spent(
    base: str, place: str
) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = upto_payment(account, required)
    arguments = {"key": "lost", "amount": "$0.02"}
    if place == "http-tool":
        response = await pay_http(base, f"/tools/{FAILING_TOOL}", payment, arguments)
        assert response.status_code >= 400 and "PAYMENT-RESPONSE" not in response.headers
    elif place == "websocket":
        reply = await ws_call(base, FAILING_TOOL, arguments, payment)
        assert "result" not in reply and not reply.get("payment_response"), reply
    elif place == "mcp":
        result = await mcp_call(base, FAILING_TOOL, arguments, payment)
        assert result.isError and not mcp_paid(result), result
    else:
        response = await a2a_call(base, FAILING_TOOL, arguments, payment)
        assert response.status_code >= 400 and "PAYMENT-RESPONSE" not in response.headers
        assert "artifacts" not in json.dumps(response.json()), response.text
    assert moved(account.address) == []
    assert await stored(account.address, "lost") is None
    # The failed call started: its authorization (unspent on chain) buys nothing more.
    for other in PLACES:
        again, _ = await attempt(base, other, payment, f"after-{other}", "$0.001")
        assert not again, other
    assert moved(account.address) == []


# -- 10. retries with a payment identifier on metered calls ------------------------------------


async def test_a_metered_tool_retry_gets_the_kept_answer_on_every_transport_settled_once(
    base: str,
) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = with_payment_id(upto_payment(account, required), required)
    arguments = {"key": "once", "amount": "$0.002"}
    response = await pay_http(base, f"/tools/{METERED_TOOL}", payment, arguments)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    # The same call again, over each transport: the kept answer, nothing settles again.
    reply = await ws_call(base, METERED_TOOL, arguments, payment)
    assert reply.get("result") == result, reply
    assert decode_payment_response_header(reply["payment_response"]).amount == "2000"
    over_mcp = await mcp_call(base, METERED_TOOL, arguments, payment)
    assert not over_mcp.isError and mcp_amount(over_mcp) == "2000", over_mcp
    http_again = await pay_http(base, f"/tools/{METERED_TOOL}", payment, arguments)
    assert http_again.json() == {"result": result}
    # Another charge (another request) under the same id: a conflict, never a new settlement.
    dearer = {"key": "once", "amount": "$0.04"}
    conflict = await pay_http(base, f"/tools/{METERED_TOOL}", payment, dearer)
    assert conflict.status_code == 409, conflict.text
    ws_conflict = await ws_call(base, METERED_TOOL, dearer, payment)
    assert "result" not in ws_conflict and not ws_conflict.get("payment_response"), ws_conflict
    mcp_conflict = await mcp_call(base, METERED_TOOL, dearer, payment)
    assert mcp_conflict.isError and not mcp_paid(mcp_conflict)
    a2a = await a2a_call(base, METERED_TOOL, arguments, payment)
    assert a2a.status_code in (402, 409) and "PAYMENT-RESPONSE" not in a2a.headers, a2a.text
    view = await pay_http(base, "/metered/", payment, {"charge": "$0.04", "key": "view"})
    assert view.status_code in (402, 409), view.text
    assert moved(account.address) == [(84532, 2000)]
    assert await stored(account.address, "view") is None


async def test_a_zero_charged_retry_stays_zero_and_its_id_buys_nothing_else(base: str) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = with_payment_id(upto_payment(account, required), required)
    arguments = {"key": "zero", "amount": "$0"}
    over_ws = await ws_call(base, METERED_TOOL, arguments, payment)
    assert decode_payment_response_header(over_ws["payment_response"]).amount == "0"
    over_mcp = await mcp_call(base, METERED_TOOL, arguments, payment)
    assert not over_mcp.isError and mcp_amount(over_mcp) == "0"
    for dollars in ("$0.001", "$0.05"):
        other = await mcp_call(base, METERED_TOOL, {"key": "zero", "amount": dollars}, payment)
        assert other.isError and not mcp_paid(other)
        served, _ = await attempt(base, "http-tool", payment, "zero", dollars)
        assert not served
    assert moved(account.address) == []


async def test_a_metered_view_retry_with_another_charge_body_is_a_conflict(base: str) -> None:
    account = Account.create()
    required = await required_of(base, "/metered/")
    payment = with_payment_id(upto_payment(account, required), required)
    first = await pay_http(base, "/metered/", payment, {"charge": 0, "key": "v"})
    assert first.status_code == 200
    for body in ({"charge": 1, "key": "v"}, {"key": "v"}, {"charge": 0, "key": "w"}):
        again = await pay_http(base, "/metered/", payment, body)
        assert again.status_code == 409, again.text
    twin = await pay_http(base, "/attack/metered-twin/", payment, {"charge": 0, "key": "v"})
    assert twin.status_code == 409, twin.text
    # The tool transports call it another kind of request: a clear conflict.
    reply = await ws_call(base, METERED_TOOL, {"key": "v", "amount": "$0"}, payment)
    assert "result" not in reply and reply["error"]["code"] == "payment_identifier_conflict"
    assert moved(account.address) == []
    assert await stored(account.address, "w") is None


# -- 11. the 402 on every transport lists the options in the declared order ---------------------


def _listed(required: Any) -> list[tuple[str, str, str, str]]:
    if not isinstance(required, PaymentRequired):
        required = PaymentRequired.model_validate(required)
    return [(a.scheme, a.network, a.amount, a.pay_to.lower()) for a in required.accepts]


async def _every_402(base: str, tool_name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """What a tool's 402 lists over HTTP (header and body), WebSocket, MCP and A2A."""
    found: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        http = await plain.post(f"/tools/{tool_name}", json=arguments)
        a2a = await plain.post("/agent", json=rpc_invoke(tool_name, arguments))
    for name, response in (("http", http), ("a2a", a2a)):
        assert response.status_code == 402, response.text
        found[f"{name} header"] = _listed(
            decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
        )
        body = response.json()
        found[f"{name} body"] = [
            (a["scheme"], a["network"], a["amount"], a["payTo"].lower()) for a in body["accepts"]
        ]
    reply = await ws_call(base, tool_name, arguments)
    found["websocket"] = _listed(reply["error"]["payment_required"])
    result = await mcp_call(base, tool_name, arguments)
    found["mcp"] = _listed(mcp_helpers.payment_required(result))
    return found


async def test_every_transport_lists_a_tools_options_in_the_declared_order(base: str) -> None:
    expected = [
        ("exact", BASE_SEPOLIA, "10000", PAY_TO),
        ("exact", BASE, "10000", PAY_TO),
    ]
    found = await _every_402(base, options_app.TWO_NETWORK_TOOL, {"key": "k"})
    assert found == {name: expected for name in found}, found


@pytest.fixture
def default_networks() -> Iterator[str]:
    """``AIXYZ_X402["ACCEPTS"]``: Base first, then Base Sepolia to another recipient."""
    accepts = [{"network": BASE}, {"network": BASE_SEPOLIA, "pay_to": OTHER_PAY_TO}]
    with _server(AIXYZ_X402={**LOCAL, "ACCEPTS": accepts}) as url:
        yield url


async def test_default_networks_are_listed_in_their_order_on_every_transport(
    default_networks: str,
) -> None:
    base = default_networks
    expected = [("upto", BASE, "50000", PAY_TO), ("upto", BASE_SEPOLIA, "50000", OTHER_PAY_TO)]
    found = await _every_402(base, METERED_TOOL, {"key": "k"})
    assert found == {name: expected for name in found}, found
    view = await required_of(base, "/metered/")
    assert _listed(view) == expected
    # A payment for the second default cannot be claimed as the first (another recipient).
    account = Account.create()
    forged = upto_payment(account, view, option=1)
    forged["accepted"] = view.accepts[0].model_dump(by_alias=True, exclude_none=True)
    response = await pay_http(base, "/metered/", forged, {"charge": 0, "key": "k"})
    assert response.status_code == 402, response.text
    honest = await pay_http(
        base, "/metered/", upto_payment(account, view, option=1), {"charge": "$0.003"}
    )
    assert honest.status_code == 200, honest.text
    assert [(t.network, t.pay_to.lower(), t.amount) for t in transfers_from(account.address)] == [
        (BASE_SEPOLIA, OTHER_PAY_TO, 3000)
    ]


# -- 12. a metered tool inside a metered agent text turn -----------------------------------------

MODEL = FakeModel([])
#: ``AIXYZ_AGENT["AGENT"]`` of the turn tests.
attack_agent = ToolLoopAgent(
    instructions="You run the attack tools.",
    model="scripted",
    tools=[METERED_TOOL, FAILING_TOOL],
    max_steps=4,
)
STEP_UNITS = 800  # what one scripted model step (1000 in, 200 out) costs at RATES


@pytest.fixture
def turns(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    MODEL.reset()
    MODEL.usage = (1000, 200)
    agent = {
        "NAME": "Attack Agent",
        "DESCRIPTION": "Runs the attack tools.",
        "VERSION": "1.0.0",
        "UPTO": MAXIMUM,
        "TOKEN_PRICES": {"input": "$0.0005", "output": "$0.0015"},
        "AGENT": f"{__name__}.attack_agent",
    }
    with serve(MODEL.app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{model_url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        with _server(AIXYZ_AGENT=agent) as url:
            yield url


async def _say(base: str, account: LocalAccount, text: str) -> httpx.Response:
    from x402.http.clients.httpx import x402HttpxClient

    message = {
        "role": "user",
        "messageId": uuid.uuid4().hex,
        "parts": [{"kind": "text", "text": text}],
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": message}}
    async with x402HttpxClient(signer(account), base_url=base, timeout=60) as http:
        return await http.post("/agent", json=body)


async def test_a_metered_tool_in_a_turn_adds_its_charge_and_no_more(turns: str) -> None:
    account = Account.create()
    MODEL.calls = [(METERED_TOOL, {"key": "in-turn", "amount": "$0.003"})]
    response = await _say(turns, account, "note it")
    assert response.status_code == 200, response.text
    assert moved(account.address) == [(84532, 2 * STEP_UNITS + 3000)]
    assert await stored(account.address, "in-turn") == "by tool"


async def test_a_tool_charging_above_its_own_maximum_in_a_turn_is_refused_there(
    turns: str,
) -> None:
    """$0.06 is above the tool's $0.05: its charge() raises inside the turn, which goes on."""
    account = Account.create()
    MODEL.calls = [(METERED_TOOL, {"key": "over", "amount": "$0.06"})]
    response = await _say(turns, account, "note it")
    assert response.status_code == 200, response.text  # the model ran: the turn is charged
    assert moved(account.address) == [(84532, 2 * STEP_UNITS)]  # tokens, not the refused tool
    assert "above" in response.text  # the model was told
    assert await stored(account.address, "over") is None


@pytest.mark.parametrize(
    ("tool_name", "arguments"),
    [
        (METERED_TOOL, {"key": "lost", "amount": "fail"}),
        (FAILING_TOOL, {"key": "lost", "amount": "$0.04"}),
    ],
)
async def test_a_tool_that_fails_inside_a_turn_keeps_none_of_its_writes(
    turns: str, tool_name: str, arguments: dict[str, Any]
) -> None:
    account = Account.create()
    MODEL.calls = [(tool_name, arguments)]
    response = await _say(turns, account, "do it")
    assert response.status_code == 200, response.text
    assert moved(account.address) == [(84532, 2 * STEP_UNITS)]  # the tokens; the tool failed
    assert await stored(account.address, "lost") is None
