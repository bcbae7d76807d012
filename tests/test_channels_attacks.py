"""Attacks on payment channels, against a real server: whose channel, which amount, what spelling.

Each attack builds what a hostile client would send (from the SDK's own
client, then edited or re-signed) and checks that nothing ran, nothing was
charged and the answer is a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http import decode_payment_required_header, encode_payment_signature_header
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.batch_settlement.client import sign_voucher
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired

from aixyz_sessions import get_store
from aixyz_sessions.payments.runtime import get_runtime
from tests.options_app import METERED_TOOL
from tests.options_server import options_server, with_channels
from tests.test_channels_e2e import payer_client

pytestmark = pytest.mark.django_db(transaction=True)
PRICE = 10000


@pytest.fixture
def base() -> Iterator[str]:
    with options_server(with_channels()) as url:
        yield url


def _charged(payer: str) -> int:
    scheme = get_runtime().channel_scheme
    assert scheme is not None
    return sum(
        int(c.charged_cumulative_amount)
        for c in scheme.channel_storage.list()
        if c.channel_config.payer.lower() == payer.lower()
    )


async def charged(payer: str) -> int:
    return await asyncio.to_thread(_charged, payer)


async def _required(base: str, path: str = "/two-networks/") -> PaymentRequired:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get(path)
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return required


async def _opened(base: str, account: LocalAccount) -> x402Client:
    """A channel with one paid call on it; the client that opened it."""
    client = payer_client(account)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        first = await http.get("/two-networks/", params={"key": "open"})
    assert first.status_code == 200, first.text
    return client


async def _send(base: str, payload: dict[str, Any], key: str) -> httpx.Response:
    header = base64.b64encode(json.dumps(payload).encode()).decode()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        return await plain.get(
            "/two-networks/", params={"key": key}, headers={"PAYMENT-SIGNATURE": header}
        )


async def _next_voucher(base: str, client: x402Client) -> dict[str, Any]:
    payload = await client.create_payment_payload(await _required(base))
    assert isinstance(payload, PaymentPayload)
    dumped: dict[str, Any] = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
    assert dumped["payload"]["type"] == "voucher"
    return dumped


async def test_a_voucher_signed_by_someone_else_cannot_spend_a_payers_channel(base: str) -> None:
    victim, thief = Account.create(), Account.create()
    client = await _opened(base, victim)
    voucher = await _next_voucher(base, client)
    inner = voucher["payload"]["voucher"]
    forged = sign_voucher(
        EthAccountSigner(thief), inner["channelId"], inner["maxClaimableAmount"], "eip155:84532"
    )
    inner["signature"] = forged.signature
    answer = await _send(base, voucher, "stolen")
    assert answer.status_code == 402, answer.text
    assert await get_store().get(victim.address.lower(), "stolen") is None
    assert await charged(victim.address) == PRICE


async def test_a_channel_config_naming_another_payer_buys_nothing(base: str) -> None:
    """The thief names the victim as payer and itself as the voucher signer; no deposit made
    by the victim backs that channel, so the facilitator finds nothing to spend."""
    victim, thief = Account.create(), Account.create()
    await _opened(base, victim)
    client = payer_client(thief)
    required = await _required(base)
    offer = next(a for a in required.accepts if a.scheme == "batch-settlement")
    config = ChannelConfig(
        payer=victim.address,
        payer_authorizer=thief.address,
        receiver=offer.pay_to,
        receiver_authorizer=offer.extra["receiverAuthorizer"],
        token=offer.asset,
        withdraw_delay=offer.extra["withdrawDelay"],
        salt="0x" + "00" * 32,
    )
    channel_id = compute_channel_id(config, offer.network)
    signed = sign_voucher(EthAccountSigner(thief), channel_id, str(PRICE), offer.network)
    payload = await client.create_payment_payload(required.model_copy(update={"accepts": [offer]}))
    dumped = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
    dumped["payload"] = {
        "type": "voucher",
        "channelConfig": config.to_dict(),
        "voucher": {
            "channelId": channel_id,
            "maxClaimableAmount": str(PRICE),
            "signature": signed.signature,
        },
    }
    answer = await _send(base, dumped, "as-victim")
    assert answer.status_code == 402, answer.text
    assert await get_store().get(victim.address.lower(), "as-victim") is None


async def test_a_deposit_for_another_payer_is_refused(base: str) -> None:
    """A deposit's authorization is signed by the channel's payer: the thief's is refused."""
    victim, thief = Account.create(), Account.create()
    client = payer_client(thief)
    required = await _required(base)
    payload = await client.create_payment_payload(required)
    dumped = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
    assert dumped["payload"]["type"] == "deposit"
    dumped["payload"]["channelConfig"]["payer"] = victim.address
    answer = await _send(base, dumped, "deposit-as-victim")
    assert answer.status_code == 402, answer.text
    assert await get_store().get(victim.address.lower(), "deposit-as-victim") is None
    assert await charged(victim.address) == 0


