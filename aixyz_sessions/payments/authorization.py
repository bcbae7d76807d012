"""Who paid, and which one-time nonce the payment spends: one set of rules for every transport.

An x402 exact-EVM payload carries one of two signed authorizations:
``authorization`` (EIP-3009 ``transferWithAuthorization``) or
``permit2Authorization`` (Permit2 ``permitWitnessTransferFrom``). The SDK's
facilitator verifies the Permit2 branch whenever that key is present, and the
EIP-3009 branch otherwise; nothing checks the branch it did not verify. So:

* a payload carrying both branches is refused before verification (the
  unverified one could name anybody);
* the payer bound to the session is ``VerifyResponse.payer``, the address the
  facilitator verified, read in the resource server's ``after_verify`` hook
  (:func:`after_verify`), never a field of the payload beside it; a payload
  whose branch names another address is refused there;
* the replay guard keys on the canonical nonce of the verified branch: an
  EIP-3009 nonce is 32 bytes of hex (compared in lower case), a Permit2 nonce
  is a uint256 in plain ASCII decimal without leading zeros (the SDK signs
  ``int(nonce)``, so ``"007"`` and ``"7"`` would be one signature; only the
  canonical spelling is accepted).

A payment channel's payload (x402 ``batch-settlement``: ``type`` ``deposit``,
``voucher`` or ``refund``) names its payer in ``channelConfig.payer``, the
address whose signed deposit opened the channel (the channel id is the hash
of that config, checked by the SDK before anything else). The facilitator, or
the SDK's local voucher check against the stored channel, verifies it; the
payer bound to the session is again ``VerifyResponse.payer``, and it must be
the config's. Its "nonce" is ``<channel id>:<cumulative amount>``: the
voucher's place in the channel. What spends it is the channel itself (see
:mod:`aixyz_sessions.channels`): the SDK reserves the channel for one call
at a time and charges each cumulative amount once, in storage every worker
shares; a call that is not charged leaves the channel where it was, so the
payer's next voucher is the same amount again.

Transports open :func:`verification` around the SDK call that verifies, then
read :attr:`Verification.authorization`; ``None`` after a successful
verification means the hook did not run, and the payment is refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal

from eth_utils.address import is_address, to_checksum_address
from x402.http import safe_base64_decode
from x402.schemas import AbortResult, PaymentPayload, VerifyResultContext

from ..bounded_json import loads
from ..replay import MAX_EXPIRY

__all__ = [
    "Authorization",
    "PaymentHeaderError",
    "Verification",
    "after_verify",
    "authorization_of",
    "checksummed",
    "claimed_payer",
    "is_refund_request",
    "read_payment",
    "screen_payment_header",
    "verification",
]

Branch = Literal["authorization", "permit2Authorization", "deposit", "voucher", "refund"]
EIP3009: Branch = "authorization"
PERMIT2: Branch = "permit2Authorization"
#: The payload types of a payment channel (x402 ``batch-settlement``).
CHANNEL_BRANCHES: tuple[Branch, ...] = ("deposit", "voucher", "refund")
#: 32 bytes in hex: an EIP-3009 nonce, a channel id.
_HEX_NONCE = re.compile(r"0x[0-9a-fA-F]{64}")
_UINT = re.compile(r"0|[1-9][0-9]{0,77}")
#: Longest payment header read, in characters (a real one is about 1.5 KB).
MAX_HEADER_CHARS = 16 * 1024


@functools.lru_cache(maxsize=8192)
def checksummed(address: str) -> str:
    """The EIP-55 spelling of a valid address (a keccak hash: cached, payers come back)."""
    return str(to_checksum_address(address))


def screen_payment_header(header: str) -> dict[str, Any]:
    """The cheap checks before the SDK decodes a header: its length and JSON depth.

    Returns the decoded JSON object (for a look at its extensions without
    decoding it again). Raises :class:`PaymentHeaderError`. The full shape check
    (:func:`read_payment`) runs only to explain a payment the SDK refused;
    the verified payment's shape is checked again in :func:`after_verify`.
    """
    if len(header) > MAX_HEADER_CHARS:
        raise PaymentHeaderError(f"payment header is longer than {MAX_HEADER_CHARS} characters")
    try:
        data = loads(safe_base64_decode(header))
    except ValueError as exc:  # not base64, UTF-8 or JSON, or nested too deeply
        raise PaymentHeaderError(
            f"payment header is not base64-encoded JSON of an x402 payment payload: "
            f"{type(exc).__name__}"
        ) from None
    if not isinstance(data, dict):
        raise PaymentHeaderError("payment header is not a JSON object (an x402 payment payload)")
    if data.get("x402Version") != 2:
        raise PaymentHeaderError("only x402Version 2 payment payloads are accepted")
    return data


class PaymentHeaderError(ValueError):
    """The payment is not an x402 v2 exact-EVM payload this server can accept."""


@dataclass(frozen=True)
class Authorization:
    """Who signed a payment, which one-time nonce it spends, and until when."""

    payer: str  # EIP-55 checksummed
    nonce: str  # canonical: lower-case hex (EIP-3009) or decimal (Permit2)
    valid_before: int
    branch: Branch = EIP3009


def read_payment(header: str) -> tuple[PaymentPayload, Authorization]:
    """Decode a payment header with the SDK and check the authorization's shape.

    The decoded JSON's depth is bounded before it is parsed. Raises
    :class:`PaymentHeaderError` with a reason fit for the client.
    """
    from x402.http import decode_payment_signature_header

    screen_payment_header(header)
    try:
        payload = decode_payment_signature_header(header)
    except Exception as exc:
        raise PaymentHeaderError(
            f"payment header is not base64-encoded JSON of an x402 payment payload: "
            f"{type(exc).__name__}"
        ) from None
    authorization = authorization_of(payload)
    assert isinstance(payload, PaymentPayload)  # authorization_of refuses v1
    return payload, authorization


def _canonical_nonce(branch: str, nonce: object) -> str:
    if branch == PERMIT2:
        if isinstance(nonce, str) and _UINT.fullmatch(nonce) and int(nonce) < 2**256:
            return nonce
        raise PaymentHeaderError(
            "permit2Authorization.nonce must be a uint256 in ASCII decimal without leading zeros"
        )
    if isinstance(nonce, str) and _HEX_NONCE.fullmatch(nonce):
        return nonce.lower()
    raise PaymentHeaderError("authorization.nonce must be 0x followed by 64 hex digits")


def authorization_of(payload: object) -> Authorization:
    """The authorization a facilitator would verify in ``payload``, checked for shape.

    Shared by every transport (HTTP headers, WebSocket messages, MCP
    ``_meta``). The payer here is the one the payload *claims*; the one bound
    to the session comes from :func:`after_verify`. Raises
    :class:`PaymentHeaderError` with a reason fit for the client.
    """
    if not isinstance(payload, PaymentPayload):
        raise PaymentHeaderError("x402 v1 payment payloads are not accepted; send x402Version 2")
    inner = payload.payload
    if payload.accepted.scheme == "batch-settlement":
        return _channel_authorization(inner)
    if inner.get("type") in CHANNEL_BRANCHES:
        # A channel payload under another scheme: that scheme's facilitator would
        # verify something else than what names the payer here. Refused.
        raise PaymentHeaderError(
            f"a {inner['type']} payload is paid with scheme 'batch-settlement' only"
        )
    if EIP3009 in inner and PERMIT2 in inner:
        raise PaymentHeaderError(
            f"payment payload carries both {EIP3009!r} and {PERMIT2!r}; send exactly one"
        )
    branch = PERMIT2 if PERMIT2 in inner else EIP3009
    auth = inner.get(branch)
    if not isinstance(auth, dict):
        raise PaymentHeaderError("payment payload has no authorization")
    deadline_key = "deadline" if branch == PERMIT2 else "validBefore"
    payer, deadline = auth.get("from"), auth.get(deadline_key)
    if not isinstance(payer, str) or not is_address(payer):
        raise PaymentHeaderError(f"{branch} has no valid 'from' address")
    nonce = _canonical_nonce(branch, auth.get("nonce"))
    if not isinstance(deadline, str | int) or not _UINT.fullmatch(str(deadline)):
        raise PaymentHeaderError(f"{branch}.{deadline_key} must be a decimal integer")
    if not isinstance(inner.get("signature"), str):
        raise PaymentHeaderError("payment payload has no signature")
    return Authorization(checksummed(payer), nonce, int(str(deadline)), branch)


def is_refund_request(payment: dict[str, Any]) -> bool:
    """Whether a screened payment asks for a channel refund (its answer is the refund)."""
    inner = payment.get("payload")
    return isinstance(inner, dict) and inner.get("type") == "refund"


def claimed_payer(inner: object) -> str | None:
    """The payer a payment's inner payload names (unverified: for looking up a kept answer)."""
    if not isinstance(inner, dict):
        return None
    config = inner.get("channelConfig")
    if inner.get("type") in CHANNEL_BRANCHES and isinstance(config, dict):
        payer = config.get("payer")
    else:
        branch = inner.get(PERMIT2) or inner.get(EIP3009)
        payer = branch.get("from") if isinstance(branch, dict) else None
    return payer if isinstance(payer, str) and 0 < len(payer) <= 256 else None


