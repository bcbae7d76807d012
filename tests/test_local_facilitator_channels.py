"""``LocalFacilitator`` runs the SDK's ``batch-settlement`` scheme over the ledger's contract.

A payer deposits once into a channel (ERC-3009 or Permit2) and then signs a
cumulative voucher per request; the server claims many vouchers in one
transaction and sweeps the claimed funds to itself in another; what the payer
did not spend comes back by a cooperative refund or, after the channel's
withdraw delay, by the payer's own withdrawal. Payloads are signed by the
SDK's batch-settlement client, against requirements the SDK's server scheme
builds from ``get_supported()``; claims, settles and refunds are driven by the
SDK's own channel managers. The ledger counts the transactions and shows the
channels' state; ``transfers`` list only what left the contract.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from x402 import x402ResourceServer, x402ResourceServerSync
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme as BatchSettlementClient,
)
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmSchemeOptions,
    InMemoryClientChannelStorage,
    sign_voucher,
    update_channel_from_settle,
)
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
from x402.mechanisms.evm.batch_settlement.encoding import build_erc3009_deposit_nonce
from x402.mechanisms.evm.batch_settlement.errors import (
    ERR_CLAIM_SIMULATION_FAILED,
    ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED,
    ERR_CUMULATIVE_EXCEEDS_BALANCE,
    ERR_DEPOSIT_SIMULATION_FAILED,
    ERR_INVALID_VOUCHER_SIGNATURE,
)
from x402.mechanisms.evm.batch_settlement.server import (
    BatchSettlementEvmScheme,
    InMemoryChannelStorage,
)
from x402.mechanisms.evm.batch_settlement.server.channel_manager_common import (
    build_claim_payment_payload,
    build_payment_requirements,
)
from x402.mechanisms.evm.batch_settlement.server.scheme import (
    BatchSettlementEvmSchemeServerConfig,
)
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig, VoucherClaim
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id
from x402.mechanisms.evm.default_assets import get_default_asset
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import (
    PaymentPayload,
    PaymentRequirements,
    ResourceConfig,
    SettleResponse,
    SupportedKind,
)

from aixyz_sessions.payments.local import LocalFacilitator, Transfer
from tests.payments_helpers import NETWORK, PAY_TO

SCHEME = "batch-settlement"
PRICE = 1000  # $0.001 of USDC, per request
TOKEN = to_checksum_address(get_default_asset(NETWORK)["asset"])
CONTRACT = to_checksum_address(BATCH_SETTLEMENT_ADDRESS)


@pytest.fixture
def facilitator() -> LocalFacilitator:
    return LocalFacilitator()


def _kind(facilitator: LocalFacilitator, network: str = NETWORK) -> SupportedKind:
    return next(
        kind
        for kind in facilitator.get_supported().kinds
        if kind.scheme == SCHEME and kind.network == network
    )


def _requirements(
    facilitator: LocalFacilitator,
    method: str = "eip3009",
    server: BatchSettlementEvmScheme | None = None,
) -> PaymentRequirements:
    """What the SDK's server scheme asks for, delegating the receiver authorizer."""
    base = PaymentRequirements(
        scheme=SCHEME,
        network=NETWORK,
        asset=TOKEN,
        amount=str(PRICE),
        pay_to=PAY_TO,
        max_timeout_seconds=300,
        extra={"assetTransferMethod": method},
    )
    scheme = server or BatchSettlementEvmScheme(PAY_TO)
    return scheme.enhance_payment_requirements(base, _kind(facilitator), [])


