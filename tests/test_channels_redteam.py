"""Red-team attacks on payment channels (x402 ``batch-settlement``), against a real server.

Complements tests/test_channels_attacks.py (another signer, another payer's
config, deposit for another payer, wrong channel id, other spellings of the
amount, relabelled scheme, cheap voucher on a dearer route, refund over the
WebSocket). Each test builds what a hostile client would send and checks what
SHOULD happen: a 4xx (never a 500), nothing charged, nothing written, and the
owner's next call still works. Two attacks found weaknesses, now fixed
(``# FOUND, FIXED:`` above each): the corrective 402 told strangers a payer's
channel state and latest voucher, and a public (claimed) voucher could force a
refund of an idle channel.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http import decode_payment_required_header
from x402.http.clients.httpx import x402HttpxClient
from x402.mcp import MCP_PAYMENT_META_KEY
from x402.mechanisms.evm.batch_settlement.client import sign_voucher
from x402.mechanisms.evm.batch_settlement.client.config import DEFAULT_SALT
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired

from aixyz_sessions import get_store
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import get_runtime
from tests import mcp_helpers
from tests.options_app import METERED_TOOL
from tests.options_server import options_server, with_channels
from tests.test_channels_e2e import payer_client

pytestmark = pytest.mark.django_db(transaction=True)
PRICE = 10000  # $0.01 of USDC, /two-networks/
AGENT_MESSAGE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "message/send",
    "params": {
        "message": {
            "role": "user",
            "messageId": "m" * 16,
            "parts": [
                {"kind": "data", "data": {"tool": "opt_metered", "arguments": {"key": "ag"}}}
            ],
        }
    },
}
NETWORK = "eip155:84532"


@pytest.fixture
def base() -> Iterator[str]:
    with options_server(with_channels()) as url:
        yield url


# -- helpers -----------------------------------------------------------------------------------


def _channels(payer: str) -> list[Any]:
    scheme = get_runtime().channel_scheme
    assert scheme is not None
    return [
        c for c in scheme.channel_storage.list() if c.channel_config.payer.lower() == payer.lower()
    ]


async def channels(payer: str) -> list[Any]:
    return await asyncio.to_thread(_channels, payer)


async def charged(payer: str) -> int:
    return sum(int(c.charged_cumulative_amount) for c in await channels(payer))


async def written(payer: str, key: str) -> Any:
    return await get_store().get(payer.lower(), key)


def refunds_to(payer: str) -> int:
    ledger = get_local_facilitator().ledger
    return sum(t.amount for t in ledger.transfers if t.pay_to.lower() == payer.lower())


async def required_for(base: str, path: str = "/two-networks/") -> PaymentRequired:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        if path == "/agent":
            unpaid = await plain.post(path, json=AGENT_MESSAGE)
        else:
            unpaid = await plain.get(path)
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return required


async def opened(base: str, account: LocalAccount, calls: int = 1) -> x402Client:
    """A channel with ``calls`` paid calls on /two-networks/; the client that opened it."""
    client = payer_client(account)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        for index in range(calls):
            answer = await http.get("/two-networks/", params={"key": f"open{index}"})
            assert answer.status_code == 200, answer.text
    return client


async def owner_still_pays(base: str, client: x402Client, account: LocalAccount) -> None:
    """The owner's next call through its channel works and is charged once."""
    before = await charged(account.address)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        answer = await http.get("/two-networks/", params={"key": "owner-after"})
    assert answer.status_code == 200, answer.text
    assert await charged(account.address) == before + PRICE
    assert await written(account.address, "owner-after") == "1"


def dumped(payload: PaymentPayload) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
    return data


async def next_payload(base: str, client: x402Client, path: str = "/two-networks/") -> dict:
    payload = await client.create_payment_payload(await required_for(base, path))
    assert isinstance(payload, PaymentPayload)
    return dumped(payload)


