"""``LocalFacilitator``: the SDK's own exact-EVM facilitator over an in-memory ledger.

For development and tests. Nothing leaves the process and NO MONEY MOVES.
Verification is the real thing: the ``x402`` SDK's ``x402FacilitatorSync``
with its exact-EVM scheme checks the EIP-712 signature (public-key recovery),
amount, recipient, network, asset and validity window, exactly as a hosted
facilitator does. Only the chain is replaced, by :class:`LocalLedger`, a
stand-in for the SDK's ``FacilitatorEvmSigner``:

* every payer's balance, and its Permit2 allowance, is always sufficient;
* the token contracts of the SDK's default assets "exist" (have code), every
  other address is a plain account (EOA signatures only, no smart wallets);
* settling records the authorization's nonce, so a settled payment never
  verifies or settles again (EIP-3009's ``authorization is used``; for
  Permit2, whose SDK verification reads no nonce state, this facilitator
  refuses a used ``(owner, nonce)`` before the SDK's checks, as the Permit2
  contract would revert);
* both exact-EVM branches settle: EIP-3009 ``transferWithAuthorization`` on
  the token, and Permit2 through the x402 Permit2 proxy's ``settle``;
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
import functools
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from eth_utils.address import to_checksum_address
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import verify as sdk_verify
from x402.mechanisms.evm.constants import PERMIT2_ADDRESS, X402_EXACT_PERMIT2_PROXY_ADDRESS
from x402.mechanisms.evm.default_assets import DEFAULT_ASSETS
from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
from x402.mechanisms.evm.types import TransactionReceipt
from x402.schemas import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    SettleResponse,
    SupportedResponse,
    VerifyResponse,
)

from ..lazy import Lazy

__all__ = ["LocalFacilitator", "LocalLedger", "RecoveryMemo", "get_local_facilitator"]

logger = logging.getLogger("aixyz_sessions.payments")

FACILITATOR_ADDRESS = to_checksum_address("0x" + "fa" * 20)
_TRANSFER = "transferWithAuthorization"
_USED = "FiatTokenV2: authorization is used or canceled"
_PERMIT2_SETTLE = "settle"
_PERMIT2_USED = "InvalidNonce()"
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
# ``x402.mechanisms.evm.verify``, which both exact-EVM branches reach through
# that module's globals (EIP-3009: ``verify_universal_signature``; Permit2:
# ``verify_typed_data_strict``). Neither the scheme nor the signer protocol
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


class LocalLedger:
    """In-memory stand-in for the SDK's ``FacilitatorEvmSigner`` (no chain, no network).

    Thread-safe: the used-nonce set and the receipts sit behind one lock.
    """

    def __init__(self, *, chain_id: int = 84532) -> None:
        self.chain_id = chain_id
        #: When set, settlement fails with this revert message.
        self.fail_settlements: str | None = None
        self._lock = threading.Lock()
        self._used: set[tuple[str, str, str]] = set()
        self._receipts: dict[str, TransactionReceipt] = {}
        self._contracts = {
            entry["asset"].lower() for entries in DEFAULT_ASSETS.values() for entry in entries
        }

    @property
    def settled_count(self) -> int:
        """How many authorizations have been settled."""
        with self._lock:
            return len(self._used)

    @staticmethod
    def _key(token: str, args: tuple[Any, ...]) -> tuple[str, str, str]:
        nonce = args[5]
        nonce_hex = nonce.hex() if isinstance(nonce, bytes | bytearray) else str(nonce)
        return token.lower(), str(args[0]).lower(), nonce_hex.lower().removeprefix("0x")

    @staticmethod
    def _permit2_key(owner: str, nonce: int | str) -> tuple[str, str, str]:
        return PERMIT2_ADDRESS.lower(), owner.lower(), str(int(nonce))

    def is_used(self, token: str, payer: str, nonce: str) -> bool:
        """Whether ``payer``'s authorization ``nonce`` on ``token`` has been settled."""
        with self._lock:
            return (token.lower(), payer.lower(), nonce.lower().removeprefix("0x")) in self._used

    def is_permit2_nonce_used(self, owner: str, nonce: int | str) -> bool:
        """Whether ``owner``'s Permit2 ``nonce`` has been spent (the contract's nonce bitmap)."""
        with self._lock:
            return self._permit2_key(owner, nonce) in self._used

    # FacilitatorEvmSigner ------------------------------------------------------------

    def get_addresses(self) -> list[str]:
        """The (fictitious) facilitator address."""
        return [FACILITATOR_ADDRESS]

    def get_chain_id(self) -> int:
        """The chain id this ledger pretends to be on."""
        return self.chain_id

    def get_code(self, address: str) -> bytes:
        """Known token contracts have code; everything else is an EOA."""
        return b"\x60\x80" if address.lower() in self._contracts else b""

    def get_balance(self, address: str, token_address: str) -> int:
        """Always enough."""
        return 10**30

    def read_contract(
        self, address: str, abi: list[dict[str, Any]], function_name: str, *args: Any
    ) -> Any:
        """Answer the reads the exact-EVM scheme makes (simulation, balance, nonce state)."""
        if function_name == _TRANSFER:
            with self._lock:
                if self._key(address, args) in self._used:
                    raise RuntimeError(f"execution reverted: {_USED}")
            return None
        if function_name in ("balanceOf", "allowance"):
            return 10**30
        if function_name == "authorizationState":
            nonce = args[1]
            nonce_hex = nonce.hex() if isinstance(nonce, bytes | bytearray) else str(nonce)
            return self.is_used(address, str(args[0]), nonce_hex)
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
        """ "Execute" a transfer: record its nonce, return a fake tx hash.

        ``transferWithAuthorization`` on a token (EIP-3009), or ``settle`` on
        the x402 Permit2 proxy (``permit``, ``owner``, ``witness``, ``signature``).
        """
        permit2 = address.lower() == X402_EXACT_PERMIT2_PROXY_ADDRESS.lower()
        if permit2 and function_name == _PERMIT2_SETTLE:
            permit, owner = args[0], args[1]
            key, used = self._permit2_key(str(owner), permit[1]), _PERMIT2_USED
        elif function_name == _TRANSFER and not permit2:
            key, used = self._key(address, args), _USED
        else:
            raise NotImplementedError(f"LocalLedger cannot call {function_name}() on {address}")
        with self._lock:
            if self.fail_settlements is not None:
                raise RuntimeError(f"execution reverted: {self.fail_settlements}")
            if key in self._used:
                raise RuntimeError(f"execution reverted: {used}")
            self._used.add(key)
            tx_hash = "0x" + secrets.token_hex(32)
            self._receipts[tx_hash] = TransactionReceipt(
                status=1, block_number=len(self._used), tx_hash=tx_hash, logs=None
            )
        return tx_hash

    def send_transaction(self, to: str, data: bytes) -> str:
        """Smart-wallet deployment is out of scope locally."""
        raise NotImplementedError("LocalLedger does not deploy smart wallets")

    def wait_for_transaction_receipt(self, tx_hash: str) -> TransactionReceipt:
        """The receipt recorded by :meth:`write_contract`."""
        with self._lock:
            return self._receipts[tx_hash]