def _channel_authorization(inner: dict[str, Any]) -> Authorization:
    """A channel payload's payer and place (``<channel id>:<cumulative>``), checked for shape."""
    kind = inner.get("type")
    if kind not in CHANNEL_BRANCHES:
        raise PaymentHeaderError(
            f"a batch-settlement payload's type must be one of {', '.join(CHANNEL_BRANCHES)}"
        )
    config, voucher = inner.get("channelConfig"), inner.get("voucher")
    if not isinstance(config, dict) or not isinstance(voucher, dict):
        raise PaymentHeaderError(f"a {kind} payload needs channelConfig and voucher objects")
    if kind == "deposit" and not isinstance(inner.get("deposit"), dict):
        raise PaymentHeaderError("a deposit payload needs a deposit object")
    payer = config.get("payer")
    if not isinstance(payer, str) or not is_address(payer):
        raise PaymentHeaderError("channelConfig has no valid 'payer' address")
    channel_id = voucher.get("channelId")
    if not isinstance(channel_id, str) or not _HEX_NONCE.fullmatch(channel_id):
        raise PaymentHeaderError("voucher.channelId must be 0x followed by 64 hex digits")
    cumulative = voucher.get("maxClaimableAmount")
    if not isinstance(cumulative, str) or not _UINT.fullmatch(cumulative):
        raise PaymentHeaderError(
            "voucher.maxClaimableAmount must be a uint256 in ASCII decimal without leading zeros"
        )
    if not isinstance(voucher.get("signature"), str):
        raise PaymentHeaderError("voucher has no signature")
    place = f"{channel_id.lower()}:{cumulative}"
    return Authorization(checksummed(payer), place, MAX_EXPIRY, kind)


