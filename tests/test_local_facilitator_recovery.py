"""``LocalFacilitator`` recovers a paid call's signer once, and still checks everything else twice.

A paid call verifies a payment, runs the handler, then settles it; the SDK's
settle verifies again. The facilitator memoizes only the pure secp256k1 step
(``(digest, signature, address) -> valid``), so settle's re-verification finds
it, while the validity window, the ledger's nonce state, amount, recipient
and network are checked again on settle. Recoveries are counted at the
primitive the SDK calls, ``eth_keys``' ``Signature.recover_public_key_from_msg_hash``.
"""

from __future__ import annotations

import copy
import secrets
import threading
import types
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import PrivateKey, PublicKey, Signature
from x402 import x402ClientSync, x402ResourceServer
from x402.mechanisms import evm as sdk_evm
from x402.mechanisms.evm import verify as sdk_verify
from x402.mechanisms.evm.constants import (
    ERR_INVALID_SIGNATURE,
    ERR_NONCE_ALREADY_USED,
    ERR_PERMIT2_DEADLINE_EXPIRED,
    ERR_PERMIT2_INVALID_SIGNATURE,
    ERR_VALID_BEFORE_EXPIRED,
)
from x402.mechanisms.evm.exact import ExactEvmServerScheme, permit2_utils, register_exact_evm_client
from x402.mechanisms.evm.exact import client as exact_client
from x402.mechanisms.evm.exact import facilitator as exact_facilitator
from x402.schemas import PaymentPayload, PaymentRequired, ResourceConfig, ResourceInfo

from aixyz_sessions.payments.local import RECOVERY_CACHE_SIZE, LocalFacilitator, RecoveryMemo
from tests.attacks import permit2_payment
from tests.payments_helpers import NETWORK, PAY_TO

VICTIM = "0x" + "11" * 20
BRANCHES = ["eip3009", "permit2"]
INVALID_SIGNATURE = {"eip3009": ERR_INVALID_SIGNATURE, "permit2": ERR_PERMIT2_INVALID_SIGNATURE}
NONCE_USED = {"eip3009": ERR_NONCE_ALREADY_USED, "permit2": "permit2_invalid_nonce"}
EXPIRED = {"eip3009": ERR_VALID_BEFORE_EXPIRED, "permit2": ERR_PERMIT2_DEADLINE_EXPIRED}
AUTH = {"eip3009": "authorization", "permit2": "permit2Authorization"}
# The SDK module each branch reads ``time.time()`` from when it checks the window.
CLOCK = {"eip3009": exact_facilitator, "permit2": permit2_utils}


@pytest.fixture(scope="module")
def required() -> PaymentRequired:
    """A real ``PaymentRequired`` for $0.01 on Base Sepolia, from the SDK's server."""
    server = x402ResourceServer(LocalFacilitator())
    server.register(NETWORK, ExactEvmServerScheme())  # type: ignore[no-untyped-call,arg-type]
    server.initialize()
    accepts = server.build_payment_requirements(
        ResourceConfig(scheme="exact", pay_to=PAY_TO, price="$0.01", network=NETWORK)
    )
    return PaymentRequired(
        x402_version=2, accepts=accepts, resource=ResourceInfo(url="http://testserver/paid/")
    )


def _pay(branch: str, required: PaymentRequired, account: LocalAccount | None = None) -> Any:
    """A payment signed with the SDK's client code, on the EIP-3009 or the Permit2 branch."""
    account = account or Account.create()
    if branch == "permit2":
        return permit2_payment(account, required)
    client = x402ClientSync()
    register_exact_evm_client(client, account)  # type: ignore[arg-type]
    payment = client.create_payment_payload(required)
    assert AUTH["eip3009"] in payment.payload
    return payment


def _with_inner(payment: PaymentPayload, change: Callable[[dict[str, Any]], None]) -> Any:
    inner = copy.deepcopy(payment.payload)
    change(inner)
    return payment.model_copy(update={"payload": inner})


