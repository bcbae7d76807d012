"""``LocalFacilitator`` runs the SDK's ``upto`` scheme, and keeps every chain apart.

``upto``: the payer signs a Permit2 authorization for a maximum (here $0.05),
naming this facilitator in the witness; the server settles what the call used
(here $0.012), at most the maximum, once. Payloads are signed with the SDK's own
client schemes, from requirements the SDK's server builds out of
``get_supported()``; the ledger's ``transfers`` show what would have moved.

Chains: each network signs through the ledger's view of its own chain id, so
an EIP-3009 or Permit2 nonce spent on one chain is still fresh on another.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from x402 import x402ClientSync, x402ResourceServer
from x402.mechanisms.evm.constants import (
    ERR_NONCE_ALREADY_USED,
    ERR_PERMIT2_AMOUNT_MISMATCH,
    ERR_PERMIT2_INVALID_SIGNATURE,
    ERR_UPTO_AMOUNT_EXCEEDS_PERMITTED,
    ERR_UPTO_FACILITATOR_MISMATCH,
    ERR_UPTO_SETTLEMENT_EXCEEDS_AMOUNT,
    ERR_UPTO_TRANSACTION_FAILED,
    ERR_UPTO_UNAUTHORIZED_FACILITATOR,
    X402_UPTO_PERMIT2_PROXY_ABI,
    X402_UPTO_PERMIT2_PROXY_ADDRESS,
)
from x402.mechanisms.evm.default_assets import get_default_asset
from x402.mechanisms.evm.exact import ExactEvmServerScheme, permit2_utils, register_exact_evm_client
from x402.mechanisms.evm.exact import client as exact_client
from x402.mechanisms.evm.upto import UptoEvmClientScheme, UptoEvmServerScheme
from x402.mechanisms.evm.upto import client as upto_client
from x402.mechanisms.evm.upto.permit2_utils import _map_upto_settle_error
from x402.schemas import (
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    ResourceConfig,
    ResourceInfo,
)

from aixyz_sessions.payments.local import (
    FACILITATOR_ADDRESS,
    LocalFacilitator,
    LocalLedger,
    Transfer,
)
from tests.attacks import permit2_payment
from tests.payments_helpers import NETWORK, PAY_TO

BASE = "eip155:8453"
OTHER_FACILITATOR = to_checksum_address("0x" + "0f" * 20)
MAXIMUM, USED = "$0.05", "12000"  # $0.012 of USDC (6 decimals)
RESOURCE = ResourceInfo(url="http://testserver/metered/")


@pytest.fixture
def facilitator() -> LocalFacilitator:
    return LocalFacilitator()


def _required(
    facilitator: LocalFacilitator, scheme: str = "upto", network: str = NETWORK
) -> PaymentRequired:
    """A ``PaymentRequired`` the SDK's server builds from ``facilitator.get_supported()``."""
    server = x402ResourceServer(facilitator)
    if scheme == "upto":
        server.register(network, UptoEvmServerScheme())  # type: ignore[no-untyped-call,arg-type]
    else:
        server.register(network, ExactEvmServerScheme())  # type: ignore[no-untyped-call,arg-type]
    server.initialize()
    price = MAXIMUM if scheme == "upto" else "$0.01"
    accepts = server.build_payment_requirements(
        ResourceConfig(scheme=scheme, pay_to=PAY_TO, price=price, network=network)
    )
    return PaymentRequired(x402_version=2, accepts=accepts, resource=RESOURCE)


def _upto(required: PaymentRequired, account: LocalAccount | None = None) -> PaymentPayload:
    """An upto payment signed by the SDK's upto client."""
    client = x402ClientSync()
    scheme = UptoEvmClientScheme(account or Account.create())  # type: ignore[arg-type]
    client.register("eip155:*", scheme)
    payment = client.create_payment_payload(required)
    assert isinstance(payment, PaymentPayload) and payment.accepted.scheme == "upto"
    return payment


def _exact(branch: str, required: PaymentRequired, account: LocalAccount) -> PaymentPayload:
    """An exact payment on the EIP-3009 or the Permit2 branch, signed by the SDK's client code."""
    if branch == "permit2":
        return permit2_payment(account, required)
    client = x402ClientSync()
    register_exact_evm_client(client, account)  # type: ignore[arg-type]
    payment = client.create_payment_payload(required)
    assert isinstance(payment, PaymentPayload) and "authorization" in payment.payload
    return payment


