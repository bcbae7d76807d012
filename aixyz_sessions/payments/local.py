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

Select it with ``AIXYZ_X402 = {..., "FACILITATOR": "local"}``; the system check
warns when it is used with ``DEBUG = False``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from typing import Any

from eth_utils.address import to_checksum_address
from x402 import x402FacilitatorSync
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

__all__ = ["LocalFacilitator", "LocalLedger", "get_local_facilitator"]

logger = logging.getLogger("aixyz_sessions.payments")

FACILITATOR_ADDRESS = to_checksum_address("0x" + "fa" * 20)
_TRANSFER = "transferWithAuthorization"
_USED = "FiatTokenV2: authorization is used or canceled"
_PERMIT2_SETTLE = "settle"
_PERMIT2_USED = "InvalidNonce()"
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
    """

    def __init__(self, *, ledger: LocalLedger | None = None) -> None:
        _warn_once()
        self.ledger = ledger or LocalLedger()
        self.networks = sorted(n for n in DEFAULT_ASSETS if n.startswith("eip155:"))
        self._facilitator = x402FacilitatorSync()
        self._facilitator.register(self.networks, ExactEvmFacilitatorScheme(signer=self.ledger))

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
