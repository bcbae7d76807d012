"""The payment signals (``aixyz_sessions.signals``): each event once, on every transport.

A real server on loopback (``tests.options_server``); the metered tool charges
$0.0123 of its $0.05 maximum, so ``payment_verified`` carries 50000 and
``payment_settled`` 12300. Receivers record what they get.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.dispatch import Signal
from eth_account import Account
from x402.http import decode_payment_required_header, encode_payment_signature_header
from x402.http.clients.httpx import x402HttpxClient
from x402.schemas import PaymentRequired

from aixyz_sessions import signals
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.paid_call import PaidCall
from tests.options_app import METERED_TOOL
from tests.options_server import options_server, with_channels
from tests.signal_helpers import names
from tests.test_channels_e2e import payer_client
from tests.test_payment_options_e2e import TRANSPORTS, signer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def base() -> Iterator[str]:
    with options_server() as url:
        yield url


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_a_paid_call_is_verified_then_settled_once_on_every_transport(
    base: str, transport: str, heard: list[tuple[str, dict[str, Any]]]
) -> None:
    account = Account.create()
    assert await TRANSPORTS[transport](base, account, {"key": "k", "amount": "$0.0123"}) == "12300"
    assert names(heard) == ["payment_verified", "payment_settled"], heard
    (_, verified), (_, settled) = heard
    common = {
        "payer": account.address,
        "scheme": "upto",
        "network": "eip155:84532",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    }
    assert verified == {**common, "resource": verified["resource"], "amount": 50000}
    assert METERED_TOOL in verified["resource"] or verified["resource"] == "/agent"
    assert settled["amount"] == 12300 and settled["transaction"].startswith("0x")
    assert {k: settled[k] for k in common} == common


async def test_a_refused_payment_is_said_once_and_a_replay_says_why(
    base: str, heard: list[tuple[str, dict[str, Any]]]
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        signed = await signer(Account.create()).create_payment_payload(required)
        forged = signed.model_copy(deep=True)
        forged.payload["signature"] = "0x" + "11" * 65  # no longer the payer's
        refused = await plain.get(
            "/two-networks/", headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(forged)}
        )
        assert refused.status_code == 402
        assert names(heard) == ["payment_refused"]
        assert heard[0][1]["resource"] and heard[0][1]["replayed"] is False
        heard.clear()
        payment = encode_payment_signature_header(signed)
        first = await plain.get("/two-networks/", headers={"PAYMENT-SIGNATURE": payment})
        again = await plain.get("/two-networks/", headers={"PAYMENT-SIGNATURE": payment})
    assert first.status_code == 200 and again.status_code >= 400
    assert names(heard) == ["payment_verified", "payment_settled", "payment_refused"]
    # Settled, its nonce is spent on chain: the facilitator refuses it, and says why.
    assert "nonce_already_used" in heard[2][1]["reason"]


async def test_a_settlement_that_fails_is_said_once_and_nothing_settles(
    base: str, heard: list[tuple[str, dict[str, Any]]]
) -> None:
    get_local_facilitator().ledger.fail_settlements = "insufficient_funds"
    account = Account.create()
    async with x402HttpxClient(signer(account), base_url=base, timeout=30) as http:
        response = await http.get("/two-networks/", params={"key": "k"})
    assert response.status_code >= 400
    assert names(heard) == ["payment_verified", "payment_settle_failed"], heard
    failed = heard[1][1]
    assert failed["payer"] == account.address and failed["scheme"] == "exact"
    assert failed["reason"] == "transaction_failed"  # the SDK's reason


async def test_a_kept_answer_and_its_replay_are_said_once_each(
    base: str, heard: list[tuple[str, dict[str, Any]]]
) -> None:
    from tests.test_paid_work_e2e import _with_payment_id

    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/", params={"key": "once"})
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        header = encode_payment_signature_header(_with_payment_id(required, account))
        first = await plain.get(
            "/two-networks/", params={"key": "once"}, headers={"PAYMENT-SIGNATURE": header}
        )
        retry = await plain.get(
            "/two-networks/", params={"key": "once"}, headers={"PAYMENT-SIGNATURE": header}
        )
    assert first.status_code == retry.status_code == 200
    assert first.json() == retry.json()
    assert names(heard) == [
        "payment_verified",
        "payment_settled",
        "answer_kept",
        "payment_replayed",
    ], heard
    assert heard[2][1]["payer"] == heard[3][1]["payer"] == account.address.lower()


async def test_a_sign_in_is_said_once(heard: list[tuple[str, dict[str, Any]]]) -> None:
    from aixyz_sessions.testing import PayingClient

    with options_server():
        client = PayingClient()
        paid = await client.post("/metered-sign-in/", {"charge": "$0.001"}, "application/json")
        assert paid.status_code == 200, paid.content
        heard.clear()
        back = await client.sign_in("POST", "/metered-sign-in/", {"charge": "$0"})
    assert back.status_code == 200, back.content
    assert names(heard) == ["sign_in_accepted"]
    assert heard[0][1]["payer"].lower() == client.address.lower()


async def test_a_channel_voucher_settles_its_charge_without_a_transaction(
    heard: list[tuple[str, dict[str, Any]]],
) -> None:
    account = Account.create()
    with options_server(with_channels()) as base:
        async with x402HttpxClient(payer_client(account), base_url=base, timeout=30) as http:
            for index in range(2):
                response = await http.get("/two-networks/", params={"key": f"c{index}"})
                assert response.status_code == 200, response.text
    settled = [arguments for name, arguments in heard if name == "payment_settled"]
    assert [(s["scheme"], s["amount"]) for s in settled] == [("batch-settlement", 10000)] * 2
    assert settled[0]["transaction"].startswith("0x")  # the deposit
    assert settled[1]["transaction"] == ""  # a voucher: claimed later


def test_a_receiver_that_raises_does_not_change_the_call(caplog: pytest.LogCaptureFixture) -> None:
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signal = Signal()
    signal.connect(broken, weak=False)
    signals.send(signal, PaidCall, payer="0x1")
    assert "receiver bug" in caplog.text


def test_nothing_is_built_without_receivers() -> None:
    assert not signals.payment_settled.has_listeners(PaidCall)
    signals.send(signals.payment_settled, PaidCall)  # no receivers, no arguments needed


async def test_a_replay_in_flight_is_refused_by_the_guard_and_flagged(
    base: str, heard: list[tuple[str, dict[str, Any]]]
) -> None:
    """Another worker has taken this authorization (its call is still running): the
    guard refuses it here, before the facilitator could see it spent."""
    from aixyz_sessions.payments.authorization import authorization_of
    from aixyz_sessions.payments.runtime import get_runtime

    account = Account.create()
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        payload = await signer(account).create_payment_payload(required)
        taken = authorization_of(payload)
        assert await get_runtime().claims.claim(taken.payer, taken.nonce, taken.valid_before)
        answer = await plain.get(
            "/two-networks/",
            headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)},
        )
    assert answer.status_code == 402, answer.text
    assert names(heard) == ["payment_refused"]
    assert heard[0][1]["replayed"] is True


async def test_the_docs_receiver_counts_revenue(base: str) -> None:
    from tests.docs_examples import block
    from tests.test_readme import run

    namespace = run(block("docs/payments.md", "# myapp/receivers.py"))
    try:
        async with x402HttpxClient(signer(Account.create()), base_url=base, timeout=30) as http:
            for _ in range(2):
                response = await http.get("/two-networks/", params={"key": "k"})
                assert response.status_code == 200, response.text
        usdc = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
        assert namespace["revenue"] == {("/two-networks/", usdc): 20000}
    finally:
        signals.payment_settled.disconnect(namespace["count_revenue"])