@dataclass
class Payer:
    """A payer driving the SDK's batch-settlement client, with its local channel record."""

    account: LocalAccount = field(default_factory=Account.create)
    storage: InMemoryClientChannelStorage = field(default_factory=InMemoryClientChannelStorage)

    @property
    def address(self) -> str:
        return str(self.account.address)

    def client(self) -> BatchSettlementClient:
        options = BatchSettlementEvmSchemeOptions(storage=self.storage)
        return BatchSettlementClient(self.account, options)  # type: ignore[arg-type]

    def pay(self, requirements: PaymentRequirements) -> PaymentPayload:
        inner = self.client().create_payment_payload(requirements)
        return PaymentPayload(x402_version=2, payload=inner, accepted=requirements)

    def config(self, requirements: PaymentRequirements) -> ChannelConfig:
        return self.client().build_channel_config(requirements)

    def paid(
        self, payment: PaymentPayload, requirements: PaymentRequirements, settled: SettleResponse
    ) -> None:
        """Apply the server's answer to the local record, as the client's hooks do."""
        local: dict[str, str] = {
            "channel_id": payment.payload["voucher"]["channelId"],
            "request_amount": requirements.amount,
        }
        if "deposit" in payment.payload:
            local["deposit_amount"] = payment.payload["deposit"]["amount"]
        charged = (settled.extra or {}).get("chargedAmount", requirements.amount)
        update_channel_from_settle(
            self.storage,
            {"server": {"charged_amount": charged}, "local": local},  # type: ignore[typeddict-item]
        )


def _open(
    facilitator: LocalFacilitator, payer: Payer, method: str = "eip3009"
) -> tuple[PaymentRequirements, PaymentPayload]:
    """Deposit through the facilitator alone (no server): the requirements and the deposit."""
    requirements = _requirements(facilitator, method)
    deposit = payer.pay(requirements)
    assert deposit.payload["type"] == "deposit"
    settled = facilitator.settle_sync(deposit, requirements)
    assert settled.success, settled
    payer.paid(deposit, requirements, settled)
    return requirements, deposit


def _channel_id(payment: PaymentPayload) -> str:
    channel_id: str = payment.payload["voucher"]["channelId"]
    return channel_id


def _voucher(
    payer: Payer,
    requirements: PaymentRequirements,
    ceiling: int,
    signer: LocalAccount | None = None,
) -> PaymentPayload:
    """A voucher payload for ``ceiling``, signed by the payer (or by ``signer``)."""
    config = payer.config(requirements)
    cid = compute_channel_id(config, NETWORK)
    voucher = sign_voucher(EthAccountSigner(signer or payer.account), cid, ceiling, NETWORK)
    inner = {"type": "voucher", "channelConfig": config.to_dict(), "voucher": voucher.to_dict()}
    return PaymentPayload(x402_version=2, payload=inner, accepted=requirements)


# -- supported ----------------------------------------------------------------------------


def test_every_network_offers_batch_settlement_with_this_facilitators_authorizer(
    facilitator: LocalFacilitator,
) -> None:
    kinds = [k for k in facilitator.get_supported().kinds if k.scheme == SCHEME]
    assert sorted(k.network for k in kinds) == sorted(facilitator.networks)
    assert {str((k.extra or {})["receiverAuthorizer"]) for k in kinds} == {
        facilitator.receiver_authorizer
    }
    assert facilitator.receiver_authorizer == facilitator.authorizer.address
    # A key per facilitator: another instance authorizes for other channels.
    assert LocalFacilitator().receiver_authorizer != facilitator.receiver_authorizer
    server = BatchSettlementEvmScheme(PAY_TO)
    assert server.validate_facilitator_support(NETWORK, _kind(facilitator), []) is None
    requirements = _requirements(facilitator)
    assert (requirements.extra or {})["receiverAuthorizer"] == facilitator.receiver_authorizer


# -- deposits -----------------------------------------------------------------------------