class LocalFacilitator:
    """An async x402 facilitator client that verifies and settles in process.

    Implements the SDK's ``FacilitatorClient`` protocol (``verify``, ``settle``,
    ``get_supported``), so ``x402ResourceServer`` uses it like the HTTP one. The
    SDK's checks run in a worker thread (signature recovery is CPU work). A
    payload the SDK cannot even parse comes back as an invalid verification,
    as a hosted facilitator would answer, never as an exception.

    ``recoveries`` memoizes the signature recovery (``recovery_cache_size``
    entries, ``0`` for none), so settling a payload this facilitator verified
    recovers no key again; all the other checks still run.
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
        self.networks = sorted(n for n in DEFAULT_ASSETS if n.startswith("eip155:"))
        self._facilitator = x402FacilitatorSync()
        self._facilitator.register(self.networks, ExactEvmFacilitatorScheme(signer=self.ledger))
        _install_recovery_hook()

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
            used = self._used_permit2(payload)
            if used is not None:
                return used
            with self._memoized():
                return self._facilitator.verify(payload, requirements)
        except Exception as exc:
            return VerifyResponse(
                is_valid=False, invalid_reason="invalid_payload", invalid_message=str(exc)
            )

    def _used_permit2(self, payload: PaymentPayload | PaymentPayloadV1) -> VerifyResponse | None:
        """An invalid verification for a Permit2 payload whose nonce is spent, else ``None``."""
        inner = payload.payload if isinstance(payload, PaymentPayload) else None
        auth = (inner or {}).get("permit2Authorization")
        if not isinstance(auth, dict):
            return None
        owner, nonce = str(auth.get("from", "")), auth.get("nonce")
        try:
            used = self.ledger.is_permit2_nonce_used(owner, nonce)  # type: ignore[arg-type]
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
            with self._memoized():
                return self._facilitator.settle(payload, requirements)
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
        """The exact scheme on every EVM network the SDK has a default asset for."""
        return self._facilitator.get_supported()


_instance: Lazy[LocalFacilitator] = Lazy(LocalFacilitator)


def get_local_facilitator() -> LocalFacilitator:
    """The process-wide LocalFacilitator (one ledger, so settled nonces stay settled)."""
    return _instance.get()