class Recoveries:
    """Counts secp256k1 public-key recoveries."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1


@pytest.fixture
def recoveries(monkeypatch: pytest.MonkeyPatch) -> Recoveries:
    counter = Recoveries()
    recover = Signature.recover_public_key_from_msg_hash

    def counting(self: Signature, message_hash: bytes) -> PublicKey:
        counter.add()
        return recover(self, message_hash)

    monkeypatch.setattr(Signature, "recover_public_key_from_msg_hash", counting)
    return counter


@pytest.fixture
def facilitator() -> LocalFacilitator:
    return LocalFacilitator()


# -- (1) one recovery per paid call ------------------------------------------------------


@pytest.mark.parametrize("branch", BRANCHES)
def test_a_paid_call_recovers_the_signer_once(
    branch: str, required: PaymentRequired, facilitator: LocalFacilitator, recoveries: Recoveries
) -> None:
    requirements = required.accepts[0]
    payments = [_pay(branch, required) for _ in range(3)]
    recoveries.count = 0
    for n, payment in enumerate(payments, start=1):
        verified = facilitator.verify_sync(payment, requirements)
        assert verified.is_valid, verified
        settled = facilitator.settle_sync(payment, requirements)
        assert settled.success, settled
        assert recoveries.count == n  # exactly one per verify+settle
    assert facilitator.ledger.settled_count == 3
    assert len(facilitator.recoveries) == 3


@pytest.mark.parametrize("branch", BRANCHES)
def test_without_the_memo_the_sdk_recovers_twice(
    branch: str, required: PaymentRequired, recoveries: Recoveries
) -> None:
    # The baseline the memo removes: settle's re-verification recovers again.
    facilitator = LocalFacilitator(recovery_cache_size=0)
    requirements = required.accepts[0]
    payment = _pay(branch, required)
    recoveries.count = 0
    assert facilitator.verify_sync(payment, requirements).is_valid
    assert facilitator.settle_sync(payment, requirements).success
    assert recoveries.count == 2
    assert len(facilitator.recoveries) == 0


@pytest.mark.parametrize("branch", BRANCHES)
def test_through_the_async_api_too(
    branch: str, required: PaymentRequired, facilitator: LocalFacilitator, recoveries: Recoveries
) -> None:
    import asyncio

    requirements = required.accepts[0]
    payment = _pay(branch, required)
    recoveries.count = 0

    async def paid_call() -> None:
        assert (await facilitator.verify(payment, requirements)).is_valid
        assert (await facilitator.settle(payment, requirements)).success

    asyncio.run(paid_call())
    assert recoveries.count == 1


# -- (2) forged signatures ---------------------------------------------------------------


@pytest.mark.parametrize("branch", BRANCHES)
def test_a_signature_claimed_for_another_payer_is_refused_at_verify_and_settle(
    branch: str, required: PaymentRequired, facilitator: LocalFacilitator, recoveries: Recoveries
) -> None:
    # The genuine payment is verified first, so its recovery is in the memo.
    # Permit2's signed message does not name the owner: the forgery has the
    # very same digest and signature, only another ``from``.
    requirements = required.accepts[0]
    genuine = _pay(branch, required)
    assert facilitator.verify_sync(genuine, requirements).is_valid

    def claim_victim(inner: dict[str, Any]) -> None:
        inner[AUTH[branch]]["from"] = VICTIM

    forged = _with_inner(genuine, claim_victim)
    recoveries.count = 0
    verified = facilitator.verify_sync(forged, requirements)
    assert not verified.is_valid and verified.invalid_reason == INVALID_SIGNATURE[branch]
    settled = facilitator.settle_sync(forged, requirements)
    assert not settled.success and settled.error_reason == INVALID_SIGNATURE[branch]
    assert recoveries.count == 2  # nothing about a forgery is remembered
    assert facilitator.ledger.settled_count == 0
    assert len(facilitator.recoveries) == 1  # only the genuine one


@pytest.mark.parametrize("branch", BRANCHES)
def test_a_tampered_signature_is_refused_at_verify_and_settle(
    branch: str, required: PaymentRequired, facilitator: LocalFacilitator
) -> None:
    requirements = required.accepts[0]
    genuine = _pay(branch, required)
    assert facilitator.verify_sync(genuine, requirements).is_valid

    def flip_a_bit_of_r(inner: dict[str, Any]) -> None:
        signature = bytearray(bytes.fromhex(inner["signature"].removeprefix("0x")))
        signature[7] ^= 0x01
        inner["signature"] = "0x" + signature.hex()

    forged = _with_inner(genuine, flip_a_bit_of_r)
    for _ in range(2):  # a second attempt is no different
        verified = facilitator.verify_sync(forged, requirements)
        assert not verified.is_valid and verified.invalid_reason == INVALID_SIGNATURE[branch]
        settled = facilitator.settle_sync(forged, requirements)
        assert not settled.success and settled.error_reason == INVALID_SIGNATURE[branch]
    assert facilitator.ledger.settled_count == 0
    assert facilitator.settle_sync(genuine, requirements).success


# -- (3) the ledger's nonce state is read again on settle --------------------------------


@pytest.mark.parametrize("branch", BRANCHES)
def test_a_verified_payment_whose_nonce_another_settle_spent_fails_settle(
    branch: str, required: PaymentRequired, facilitator: LocalFacilitator, recoveries: Recoveries
) -> None:
    # Two requests carry the same payment: both verify, the first settle spends
    # the nonce, the second settle must fail although its signature is known good.
    requirements = required.accepts[0]
    payment = _pay(branch, required)
    recoveries.count = 0
    assert facilitator.verify_sync(payment, requirements).is_valid
    assert facilitator.verify_sync(payment, requirements).is_valid
    assert facilitator.settle_sync(payment, requirements).success
    again = facilitator.settle_sync(payment, requirements)
    assert not again.success and again.error_reason == NONCE_USED[branch]
    assert facilitator.ledger.settled_count == 1
    assert recoveries.count == 1


@pytest.mark.parametrize("branch", BRANCHES)
def test_a_verified_payment_fails_settle_after_another_payment_spent_its_nonce(
    branch: str,
    required: PaymentRequired,
    facilitator: LocalFacilitator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two differently signed payments (different validity windows) by one payer
    # share a nonce: settling the second spends it for the first, verified earlier.
    account: LocalAccount = Account.create()
    nonce = "0x" + secrets.token_hex(32)
    monkeypatch.setattr(exact_client, "create_nonce", lambda: nonce)
    monkeypatch.setattr(permit2_utils, "create_permit2_nonce", lambda: str(int(nonce, 16)))
    requirements = required.accepts[0]
    first = _pay(branch, required, account)
    longer = requirements.model_copy(update={"max_timeout_seconds": 900})
    second = _pay(branch, required.model_copy(update={"accepts": [longer]}), account)
    assert first.payload[AUTH[branch]]["nonce"] == second.payload[AUTH[branch]]["nonce"]
    assert first.payload["signature"] != second.payload["signature"]

    assert facilitator.verify_sync(first, requirements).is_valid
    assert facilitator.verify_sync(second, requirements).is_valid
    assert facilitator.settle_sync(second, requirements).success
    settled = facilitator.settle_sync(first, requirements)
    assert not settled.success and settled.error_reason == NONCE_USED[branch]
    assert facilitator.ledger.settled_count == 1


# -- (4) the validity window is read again on settle -------------------------------------


@pytest.mark.parametrize("branch", BRANCHES)
def test_an_authorization_that_expired_after_verify_fails_settle(
    branch: str,
    required: PaymentRequired,
    facilitator: LocalFacilitator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requirements = required.accepts[0]
    payment = _pay(branch, required)
    assert facilitator.verify_sync(payment, requirements).is_valid
    auth = payment.payload[AUTH[branch]]
    expiry = int(auth["validBefore"] if branch == "eip3009" else auth["deadline"])
    # The handler ran long: settle happens at the expiry, in the SDK module's clock only.
    monkeypatch.setattr(CLOCK[branch], "time", types.SimpleNamespace(time=lambda: float(expiry)))
    settled = facilitator.settle_sync(payment, requirements)
    assert not settled.success and settled.error_reason == EXPIRED[branch]
    assert facilitator.ledger.settled_count == 0
    verified = facilitator.verify_sync(payment, requirements)
    assert not verified.is_valid and verified.invalid_reason == EXPIRED[branch]


# -- (5) the memo is bounded -------------------------------------------------------------


@pytest.mark.parametrize("branch", BRANCHES)
def test_the_memo_is_bounded_and_an_evicted_payment_is_recovered_again(
    branch: str, required: PaymentRequired, recoveries: Recoveries
) -> None:
    facilitator = LocalFacilitator(recovery_cache_size=3)
    requirements = required.accepts[0]
    payments = [_pay(branch, required) for _ in range(5)]
    recoveries.count = 0
    for payment in payments:
        assert facilitator.verify_sync(payment, requirements).is_valid
    assert recoveries.count == 5
    assert len(facilitator.recoveries) == 3
    assert facilitator.settle_sync(payments[-1], requirements).success  # still remembered
    assert recoveries.count == 5
    assert facilitator.settle_sync(payments[0], requirements).success  # evicted: recovered again
    assert recoveries.count == 6
    assert len(facilitator.recoveries) == 3


def test_the_memo_keeps_at_most_maxsize_valid_entries_under_concurrency() -> None:
    memo = RecoveryMemo(100)
    assert RecoveryMemo().maxsize == RECOVERY_CACHE_SIZE == LocalFacilitator().recoveries.maxsize

    def valid(hash: bytes, signature: bytes, address: str) -> bool:
        return True

    def fill(start: int) -> None:
        for i in range(start, start + 500):
            assert memo.check(valid, i.to_bytes(32, "big"), b"\x01" * 65, VICTIM)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fill, range(0, 4000, 500)))
    assert len(memo) == 100
    # Invalid answers and answers that raise are never stored.
    assert not memo.check(lambda *_: False, b"\x02" * 32, b"\x01" * 65, VICTIM)

    def raising(hash: bytes, signature: bytes, address: str) -> bool:
        raise ValueError("Invalid EOA signature length")

    with pytest.raises(ValueError):
        memo.check(raising, b"\x03" * 32, b"\x01", VICTIM)
    assert len(memo) == 100
    assert len(RecoveryMemo(0)) == 0
    with pytest.raises(ValueError):
        RecoveryMemo(-1)


def test_a_disabled_memo_stores_nothing() -> None:
    memo = RecoveryMemo(0)
    calls: list[bytes] = []

    def valid(hash: bytes, signature: bytes, address: str) -> bool:
        calls.append(hash)
        return True

    for _ in range(3):
        assert memo.check(valid, b"\x00" * 32, b"\x01" * 65, VICTIM)
    assert len(memo) == 0 and len(calls) == 3


# -- scope: other users of the SDK in this process ---------------------------------------


def test_outside_a_local_facilitator_the_sdk_check_is_not_memoized(
    facilitator: LocalFacilitator, recoveries: Recoveries
) -> None:
    account: LocalAccount = Account.create()
    digest, address = secrets.token_bytes(32), str(account.address)
    signature = PrivateKey(bytes(account.key)).sign_msg_hash(digest).to_bytes()
    facilitator.recoveries.check(sdk_verify.verify_eoa_signature, digest, signature, address)
    assert len(facilitator.recoveries) == 1 and recoveries.count == 1
    for _ in range(2):
        assert sdk_verify.verify_eoa_signature(digest, signature, address)
        assert not sdk_verify.verify_eoa_signature(digest, signature, VICTIM)
    assert recoveries.count == 5  # every direct call recovers
    # The name the SDK package exports is its own function, untouched.
    assert not getattr(sdk_evm.verify_eoa_signature, "_aixyz_local_recovery_hook", False)
    assert sdk_evm.verify_eoa_signature(digest, signature, address)


def test_facilitators_do_not_share_a_memo(
    required: PaymentRequired, recoveries: Recoveries
) -> None:
    one, other = LocalFacilitator(), LocalFacilitator()
    requirements = required.accepts[0]
    payment = _pay("eip3009", required)
    recoveries.count = 0
    assert one.verify_sync(payment, requirements).is_valid
    assert other.verify_sync(payment, requirements).is_valid
    assert recoveries.count == 2
    assert len(one.recoveries) == len(other.recoveries) == 1


def test_concurrent_paid_calls_settle_each_payment_once(
    required: PaymentRequired, facilitator: LocalFacilitator, recoveries: Recoveries
) -> None:
    requirements = required.accepts[0]
    payments = [_pay(branch, required) for branch in BRANCHES for _ in range(10)]
    recoveries.count = 0

    def paid_call(payment: PaymentPayload) -> bool:
        if not facilitator.verify_sync(payment, requirements).is_valid:
            return False
        return facilitator.settle_sync(payment, requirements).success

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(paid_call, payments * 2))  # every payment sent twice
    assert facilitator.ledger.settled_count == len(payments)
    assert sum(results) == len(payments)
    # A duplicate may verify before its twin settles, never recover more than once
    # per paid call, and at most twice per payment (two threads racing the first miss).
    assert len(payments) <= recoveries.count <= 2 * len(payments)