def test_an_eip3009_deposit_verifies_settles_and_opens_the_channel(
    facilitator: LocalFacilitator,
) -> None:
    payer, ledger = Payer(), facilitator.ledger
    requirements = _requirements(facilitator)
    deposit = payer.pay(requirements)
    auth = deposit.payload["deposit"]["authorization"]["erc3009Authorization"]
    amount = int(deposit.payload["deposit"]["amount"])
    assert amount >= PRICE

    verified = facilitator.verify_sync(deposit, requirements)
    assert verified.is_valid and verified.payer == payer.address, verified
    assert (verified.extra or {})["balance"] == "0"  # nothing on chain yet
    assert ledger.transaction_count() == 0  # verifying only simulates

    settled = facilitator.settle_sync(deposit, requirements)
    assert settled.success and settled.amount == str(amount), settled
    assert settled.extra and settled.extra["channelState"]["balance"] == str(amount)

    channel = ledger.channel(_channel_id(deposit))
    assert channel is not None and channel.config == payer.config(requirements)
    assert (channel.balance, channel.total_claimed, channel.refund_nonce) == (amount, 0, 0)
    assert ledger.channel(_channel_id(deposit), chain_id=8453) is None  # another chain
    assert [(t.kind, t.tx) for t in ledger.transactions] == [("deposit", settled.transaction)]
    assert ledger.wait_for_transaction_receipt(settled.transaction).status == 1
    # The token's receiveWithAuthorization nonce, bound to the channel and the salt, is spent.
    nonce = build_erc3009_deposit_nonce(_channel_id(deposit), auth["salt"])
    assert ledger.is_used(TOKEN, payer.address, nonce)
    # Money went into escrow, to nobody yet.
    assert ledger.transfers == [] and ledger.settled_amount() == 0


async def test_a_permit2_deposit_verifies_and_settles_through_the_async_client(
    facilitator: LocalFacilitator,
) -> None:
    payer, ledger = Payer(), facilitator.ledger
    requirements = _requirements(facilitator, "permit2")
    deposit = payer.pay(requirements)
    auth = deposit.payload["deposit"]["authorization"]["permit2Authorization"]
    assert not ledger.is_permit2_nonce_used(payer.address, auth["nonce"])

    assert (await facilitator.verify(deposit, requirements)).is_valid
    settled = await facilitator.settle(deposit, requirements)
    assert settled.success, settled
    channel = ledger.channel(_channel_id(deposit))
    assert channel is not None and channel.balance == int(deposit.payload["deposit"]["amount"])
    assert ledger.is_permit2_nonce_used(payer.address, auth["nonce"])
    assert ledger.transaction_count("deposit") == ledger.transaction_count() == 1


@pytest.mark.parametrize("method", ["eip3009", "permit2"])
def test_a_replayed_deposit_is_refused_and_credits_nothing(
    facilitator: LocalFacilitator, method: str
) -> None:
    payer, ledger = Payer(), facilitator.ledger
    requirements, deposit = _open(facilitator, payer, method)
    balance = int(deposit.payload["deposit"]["amount"])

    verified = facilitator.verify_sync(deposit, requirements)
    assert not verified.is_valid and verified.invalid_reason == ERR_DEPOSIT_SIMULATION_FAILED
    expected = "authorization is used" if method == "eip3009" else "InvalidNonce()"
    assert expected in (verified.invalid_message or "")
    replay = facilitator.settle_sync(deposit, requirements)
    assert not replay.success and replay.error_reason == ERR_DEPOSIT_SIMULATION_FAILED
    channel = ledger.channel(_channel_id(deposit))
    assert channel is not None and channel.balance == balance
    assert ledger.transaction_count() == 1


def test_a_deposit_the_payer_did_not_sign_is_refused(facilitator: LocalFacilitator) -> None:
    payer = Payer()
    requirements = _requirements(facilitator)
    deposit = payer.pay(requirements)
    forged = copy.deepcopy(deposit.payload)
    forged["deposit"]["amount"] = str(int(forged["deposit"]["amount"]) * 2)
    payment = deposit.model_copy(update={"payload": forged})
    assert not facilitator.verify_sync(payment, requirements).is_valid
    assert not facilitator.settle_sync(payment, requirements).success
    assert facilitator.ledger.channel(_channel_id(deposit)) is None
    assert facilitator.ledger.transaction_count() == 0


# -- vouchers -----------------------------------------------------------------------------


