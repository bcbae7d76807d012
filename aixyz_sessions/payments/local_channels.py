"""The x402 ``batch-settlement`` contract, emulated in memory for :class:`LocalLedger`.

Emulated: the calls the SDK's batch-settlement facilitator scheme makes on its
signer, and the payer's withdraw path, with the contract's accounting and its
refusals:

* ``deposit(config, amount, collector, collectorData)`` through the ERC-3009
  collector (the token's ``receiveWithAuthorization``: validity window, nonce
  ``keccak(channelId, salt)`` spent once per chain and token, EIP-712
  signature by the payer) or the Permit2 collector (``permitWitnessTransferFrom``
  with the channel id as witness: deadline, Permit2 nonce spent once per chain,
  signature by the payer). The nonces live in the ledger's one nonce set, so a
  deposit and an ``exact`` payment cannot spend the same authorization twice;
* ``claimWithSignature(claims, sig)`` (and ``claim(claims)`` by the receiver
  side): every voucher's signature is recovered against the channel's payer
  authorizer (the payer when zero), the ``ClaimBatch`` signature against the one
  receiver authorizer of all rows; a claim is cumulative, at most the voucher's
  ceiling and the channel balance, never below what is claimed (equal: no-op);
* ``settle(receiver, token)``: moves claimed-but-unsettled funds to the receiver;
* ``refundWithSignature(config, amount, nonce, sig)`` (and ``refund`` by the
  receiver side): the nonce must be the channel's ``refundNonce``, which is
  bumped before the amount is capped to the unclaimed balance; a pending
  withdrawal shrinks by what was refunded;
* ``initiateWithdraw`` / ``finalizeWithdraw`` by the payer (or its payer
  authorizer), finalized only once the channel's ``withdrawDelay`` has passed
  on the ledger's clock;
* ``multicall(bytes[])``: its calls in order, all or nothing;
* the views ``channels``, ``pendingWithdrawals``, ``refundNonce``,
  ``receivers``, ``getChannelId``, directly or through Multicall3's
  ``tryAggregate`` (with the token's ``balanceOf``/``allowance``, always ample).

Not emulated: smart-wallet payers (EIP-1271, ERC-6492; EOA signatures only),
the EIP-2612 segment of a Permit2 deposit (reverts), the digest views
(``get*Digest``), events and gas. Tokens are those of the SDK's default assets
(their EIP-712 domain is needed to check an ERC-3009 signature); every payer's
token balance is ample, so deposits never fail for lack of funds. Revert names
are descriptive and need not match the deployed contract's custom errors.

:class:`BatchSettlementContract` expects its caller to hold the ledger's lock;
:class:`ChannelLedgerMixin` (the ledger's channel methods) takes it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from x402.mechanisms.evm import verify as sdk_verify
from x402.mechanisms.evm.batch_settlement.abi import BATCH_SETTLEMENT_ABI, ERC20_BALANCE_OF_ABI
from x402.mechanisms.evm.batch_settlement.constants import (
    BATCH_PERMIT2_WITNESS_TYPES,
    BATCH_SETTLEMENT_ADDRESS,
    CLAIM_BATCH_TYPES,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    RECEIVE_AUTHORIZATION_TYPES,
    REFUND_TYPES,
    VOUCHER_TYPES,
)
from x402.mechanisms.evm.batch_settlement.facilitator.utils import to_contract_channel_config
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig
from x402.mechanisms.evm.batch_settlement.utils import (
    compute_channel_id,
    get_batch_settlement_eip712_domain,
)
from x402.mechanisms.evm.constants import MULTICALL3_ADDRESS, PERMIT2_ADDRESS
from x402.mechanisms.evm.default_assets import find_default_asset

__all__ = [
    "BATCH_SETTLEMENT_CONTRACTS",
    "BatchSettlementContract",
    "ChannelLedgerMixin",
    "LocalChannel",
    "Movement",
    "NonceKey",
    "Transaction",
]

#: ``(chain id, contract, owner, nonce)``, the key format of the ledger's nonce set:
#: the token and a bare lower-case hex nonce (EIP-3009), or Permit2 and a decimal one.
NonceKey = tuple[int, str, str, str]

#: Addresses that have code on every chain of the ledger (the contract, its collectors, Multicall3).
BATCH_SETTLEMENT_CONTRACTS = frozenset(
    a.lower()
    for a in (
        BATCH_SETTLEMENT_ADDRESS,
        ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
        PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
        MULTICALL3_ADDRESS,
    )
)

_ZERO = "0x" + "00" * 20
_UINT128 = 2**128 - 1
_AMPLE = 10**30  # the ledger's answer to every balance and allowance
_ALLOWANCE_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "allowance",
        "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
        "stateMutability": "view",
    }
]
_VIEWS = frozenset({"channels", "pendingWithdrawals", "refundNonce", "receivers", "getChannelId"})


class Revert(RuntimeError):
    """A call the contract refuses (the message reads like a node's)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"execution reverted: {reason}")
        self.reason = reason


def _require(condition: bool, reason: str) -> None:
    if not condition:
        raise Revert(reason)


def _canonical(item: dict[str, Any]) -> str:
    kind: str = item["type"]
    if not kind.startswith("tuple"):
        return kind
    return "(" + ",".join(_canonical(c) for c in item["components"]) + ")" + kind[len("tuple") :]


@dataclass(frozen=True)
class _Function:
    name: str
    inputs: list[str]
    outputs: list[str]


def _functions(*abis: list[dict[str, Any]]) -> dict[bytes, _Function]:
    """Selector -> function, so calldata inside ``multicall``/``tryAggregate`` can be decoded."""
    table: dict[bytes, _Function] = {}
    for abi in abis:
        for entry in abi:
            if entry.get("type") != "function":
                continue
            inputs = [_canonical(i) for i in entry["inputs"]]
            outputs = [_canonical(o) for o in entry.get("outputs", [])]
            selector = keccak(text=f"{entry['name']}({','.join(inputs)})")[:4]
            table[selector] = _Function(entry["name"], inputs, outputs)
    return table


_SELECTORS = _functions(BATCH_SETTLEMENT_ABI, ERC20_BALANCE_OF_ABI, _ALLOWANCE_ABI)


def _decode_call(data: bytes) -> tuple[_Function, tuple[Any, ...]]:
    function = _SELECTORS.get(bytes(data[:4]))
    _require(function is not None, "unknown function selector")
    assert function is not None
    return function, tuple(abi_decode(function.inputs, bytes(data[4:])))


def _typed(
    domain: dict[str, Any], types: dict[str, Any], message: dict[str, Any]
) -> SignableMessage:
    return encode_typed_data(domain_data=domain, message_types=types, message_data=message)


def _recovered(signable: SignableMessage, signature: bytes) -> str | None:
    """The address ``ecrecover`` yields (``None`` where it would yield address(0))."""
    try:
        return to_checksum_address(Account.recover_message(signable, signature=bytes(signature)))
    except Exception:
        return None


def _payer_signed(signable: SignableMessage, signature: bytes, payer: str) -> bool:
    """The SDK's EOA check, looked up at call time.

    The SDK already recovered this exact deposit signature when it verified
    the payment; going through ``verify.verify_eoa_signature`` lets an active
    LocalFacilitator's memo answer the repeat instead of recovering a third time.
    """
    digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
    try:
        return sdk_verify.verify_eoa_signature(digest, bytes(signature), payer) is True
    except ValueError:
        return False


def _config(raw: Sequence[Any]) -> ChannelConfig:
    """A contract ``ChannelConfig`` tuple (as the SDK passes it, or ABI-decoded) as the SDK type."""
    payer, payer_authorizer, receiver, receiver_authorizer, token, delay, salt = raw
    salt_hex = "0x" + bytes(salt).hex() if isinstance(salt, bytes | bytearray) else str(salt)
    return ChannelConfig(
        payer=to_checksum_address(payer),
        payer_authorizer=to_checksum_address(payer_authorizer),
        receiver=to_checksum_address(receiver),
        receiver_authorizer=to_checksum_address(receiver_authorizer),
        token=to_checksum_address(token),
        withdraw_delay=int(delay),
        salt=salt_hex,
    )


def _channel_key(channel_id: object) -> str:
    if isinstance(channel_id, bytes | bytearray):
        return "0x" + bytes(channel_id).hex()
    return str(channel_id).lower()


def _same(one: str, other: str) -> bool:
    return one.lower() == other.lower()


@dataclass(frozen=True)
class Movement:
    """Tokens leaving the contract: to a receiver (settle) or back to a payer (refund, withdraw)."""

    token: str
    recipient: str
    amount: int


@dataclass(frozen=True)
class Transaction:
    """One transaction the ledger mined.

    ``kind`` is the function called (``deposit``, ``claimWithSignature``,
    ``settle``, ``refundWithSignature``, ``multicall``, ``initiateWithdraw``,
    ``finalizeWithdraw``; ``transfer`` for an ``exact``/``upto`` settlement);
    ``calls`` the operations it performed (a refund's ``multicall`` is
    ``("claim", "refund")``, one transaction).
    """

    chain_id: int
    kind: str
    tx: str
    calls: tuple[str, ...]

    @property
    def network(self) -> str:
        """The CAIP-2 network of :attr:`chain_id`."""
        return f"eip155:{self.chain_id}"


@dataclass(frozen=True)
class LocalChannel:
    """A channel's on-chain state, with the config it was opened with.

    ``balance`` is what was deposited less refunds and withdrawals (settling
    does not lower it); ``total_claimed`` the cumulative claim; a pending
    withdrawal is ``withdraw_amount`` requested at ``withdraw_requested_at``
    (ledger seconds, 0 when none).
    """

    chain_id: int
    channel_id: str
    config: ChannelConfig
    balance: int
    total_claimed: int
    refund_nonce: int
    withdraw_amount: int
    withdraw_requested_at: int

    @property
    def unclaimed(self) -> int:
        """What a refund or a withdrawal could still return to the payer."""
        return self.balance - self.total_claimed


@dataclass
class _Record:
    config: ChannelConfig
    balance: int = 0
    total_claimed: int = 0
    refund_nonce: int = 0
    withdraw_amount: int = 0
    withdraw_at: int = 0


@dataclass
class Outcome:
    """What an executed call did; the ledger records it as one transaction."""

    calls: list[str] = field(default_factory=list)
    spent: set[NonceKey] = field(default_factory=set)
    movements: list[Movement] = field(default_factory=list)


class _Call:
    """One transaction in progress: copy-on-write over the contract state, so a revert
    anywhere (also inside ``multicall``) leaves the contract untouched."""

    def __init__(
        self,
        contract: BatchSettlementContract,
        chain_id: int,
        now: int,
        used: set[NonceKey],
        sender: str,
    ) -> None:
        self.contract = contract
        self.chain_id = chain_id
        self.now = now
        self.used = used
        self.sender = sender
        self.records: dict[str, _Record] = {}
        self.receivers: dict[tuple[str, str], tuple[int, int]] = {}
        self.outcome = Outcome()

    # state access --------------------------------------------------------------------

    def record(self, channel_id: str, config: ChannelConfig | None = None) -> _Record:
        """The channel's storage; a fresh record when ``config`` is given (deposit)."""
        if channel_id not in self.records:
            base = self.contract._channels.get((self.chain_id, channel_id))
            if base is None:
                _require(config is not None, "ChannelNotFound()")
                assert config is not None
                base = _Record(config=config)
            self.records[channel_id] = copy.copy(base)
        return self.records[channel_id]

    def receiver(self, receiver: str, token: str) -> tuple[int, int]:
        key = (receiver.lower(), token.lower())
        if key in self.receivers:
            return self.receivers[key]
        return self.contract._receivers.get((self.chain_id, *key), (0, 0))

    def spend(self, key: NonceKey, reason: str) -> None:
        _require(key not in self.used and key not in self.outcome.spent, reason)
        self.outcome.spent.add(key)

    def channel_id(self, config: ChannelConfig) -> str:
        return compute_channel_id(config, self.chain_id).lower()

    def commit(self) -> None:
        for channel_id, record in self.records.items():
            self.contract._channels[(self.chain_id, channel_id)] = record
        for (receiver, token), totals in self.receivers.items():
            self.contract._receivers[(self.chain_id, receiver, token)] = totals

    # functions -----------------------------------------------------------------------

    def dispatch(self, function_name: str, args: Sequence[Any]) -> None:
        handlers: dict[str, Callable[..., None]] = {
            "deposit": self.deposit,
            "claimWithSignature": self.claim_with_signature,
            "claim": self.claim,
            "settle": self.settle,
            "refundWithSignature": self.refund_with_signature,
            "refund": self.refund,
            "initiateWithdraw": self.initiate_withdraw,
            "finalizeWithdraw": self.finalize_withdraw,
            "multicall": self.multicall,
        }
        handler = handlers.get(function_name)
        if handler is None:
            raise NotImplementedError(f"LocalLedger cannot call {function_name}() on the contract")
        handler(*args)

    def multicall(self, data: Sequence[bytes]) -> None:
        for call in data:
            function, args = _decode_call(call)
            _require(function.name != "multicall", "nested multicall")
            self.dispatch(function.name, args)

    def deposit(self, raw: Sequence[Any], amount: int, collector: str, data: bytes) -> None:
        config, amount = _config(raw), int(amount)
        _require(
            MIN_WITHDRAW_DELAY <= config.withdraw_delay <= MAX_WITHDRAW_DELAY,
            "InvalidWithdrawDelay()",
        )
        _require(not _same(config.receiver_authorizer, _ZERO), "InvalidReceiverAuthorizer()")
        _require(amount > 0, "ZeroAmount()")
        channel_id = self.channel_id(config)
        if _same(collector, ERC3009_DEPOSIT_COLLECTOR_ADDRESS):
            self._collect_erc3009(config, channel_id, amount, bytes(data))
        elif _same(collector, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS):
            self._collect_permit2(config, channel_id, amount, bytes(data))
        else:
            raise Revert("InvalidCollector()")
        record = self.record(channel_id, config)
        _require(record.balance + amount <= _UINT128, "BalanceOverflow()")
        record.balance += amount
        self.outcome.calls.append("deposit")

    def _collect_erc3009(
        self, config: ChannelConfig, channel_id: str, amount: int, data: bytes
    ) -> None:
        """The token's ``receiveWithAuthorization(payer -> collector)``, as USDC checks it."""
        valid_after, valid_before, salt, signature = abi_decode(
            ["uint256", "uint256", "uint256", "bytes"], data
        )
        nonce = keccak(abi_encode(["bytes32", "uint256"], [bytes.fromhex(channel_id[2:]), salt]))
        asset = find_default_asset(config.token, f"eip155:{self.chain_id}")
        _require(asset is not None, "token unknown to the LocalLedger (no EIP-712 domain)")
        assert asset is not None
        _require(self.now > valid_after, "FiatTokenV2: authorization is not yet valid")
        _require(self.now < valid_before, "FiatTokenV2: authorization is expired")
        key = (self.chain_id, config.token.lower(), config.payer.lower(), nonce.hex())
        self.spend(key, "FiatTokenV2: authorization is used or canceled")
        domain = {
            "name": asset["name"],
            "version": asset["version"],
            "chainId": self.chain_id,
            "verifyingContract": config.token,
        }
        message = {
            "from": config.payer,
            "to": to_checksum_address(ERC3009_DEPOSIT_COLLECTOR_ADDRESS),
            "value": amount,
            "validAfter": valid_after,
            "validBefore": valid_before,
            "nonce": nonce,
        }
        signable = _typed(domain, RECEIVE_AUTHORIZATION_TYPES, message)
        _require(_payer_signed(signable, signature, config.payer), "FiatTokenV2: invalid signature")

    def _collect_permit2(
        self, config: ChannelConfig, channel_id: str, amount: int, data: bytes
    ) -> None:
        """Permit2's ``permitWitnessTransferFrom`` with the channel id as witness."""
        nonce, deadline, signature, eip2612 = abi_decode(
            ["uint256", "uint256", "bytes", "bytes"], data
        )
        _require(not eip2612, "EIP-2612 permit segment not emulated by the LocalLedger")
        _require(self.now <= deadline, "SignatureExpired()")
        key = (self.chain_id, PERMIT2_ADDRESS.lower(), config.payer.lower(), str(int(nonce)))
        self.spend(key, "InvalidNonce()")
        domain = {"name": "Permit2", "chainId": self.chain_id, "verifyingContract": PERMIT2_ADDRESS}
        message = {
            "permitted": {"token": config.token, "amount": amount},
            "spender": to_checksum_address(PERMIT2_DEPOSIT_COLLECTOR_ADDRESS),
            "nonce": int(nonce),
            "deadline": int(deadline),
            "witness": {"channelId": bytes.fromhex(channel_id[2:])},
        }
        signable = _typed(domain, BATCH_PERMIT2_WITNESS_TYPES, message)
        _require(_payer_signed(signable, signature, config.payer), "InvalidSigner()")

    def _rows(self, claims: Sequence[Any]) -> list[tuple[ChannelConfig, str, int, bytes, int]]:
        _require(len(claims) > 0, "EmptyClaims()")
        rows = []
        for (raw, max_claimable), signature, total in claims:
            config = _config(raw)
            rows.append(
                (config, self.channel_id(config), int(max_claimable), bytes(signature), int(total))
            )
        return rows

    def claim_with_signature(self, claims: Sequence[Any], signature: bytes) -> None:
        rows = self._rows(claims)
        authorizer = rows[0][0].receiver_authorizer
        for config, *_ in rows:
            _require(_same(config.receiver_authorizer, authorizer), "ReceiverAuthorizerMismatch()")
        entries = [
            {
                "channelId": bytes.fromhex(cid[2:]),
                "maxClaimableAmount": ceiling,
                "totalClaimed": total,
            }
            for _, cid, ceiling, _, total in rows
        ]
        domain = get_batch_settlement_eip712_domain(self.chain_id)
        signable = _typed(domain, CLAIM_BATCH_TYPES, {"claims": entries})
        signer = _recovered(signable, signature)
        _require(signer is not None and _same(signer, authorizer), "InvalidAuthorizerSignature()")
        self._apply_claims(rows)

    def claim(self, claims: Sequence[Any]) -> None:
        rows = self._rows(claims)
        for config, *_ in rows:
            _require(
                _same(self.sender, config.receiver)
                or _same(self.sender, config.receiver_authorizer),
                "Unauthorized()",
            )
        self._apply_claims(rows)

    def _apply_claims(self, rows: list[tuple[ChannelConfig, str, int, bytes, int]]) -> None:
        domain = get_batch_settlement_eip712_domain(self.chain_id)
        for config, channel_id, ceiling, signature, total in rows:
            record = self.record(channel_id)
            voucher_signer = (
                config.payer if _same(config.payer_authorizer, _ZERO) else config.payer_authorizer
            )
            message = {"channelId": bytes.fromhex(channel_id[2:]), "maxClaimableAmount": ceiling}
            signer = _recovered(_typed(domain, VOUCHER_TYPES, message), signature)
            _require(
                signer is not None and _same(signer, voucher_signer), "InvalidVoucherSignature()"
            )
            _require(total <= ceiling, "ClaimExceedsVoucher()")
            _require(total <= record.balance, "ClaimExceedsBalance()")
            _require(total >= record.total_claimed, "ClaimBelowTotalClaimed()")
            increase = total - record.total_claimed
            record.total_claimed = total
            claimed, settled = self.receiver(config.receiver, config.token)
            self.receivers[(config.receiver.lower(), config.token.lower())] = (
                claimed + increase,
                settled,
            )
        self.outcome.calls.append("claim")

    def settle(self, receiver: str, token: str) -> None:
        # Permissionless: whoever sends it, the money goes to the receiver.
        claimed, settled = self.receiver(receiver, token)
        self.receivers[(receiver.lower(), token.lower())] = (claimed, claimed)
        if claimed > settled:
            self.outcome.movements.append(
                Movement(
                    to_checksum_address(token), to_checksum_address(receiver), claimed - settled
                )
            )
        self.outcome.calls.append("settle")

    def refund_with_signature(
        self, raw: Sequence[Any], amount: int, nonce: int, signature: bytes
    ) -> None:
        config = _config(raw)
        channel_id = self.channel_id(config)
        record = self.record(channel_id)
        _require(int(nonce) == record.refund_nonce, "InvalidRefundNonce()")
        message = {
            "channelId": bytes.fromhex(channel_id[2:]),
            "nonce": int(nonce),
            "amount": int(amount),
        }
        domain = get_batch_settlement_eip712_domain(self.chain_id)
        signer = _recovered(_typed(domain, REFUND_TYPES, message), signature)
        _require(
            signer is not None and _same(signer, config.receiver_authorizer),
            "InvalidRefundSignature()",
        )
        self._refund(config, record, int(amount))

    def refund(self, raw: Sequence[Any], amount: int) -> None:
        config = _config(raw)
        _require(
            _same(self.sender, config.receiver) or _same(self.sender, config.receiver_authorizer),
            "Unauthorized()",
        )
        self._refund(config, self.record(self.channel_id(config)), int(amount))

    def _refund(self, config: ChannelConfig, record: _Record, amount: int) -> None:
        # The nonce moves first, so even a refund that returns nothing spends its signature.
        record.refund_nonce += 1
        returned = min(amount, record.balance - record.total_claimed)
        if returned > 0:
            record.balance -= returned
            if record.withdraw_amount:
                if returned >= record.withdraw_amount:
                    record.withdraw_amount = record.withdraw_at = 0
                else:
                    record.withdraw_amount -= returned
            self.outcome.movements.append(Movement(config.token, config.payer, returned))
        self.outcome.calls.append("refund")

    def _require_payer_side(self, config: ChannelConfig) -> None:
        _require(
            _same(self.sender, config.payer)
            or (
                not _same(config.payer_authorizer, _ZERO)
                and _same(self.sender, config.payer_authorizer)
            ),
            "Unauthorized()",
        )

    def initiate_withdraw(self, raw: Sequence[Any], amount: int) -> None:
        config, amount = _config(raw), int(amount)
        self._require_payer_side(config)
        record = self.record(self.channel_id(config))
        _require(record.withdraw_at == 0, "WithdrawalAlreadyPending()")
        _require(amount > 0, "ZeroAmount()")
        _require(amount <= record.balance - record.total_claimed, "WithdrawExceedsUnclaimed()")
        record.withdraw_amount, record.withdraw_at = amount, self.now
        self.outcome.calls.append("initiateWithdraw")

    def finalize_withdraw(self, raw: Sequence[Any]) -> None:
        config = _config(raw)
        self._require_payer_side(config)
        record = self.record(self.channel_id(config))
        _require(record.withdraw_at != 0, "NoPendingWithdrawal()")
        _require(
            self.now >= record.withdraw_at + config.withdraw_delay, "WithdrawDelayNotElapsed()"
        )
        # Claims made during the grace period come first: only unclaimed escrow leaves.
        returned = min(record.withdraw_amount, record.balance - record.total_claimed)
        record.balance -= returned
        record.withdraw_amount = record.withdraw_at = 0
        if returned > 0:
            self.outcome.movements.append(Movement(config.token, config.payer, returned))
        self.outcome.calls.append("finalizeWithdraw")


class BatchSettlementContract:
    """The contract's storage on every chain of one ledger, keyed by chain id."""

    def __init__(self) -> None:
        self._channels: dict[tuple[int, str], _Record] = {}
        self._receivers: dict[tuple[int, str, str], tuple[int, int]] = {}

    @staticmethod
    def serves(address: str, function_name: str) -> bool:
        """Whether a read or write at ``address`` is this emulation's to answer."""
        return _same(address, BATCH_SETTLEMENT_ADDRESS) or (
            _same(address, MULTICALL3_ADDRESS) and function_name == "tryAggregate"
        )

    def channel(self, chain_id: int, channel_id: str) -> LocalChannel | None:
        """The channel's state, ``None`` if it never received a deposit on that chain."""
        key = _channel_key(channel_id)
        record = self._channels.get((chain_id, key))
        if record is None:
            return None
        return LocalChannel(
            chain_id=chain_id,
            channel_id=key,
            config=record.config,
            balance=record.balance,
            total_claimed=record.total_claimed,
            refund_nonce=record.refund_nonce,
            withdraw_amount=record.withdraw_amount,
            withdraw_requested_at=record.withdraw_at,
        )

    def execute(
        self,
        chain_id: int,
        now: int,
        used: set[NonceKey],
        sender: str,
        function_name: str,
        args: Sequence[Any],
        *,
        commit: bool,
    ) -> Outcome:
        """Run a state-changing call; keep its effects only with ``commit`` (else: a simulation).

        The caller adds :attr:`Outcome.spent` to its nonce set and records the movements.
        """
        call = _Call(self, chain_id, now, used, sender)
        call.dispatch(function_name, args)
        if commit:
            call.commit()
        return call.outcome

    def read(
        self,
        chain_id: int,
        now: int,
        used: set[NonceKey],
        sender: str,
        address: str,
        function_name: str,
        args: Sequence[Any],
    ) -> Any:
        """A view, a simulated call (``eth_call``: returns ``None`` or reverts), or Multicall3."""
        if _same(address, MULTICALL3_ADDRESS):
            return self._try_aggregate(chain_id, bool(args[0]), args[1])
        if function_name in _VIEWS:
            return self._view(chain_id, function_name, args)
        self.execute(chain_id, now, used, sender, function_name, args, commit=False)
        return None

    def _view(self, chain_id: int, function_name: str, args: Sequence[Any]) -> Any:
        if function_name == "receivers":
            key = (chain_id, str(args[0]).lower(), str(args[1]).lower())
            return self._receivers.get(key, (0, 0))
        if function_name == "getChannelId":
            return bytes.fromhex(compute_channel_id(_config(args[0]), chain_id)[2:])
        record = self._channels.get((chain_id, _channel_key(args[0])))
        if function_name == "channels":
            return (record.balance, record.total_claimed) if record else (0, 0)
        if function_name == "pendingWithdrawals":
            return (record.withdraw_amount, record.withdraw_at) if record else (0, 0)
        return record.refund_nonce if record else 0  # refundNonce

    def _try_aggregate(
        self, chain_id: int, require_success: bool, calls: Sequence[Any]
    ) -> list[tuple[bool, bytes]]:
        results: list[tuple[bool, bytes]] = []
        for target, data in calls:
            try:
                function, args = _decode_call(bytes(data))
                if _same(str(target), BATCH_SETTLEMENT_ADDRESS) and function.name in _VIEWS:
                    value = self._view(chain_id, function.name, args)
                elif function.name in ("balanceOf", "allowance"):
                    value = _AMPLE
                else:
                    raise Revert(f"{function.name}() is not a view the LocalLedger answers")
                values = list(value) if isinstance(value, tuple) else [value]
                results.append((True, abi_encode(function.outputs, values)))
            except Revert:
                if require_success:
                    raise
                results.append((False, b""))
        return results


class ChannelLedgerState(Protocol):
    """What :class:`ChannelLedgerMixin` needs of the ledger's shared state."""

    lock: threading.Lock
    fail_settlements: str | None
    used: set[NonceKey]
    transactions: list[Transaction]
    contract: BatchSettlementContract
    clock: Callable[[], float]
    time_offset: int


class ChannelLedgerMixin:
    """The ledger's batch-settlement face: its clock, transactions, channels and the
    payer's withdraw calls (kept here so that ``local.py`` stays about the ledger itself)."""

    chain_id: int
    _state: ChannelLedgerState

    def _mine(
        self, kind: str, calls: tuple[str, ...], movements: list[Movement], payer: str = ""
    ) -> str:
        """Record one transaction (its receipt, its transfers); the caller holds the lock."""
        raise NotImplementedError

    def _chain(self, chain_id: int | None) -> int:
        return self.chain_id if chain_id is None else chain_id

    def now(self) -> int:
        """The chain's time in seconds (every chain shares the one clock)."""
        return int(self._state.clock()) + self._state.time_offset

    def advance_time(self, seconds: int) -> None:
        """Move the chain's clock forward (e.g. past a channel's withdraw delay)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._state.lock:
            self._state.time_offset += seconds

    @property
    def transactions(self) -> list[Transaction]:
        """Every transaction mined, oldest first, on every chain (a copy)."""
        with self._state.lock:
            return list(self._state.transactions)

    def transaction_count(self, kind: str | None = None, *, chain_id: int | None = None) -> int:
        """How many transactions match: ``kind`` is a function (``claimWithSignature``,
        ``multicall``...) or an operation a transaction performed (``deposit``,
        ``claim``, ``settle``, ``refund``, ``initiateWithdraw``, ``finalizeWithdraw``,
        ``transfer``); a refund's multicall counts once as ``claim`` and once as ``refund``.
        """
        return sum(
            1
            for tx in self.transactions
            if (kind is None or kind == tx.kind or kind in tx.calls)
            and (chain_id is None or tx.chain_id == chain_id)
        )

    def channel(self, channel_id: str, *, chain_id: int | None = None) -> LocalChannel | None:
        """A batch-settlement channel's state on this (or the given) chain; ``None`` if unknown."""
        with self._state.lock:
            return self._state.contract.channel(self._chain(chain_id), channel_id)

    def channel_id(self, config: ChannelConfig, *, chain_id: int | None = None) -> str:
        """The id of the channel ``config`` opens on this (or the given) chain."""
        return compute_channel_id(config, self._chain(chain_id)).lower()

    def initiate_withdraw(
        self, config: ChannelConfig, amount: int, *, sender: str | None = None
    ) -> str:
        """The payer's ``initiateWithdraw(config, amount)`` transaction on this chain."""
        args = (to_contract_channel_config(config), int(amount))
        return self._send(sender or config.payer, "initiateWithdraw", args, failable=False)

    def finalize_withdraw(self, config: ChannelConfig, *, sender: str | None = None) -> str:
        """The payer's ``finalizeWithdraw(config)`` (reverts before the withdraw delay passed)."""
        args = (to_contract_channel_config(config),)
        return self._send(sender or config.payer, "finalizeWithdraw", args, failable=False)

    def _send(self, sender: str, function_name: str, args: tuple[Any, ...], failable: bool) -> str:
        """Mine one call to the batch-settlement contract from ``sender``."""
        state = self._state
        with state.lock:
            if failable and state.fail_settlements is not None:
                raise RuntimeError(f"execution reverted: {state.fail_settlements}")
            outcome = state.contract.execute(
                self.chain_id, self.now(), state.used, sender, function_name, args, commit=True
            )
            state.used |= outcome.spent
            return self._mine(function_name, tuple(outcome.calls), outcome.movements)
