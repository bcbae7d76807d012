"""Who paid and which nonce: the rules in ``payments.authorization``, and what depends on them."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.test import AsyncClient, override_settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402.http import decode_payment_required_header
from x402.schemas import (
    AbortResult,
    PaymentPayload,
    PaymentRequired,
    VerifyResponse,
    VerifyResultContext,
)

from aixyz_sessions import get_store
from aixyz_sessions.payments.authorization import (
    MAX_HEADER_CHARS,
    PaymentHeaderError,
    after_verify,
    authorization_of,
    read_payment,
    verification,
)
from aixyz_sessions.payments.local import LocalFacilitator
from aixyz_sessions.replay import MAX_EXPIRY, InMemoryReplayGuard, claim_expiry
from aixyz_sessions.testing.paying import PayingClient
from tests.attacks import as_header, permit2_payment
from tests.payments_helpers import LOCAL, MIDDLEWARE

pytestmark = pytest.mark.django_db

VICTIM = "0x" + "11" * 20


@pytest.fixture(autouse=True)
def _payments() -> Iterator[None]:
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
    ):
        yield


async def _required(path: str = "/paid/") -> PaymentRequired:
    response = await AsyncClient().get(path)
    assert response.status_code == 402
    required = decode_payment_required_header(response["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return required


def _eip3009(payer: str = VICTIM, nonce: str = "0x" + "ab" * 32, **extra: Any) -> PaymentPayload:
    authorization = {
        "from": payer,
        "to": "0x" + "ab" * 20,
        "value": "10000",
        "validAfter": "0",
        "validBefore": str(int(time.time()) + 600),
        "nonce": nonce,
        **extra,
    }
    return PaymentPayload.model_validate(
        {
            "x402Version": 2,
            "accepted": {
                "scheme": "exact",
                "network": "eip155:84532",
                "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                "amount": "10000",
                "payTo": "0x" + "ab" * 20,
                "maxTimeoutSeconds": 300,
            },
            "payload": {"authorization": authorization, "signature": "0x" + "00" * 65},
        }
    )


# -- shape: one branch, canonical nonces -----------------------------------------------------


async def test_both_branches_are_refused() -> None:
    payment = permit2_payment(Account.create(), await _required(), decoy_payer=VICTIM)
    with pytest.raises(PaymentHeaderError, match="both"):
        authorization_of(payment)


async def test_permit2_branch_is_the_one_read() -> None:
    account: LocalAccount = Account.create()
    payment = permit2_payment(account, await _required())
    found = authorization_of(payment)
    assert found.branch == "permit2Authorization" and found.payer == account.address
    assert found.nonce == payment.payload["permit2Authorization"]["nonce"]
    assert found.valid_before == int(payment.payload["permit2Authorization"]["deadline"])


@pytest.mark.parametrize(
    "spelling", ["007", "0x7", " 7", "7 ", "+7", "\uff17", "7_0", "-7", "", "1e3", str(2**256)]
)
async def test_permit2_nonce_has_one_spelling(spelling: str) -> None:
    payment = permit2_payment(Account.create(), await _required(), nonce=spelling)
    with pytest.raises(PaymentHeaderError, match="uint256"):
        authorization_of(payment)


@pytest.mark.parametrize("nonce", ["0", "7", str(2**256 - 1)])
async def test_permit2_canonical_nonces_are_accepted(nonce: str) -> None:
    payment = permit2_payment(Account.create(), await _required(), nonce=nonce)
    assert authorization_of(payment).nonce == nonce


def test_eip3009_nonce_compares_in_lower_case() -> None:
    upper = authorization_of(_eip3009(nonce="0x" + "AB" * 32))
    lower = authorization_of(_eip3009(nonce="0x" + "ab" * 32))
    assert upper.nonce == lower.nonce == "0x" + "ab" * 32


@pytest.mark.parametrize("nonce", ["0X" + "ab" * 32, "ab" * 32, "0x" + "ab" * 31, "0x" + "g" * 64])
def test_eip3009_nonce_must_be_32_bytes_of_hex(nonce: str) -> None:
    with pytest.raises(PaymentHeaderError, match="64 hex"):
        authorization_of(_eip3009(nonce=nonce))


@pytest.mark.parametrize("deadline", ["soon", "1.5", "-1", "", " 1"])
def test_deadline_must_be_a_decimal_integer(deadline: str) -> None:
    with pytest.raises(PaymentHeaderError, match="validBefore"):
        authorization_of(_eip3009(validBefore=deadline))


def test_oversize_and_deep_payment_headers_are_refused() -> None:
    with pytest.raises(PaymentHeaderError, match="longer than"):
        read_payment("A" * (MAX_HEADER_CHARS + 1))
    deep = base64.b64encode(("[" * 5000 + "]" * 5000).encode()).decode()
    with pytest.raises(PaymentHeaderError, match="not base64-encoded JSON"):
        read_payment(deep)


# -- the verified payer ----------------------------------------------------------------------


def _verified(payment: PaymentPayload, payer: str | None) -> VerifyResultContext:
    return VerifyResultContext(
        payment_payload=payment,
        requirements=payment.accepted,
        result=VerifyResponse(is_valid=True, payer=payer),
    )


def test_after_verify_binds_the_verified_address_checksummed() -> None:
    account: LocalAccount = Account.create()
    payment = _eip3009(payer=account.address.lower())
    with verification() as slot:
        assert after_verify(_verified(payment, account.address.lower())) is None
    assert slot.authorization is not None and slot.authorization.payer == account.address
    assert slot.refusal is None


@pytest.mark.parametrize("reported", [None, "", "not an address", "0x" + "22" * 20])
def test_after_verify_refuses_a_payer_the_facilitator_did_not_verify(
    reported: str | None,
) -> None:
    with verification() as slot:
        outcome = after_verify(_verified(_eip3009(), reported))
    assert isinstance(outcome, AbortResult)
    assert slot.authorization is None and slot.refusal


class _LyingFacilitator(LocalFacilitator):
    """Verifies for real, then reports another payer (a facilitator bug, or a forgery)."""

    async def verify(self, payload: Any, requirements: Any) -> VerifyResponse:
        answer = await super().verify(payload, requirements)
        return answer.model_copy(update={"payer": VICTIM})


async def test_a_payer_differing_from_the_verified_one_is_402_and_nothing_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aixyz_sessions.payments import runtime

    monkeypatch.setattr(
        "aixyz_sessions.payments.local.get_local_facilitator", lambda: _LyingFacilitator()
    )
    runtime.reset_runtime()
    try:
        client = PayingClient()
        response = await client.get("/paid/")
        assert response.status_code == 402, response.content
        body = json.loads(response.content)
        assert body["error"] == "invalid_payment" and VICTIM.lower() in body["reason"].lower()
        assert "PAYMENT-RESPONSE" not in response
        for payer in (client.address, VICTIM):
            assert await get_store().get(payer.lower(), "count") is None
    finally:
        runtime.reset_runtime()


async def test_honest_permit2_payment_runs_in_its_signers_session() -> None:
    account: LocalAccount = Account.create()
    header = as_header(permit2_payment(account, await _required()))
    response = await AsyncClient().get("/paid/", headers={"PAYMENT-SIGNATURE": header})
    assert response.status_code == 200, response.content
    assert json.loads(response.content) == {"payer": account.address, "count": 1}
    replay = await AsyncClient().get("/paid/", headers={"PAYMENT-SIGNATURE": header})
    assert replay.status_code == 402


def test_local_facilitator_refuses_a_spent_permit2_nonce() -> None:
    import asyncio

    facilitator = LocalFacilitator()
    account: LocalAccount = Account.create()
    required = asyncio.run(_required())
    payment = permit2_payment(account, required)
    requirements = required.accepts[0]
    assert facilitator.verify_sync(payment, requirements).is_valid
    settled = facilitator.settle_sync(payment, requirements)
    assert settled.success, settled
    again = facilitator.verify_sync(payment, requirements)
    assert not again.is_valid and again.invalid_reason == "permit2_invalid_nonce"
    assert not facilitator.settle_sync(payment, requirements).success


# -- the replay guard's expiry ---------------------------------------------------------------


@pytest.mark.parametrize("valid_before", [10**308, 10**400, 2**256 - 1])
async def test_absurd_valid_before_is_clamped(valid_before: int) -> None:
    assert claim_expiry(valid_before, 60.0) == float(MAX_EXPIRY)
    guard = InMemoryReplayGuard()
    assert await guard.claim(VICTIM, "0x" + "cd" * 32, valid_before)
    assert not await guard.claim(VICTIM, "0x" + "cd" * 32, valid_before)


# -- check --deploy ---------------------------------------------------------------------------


def test_check_deploy_warns_for_a_plain_http_facilitator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain = {k: v for k, v in LOCAL.items() if k != "FACILITATOR"}
    with override_settings(AIXYZ_X402={**plain, "FACILITATOR_URL": "http://facilitator.example"}):
        call_command("check", "--deploy", "--tag", "aixyz_sessions")
    assert "aixyz_sessions.W102" in capsys.readouterr().err
    with override_settings(AIXYZ_X402={**plain, "FACILITATOR_URL": "https://x402.org/facilitator"}):
        call_command("check", "--deploy", "--tag", "aixyz_sessions")
    assert "aixyz_sessions.W102" not in capsys.readouterr().err