def test_vouchers_are_checked_against_the_signature_the_balance_and_the_claimed_total(
    facilitator: LocalFacilitator,
) -> None:
    payer, ledger = Payer(), facilitator.ledger
    requirements, deposit = _open(facilitator, payer)
    balance = int(deposit.payload["deposit"]["amount"])

    good = _voucher(payer, requirements, 2 * PRICE)
    verified = facilitator.verify_sync(good, requirements)
    assert verified.is_valid and (verified.extra or {})["balance"] == str(balance), verified

    forged = _voucher(payer, requirements, 2 * PRICE, signer=Account.create())
    assert facilitator.verify_sync(forged, requirements).invalid_reason == (
        ERR_INVALID_VOUCHER_SIGNATURE
    )
    above = _voucher(payer, requirements, balance + 1)
    assert facilitator.verify_sync(above, requirements).invalid_reason == (
        ERR_CUMULATIVE_EXCEEDS_BALANCE
    )

    # The server claims 2 * PRICE; from then on a voucher must go beyond it.
    claim = VoucherClaim(
        channel=payer.config(requirements),
        max_claimable_amount=good.payload["voucher"]["maxClaimableAmount"],
        signature=good.payload["voucher"]["signature"],
        total_claimed=str(2 * PRICE),
    )
    claim_requirements = build_payment_requirements(PAY_TO, TOKEN, NETWORK)
    claimed = facilitator.settle_sync(
        build_claim_payment_payload([claim], claim_requirements, None), claim_requirements
    )
    assert claimed.success, claimed
    channel = ledger.channel(_channel_id(deposit))
    assert channel is not None and channel.total_claimed == 2 * PRICE
    for ceiling in (2 * PRICE, PRICE):
        stale = _voucher(payer, requirements, ceiling)
        assert facilitator.verify_sync(stale, requirements).invalid_reason == (
            ERR_CUMULATIVE_AMOUNT_BELOW_CLAIMED
        )
    assert facilitator.verify_sync(_voucher(payer, requirements, 3 * PRICE), requirements).is_valid


def test_the_contract_refuses_claims_beyond_the_voucher_or_without_the_authorizer(
    facilitator: LocalFacilitator,
) -> None:
    payer, ledger = Payer(), facilitator.ledger
    requirements, deposit = _open(facilitator, payer)
    voucher = _voucher(payer, requirements, 2 * PRICE).payload["voucher"]
    claim_requirements = build_payment_requirements(PAY_TO, TOKEN, NETWORK)

    def claim(total: int, authorizer_signature: str | None = None) -> SettleResponse:
        row = VoucherClaim(
            channel=payer.config(requirements),
            max_claimable_amount=voucher["maxClaimableAmount"],
            signature=voucher["signature"],
            total_claimed=str(total),
        )
        payload = build_claim_payment_payload([row], claim_requirements, authorizer_signature)
        return facilitator.settle_sync(payload, claim_requirements)

    above = claim(2 * PRICE + 1)
    assert not above.success and above.error_reason == ERR_CLAIM_SIMULATION_FAILED
    assert "ClaimExceedsVoucher()" in (above.error_message or "")
    stranger = "0x" + "11" * 65  # not the receiver authorizer's ClaimBatch signature
    unauthorized = claim(PRICE, stranger)
    assert not unauthorized.success and "InvalidAuthorizerSignature()" in (
        unauthorized.error_message or ""
    )
    assert claim(PRICE).success
    below = claim(PRICE - 1)
    assert not below.success and "ClaimBelowTotalClaimed()" in (below.error_message or "")
    channel = ledger.channel(_channel_id(deposit))
    assert channel is not None and channel.total_claimed == PRICE
    assert ledger.transaction_count("claim") == 1


# -- the server's channel manager: claim, settle, refund ----------------------------------