@dataclass
class Verification:
    """What :func:`after_verify` learnt while one call's payment was verified."""

    authorization: Authorization | None = None
    refusal: str | None = None


_current: ContextVar[Verification | None] = ContextVar("aixyz_x402_verification", default=None)


@contextmanager
def verification(slot: Verification | None = None) -> Iterator[Verification]:
    """Collect the verified authorization of the payment verified inside this block."""
    slot = Verification() if slot is None else slot
    token = _current.set(slot)
    try:
        yield slot
    finally:
        _current.reset(token)


def after_verify(context: VerifyResultContext) -> AbortResult | None:
    """The resource server's ``after_verify`` hook: bind the payer the facilitator verified.

    Aborts (the SDK then answers "payment invalid") when the facilitator did
    not name a payer, or named another address than the verified branch's
    ``from``. Otherwise records the authorization, payer as verified, for
    the :func:`verification` block around the call.
    """
    slot = _current.get()
    try:
        claimed = authorization_of(context.payment_payload)
    except PaymentHeaderError as exc:
        return _refuse(slot, "invalid_payload", str(exc))
    verified = context.result.payer
    if not isinstance(verified, str) or not is_address(verified):
        return _refuse(slot, "payer_unverified", "the facilitator did not report who paid")
    if verified.lower() != claimed.payer.lower():
        return _refuse(
            slot,
            "payer_mismatch",
            f"the payment names {claimed.payer} but the facilitator verified {verified}",
        )
    if slot is not None:
        slot.authorization = Authorization(
            checksummed(verified), claimed.nonce, claimed.valid_before, claimed.branch
        )
    return None


def _refuse(slot: Verification | None, reason: str, message: str) -> AbortResult:
    if slot is not None:
        slot.refusal = message
    return AbortResult(reason=reason, message=message)