def _charge(requirements: PaymentRequirements, amount: str) -> PaymentRequirements:
    """The requirements the server settles with once it knows what the call used."""
    return requirements.model_copy(update={"amount": amount})


def _auth(payment: PaymentPayload) -> dict[str, Any]:
    auth: dict[str, Any] = payment.payload["permit2Authorization"]
    return auth


def _with_inner(payment: PaymentPayload, change: Callable[[dict[str, Any]], None]) -> Any:
    inner = copy.deepcopy(payment.payload)
    change(inner)
    return payment.model_copy(update={"payload": inner})


# -- supported --------------------------------------------------------------------------


def test_supported_lists_exact_and_upto_with_the_facilitator_address_on_every_network(
    facilitator: LocalFacilitator,
) -> None:
    supported = facilitator.get_supported()
    by_kind = {(kind.scheme, kind.network): kind for kind in supported.kinds}
    # exact, upto and batch-settlement (tests/test_local_facilitator_channels.py).
    assert len(by_kind) == len(supported.kinds) == 3 * len(facilitator.networks)
    assert {NETWORK, BASE} <= set(facilitator.networks)
    for network in facilitator.networks:
        assert ("exact", network) in by_kind
        assert ("batch-settlement", network) in by_kind
        extra = by_kind["upto", network].extra or {}
        assert extra["facilitatorAddress"] == FACILITATOR_ADDRESS
    assert facilitator.ledger.get_addresses() == [FACILITATOR_ADDRESS]
    assert supported.signers == {"eip155:*": [FACILITATOR_ADDRESS]}


def test_the_sdk_server_builds_upto_requirements_from_supported(
    facilitator: LocalFacilitator,
) -> None:
    (requirements,) = _required(facilitator).accepts
    assert (requirements.scheme, requirements.network, requirements.amount) == (
        "upto",
        NETWORK,
        "50000",
    )
    assert requirements.asset == get_default_asset(NETWORK)["asset"]
    extra = requirements.extra or {}
    assert extra["facilitatorAddress"] == FACILITATOR_ADDRESS
    assert extra["assetTransferMethod"] == "permit2"


# -- upto: settle what was used ---------------------------------------------------------


def test_upto_verifies_the_maximum_and_settles_what_was_used(
    facilitator: LocalFacilitator,
) -> None:
    account: LocalAccount = Account.create()
    required = _required(facilitator)
    requirements = required.accepts[0]
    payment = _upto(required, account)
    verified = facilitator.verify_sync(payment, requirements)
    assert verified.is_valid and verified.payer == account.address, verified

    settled = facilitator.settle_sync(payment, _charge(requirements, USED))
    assert settled.success and settled.amount == USED and settled.transaction, settled
    assert (settled.network, settled.payer) == (NETWORK, account.address)

    ledger = facilitator.ledger
    assert ledger.transfers == [
        Transfer(
            chain_id=84532,
            token=to_checksum_address(requirements.asset),
            payer=account.address,
            pay_to=to_checksum_address(PAY_TO),
            amount=12000,
            tx=settled.transaction,
        )
    ]
    assert ledger.transfers[0].network == NETWORK
    assert ledger.settled_amount(payer=account.address) == 12000
    assert ledger.settled_amount(pay_to=PAY_TO.upper().replace("0X", "0x")) == 12000
    assert ledger.settled_amount(payer=account.address, chain_id=8453) == 0
    assert ledger.settled_count == 1
    assert ledger.is_permit2_nonce_used(account.address, _auth(payment)["nonce"])