async def test_a_channel_id_that_is_not_the_configs_hash_is_refused(base: str) -> None:
    account = Account.create()
    client = await _opened(base, account)
    voucher = await _next_voucher(base, client)
    voucher["payload"]["voucher"]["channelId"] = "0x" + "11" * 32
    answer = await _send(base, voucher, "wrong-id")
    assert answer.status_code == 402, answer.text
    assert await charged(account.address) == PRICE


@pytest.mark.parametrize(
    "amount",
    ["020000", "20000.0", "+20000", "2e4", " 20000", "1" + "0" * 90, "-20000", "0x4e20"],
)
async def test_another_spelling_of_the_amount_is_refused_cleanly(base: str, amount: str) -> None:
    account = Account.create()
    client = await _opened(base, account)
    voucher = await _next_voucher(base, client)
    assert voucher["payload"]["voucher"]["maxClaimableAmount"] == str(2 * PRICE)
    voucher["payload"]["voucher"]["maxClaimableAmount"] = amount
    answer = await _send(base, voucher, "spelled")
    assert 400 <= answer.status_code < 500, answer.text
    assert await get_store().get(account.address.lower(), "spelled") is None
    assert await charged(account.address) == PRICE


async def test_a_voucher_under_another_scheme_is_refused(base: str) -> None:
    """A channel payload relabelled as an exact payment: verified as exact, it has nothing."""
    account = Account.create()
    client = await _opened(base, account)
    voucher = await _next_voucher(base, client)
    required = await _required(base)
    exact = next(a for a in required.accepts if a.scheme == "exact")
    voucher["accepted"] = json.loads(exact.model_dump_json(by_alias=True, exclude_none=True))
    answer = await _send(base, voucher, "relabelled")
    assert answer.status_code == 402, answer.text
    assert await charged(account.address) == PRICE


async def test_a_cheap_voucher_does_not_pay_a_dearer_route(base: str) -> None:
    """The metered view costs up to $0.05: a voucher for $0.01 more is the wrong amount."""
    account = Account.create()
    client = await _opened(base, account)
    voucher = await _next_voucher(base, client)
    metered = await _required(base, "/metered/")
    offer = next(a for a in metered.accepts if a.scheme == "batch-settlement")
    voucher["accepted"] = json.loads(offer.model_dump_json(by_alias=True, exclude_none=True))
    header = encode_payment_signature_header(PaymentPayload.model_validate(voucher))
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        answer = await plain.post(
            "/metered/", json={"key": "dear"}, headers={"PAYMENT-SIGNATURE": header}
        )
    assert answer.status_code == 402, answer.text
    assert await get_store().get(account.address.lower(), "dear") is None
    assert await charged(account.address) == PRICE


async def test_a_refund_is_asked_over_http_and_gives_back_what_was_not_charged(
    base: str,
) -> None:
    account = Account.create()
    client = await _opened(base, account)
    scheme = client._schemes["eip155:*"]["batch-settlement"]  # type: ignore[attr-defined]
    settled = await asyncio.to_thread(scheme.refund, f"{base}/two-networks/")
    assert settled.success, settled
    from aixyz_sessions.payments.local import get_local_facilitator

    ledger = get_local_facilitator().ledger
    back = [t for t in ledger.transfers if t.pay_to.lower() == account.address.lower()]
    assert len(back) == 1 and back[0].amount > 0


async def test_a_refund_over_the_websocket_is_refused_before_anything_happens(base: str) -> None:
    from x402.mechanisms.evm.batch_settlement.client import (
        BatchSettlementEvmScheme as ChannelClientScheme,
    )

    account = Account.create()
    client = await _opened(base, account)
    voucher = await _next_voucher(base, client)
    voucher["payload"]["type"] = "refund"
    voucher["payload"]["voucher"]["maxClaimableAmount"] = str(PRICE)
    assert ChannelClientScheme.scheme == "batch-settlement"
    async with websockets.connect(base.replace("http", "ws") + "/ws/tools/") as ws:
        await ws.send(
            json.dumps(
                {"id": 1, "tool": METERED_TOOL, "arguments": {"key": "r"}, "payment": voucher}
            )
        )
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert reply["error"]["code"] == "invalid_payment", reply
    assert "refund" in reply["error"]["message"]
    from aixyz_sessions.payments.local import get_local_facilitator

    ledger = get_local_facilitator().ledger
    assert not [t for t in ledger.transfers if t.pay_to.lower() == account.address.lower()]