def _serve_sync(
    facilitator: LocalFacilitator,
) -> tuple[x402ResourceServerSync, BatchSettlementEvmScheme, PaymentRequirements]:
    scheme = BatchSettlementEvmScheme(
        PAY_TO, BatchSettlementEvmSchemeServerConfig(storage=InMemoryChannelStorage())
    )
    server = x402ResourceServerSync(facilitator.sync_client)
    server.register(NETWORK, scheme)  # type: ignore[arg-type]
    server.initialize()
    (requirements,) = server.build_payment_requirements(
        ResourceConfig(scheme=SCHEME, pay_to=PAY_TO, price="$0.001", network=NETWORK)
    )
    assert requirements.amount == str(PRICE)
    return server, scheme, requirements


def test_the_sync_channel_manager_claims_and_settles_many_vouchers_in_two_transactions(
    facilitator: LocalFacilitator,
) -> None:
    ledger = facilitator.ledger
    server, scheme, requirements = _serve_sync(facilitator)
    payers, requests = [Payer(), Payer()], 3
    for payer in payers:
        for _ in range(requests):
            payment = payer.pay(requirements)
            assert server.verify_payment(payment, requirements).is_valid
            settled = server.settle_payment(payment, requirements)
            assert settled.success, settled
            payer.paid(payment, requirements, settled)
    assert ledger.transaction_count() == ledger.transaction_count("deposit") == len(payers)

    manager = scheme.create_channel_manager_sync(facilitator.sync_client, NETWORK)
    done = manager.claim_and_settle()
    (claimed,) = done["claims"]
    assert claimed.vouchers == len(payers) and done["settle"] is not None
    assert ledger.transaction_count("claim") == 1 and ledger.transaction_count("settle") == 1
    assert ledger.transaction_count() == len(payers) + 2

    charged = len(payers) * requests * PRICE
    (transfer,) = ledger.transfers
    assert transfer == Transfer(
        chain_id=84532,
        token=TOKEN,
        payer=CONTRACT,
        pay_to=to_checksum_address(PAY_TO),
        amount=charged,
        tx=done["settle"].transaction,
    )
    assert ledger.settled_amount(pay_to=PAY_TO) == charged
    for payer in payers:
        channel = ledger.channel(ledger.channel_id(payer.config(requirements)))
        assert channel is not None and channel.total_claimed == requests * PRICE
    # Nothing new to claim: the next round sends no transaction.
    assert manager.claim() == []
    assert ledger.transaction_count() == len(payers) + 2


async def test_the_async_channel_manager_refunds_an_idle_channel_to_its_payer(
    facilitator: LocalFacilitator,
) -> None:
    ledger = facilitator.ledger
    scheme = BatchSettlementEvmScheme(PAY_TO)
    server = x402ResourceServer(facilitator)
    server.register(NETWORK, scheme)  # type: ignore[arg-type]
    server.initialize()
    (requirements,) = server.build_payment_requirements(
        ResourceConfig(scheme=SCHEME, pay_to=PAY_TO, price="$0.001", network=NETWORK)
    )
    payer = Payer()
    deposited = 0
    for _ in range(2):
        payment = payer.pay(requirements)
        if "deposit" in payment.payload:
            deposited = int(payment.payload["deposit"]["amount"])
        assert (await server.verify_payment(payment, requirements)).is_valid
        settled = await server.settle_payment(payment, requirements)
        assert settled.success, settled
        payer.paid(payment, requirements, settled)
    channel_id = ledger.channel_id(payer.config(requirements))

    manager = scheme.create_channel_manager(facilitator, NETWORK)
    (refund,) = await manager.refund_idle_channels(0)
    assert refund.channel == channel_id
    # One transaction: the outstanding voucher claimed and the rest refunded (a multicall).
    (tx,) = [t for t in ledger.transactions if t.kind == "multicall"]
    assert tx.calls == ("claim", "refund") and tx.tx == refund.transaction
    channel = ledger.channel(channel_id)
    assert channel is not None
    assert (channel.balance, channel.total_claimed, channel.refund_nonce) == (
        2 * PRICE,
        2 * PRICE,
        1,
    )
    assert ledger.settled_amount(pay_to=payer.address) == deposited - 2 * PRICE
    assert scheme.get_storage().get(channel_id) is None  # drained: the server forgets it

    settled = await manager.settle()
    assert ledger.settled_amount(pay_to=PAY_TO) == 2 * PRICE
    assert [t.pay_to for t in ledger.transfers] == [payer.address, to_checksum_address(PAY_TO)]
    assert settled.transaction == ledger.transfers[-1].tx
    assert ledger.transaction_count("refund") == 1 and ledger.transaction_count("claim") == 1