async def test_the_sdk_resource_server_charges_what_an_upto_call_used(
    facilitator: LocalFacilitator,
) -> None:
    # The async path a resource server takes: verify the maximum, settle the use.
    server = x402ResourceServer(facilitator)
    server.register(NETWORK, UptoEvmServerScheme())  # type: ignore[no-untyped-call,arg-type]
    server.initialize()
    accepts = server.build_payment_requirements(
        ResourceConfig(scheme="upto", pay_to=PAY_TO, price=MAXIMUM, network=NETWORK)
    )
    account: LocalAccount = Account.create()
    payment = _upto(PaymentRequired(x402_version=2, accepts=accepts, resource=RESOURCE), account)
    assert (await server.verify_payment(payment, accepts[0])).is_valid
    settled = await server.settle_payment(payment, _charge(accepts[0], USED))
    assert settled.success and settled.amount == USED, settled
    assert facilitator.ledger.settled_amount(payer=account.address) == 12000


def test_upto_settle_above_the_signed_maximum_fails_and_spends_nothing(
    facilitator: LocalFacilitator,
) -> None:
    required = _required(facilitator)
    requirements = required.accepts[0]
    payment = _upto(required)
    settled = facilitator.settle_sync(payment, _charge(requirements, "50001"))
    assert not settled.success and settled.error_reason == ERR_UPTO_SETTLEMENT_EXCEEDS_AMOUNT
    assert facilitator.ledger.transfers == [] and facilitator.ledger.settled_count == 0
    assert not facilitator.ledger.is_permit2_nonce_used(
        _auth(payment)["from"], _auth(payment)["nonce"]
    )
    full = facilitator.settle_sync(payment, requirements)  # the maximum itself is fine
    assert full.success and full.amount == "50000", full
    assert facilitator.ledger.settled_amount() == 50000


def test_upto_settle_of_zero_succeeds_without_a_transaction(
    facilitator: LocalFacilitator,
) -> None:
    required = _required(facilitator)
    requirements = required.accepts[0]
    payment = _upto(required)
    settled = facilitator.settle_sync(payment, _charge(requirements, "0"))
    assert settled.success and settled.transaction == "" and settled.amount == "0", settled
    ledger = facilitator.ledger
    assert ledger.transfers == [] and ledger.settled_count == 0 and ledger.settled_amount() == 0
    # Nothing reached the chain: the authorization is still good.
    assert not ledger.is_permit2_nonce_used(_auth(payment)["from"], _auth(payment)["nonce"])
    assert facilitator.verify_sync(payment, requirements).is_valid


def test_a_settled_upto_nonce_does_not_verify_or_settle_again(
    facilitator: LocalFacilitator,
) -> None:
    required = _required(facilitator)
    requirements = required.accepts[0]
    payment = _upto(required)
    assert facilitator.settle_sync(payment, _charge(requirements, USED)).success
    again = facilitator.verify_sync(payment, requirements)
    assert not again.is_valid and again.invalid_reason == "permit2_invalid_nonce"
    for amount in (USED, "1", requirements.amount):  # the unused rest is gone too
        settled = facilitator.settle_sync(payment, _charge(requirements, amount))
        assert not settled.success and settled.error_reason == "permit2_invalid_nonce", settled
    assert len(facilitator.ledger.transfers) == 1 and facilitator.ledger.settled_count == 1


