"""``LocalFacilitator``: the SDK's own EVM facilitator schemes over an in-memory ledger.

For development and tests. Nothing leaves the process and NO MONEY MOVES.
Verification is the real thing: the ``x402`` SDK's ``x402FacilitatorSync``
with its ``exact`` and ``upto`` EVM schemes checks the EIP-712 signature
(public-key recovery), amount, recipient, facilitator, network, asset and
validity window, exactly as a hosted facilitator does. Only the chain is
replaced, by :class:`LocalLedger`, a stand-in for the SDK's
``FacilitatorEvmSigner``:

* every payer's balance, and its Permit2 allowance, is always sufficient;
* the token contracts of the SDK's default assets "exist" (have code) on every
  chain, every other address is a plain account (EOA signatures only, no smart
  wallets);
* every EVM network the SDK has a default asset for is served, each on its own
  chain: the ledger keeps its nonce state and receipts per chain id (from the
  CAIP-2 network), so one nonce on two chains is two authorizations, as on
  real chains. Each network's schemes get a view of the ledger for their chain
  (:meth:`LocalLedger.for_chain`); all views share one state, one lock and one
  ``fail_settlements`` switch;
* settling records the authorization's nonce, so a settled payment never
  verifies or settles again (EIP-3009's ``authorization is used``; for
  Permit2, whose SDK verification reads no nonce state, this facilitator
  refuses a used ``(owner, nonce)`` before the SDK's checks, as the Permit2
  contract would revert). Both x402 Permit2 proxies spend the one Permit2
  nonce of an owner on a chain, as on chain;
* three settlements: ``exact`` by EIP-3009 ``transferWithAuthorization`` on the
  token or by the x402 exact Permit2 proxy's ``settle`` (the signed amount),
  and ``upto`` by the x402 upto Permit2 proxy's ``settle``, which moves the
  amount the server settles, at most the signed maximum. The ledger reverts
  there as the proxy would: ``AmountExceedsPermitted()`` above the maximum,
  ``UnauthorizedFacilitator()`` when the witness names another facilitator
  than the ledger's, ``InvalidNonce()`` for a spent nonce. The SDK settles an
  ``upto`` amount of 0 without any transaction: nothing is recorded, and the
  nonce stays unspent (as on chain);
* ``ledger.transfers`` lists what each settlement would have moved (chain,
  token, payer, recipient, atomic amount, transaction), and
  ``ledger.settled_amount(payer=..., pay_to=...)`` sums it, so a test can see
  that an ``upto`` call charged what it used, not what it authorized;
* ``batch-settlement`` (payment channels) by the SDK's own facilitator scheme
  over the ledger's emulation of the x402 batch-settlement contract and its
  deposit collectors (:mod:`.local_channels`): deposits, claims, settles,
  refunds, the payer's timed withdrawal on the ledger's clock (``ledger.now()``,
  ``ledger.advance_time(seconds)``). Each facilitator holds its own receiver
  authorizer key (:attr:`LocalFacilitator.receiver_authorizer`, advertised in
  ``get_supported()``) and signs the claims and refunds of channels that name it;
  ``ledger.channel(channel_id)`` shows a channel's state;
* every state-changing write is one transaction with a receipt:
  ``ledger.transactions``, ``ledger.transaction_count(kind=..., chain_id=...)``;
* ``ledger.fail_settlements = "reason"`` makes settlement fail (for tests).

A paid call verifies and then settles the same payload, and the SDK's settle
verifies again: the signer's public key would be recovered twice. Each
facilitator memoizes the one pure step, the SDK's EOA check ``(digest,
signature, address) -> valid`` (see :class:`RecoveryMemo`), so the second
check is a lookup; every other check (validity window, nonce state, amount,
recipient, network, asset) still runs on settle.

Select it with ``AIXYZ_X402 = {..., "FACILITATOR": "local"}``; the system check
warns when it is used with ``DEBUG = False``.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from eth_account import Account
from eth_utils.address import to_checksum_address
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import verify as sdk_verify
from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner
from x402.mechanisms.evm.batch_settlement.constants import BATCH_SETTLEMENT_ADDRESS
from x402.mechanisms.evm.batch_settlement.facilitator import BatchSettlementEvmFacilitator
from x402.mechanisms.evm.constants import (
    PERMIT2_ADDRESS,
    X402_EXACT_PERMIT2_PROXY_ADDRESS,
    X402_UPTO_PERMIT2_PROXY_ADDRESS,
)
from x402.mechanisms.evm.default_assets import DEFAULT_ASSETS
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.mechanisms.evm.types import TransactionReceipt
from x402.mechanisms.evm.upto import UptoEvmFacilitatorScheme
from x402.mechanisms.evm.utils import get_evm_chain_id
from x402.schemas import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    SchemeNotFoundError,
    SettleResponse,
    SupportedKind,
    SupportedResponse,
    VerifyResponse,
)

from ..lazy import Lazy
from .local_channels import (
    BATCH_SETTLEMENT_CONTRACTS,
    BatchSettlementContract,
    ChannelLedgerMixin,
    LocalChannel,
    Movement,
    Transaction,
)

__all__ = [
    "LocalChannel",
    "LocalFacilitator",
    "LocalFacilitatorSync",
    "LocalLedger",
    "RecoveryMemo",
    "Transaction",
    "Transfer",
    "get_local_facilitator",
]

logger = logging.getLogger("aixyz_sessions.payments")

FACILITATOR_ADDRESS = to_checksum_address("0x" + "fa" * 20)
_TRANSFER = "transferWithAuthorization"
_USED = "FiatTokenV2: authorization is used or canceled"
_PERMIT2_SETTLE = "settle"
_PERMIT2_USED = "InvalidNonce()"
# The x402 upto Permit2 proxy's own reverts (the names the SDK's settle error mapping knows).
_UPTO_ABOVE_PERMITTED = "AmountExceedsPermitted()"
_UPTO_NOT_FACILITATOR = "UnauthorizedFacilitator()"
#: Default bound of a facilitator's :class:`RecoveryMemo` (entries of ~0.3 KB).
RECOVERY_CACHE_SIZE = 4096
_warned = False
_warn_lock = threading.Lock()


def _warn_once() -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    logger.warning(
        "aixyz_sessions: LocalFacilitator in use: payments are verified but NO MONEY MOVES. "
        "Use a real facilitator (AIXYZ_X402['FACILITATOR_URL']) in production."
    )


EoaCheck = Callable[[bytes, bytes, str], bool]


class RecoveryMemo:
    """A bounded, thread-safe LRU memo of the SDK's EOA signature check.

    The memoized function is ``x402.mechanisms.evm.verify.verify_eoa_signature
    (hash, signature, expected_address) -> bool``: secp256k1 public-key recovery
    from ``signature`` over the 32-byte EIP-712 ``hash``, compared with the
    expected address. It reads no clock, no ledger and no chain, so the same
    three inputs give the same answer forever, and only that answer is kept:
    the memo remembers which exact ``(hash, signature, address)`` triples
    recovered to their address (``True``). Invalid signatures and inputs the
    check raises on are recomputed every time, never stored, so forged
    payloads cannot evict the valid entries and nothing but a validity the SDK
    itself computed is ever replayed. The key is the digest, i.e. the exact
    signed content (domain: chain, token or Permit2 contract; message:
    recipient, amount, nonce, validity window...), the signature bytes and the
    expected address (Permit2's message does not name the owner).

    It caches no verdict: time, nonce state, amount, recipient and network
    checks are outside the memoized function and run on every call.
    """

    def __init__(self, maxsize: int = RECOVERY_CACHE_SIZE) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._valid: OrderedDict[tuple[bytes, bytes, str], None] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._valid)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._valid.clear()

    def check(self, compute: EoaCheck, hash: bytes, signature: bytes, address: str) -> bool:
        """``compute(hash, signature, address)``, answered from the memo when known valid."""
        if not (type(hash) is bytes and type(signature) is bytes and type(address) is str):
            return compute(hash, signature, address)  # unusual inputs: no memo
        key = (hash, signature, address)
        with self._lock:
            if key in self._valid:
                self._valid.move_to_end(key)
                return True
        valid = compute(hash, signature, address)  # outside the lock: CPU work
        if valid is True and self.maxsize:
            with self._lock:
                self._valid[key] = None
                self._valid.move_to_end(key)
                while len(self._valid) > self.maxsize:
                    self._valid.popitem(last=False)
        return valid


# The SDK recovers EOA signers in one function, ``verify_eoa_signature`` in
# ``x402.mechanisms.evm.verify``, which both exact-EVM branches and upto reach
# through that module's globals (EIP-3009: ``verify_universal_signature``;
# exact and upto Permit2: ``verify_typed_data_strict``). Neither the scheme nor the signer protocol
# offers a hook there: the signer is asked only for ``get_code(payer)``, with
# no digest or signature. So that one module attribute is replaced, once, by a
# pass-through that consults a memo only while a LocalFacilitator runs the SDK
# in the current context (a ContextVar, so per thread / per task): every other
# caller in the process gets the function it replaced, called with the same
# arguments, and the result is the SDK's own in both cases. The name the
# package re-exports (``x402.mechanisms.evm.verify_eoa_signature``) is untouched.
_active_memo: contextvars.ContextVar[RecoveryMemo | None] = contextvars.ContextVar(
    "aixyz_local_recovery_memo", default=None
)
_hook_lock = threading.Lock()
_HOOK_MARK = "_aixyz_local_recovery_hook"


def _install_recovery_hook() -> None:
    """Route ``verify.verify_eoa_signature`` through the active memo (idempotent)."""
    if getattr(sdk_verify.verify_eoa_signature, _HOOK_MARK, False):
        return
    with _hook_lock:
        inner: EoaCheck = sdk_verify.verify_eoa_signature
        if getattr(inner, _HOOK_MARK, False):
            return

        @functools.wraps(inner)
        def verify_eoa_signature(hash: bytes, signature: bytes, expected_address: str) -> bool:
            memo = _active_memo.get()
            if memo is None:
                return inner(hash, signature, expected_address)
            return memo.check(inner, hash, signature, expected_address)

        setattr(verify_eoa_signature, _HOOK_MARK, True)
        sdk_verify.verify_eoa_signature = verify_eoa_signature


@dataclass(frozen=True)
class Transfer:
    """What one settlement moved, as the token's ``Transfer`` event would record it.

    ``amount`` is in the token's atomic units: for EIP-3009 and exact Permit2
    the signed amount, for ``upto`` the amount the server settled (at most the
    signed maximum). A batch-settlement ``settle`` (to the receiver) or refund
    or withdrawal (back to the channel's payer) is sent by the contract, so its
    ``payer`` is ``BATCH_SETTLEMENT_ADDRESS``; deposits move nothing to anyone
    yet and are not listed. Addresses are checksummed.
    """

    chain_id: int
    token: str
    payer: str
    pay_to: str
    amount: int
    tx: str

    @property
    def network(self) -> str:
        """The CAIP-2 network of :attr:`chain_id` (``eip155:<chain id>``)."""
        return f"eip155:{self.chain_id}"


#: ``(chain id, contract, owner, nonce)``: the contract is the token (EIP-3009) or
#: Permit2, whose nonces both x402 proxies spend.
_NonceKey = tuple[int, str, str, str]


class _Settlement(NamedTuple):
    """A transfer call, parsed: the nonce it spends, its revert when spent, what it moves."""

    key: _NonceKey
    used: str
    token: str
    payer: str
    pay_to: str
    amount: int


class _LedgerState:
    """The one state every chain view of a :class:`LocalLedger` shares, and its lock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.lock: threading.Lock = threading.Lock()
        self.fail_settlements: str | None = None
        self.used: set[_NonceKey] = set()
        self.receipts: dict[tuple[int, str], TransactionReceipt] = {}
        self.transfers: list[Transfer] = []
        self.transactions: list[Transaction] = []
        self.contract = BatchSettlementContract()
        self.clock: Callable[[], float] = clock
        self.time_offset: int = 0


def _nonce_hex(nonce: object) -> str:
    """An EIP-3009 nonce (``bytes32`` or hex text) as bare lower-case hex."""
    text = nonce.hex() if isinstance(nonce, bytes | bytearray) else str(nonce)
    return text.lower().removeprefix("0x")


def _same_address(one: object, other: str) -> bool:
    return str(one).lower() == other.lower()


_CONTRACTS = BATCH_SETTLEMENT_CONTRACTS | frozenset(
    entry["asset"].lower() for entries in DEFAULT_ASSETS.values() for entry in entries
)


class LocalLedger(ChannelLedgerMixin):
    """In-memory stand-in for the SDK's ``FacilitatorEvmSigner`` (no chain, no network).

    A ledger signs for ``chain_id``; :meth:`for_chain` gives the signer of any
    other chain, a view sharing this ledger's state: the used nonces, receipts
    and transfers of every chain (each keyed by its chain id), one lock and one
    ``fail_settlements`` switch. The queries (:meth:`is_used`,
    :meth:`is_permit2_nonce_used`) default to the ledger's own chain; the
    totals (:attr:`settled_count`, :attr:`transfers`, :meth:`settled_amount`)
    cover every chain unless asked for one.

    The chain's clock (``block.timestamp`` for the batch-settlement contract)
    is ``clock()`` (default ``time.time``) plus what :meth:`advance_time` added.

    Thread-safe: all state sits behind the one lock.
    """

    _state: _LedgerState

    def __init__(self, *, chain_id: int = 84532, clock: Callable[[], float] | None = None) -> None:
        self.chain_id = chain_id
        #: The address this facilitator "sends" from: the ``upto`` witness must name it.
        self.facilitator_address = FACILITATOR_ADDRESS
        self._state = _LedgerState(clock or time.time)

    def for_chain(self, chain_id: int) -> LocalLedger:
        """This ledger as the signer of ``chain_id`` (same state, lock and switch)."""
        if chain_id == self.chain_id:
            return self
        view = copy.copy(self)  # shares ``_state``
        view.chain_id = chain_id
        return view

    @property
    def fail_settlements(self) -> str | None:
        """When set, settlement fails with this revert message, on every chain."""
        return self._state.fail_settlements

    @fail_settlements.setter
    def fail_settlements(self, reason: str | None) -> None:
        self._state.fail_settlements = reason

    @property
    def settled_count(self) -> int:
        """How many authorizations have been settled (nonces spent), on every chain."""
        with self._state.lock:
            return len(self._state.used)

    @property
    def transfers(self) -> list[Transfer]:
        """Every settled transfer, oldest first, on every chain (a copy)."""
        with self._state.lock:
            return list(self._state.transfers)

    def settled_amount(
        self,
        payer: str | None = None,
        pay_to: str | None = None,
        *,
        token: str | None = None,
        chain_id: int | None = None,
    ) -> int:
        """Atomic units moved by the transfers matching every filter given (any address case)."""
        return sum(
            transfer.amount
            for transfer in self.transfers
            if (payer is None or _same_address(transfer.payer, payer))
            and (pay_to is None or _same_address(transfer.pay_to, pay_to))
            and (token is None or _same_address(transfer.token, token))
            and (chain_id is None or transfer.chain_id == chain_id)
        )

    def _mine(
        self, kind: str, calls: tuple[str, ...], movements: list[Movement], payer: str = ""
    ) -> str:  # see ChannelLedgerMixin
        """Record a transaction, its receipt and its transfers (the caller holds the lock)."""
        state = self._state
        tx_hash = "0x" + secrets.token_hex(32)
        state.receipts[(self.chain_id, tx_hash)] = TransactionReceipt(
            status=1, block_number=len(state.receipts) + 1, tx_hash=tx_hash, logs=None
        )
        state.transactions.append(Transaction(self.chain_id, kind, tx_hash, calls))
        for movement in movements:
            state.transfers.append(
                Transfer(
                    chain_id=self.chain_id,
                    token=to_checksum_address(movement.token),
                    payer=to_checksum_address(payer or BATCH_SETTLEMENT_ADDRESS),
                    pay_to=to_checksum_address(movement.recipient),
                    amount=movement.amount,
                    tx=tx_hash,
                )
            )
        return tx_hash

    def _permit2_key(
        self, owner: object, nonce: int | str, chain_id: int | None = None
    ) -> _NonceKey:
        return self._chain(chain_id), PERMIT2_ADDRESS.lower(), str(owner).lower(), str(int(nonce))

    def is_used(self, token: str, payer: str, nonce: str, *, chain_id: int | None = None) -> bool:
        """Whether ``payer``'s EIP-3009 ``nonce`` on ``token`` has been settled (on this chain)."""
        key = (self._chain(chain_id), token.lower(), payer.lower(), _nonce_hex(nonce))
        with self._state.lock:
            return key in self._state.used

    def is_permit2_nonce_used(
        self, owner: str, nonce: int | str, *, chain_id: int | None = None
    ) -> bool:
        """Whether ``owner``'s Permit2 ``nonce`` has been spent (the contract's nonce bitmap)."""
        key = self._permit2_key(owner, nonce, chain_id)
        with self._state.lock:
            return key in self._state.used

    # The contracts' transfer calls ---------------------------------------------------

    def _settlement(self, address: str, function_name: str, args: tuple[Any, ...]) -> _Settlement:
        """Parse a transfer call as the SDK makes it, reverting as the contract would up front.

        * ``transferWithAuthorization(from, to, value, validAfter, validBefore,
          nonce, ...)`` on a token (EIP-3009);
        * ``settle(permit, owner, witness(to, validAfter), signature)`` on the
          x402 exact Permit2 proxy, ``permit`` being ``((token, amount), nonce,
          deadline)``: the signed amount moves;
        * ``settle(permit, amount, owner, witness(to, facilitator, validAfter),
          signature)`` on the x402 upto Permit2 proxy: ``amount`` moves, if it
          is at most the permitted one and this ledger is the witness's facilitator.
        """
        exact = _same_address(address, X402_EXACT_PERMIT2_PROXY_ADDRESS)
        upto = _same_address(address, X402_UPTO_PERMIT2_PROXY_ADDRESS)
        if function_name == _TRANSFER and not (exact or upto):
            payer, pay_to, value, nonce = args[0], args[1], args[2], args[5]
            key = (self.chain_id, address.lower(), str(payer).lower(), _nonce_hex(nonce))
            return _Settlement(key, _USED, address, str(payer), str(pay_to), int(value))
        if function_name == _PERMIT2_SETTLE and exact:
            permit, owner, witness = args[0], args[1], args[2]
            (token, permitted), nonce = permit[0], permit[1]
            key = self._permit2_key(owner, nonce)
            return _Settlement(key, _PERMIT2_USED, token, str(owner), witness[0], int(permitted))
        if function_name == _PERMIT2_SETTLE and upto:
            permit, amount, owner, witness = args[0], int(args[1]), args[2], args[3]
            (token, permitted), nonce = permit[0], permit[1]
            if amount > int(permitted):
                raise RuntimeError(f"execution reverted: {_UPTO_ABOVE_PERMITTED}")
            if not _same_address(witness[1], self.facilitator_address):
                raise RuntimeError(f"execution reverted: {_UPTO_NOT_FACILITATOR}")
            key = self._permit2_key(owner, nonce)
            return _Settlement(key, _PERMIT2_USED, token, str(owner), witness[0], amount)
        raise NotImplementedError(f"LocalLedger cannot call {function_name}() on {address}")

    # FacilitatorEvmSigner ------------------------------------------------------------

    def get_addresses(self) -> list[str]:
        """The (fictitious) facilitator address."""
        return [self.facilitator_address]

    def get_chain_id(self) -> int:
        """The chain id this view of the ledger signs for."""
        return self.chain_id

    def get_code(self, address: str) -> bytes:
        """Known token contracts have code; everything else is an EOA."""
        return b"\x60\x80" if address.lower() in _CONTRACTS else b""

    def get_balance(self, address: str, token_address: str) -> int:
        """Always enough."""
        return 10**30

    def read_contract(
        self, address: str, abi: list[dict[str, Any]], function_name: str, *args: Any
    ) -> Any:
        """Answer the reads the schemes make (simulations, balance, allowance, nonce state).

        A simulated transfer reverts as the real one would, but for
        ``fail_settlements``, which stands for a failure of the sent transaction.
        The batch-settlement contract and Multicall3 are answered by its emulation.
        """
        if BatchSettlementContract.serves(address, function_name):
            with self._state.lock:
                return self._state.contract.read(
                    self.chain_id,
                    self.now(),
                    self._state.used,
                    self.facilitator_address,
                    address,
                    function_name,
                    args,
                )
        if function_name in (_TRANSFER, _PERMIT2_SETTLE):
            settlement = self._settlement(address, function_name, args)
            with self._state.lock:
                if settlement.key in self._state.used:
                    raise RuntimeError(f"execution reverted: {settlement.used}")
            return None
        if function_name in ("balanceOf", "allowance"):
            return 10**30
        if function_name == "authorizationState":
            return self.is_used(address, str(args[0]), _nonce_hex(args[1]))
        raise NotImplementedError(f"LocalLedger cannot read {function_name}()")

    def verify_typed_data(
        self,
        address: str,
        domain: Any,
        types: Any,
        primary_type: str,
        message: dict[str, Any],
        signature: bytes,
    ) -> bool:
        """Not used for EOA payments (the scheme recovers the key itself)."""
        raise NotImplementedError("LocalLedger supports EOA signatures only")

    def write_contract(
        self,
        address: str,
        abi: list[dict[str, Any]],
        function_name: str,
        *args: Any,
        data_suffix: str | None = None,
    ) -> str:
        """ "Execute" a transfer: spend its nonce, record its :class:`Transfer`, return a tx hash.

        The calls are those :meth:`_settlement` parses; they revert as there,
        with ``fail_settlements``, or when the nonce is spent on this chain.
        Calls to the batch-settlement contract go to its emulation (one transaction each).
        """
        if BatchSettlementContract.serves(address, function_name):
            return self._send(self.facilitator_address, function_name, args, failable=True)
        settlement = self._settlement(address, function_name, args)
        state = self._state
        with state.lock:
            if state.fail_settlements is not None:
                raise RuntimeError(f"execution reverted: {state.fail_settlements}")
            if settlement.key in state.used:
                raise RuntimeError(f"execution reverted: {settlement.used}")
            state.used.add(settlement.key)
            moved = Movement(settlement.token, settlement.pay_to, settlement.amount)
            return self._mine("transfer", ("transfer",), [moved], payer=settlement.payer)

    def send_transaction(self, to: str, data: bytes) -> str:
        """Smart-wallet deployment is out of scope locally."""
        raise NotImplementedError("LocalLedger does not deploy smart wallets")

    def wait_for_transaction_receipt(self, tx_hash: str) -> TransactionReceipt:
        """The receipt :meth:`write_contract` recorded on this chain."""
        with self._state.lock:
            return self._state.receipts[(self.chain_id, tx_hash)]


class LocalFacilitator:
    """An async x402 facilitator client that verifies and settles in process.

    Implements the SDK's ``FacilitatorClient`` protocol (``verify``, ``settle``,
    ``get_supported``), so ``x402ResourceServer`` uses it like the HTTP one. The
    SDK's checks run in a worker thread (signature recovery is CPU work). A
    payload the SDK cannot even parse comes back as an invalid verification,
    as a hosted facilitator would answer, never as an exception.

    Every EVM network the SDK has a default asset for (:attr:`networks`) is
    served with the SDK's ``exact``, ``upto`` and ``batch-settlement``
    facilitator schemes, over the ledger's view of that network's chain. Each
    network has its own SDK facilitator, and a payment goes to its payload's
    network's: the SDK routes by CAIP family (``eip155:*``), so within one SDK
    facilitator the first scheme registered would serve every chain.

    ``recoveries`` memoizes the signature recovery (``recovery_cache_size``
    entries, ``0`` for none), so settling a payload this facilitator verified
    recovers no key again; all the other checks still run.

    ``authorizer`` is this facilitator's own receiver-authorizer key (a fresh
    one per instance): its address, :attr:`receiver_authorizer`, is the
    ``extra.receiverAuthorizer`` of the ``batch-settlement`` kinds, and the SDK
    scheme signs with it the ``ClaimBatch`` and ``Refund`` authorizations a
    server leaves out. :attr:`sync_client` is the blocking face the SDK's sync
    channel manager needs.
    """

    def __init__(
        self,
        *,
        ledger: LocalLedger | None = None,
        recovery_cache_size: int = RECOVERY_CACHE_SIZE,
    ) -> None:
        _warn_once()
        self.ledger = ledger or LocalLedger()
        self.recoveries = RecoveryMemo(recovery_cache_size)
        self.authorizer = LocalAuthorizerSigner(Account.create())
        self.networks = sorted(n for n in DEFAULT_ASSETS if n.startswith("eip155:"))
        self._facilitators: dict[str, x402FacilitatorSync] = {}
        for network in self.networks:
            signer = self.ledger.for_chain(get_evm_chain_id(network))
            facilitator = x402FacilitatorSync()
            facilitator.register([network], ExactEvmFacilitatorScheme(signer=signer))
            facilitator.register([network], UptoEvmFacilitatorScheme(signer=signer))
            channels = BatchSettlementEvmFacilitator(
                signer=signer, authorizer_signer=self.authorizer
            )
            facilitator.register([network], channels)
            self._facilitators[network] = facilitator
        _install_recovery_hook()

    @property
    def receiver_authorizer(self) -> str:
        """The address a ``batch-settlement`` channel names to let this facilitator authorize."""
        return self.authorizer.address

    @property
    def sync_client(self) -> LocalFacilitatorSync:
        """This facilitator as a blocking client (``verify``/``settle`` without a thread)."""
        return LocalFacilitatorSync(self)

    def _facilitator_for(self, payload: PaymentPayload | PaymentPayloadV1) -> x402FacilitatorSync:
        """The SDK facilitator of the payload's network (the SDK's error when none serves it)."""
        network = str(payload.get_network())
        facilitator = self._facilitators.get(network)
        if facilitator is None:
            raise SchemeNotFoundError(str(payload.get_scheme()), network)
        return facilitator

    @contextmanager
    def _memoized(self) -> Iterator[None]:
        """Let the SDK's EOA check consult :attr:`recoveries` in this context."""
        _install_recovery_hook()
        token = _active_memo.set(self.recoveries)
        try:
            yield
        finally:
            _active_memo.reset(token)

    def verify_sync(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> VerifyResponse:
        """Run the SDK's verification (blocking; CPU only)."""
        try:
            facilitator = self._facilitator_for(payload)
            contract = self._contract_payer(payload)
            if contract is not None:
                return VerifyResponse(
                    is_valid=False,
                    invalid_reason="invalid_payer",
                    invalid_message=contract,
                    payer="",
                )
            used = self._used_permit2(payload)
            if used is not None:
                return used
            with self._memoized():
                return facilitator.verify(payload, requirements)
        except Exception as exc:
            return VerifyResponse(
                is_valid=False, invalid_reason="invalid_payload", invalid_message=str(exc)
            )

    def _contract_payer(self, payload: PaymentPayload | PaymentPayloadV1) -> str | None:
        """Why a payment whose ``from`` has code here is refused (``None``: an EOA payer).

        The ledger gives code to the token contracts (so that asset checks
        pass) and answers no smart-wallet call: were a token address named as
        the payer, the SDK would take it for a smart wallet whose signature
        check it cannot run and, finding every balance and allowance ample,
        accept a payment nobody signed. This facilitator takes EOA payers only.
        """
        inner = payload.payload if isinstance(payload, PaymentPayload) else None
        # A batch-settlement payload names its payer in the channel config.
        for branch in ("authorization", "permit2Authorization", "channelConfig"):
            auth = (inner or {}).get(branch)
            payer = auth.get("from", auth.get("payer")) if isinstance(auth, dict) else None
            if isinstance(payer, str) and self.ledger.get_code(payer):
                return (
                    f"the payer {payer} is a contract; the LocalFacilitator takes EOA payers only"
                )
        return None

    def _used_permit2(self, payload: PaymentPayload | PaymentPayloadV1) -> VerifyResponse | None:
        """An invalid verification for a Permit2 payload whose nonce is spent, else ``None``.

        Both ``exact`` and ``upto`` Permit2 payloads carry ``permit2Authorization``
        (``from``, ``nonce``); the nonce is looked up on the payload's network's chain.
        """
        inner = payload.payload if isinstance(payload, PaymentPayload) else None
        auth = (inner or {}).get("permit2Authorization")
        if not isinstance(auth, dict):
            return None
        owner, nonce = str(auth.get("from", "")), auth.get("nonce")
        if not isinstance(nonce, int | str):
            return None  # malformed: the SDK's own checks refuse it
        try:
            chain_id = get_evm_chain_id(str(payload.get_network()))
            used = self.ledger.is_permit2_nonce_used(owner, nonce, chain_id=chain_id)
        except (TypeError, ValueError):
            return None  # malformed: the SDK's own checks refuse it
        if not used:
            return None
        return VerifyResponse(
            is_valid=False,
            invalid_reason="permit2_invalid_nonce",
            invalid_message=f"Permit2 nonce already used ({_PERMIT2_USED})",
            payer=owner,
        )

    def settle_sync(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> SettleResponse:
        """Run the SDK's settlement against the ledger (blocking; CPU only)."""
        try:
            facilitator = self._facilitator_for(payload)
            contract = self._contract_payer(payload)
            if contract is not None:
                return SettleResponse(
                    success=False,
                    error_reason="invalid_payer",
                    error_message=contract,
                    transaction="",
                    network=str(getattr(requirements, "network", "")),
                )
            with self._memoized():
                return facilitator.settle(payload, requirements)
        except Exception as exc:
            return SettleResponse(
                success=False,
                error_reason="invalid_payload",
                error_message=str(exc),
                transaction="",
                network=str(getattr(requirements, "network", "")),
            )

    async def verify(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> VerifyResponse:
        """Verify in a worker thread."""
        return await asyncio.to_thread(self.verify_sync, payload, requirements)

    async def settle(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> SettleResponse:
        """Settle in a worker thread."""
        return await asyncio.to_thread(self.settle_sync, payload, requirements)

    def get_supported(self) -> SupportedResponse:
        """``exact``, ``upto`` and ``batch-settlement`` on every network of :attr:`networks`.

        The ``upto`` kinds' ``extra`` carries ``facilitatorAddress``, which the
        SDK's upto server scheme copies into the requirements for the payer's
        witness to name; the ``batch-settlement`` kinds' carries
        ``receiverAuthorizer`` (:attr:`receiver_authorizer`), without which the
        SDK's batch-settlement server scheme refuses to start.
        """
        kinds: list[SupportedKind] = []
        signers: dict[str, list[str]] = {}
        for facilitator in self._facilitators.values():
            supported = facilitator.get_supported()
            kinds.extend(supported.kinds)
            for family, addresses in supported.signers.items():
                known = signers.setdefault(family, [])
                known.extend(a for a in addresses if a not in known)
        return SupportedResponse(kinds=kinds, extensions=[], signers=signers)


class LocalFacilitatorSync:
    """A :class:`LocalFacilitator` as the SDK's ``FacilitatorClientSync`` (blocking calls).

    For the SDK's sync callers, e.g. ``BatchSettlementChannelManagerSync``,
    which refuses a client whose ``settle`` is a coroutine.
    """

    def __init__(self, facilitator: LocalFacilitator) -> None:
        self.facilitator = facilitator

    def verify(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> VerifyResponse:
        """:meth:`LocalFacilitator.verify_sync`."""
        return self.facilitator.verify_sync(payload, requirements)

    def settle(
        self,
        payload: PaymentPayload | PaymentPayloadV1,
        requirements: PaymentRequirements | PaymentRequirementsV1,
    ) -> SettleResponse:
        """:meth:`LocalFacilitator.settle_sync`."""
        return self.facilitator.settle_sync(payload, requirements)

    def get_supported(self) -> SupportedResponse:
        """:meth:`LocalFacilitator.get_supported`."""
        return self.facilitator.get_supported()


_instance: Lazy[LocalFacilitator] = Lazy(LocalFacilitator)


def get_local_facilitator() -> LocalFacilitator:
    """The process-wide LocalFacilitator (one ledger, so settled nonces stay settled)."""
    return _instance.get()