def header_of(payload: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


async def send(
    base: str, payload: dict[str, Any] | str, key: str, path: str = "/two-networks/"
) -> httpx.Response:
    header = payload if isinstance(payload, str) else header_of(payload)
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        return await plain.get(path, params={"key": key}, headers={"PAYMENT-SIGNATURE": header})


def is_client_error(answer: httpx.Response) -> bool:
    return 400 <= answer.status_code < 500


async def public_config(base: str, victim: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The victim's channel config as anybody can compute it: its address, the server's
    public 402 and the SDK client's default salt. Returns (config, channel id, offer)."""
    required = await required_for(base)
    offer = next(
        a for a in required.accepts if a.scheme == "batch-settlement" and a.network == NETWORK
    )
    config = ChannelConfig(
        payer=victim,
        payer_authorizer=victim,
        receiver=offer.pay_to,
        receiver_authorizer=offer.extra["receiverAuthorizer"],
        token=offer.asset,
        withdraw_delay=offer.extra["withdrawDelay"],
        salt=DEFAULT_SALT,
    )
    return config.to_dict(), compute_channel_id(config, NETWORK), dumped_offer(offer)


def dumped_offer(offer: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(offer.model_dump_json(by_alias=True, exclude_none=True))
    return data


# -- the corrective 402 and forced refunds ----------------------------------------------------


# FOUND, FIXED: the corrective 402 ("cumulative amount mismatch") is built in the SDK's
# before_verify, before any signature is checked. Anyone who knows a payer's
# address computes its channel config (the 402 is public, the SDK's default salt is
# zero), sends a voucher with a junk signature and a wrong amount, and gets back the
# payer's off-chain state: chargedCumulativeAmount (its usage) and voucherState
# (its latest signed voucher: signature and signedMaxClaimable).
async def test_a_stranger_does_not_read_a_payers_channel_state_from_the_corrective_402(
    base: str,
) -> None:
    victim = Account.create()
    await opened(base, victim, calls=3)
    config, channel_id, offer = await public_config(base, victim.address)
    stranger = {
        "x402Version": 2,
        "accepted": offer,
        "payload": {
            "type": "voucher",
            "channelConfig": config,
            "voucher": {
                "channelId": channel_id,
                "maxClaimableAmount": "1",
                "signature": "0x" + "11" * 65,
            },
        },
    }
    answer = await send(base, stranger, "peek")
    assert answer.status_code == 402, answer.text
    required = decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"])
    leaked = [a.extra for a in required.accepts if a.extra and "channelState" in a.extra]
    assert not leaked, f"another payer's channel state leaked: {leaked}"
    # Nor does the refused correction leave the SDK's per-request snapshot behind:
    # a stranger's probes must not pile up in the server's memory.
    scheme = get_runtime().channel_scheme
    assert scheme is not None
    before = len(scheme._request_contexts)
    for index in range(20):
        await send(base, stranger, f"peek{index}")
    assert len(scheme._request_contexts) <= before


# FOUND, FIXED: with the victim's latest voucher (leaked by the corrective 402 above, or
# read from an on-chain claim of an idle channel) a stranger asks a cooperative
# refund of the victim's channel over HTTP. The refund payload is the payer's
# latest voucher again; nothing else proves the payer asked. The server claims,
# refunds the unspent deposit to the victim and deletes the channel: the owner's
# channel is closed under it. Seen: 200 "Refund acknowledged", 80000 of the 100000
# deposit sent back to the victim, the channel row deleted; the owner's SDK client then
# gets 402 invalid_batch_settlement_evm_cumulative_exceeds_balance on every call and
# does not deposit again by itself (a griefing stranger can repeat this at will).
async def test_a_stranger_cannot_force_a_refund_of_a_payers_channel(base: str) -> None:
    victim = Account.create()
    client = await opened(base, victim, calls=2)
    config, channel_id, offer = await public_config(base, victim.address)
    probe = {
        "x402Version": 2,
        "accepted": offer,
        "payload": {
            "type": "voucher",
            "channelConfig": config,
            "voucher": {
                "channelId": channel_id,
                "maxClaimableAmount": "1",
                "signature": "0x" + "11" * 65,
            },
        },
    }
    answer = await send(base, probe, "peek")
    required = decode_payment_required_header(answer.headers["PAYMENT-REQUIRED"])
    extra = next((a.extra for a in required.accepts if a.extra and "voucherState" in a.extra), None)
    if extra is None:  # the leak is closed: claim, and read the voucher the claim made public
        from aixyz_sessions.channels.operations import run_pass

        scheme = get_runtime().channel_scheme
        settings = get_runtime().config.batch_settlement
        assert scheme is not None and settings is not None
        done = await asyncio.to_thread(
            run_pass, scheme.channel_storage, settings, everything=True, refund=False
        )
        assert len(done.claims) == 1, done
        (channel,) = await channels(victim.address)
        assert channel.total_claimed == channel.charged_cumulative_amount
        extra = {
            "voucherState": {
                "signedMaxClaimable": channel.signed_max_claimable,
                "signature": channel.signature,
            }
        }
    refund = {
        "x402Version": 2,
        "accepted": offer,
        "payload": {
            "type": "refund",
            "channelConfig": config,
            "voucher": {
                "channelId": channel_id,
                "maxClaimableAmount": extra["voucherState"]["signedMaxClaimable"],
                "signature": extra["voucherState"]["signature"],
            },
        },
    }
    before = refunds_to(victim.address)
    forced = await send(base, refund, "refund")
    what = (
        forced.status_code,
        forced.text,
        refunds_to(victim.address) - before,
        [(c.balance, c.charged_cumulative_amount) for c in await channels(victim.address)],
    )
    assert is_client_error(forced), what
    assert refunds_to(victim.address) == before, what
    assert len(await channels(victim.address)) == 1, what
    await owner_still_pays(base, client, victim)


async def test_a_strangers_refund_that_fails_does_not_lock_the_owners_channel(
    base: str,
) -> None:
    """A refund that reserves the channel then fails to settle (an amount above what is
    left) must release the reservation: the owner's next call still goes through."""
    victim = Account.create()
    client = await opened(base, victim)
    config, channel_id, offer = await public_config(base, victim.address)
    (channel,) = await channels(victim.address)
    refund = {
        "x402Version": 2,
        "accepted": offer,
        "payload": {
            "type": "refund",
            "amount": str(10**12),
            "channelConfig": config,
            "voucher": {
                "channelId": channel_id,
                "maxClaimableAmount": channel.signed_max_claimable,
                "signature": channel.signature,
            },
        },
    }
    failed = await send(base, refund, "refund")
    assert failed.status_code != 200 and failed.status_code < 500, failed.text
    assert refunds_to(victim.address) == 0
    await owner_still_pays(base, client, victim)


# -- forged vouchers must not lock the owner out ----------------------------------------------


async def test_a_forged_voucher_with_the_right_amount_leaves_the_channel_usable(
    base: str,
) -> None:
    victim, thief = Account.create(), Account.create()
    client = await opened(base, victim)
    voucher = await next_payload(base, client)
    inner = voucher["payload"]["voucher"]
    forged = sign_voucher(
        EthAccountSigner(thief), inner["channelId"], inner["maxClaimableAmount"], NETWORK
    )
    inner["signature"] = forged.signature
    for _ in range(3):
        answer = await send(base, voucher, "forged")
        assert answer.status_code == 402, answer.text
    (channel,) = await channels(victim.address)
    assert channel.pending_request is None
    assert await written(victim.address, "forged") is None
    await owner_still_pays(base, client, victim)


async def test_an_owners_voucher_refused_by_the_shape_check_does_not_keep_the_channel(
    base: str,
) -> None:
    """A voucher the SDK verifies (its signature covers the integer) but the app refuses
    ("020000"): after_verify aborts after the scheme reserved; the reservation goes."""
    account = Account.create()
    client = await opened(base, account)
    voucher = await next_payload(base, client)
    voucher["payload"]["voucher"]["maxClaimableAmount"] = "0" + str(2 * PRICE)
    answer = await send(base, voucher, "zero-led")
    assert is_client_error(answer), answer.text
    (channel,) = await channels(account.address)
    assert channel.pending_request is None
    await owner_still_pays(base, client, account)


# -- deposits ----------------------------------------------------------------------------------


async def _first_deposit(base: str, account: LocalAccount) -> dict[str, Any]:
    payload = await next_payload(base, payer_client(account))
    assert payload["payload"]["type"] == "deposit"
    return payload


@pytest.mark.parametrize("amount", ["0", "-1000000", "1" + "0" * 40, "abc", "", "1e6", None])
async def test_a_deposit_with_a_bad_amount_is_refused_cleanly(
    base: str, amount: str | None
) -> None:
    account = Account.create()
    deposit = await _first_deposit(base, account)
    if amount is None:
        del deposit["payload"]["deposit"]["amount"]
    else:
        deposit["payload"]["deposit"]["amount"] = amount
    before = get_local_facilitator().ledger.transaction_count(kind="deposit")
    answer = await send(base, deposit, "bad-deposit")
    assert is_client_error(answer), (answer.status_code, answer.text)
    assert await written(account.address, "bad-deposit") is None
    assert await charged(account.address) == 0
    assert get_local_facilitator().ledger.transaction_count(kind="deposit") == before


async def test_a_deposit_whose_voucher_is_signed_by_someone_else_is_refused(base: str) -> None:
    account, thief = Account.create(), Account.create()
    deposit = await _first_deposit(base, account)
    inner = deposit["payload"]["voucher"]
    inner["signature"] = sign_voucher(
        EthAccountSigner(thief), inner["channelId"], inner["maxClaimableAmount"], NETWORK
    ).signature
    answer = await send(base, deposit, "bad-voucher")
    assert answer.status_code == 402, answer.text
    assert await written(account.address, "bad-voucher") is None
    assert await charged(account.address) == 0


async def test_a_deposit_smaller_than_its_voucher_buys_nothing(base: str) -> None:
    """One atomic unit deposited, a voucher for the full price: the channel cannot pay it."""
    account = Account.create()
    deposit = await _first_deposit(base, account)
    deposit["payload"]["deposit"]["amount"] = "1"
    answer = await send(base, deposit, "tiny")
    assert is_client_error(answer), answer.text
    assert await written(account.address, "tiny") is None
    assert await charged(account.address) == 0


async def test_a_deposit_with_a_missing_authorization_is_refused(base: str) -> None:
    account = Account.create()
    deposit = await _first_deposit(base, account)
    deposit["payload"]["deposit"].pop("authorization", None)
    answer = await send(base, deposit, "no-auth")
    assert is_client_error(answer), answer.text
    assert await charged(account.address) == 0


async def test_a_deposit_replayed_opens_nothing_twice(base: str) -> None:
    """The same deposit payload sent twice: one deposit on chain, one call charged."""
    account = Account.create()
    deposit = await _first_deposit(base, account)
    ledger = get_local_facilitator().ledger
    before = ledger.transaction_count(kind="deposit")
    first = await send(base, deposit, "d1")
    assert first.status_code == 200, first.text
    again = await send(base, deposit, "d2")
    assert is_client_error(again), again.text
    assert ledger.transaction_count(kind="deposit") - before == 1
    assert await charged(account.address) == PRICE
    assert await written(account.address, "d2") is None


# -- malformed payloads: missing fields, doubled keys, depth, size -----------------------------


@pytest.mark.parametrize(
    "mutation",
    [
        "no-signature",
        "signature-not-hex",
        "signature-int",
        "no-config",
        "config-list",
        "config-missing-salt",
        "config-bad-delay",
        "no-voucher",
        "amount-int",
        "amount-null",
        "type-unknown",
        "type-list",
        "accepted-missing",
        "accepted-amount-zero",
        "accepted-network-other",
        "payload-string",
    ],
)
async def test_a_malformed_voucher_is_a_clean_4xx(base: str, mutation: str) -> None:
    account = Account.create()
    client = await opened(base, account)
    voucher = await next_payload(base, client)
    inner = voucher["payload"]
    if mutation == "no-signature":
        del inner["voucher"]["signature"]
    elif mutation == "signature-not-hex":
        inner["voucher"]["signature"] = "0xzz"
    elif mutation == "signature-int":
        inner["voucher"]["signature"] = 12345
    elif mutation == "no-config":
        del inner["channelConfig"]
    elif mutation == "config-list":
        inner["channelConfig"] = [1, 2, 3]
    elif mutation == "config-missing-salt":
        del inner["channelConfig"]["salt"]
    elif mutation == "config-bad-delay":
        inner["channelConfig"]["withdrawDelay"] = "soon"
    elif mutation == "no-voucher":
        del inner["voucher"]
    elif mutation == "amount-int":
        inner["voucher"]["maxClaimableAmount"] = 2 * PRICE
    elif mutation == "amount-null":
        inner["voucher"]["maxClaimableAmount"] = None
    elif mutation == "type-unknown":
        inner["type"] = "gift"
    elif mutation == "type-list":
        inner["type"] = ["voucher"]
    elif mutation == "accepted-missing":
        del voucher["accepted"]
    elif mutation == "accepted-amount-zero":
        voucher["accepted"]["amount"] = "0"
    elif mutation == "accepted-network-other":
        voucher["accepted"]["network"] = "eip155:8453"
    elif mutation == "payload-string":
        voucher["payload"] = "voucher"
    answer = await send(base, voucher, "malformed")
    assert is_client_error(answer), (answer.status_code, answer.text)
    assert await written(account.address, "malformed") is None
    assert await charged(account.address) == PRICE
    await owner_still_pays(base, client, account)


async def test_doubled_json_keys_are_read_one_way_only(base: str) -> None:
    """``maxClaimableAmount`` twice (a cheap one first, the signed one last), and ``payer``
    twice (the victim first): whatever a parser keeps, nothing is charged twice or to the
    victim, and nothing 500s."""
    account, victim = Account.create(), Account.create()
    client = await opened(base, account)
    voucher = await next_payload(base, client)
    text = json.dumps(voucher)
    amount = voucher["payload"]["voucher"]["maxClaimableAmount"]
    text = text.replace(
        f'"maxClaimableAmount": "{amount}"',
        f'"maxClaimableAmount": "1", "maxClaimableAmount": "{amount}"',
    )
    payer = voucher["payload"]["channelConfig"]["payer"]
    text = text.replace(f'"payer": "{payer}"', f'"payer": "{victim.address}", "payer": "{payer}"')
    header = base64.b64encode(text.encode()).decode()
    answer = await send(base, header, "doubled")
    assert answer.status_code in (200, 400, 402), answer.text
    assert await written(victim.address, "doubled") is None
    assert await charged(victim.address) == 0
    if answer.status_code == 200:
        assert answer.json()["payer"] == account.address
        assert await charged(account.address) == 2 * PRICE
    else:
        assert await charged(account.address) == PRICE


async def test_deeply_nested_extensions_are_refused_before_parsing(base: str) -> None:
    account = Account.create()
    client = await opened(base, account)
    voucher = await next_payload(base, client)
    deep = "[" * 3000 + '"x"' + "]" * 3000
    text = json.dumps({**voucher, "extensions": {"payment-identifier": {"info": "DEEP"}}})
    text = text.replace('"DEEP"', deep)
    header = base64.b64encode(text.encode()).decode()
    answer = await send(base, header, "deep")
    assert is_client_error(answer), (answer.status_code, answer.text[:200])
    assert await charged(account.address) == PRICE
    await owner_still_pays(base, client, account)


async def test_an_oversize_payment_header_is_refused(base: str) -> None:
    account = Account.create()
    client = await opened(base, account)
    voucher = await next_payload(base, client)
    voucher["extensions"] = {"padding": {"info": "p" * 20000}}
    answer = await send(base, voucher, "huge")
    assert is_client_error(answer), (answer.status_code, answer.text[:200])
    assert await charged(account.address) == PRICE
    await owner_still_pays(base, client, account)


# -- payment identifiers (safe retries) with a channel -----------------------------------------


async def with_id(
    base: str, payload: dict[str, Any], payment_id: str, path: str = "/two-networks/"
) -> dict[str, Any]:
    """``payload`` with a payment-identifier id (the server's declaration echoed)."""
    from x402.extensions.payment_identifier import append_payment_identifier_to_extensions

    required = await required_for(base, path)
    extensions: dict[str, Any] = dict(required.extensions or {})
    append_payment_identifier_to_extensions(extensions, payment_id)
    return {**payload, "extensions": {"payment-identifier": extensions["payment-identifier"]}}


async def test_a_retry_with_a_payment_identifier_is_not_charged_again(base: str) -> None:
    account = Account.create()
    client = await opened(base, account)
    voucher = await with_id(base, await next_payload(base, client), "retry-" + "a" * 20)
    first = await send(base, voucher, "once")
    assert first.status_code == 200, first.text
    again = await send(base, voucher, "once")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await charged(account.address) == 2 * PRICE
    # The same id and voucher for another request: a conflict, never a second run.
    other = await send(base, voucher, "other")
    assert other.status_code == 409, other.text
    assert await written(account.address, "other") is None
    assert await charged(account.address) == 2 * PRICE


async def test_a_retry_of_a_failed_call_runs_once_and_is_charged_once(base: str) -> None:
    account = Account.create()
    client = payer_client(account)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        ok = await http.post("/metered/", json={"key": "open", "charge": "$0.001"})
        assert ok.status_code == 200, ok.text
    payload = await with_id(
        base, await next_payload(base, client, "/metered/"), "failed-" + "b" * 20, "/metered/"
    )
    other_id = await with_id(base, payload, "other-" + "c" * 20, "/metered/")
    header = header_of(payload)
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        failed = await plain.post(
            "/metered/", json={"key": "f", "fail": True}, headers={"PAYMENT-SIGNATURE": header}
        )
        assert failed.status_code == 500
        assert await charged(account.address) == 1000
        retried = await plain.post(
            "/metered/", json={"key": "f", "fail": True}, headers={"PAYMENT-SIGNATURE": header}
        )
        assert retried.status_code == 500
        assert await charged(account.address) == 1000
        fine = await plain.post(
            "/metered/",
            json={"key": "g", "charge": "$0.002"},
            headers={"PAYMENT-SIGNATURE": header_of(other_id)},
        )
    assert fine.status_code == 200, fine.text
    assert await charged(account.address) == 3000
    assert await written(account.address, "f") is None


async def test_a_strangers_payment_identifier_does_not_reach_a_payers_kept_answer(
    base: str,
) -> None:
    """The kept answer is looked up by the payer the payload names (unverified): a stranger
    naming the victim, with the victim's id but its own payment, gets a conflict at most."""
    victim, thief = Account.create(), Account.create()
    client = await opened(base, victim)
    payment_id = "victim-" + "d" * 20
    voucher = await with_id(base, await next_payload(base, client), payment_id)
    first = await send(base, voucher, "secret")
    assert first.status_code == 200, first.text
    thief_client = await opened(base, thief)
    forged = await with_id(base, await next_payload(base, thief_client), payment_id)
    forged["payload"]["channelConfig"]["payer"] = victim.address
    answer = await send(base, forged, "secret")
    assert is_client_error(answer), answer.text
    assert "payer" not in answer.text or thief.address not in answer.text
    assert victim.address not in answer.text


# -- refunds, then old vouchers ----------------------------------------------------------------


async def test_after_a_refund_old_vouchers_buy_nothing(base: str) -> None:
    account = Account.create()
    client = await opened(base, account)
    old = await next_payload(base, client)  # signed, never sent: the client moves on
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        second = await http.get("/two-networks/", params={"key": "before-refund"})
    assert second.status_code == 200, second.text
    scheme = client._schemes["eip155:*"]["batch-settlement"]  # type: ignore[attr-defined]
    settled = await asyncio.to_thread(scheme.refund, f"{base}/two-networks/")
    assert settled.success, settled
    for key in ("after-1", "after-2"):
        replay = await send(base, old, key)
        assert is_client_error(replay), replay.text
        assert await written(account.address, key) is None
    # A fresh voucher one step on is not backed by the drained channel either.
    inner = old["payload"]["voucher"]
    bumped = sign_voucher(
        EthAccountSigner(account), inner["channelId"], str(3 * PRICE), NETWORK
    ).signature
    old["payload"]["voucher"] = {**inner, "maxClaimableAmount": str(3 * PRICE), "signature": bumped}
    beyond = await send(base, old, "after-3")
    assert is_client_error(beyond), beyond.text
    assert await written(account.address, "after-3") is None


async def test_a_refund_over_mcp_is_refused(base: str) -> None:
    account = Account.create()
    client = await opened(base, account)
    voucher = await next_payload(base, client)
    voucher["payload"]["type"] = "refund"
    voucher["payload"]["voucher"]["maxClaimableAmount"] = str(PRICE)
    async with mcp_helpers.connect(base) as session:
        result = await session.call_tool(
            METERED_TOOL, {"key": "r"}, meta={MCP_PAYMENT_META_KEY: voucher}
        )
    assert result.isError, result
    assert refunds_to(account.address) == 0
    assert len(await channels(account.address)) == 1


async def test_a_refund_to_the_agent_does_not_run_the_agent_or_write(base: str) -> None:
    """A refund sent to /agent (HTTP) gets the refund (or a 4xx), never the agent's work."""
    account = Account.create()
    client = await opened(base, account)
    voucher = await next_payload(base, client, "/agent")
    voucher["payload"]["type"] = "refund"
    voucher["payload"]["voucher"]["maxClaimableAmount"] = str(PRICE)
    # the refund voucher is the payer's latest one, as the SDK's client sends it
    (channel,) = await channels(account.address)
    voucher["payload"]["voucher"]["signature"] = channel.signature
    message = AGENT_MESSAGE
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        answer = await plain.post(
            "/agent", json=message, headers={"PAYMENT-SIGNATURE": header_of(voucher)}
        )
    assert answer.status_code < 500, answer.text
    assert await written(account.address, "ag") is None
    if answer.status_code == 200:  # the owner's own refund: what was not charged goes back
        assert "Refund acknowledged" in answer.text and "result" not in answer.json()
        assert refunds_to(account.address) > 0
    else:
        assert await charged(account.address) == PRICE


# -- concurrency across routes -----------------------------------------------------------------


async def test_concurrent_vouchers_on_two_routes_charge_one_call(base: str) -> None:
    """The owner signs the next voucher for two routes and sends both at once: one runs."""
    account = Account.create()
    client = await opened(base, account)
    cheap = await next_payload(base, client)
    dear = await next_payload(base, client, "/metered/")
    assert cheap["payload"]["voucher"]["maxClaimableAmount"] == str(2 * PRICE)
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        answers = await asyncio.gather(
            plain.get(
                "/two-networks/",
                params={"key": "c1"},
                headers={"PAYMENT-SIGNATURE": header_of(cheap)},
            ),
            plain.post(
                "/metered/",
                json={"key": "c2", "charge": "$0.001"},
                headers={"PAYMENT-SIGNATURE": header_of(dear)},
            ),
            plain.get(
                "/two-networks/",
                params={"key": "c3"},
                headers={"PAYMENT-SIGNATURE": header_of(cheap)},
            ),
        )
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 1 and all(c in (200, 402) for c in codes), codes
    total = await charged(account.address)
    assert total in (2 * PRICE, PRICE + 1000), total
    ran = [k for k in ("c1", "c2", "c3") if await written(account.address, k) is not None]
    assert len(ran) == 1, ran
    (channel,) = await channels(account.address)
    assert channel.pending_request is None


async def test_a_payer_with_two_channels_is_charged_on_the_one_it_pays_with(base: str) -> None:
    account = Account.create()
    first = await opened(base, account)
    second = payer_client(account, salt="0x" + "22" * 32)
    async with x402HttpxClient(second, base_url=base, timeout=30) as http:
        answer = await http.get("/two-networks/", params={"key": "second"})
    assert answer.status_code == 200, answer.text
    assert sorted(int(c.charged_cumulative_amount) for c in await channels(account.address)) == [
        PRICE,
        PRICE,
    ]
    # a voucher of the first channel re-labelled with the second's id: refused
    voucher = await next_payload(base, first)
    (other,) = [
        c
        for c in await channels(account.address)
        if c.channel_id != voucher["payload"]["voucher"]["channelId"].lower()
    ]
    voucher["payload"]["voucher"]["channelId"] = other.channel_id
    mixed = await send(base, voucher, "mixed")
    assert is_client_error(mixed), mixed.text
    assert await charged(account.address) == 2 * PRICE


# -- metered tools through a channel ----------------------------------------------------------


async def test_a_metered_tool_charging_above_its_maximum_charges_nothing(base: str) -> None:
    account = Account.create()
    client = payer_client(account)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        ok = await http.post(f"/tools/{METERED_TOOL}", json={"key": "k", "amount": "$0.001"})
        assert ok.status_code == 200, ok.text
        over = await http.post(f"/tools/{METERED_TOOL}", json={"key": "o", "amount": "$0.06"})
        assert over.status_code != 200 and over.status_code < 600
        assert "PAYMENT-RESPONSE" not in over.headers or over.status_code >= 400
        after = await http.post(f"/tools/{METERED_TOOL}", json={"key": "a", "amount": "$0.002"})
        assert after.status_code == 200, after.text
    assert await charged(account.address) == 3000
    assert await written(account.address, "o") is None


async def test_a_metered_route_cannot_be_paid_with_a_voucher_for_less_than_its_maximum(
    base: str,
) -> None:
    """The payer signs base + what it expects to be charged ($0.001), not the maximum."""
    account = Account.create()
    client = payer_client(account)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        ok = await http.post("/metered/", json={"key": "open", "charge": "$0.001"})
        assert ok.status_code == 200, ok.text
    payload = await next_payload(base, client, "/metered/")
    inner = payload["payload"]["voucher"]
    low = str(1000 + 1000)
    inner["signature"] = sign_voucher(
        EthAccountSigner(account), inner["channelId"], low, NETWORK
    ).signature
    inner["maxClaimableAmount"] = low
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        answer = await plain.post(
            "/metered/",
            json={"key": "cheap", "charge": "$0.001"},
            headers={"PAYMENT-SIGNATURE": header_of(payload)},
        )
    assert answer.status_code == 402, answer.text
    assert await written(account.address, "cheap") is None
    assert await charged(account.address) == 1000