# -- the payer's timed withdrawal ---------------------------------------------------------


def test_a_withdrawal_is_finalized_only_after_the_channels_withdraw_delay(
    facilitator: LocalFacilitator,
) -> None:
    payer, ledger = Payer(), facilitator.ledger
    requirements, deposit = _open(facilitator, payer)
    config, balance = payer.config(requirements), int(deposit.payload["deposit"]["amount"])
    channel_id = _channel_id(deposit)
    assert config.withdraw_delay == (requirements.extra or {})["withdrawDelay"] == 900

    with pytest.raises(RuntimeError, match=r"Unauthorized\(\)"):
        ledger.initiate_withdraw(config, balance, sender=PAY_TO)  # not the payer's call
    with pytest.raises(RuntimeError, match=r"WithdrawExceedsUnclaimed\(\)"):
        ledger.initiate_withdraw(config, balance + 1)
    started = ledger.now()
    ledger.initiate_withdraw(config, balance)
    channel = ledger.channel(channel_id)
    assert channel is not None and (channel.withdraw_amount, channel.withdraw_requested_at) == (
        balance,
        started,
    )
    # The facilitator reports the pending withdrawal to the server.
    verified = facilitator.verify_sync(_voucher(payer, requirements, PRICE), requirements)
    assert (verified.extra or {})["withdrawRequestedAt"] == started

    with pytest.raises(RuntimeError, match=r"WithdrawDelayNotElapsed\(\)"):
        ledger.finalize_withdraw(config)
    ledger.advance_time(config.withdraw_delay - 1)
    with pytest.raises(RuntimeError, match=r"WithdrawDelayNotElapsed\(\)"):
        ledger.finalize_withdraw(config)
    assert ledger.settled_amount(pay_to=payer.address) == 0

    ledger.advance_time(1)
    tx = ledger.finalize_withdraw(config)
    channel = ledger.channel(channel_id)
    assert channel is not None and (channel.balance, channel.withdraw_requested_at) == (0, 0)
    assert ledger.transfers == [
        Transfer(84532, TOKEN, CONTRACT, payer.address, balance, tx),
    ]
    assert [t.kind for t in ledger.transactions] == [
        "deposit",
        "initiateWithdraw",
        "finalizeWithdraw",
    ]
    with pytest.raises(RuntimeError, match=r"NoPendingWithdrawal\(\)"):
        ledger.finalize_withdraw(config)


def test_claims_made_during_the_grace_period_come_before_the_withdrawal(
    facilitator: LocalFacilitator,
) -> None:
    payer, ledger = Payer(), facilitator.ledger
    requirements, deposit = _open(facilitator, payer)
    config, balance = payer.config(requirements), int(deposit.payload["deposit"]["amount"])
    ledger.initiate_withdraw(config, balance)
    voucher = _voucher(payer, requirements, PRICE).payload["voucher"]
    row = VoucherClaim(config, voucher["maxClaimableAmount"], voucher["signature"], str(PRICE))
    claim_requirements = build_payment_requirements(PAY_TO, TOKEN, NETWORK)
    payload = build_claim_payment_payload([row], claim_requirements, None)
    assert facilitator.settle_sync(payload, claim_requirements).success
    ledger.advance_time(config.withdraw_delay)
    ledger.finalize_withdraw(config)
    assert ledger.settled_amount(pay_to=payer.address) == balance - PRICE
    channel = ledger.channel(_channel_id(deposit))
    assert channel is not None and (channel.balance, channel.total_claimed) == (PRICE, PRICE)
