"""Payments an attacker would send, built with the x402 SDK's own client code.

``permit2_payment`` signs a real Permit2 ``permitWitnessTransferFrom`` with
the SDK's exact-EVM client helper; ``decoy_payer`` adds the unsigned EIP-3009
``authorization`` naming somebody else that once bound the victim's session.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from eth_account.signers.local import LocalAccount
from x402.http import encode_payment_signature_header
from x402.mechanisms.evm.exact.permit2_utils import create_permit2_payload
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired


def permit2_payment(
    account: LocalAccount,
    required: PaymentRequired,
    *,
    decoy_payer: str | None = None,
    nonce: str | None = None,
) -> PaymentPayload:
    """A Permit2 payment for ``required.accepts[0]`` signed by ``account``.

    ``nonce`` replaces the signed nonce's spelling (not its value: the caller
    passes another spelling of the same number). ``decoy_payer`` adds an
    unsigned EIP-3009 authorization ``from`` that address.
    """
    requirements = required.accepts[0]
    inner: dict[str, Any] = create_permit2_payload(EthAccountSigner(account), requirements)
    if nonce is not None:
        inner["permit2Authorization"]["nonce"] = nonce
    if decoy_payer is not None:
        inner["authorization"] = {
            "from": decoy_payer,
            "to": requirements.pay_to,
            "value": requirements.amount,
            "validAfter": "0",
            "validBefore": str(int(time.time()) + 600),
            "nonce": "0x" + secrets.token_hex(32),
        }
    return PaymentPayload(
        x402_version=2, payload=inner, accepted=requirements, resource=required.resource
    )


def as_dict(payment: PaymentPayload) -> dict[str, Any]:
    """The payload as a client sends it in JSON (WebSocket ``payment``, MCP ``_meta``)."""
    data: dict[str, Any] = payment.model_dump(by_alias=True, exclude_none=True)
    return data


def as_header(payment: PaymentPayload) -> str:
    """The payload as the ``PAYMENT-SIGNATURE`` header."""
    return encode_payment_signature_header(payment)


def nested(depth: int) -> str:
    """``[[[...]]]``: ``depth`` arrays inside each other."""
    return "[" * depth + "]" * depth