def test_upto_and_exact_permit2_spend_the_same_permit2_nonce(
    facilitator: LocalFacilitator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both x402 proxies go through Permit2, whose nonce bitmap is per owner and chain.
    account: LocalAccount = Account.create()
    nonce = str(int(secrets.token_hex(31), 16))
    monkeypatch.setattr(upto_client, "create_permit2_nonce", lambda: nonce)
    monkeypatch.setattr(permit2_utils, "create_permit2_nonce", lambda: nonce)
    upto_required = _required(facilitator)
    exact_required = _required(facilitator, "exact")
    upto_payment = _upto(upto_required, account)
    exact_payment = _exact("permit2", exact_required, account)
    assert _auth(upto_payment)["nonce"] == _auth(exact_payment)["nonce"] == nonce

    assert facilitator.settle_sync(upto_payment, _charge(upto_required.accepts[0], USED)).success
    verified = facilitator.verify_sync(exact_payment, exact_required.accepts[0])
    assert not verified.is_valid and verified.invalid_reason == "permit2_invalid_nonce"
    settled = facilitator.settle_sync(exact_payment, exact_required.accepts[0])
    assert not settled.success and settled.error_reason == "permit2_invalid_nonce"


# -- upto: forged and foreign payloads --------------------------------------------------


def test_a_witness_naming_another_facilitator_fails_verification_and_settlement(
    facilitator: LocalFacilitator,
) -> None:
    required = _required(facilitator)
    extra = {**(required.accepts[0].extra or {}), "facilitatorAddress": OTHER_FACILITATOR}
    theirs = required.accepts[0].model_copy(update={"extra": extra})
    payment = _upto(required.model_copy(update={"accepts": [theirs]}))
    assert _auth(payment)["witness"]["facilitator"].lower() == OTHER_FACILITATOR.lower()
    verified = facilitator.verify_sync(payment, theirs)
    assert not verified.is_valid and verified.invalid_reason == ERR_UPTO_FACILITATOR_MISMATCH
    settled = facilitator.settle_sync(payment, _charge(theirs, USED))
    assert not settled.success and settled.error_reason == ERR_UPTO_FACILITATOR_MISMATCH
    assert facilitator.ledger.transfers == []


def _flip_signature_bit(inner: dict[str, Any]) -> None:
    signature = bytearray(bytes.fromhex(inner["signature"].removeprefix("0x")))
    signature[7] ^= 0x01
    inner["signature"] = "0x" + signature.hex()


def _raise_maximum(inner: dict[str, Any]) -> None:
    permitted = inner["permit2Authorization"]["permitted"]
    permitted["amount"] = str(int(permitted["amount"]) * 100)


def _next_nonce(inner: dict[str, Any]) -> None:
    auth = inner["permit2Authorization"]
    auth["nonce"] = str(int(auth["nonce"]) + 1)


def _name_another_facilitator(inner: dict[str, Any]) -> None:
    inner["permit2Authorization"]["witness"]["facilitator"] = OTHER_FACILITATOR


# (tamper, verify's reason, settle's reason): settle re-verifies against the
# payload's own maximum, so a raised maximum meets the signature check there.
TAMPERED = {
    "signature": (
        _flip_signature_bit,
        ERR_PERMIT2_INVALID_SIGNATURE,
        ERR_PERMIT2_INVALID_SIGNATURE,
    ),
    "maximum": (_raise_maximum, ERR_PERMIT2_AMOUNT_MISMATCH, ERR_PERMIT2_INVALID_SIGNATURE),
    "nonce": (_next_nonce, ERR_PERMIT2_INVALID_SIGNATURE, ERR_PERMIT2_INVALID_SIGNATURE),
    "facilitator": (
        _name_another_facilitator,
        ERR_UPTO_FACILITATOR_MISMATCH,
        ERR_UPTO_FACILITATOR_MISMATCH,
    ),
}


@pytest.mark.parametrize("field", sorted(TAMPERED))
def test_a_tampered_upto_payload_fails_verification_and_settlement(
    field: str, facilitator: LocalFacilitator
) -> None:
    tamper, verify_reason, settle_reason = TAMPERED[field]
    required = _required(facilitator)
    requirements = required.accepts[0]
    genuine = _upto(required)
    forged = _with_inner(genuine, tamper)
    verified = facilitator.verify_sync(forged, requirements)
    assert not verified.is_valid and verified.invalid_reason == verify_reason, verified
    settled = facilitator.settle_sync(forged, _charge(requirements, USED))
    assert not settled.success and settled.error_reason == settle_reason, settled
    assert facilitator.ledger.transfers == [] and facilitator.ledger.settled_count == 0
    assert facilitator.settle_sync(genuine, _charge(requirements, USED)).success


def test_a_failing_chain_fails_upto_settlement(facilitator: LocalFacilitator) -> None:
    required = _required(facilitator)
    requirements = required.accepts[0]
    payment = _upto(required)
    facilitator.ledger.fail_settlements = "ERC20: transfer amount exceeds balance"
    assert facilitator.verify_sync(payment, requirements).is_valid  # a simulation: no switch
    settled = facilitator.settle_sync(payment, _charge(requirements, USED))
    assert not settled.success and settled.error_reason == ERR_UPTO_TRANSACTION_FAILED
    assert facilitator.ledger.transfers == [] and facilitator.ledger.settled_count == 0
    facilitator.ledger.fail_settlements = None
    assert facilitator.settle_sync(payment, _charge(requirements, USED)).success


# -- the ledger as the upto proxy -------------------------------------------------------


def _proxy_settle_args(
    *, amount: int, facilitator: str = FACILITATOR_ADDRESS, nonce: int = 7
) -> tuple[Any, ...]:
    """``settle(permit, amount, owner, witness, signature)`` as the SDK calls it."""
    token = to_checksum_address(get_default_asset(NETWORK)["asset"])
    permit = ((token, 50000), nonce, 2**40)
    witness = (to_checksum_address(PAY_TO), facilitator, 0)
    return permit, amount, to_checksum_address("0x" + "22" * 20), witness, b"\x01" * 65


@pytest.mark.parametrize(
    ("args", "revert", "reason"),
    [
        (
            _proxy_settle_args(amount=50001),
            "AmountExceedsPermitted()",
            ERR_UPTO_AMOUNT_EXCEEDS_PERMITTED,
        ),
        (
            _proxy_settle_args(amount=100, facilitator=OTHER_FACILITATOR),
            "UnauthorizedFacilitator()",
            ERR_UPTO_UNAUTHORIZED_FACILITATOR,
        ),
    ],
    ids=["above-permitted", "other-facilitator"],
)
def test_the_ledger_reverts_as_the_upto_proxy(
    args: tuple[Any, ...], revert: str, reason: str
) -> None:
    ledger = LocalLedger()
    for call in (ledger.read_contract, ledger.write_contract):
        with pytest.raises(RuntimeError, match=rf"execution reverted: {revert[:-2]}\(\)") as error:
            call(X402_UPTO_PERMIT2_PROXY_ADDRESS, X402_UPTO_PERMIT2_PROXY_ABI, "settle", *args)
        # ... with the names the SDK's upto settle maps to its own reasons.
        assert _map_upto_settle_error(error.value, NETWORK, "").error_reason == reason
    assert ledger.transfers == [] and ledger.settled_count == 0


def test_the_ledger_spends_an_upto_nonce_once_per_chain() -> None:
    ledger = LocalLedger()
    args = _proxy_settle_args(amount=100)
    proxy = (X402_UPTO_PERMIT2_PROXY_ADDRESS, X402_UPTO_PERMIT2_PROXY_ABI, "settle")
    assert ledger.read_contract(*proxy, *args) is None  # the simulation spends nothing
    tx = ledger.write_contract(*proxy, *args)
    assert ledger.wait_for_transaction_receipt(tx).status == 1
    for call in (ledger.read_contract, ledger.write_contract):
        with pytest.raises(RuntimeError, match=r"execution reverted: InvalidNonce\(\)") as error:
            call(*proxy, *args)
        assert _map_upto_settle_error(error.value, NETWORK, "").error_reason == (
            "permit2_invalid_nonce"
        )
    base = ledger.for_chain(8453)
    base_tx = base.write_contract(*proxy, *args)  # the same nonce, another chain
    assert [(t.chain_id, t.amount, t.tx) for t in ledger.transfers] == [
        (84532, 100, tx),
        (8453, 100, base_tx),
    ]
    with pytest.raises(KeyError):
        base.wait_for_transaction_receipt(tx)  # receipts are per chain too


# -- several chains ---------------------------------------------------------------------


def test_the_ledger_views_share_one_state_lock_and_switch() -> None:
    ledger = LocalLedger()
    assert ledger.chain_id == ledger.get_chain_id() == 84532
    assert ledger.for_chain(84532) is ledger
    base = ledger.for_chain(8453)
    assert base.get_chain_id() == 8453 and ledger.get_chain_id() == 84532
    ledger.fail_settlements = "insufficient funds"
    assert base.fail_settlements == "insufficient funds"
    base.fail_settlements = None
    assert ledger.fail_settlements is None
    facilitator = LocalFacilitator(ledger=ledger)
    assert facilitator.ledger is ledger


@pytest.mark.parametrize("branch", ["eip3009", "permit2"])
def test_exact_payments_settle_on_two_networks(branch: str, facilitator: LocalFacilitator) -> None:
    account: LocalAccount = Account.create()
    for network in (NETWORK, BASE):
        required = _required(facilitator, "exact", network)
        requirements = required.accepts[0]
        payment = _exact(branch, required, account)
        assert facilitator.verify_sync(payment, requirements).is_valid
        settled = facilitator.settle_sync(payment, requirements)
        assert settled.success and settled.network == network, settled
    ledger = facilitator.ledger
    assert [(t.network, t.token, t.amount) for t in ledger.transfers] == [
        (NETWORK, to_checksum_address(get_default_asset(NETWORK)["asset"]), 10000),
        (BASE, to_checksum_address(get_default_asset(BASE)["asset"]), 10000),
    ]
    assert ledger.settled_amount(payer=account.address) == 20000
    assert ledger.settled_amount(payer=account.address, chain_id=8453) == 10000
    assert ledger.settled_count == 2


@pytest.mark.parametrize("branch", ["eip3009", "permit2"])
def test_one_nonce_on_two_chains_is_two_authorizations(
    branch: str, facilitator: LocalFacilitator, monkeypatch: pytest.MonkeyPatch
) -> None:
    account: LocalAccount = Account.create()
    nonce = "0x" + secrets.token_hex(32)
    monkeypatch.setattr(exact_client, "create_nonce", lambda: nonce)
    monkeypatch.setattr(permit2_utils, "create_permit2_nonce", lambda: str(int(nonce, 16)))
    payments = {}
    for network in (NETWORK, BASE):
        required = _required(facilitator, "exact", network)
        payments[network] = (_exact(branch, required, account), required.accepts[0])
    for network, (payment, requirements) in payments.items():
        assert facilitator.verify_sync(payment, requirements).is_valid, network
        assert facilitator.settle_sync(payment, requirements).success, network
    ledger = facilitator.ledger
    assert ledger.settled_count == 2
    if branch == "permit2":
        permit2_nonce = int(nonce, 16)
        assert ledger.is_permit2_nonce_used(account.address, permit2_nonce)
        assert ledger.is_permit2_nonce_used(account.address, permit2_nonce, chain_id=8453)
        assert not ledger.is_permit2_nonce_used(account.address, permit2_nonce, chain_id=1)
    else:
        base_usdc = get_default_asset(BASE)["asset"]
        assert ledger.is_used(get_default_asset(NETWORK)["asset"], account.address, nonce)
        assert ledger.is_used(base_usdc, account.address, nonce, chain_id=8453)
        assert not ledger.is_used(base_usdc, account.address, nonce)  # not on Base Sepolia
    # ... and each is still spent on its own chain.
    reason = {"eip3009": ERR_NONCE_ALREADY_USED, "permit2": "permit2_invalid_nonce"}[branch]
    for payment, requirements in payments.values():
        settled = facilitator.settle_sync(payment, requirements)
        assert not settled.success and settled.error_reason == reason, settled
    assert ledger.settled_count == 2


def test_upto_settles_on_two_networks_with_one_nonce(
    facilitator: LocalFacilitator, monkeypatch: pytest.MonkeyPatch
) -> None:
    account: LocalAccount = Account.create()
    nonce = str(int(secrets.token_hex(31), 16))
    monkeypatch.setattr(upto_client, "create_permit2_nonce", lambda: nonce)
    for network in (NETWORK, BASE):
        required = _required(facilitator, "upto", network)
        payment = _upto(required, account)
        settled = facilitator.settle_sync(payment, _charge(required.accepts[0], USED))
        assert settled.success and settled.network == network, settled
    assert facilitator.ledger.settled_amount(payer=account.address) == 24000
    assert {t.chain_id for t in facilitator.ledger.transfers} == {84532, 8453}


def test_a_network_without_a_default_asset_is_not_served(facilitator: LocalFacilitator) -> None:
    required = _required(facilitator, "exact")
    payment = _exact("eip3009", required, Account.create())
    elsewhere = required.accepts[0].model_copy(update={"network": "eip155:999999999"})
    payment = payment.model_copy(update={"accepted": elsewhere})
    verified = facilitator.verify_sync(payment, elsewhere)
    assert not verified.is_valid and verified.invalid_reason == "invalid_payload"
    assert "eip155:999999999" in (verified.invalid_message or "")
    settled = facilitator.settle_sync(payment, elsewhere)
    assert not settled.success and facilitator.ledger.transfers == []
