"""Django's ``HttpRequest`` seen through the SDK's ``HTTPAdapter`` protocol."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from eth_utils.address import is_address, to_checksum_address
from x402.http import decode_payment_signature_header
from x402.schemas import PaymentPayload

__all__ = [
    "Authorization",
    "DjangoHTTPAdapter",
    "PaymentHeaderError",
    "authorization_of",
    "read_payment",
]

PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
X_PAYMENT = "X-PAYMENT"
_NONCE = re.compile(r"0x[0-9a-fA-F]{64}")


class DjangoHTTPAdapter:
    """``HTTPAdapter`` over a Django request.

    ``X-PAYMENT`` (the v1 header name) is read when ``PAYMENT-SIGNATURE`` is
    absent. ``hide_payment=True`` makes the request look unpaid, to obtain the
    SDK's plain 402 for a payment header that could not be decoded.
    """

    def __init__(self, request: HttpRequest, *, hide_payment: bool = False) -> None:
        self._request = request
        self._hide_payment = hide_payment

    def payment_header(self) -> str | None:
        """The raw payment header, v2 name first."""
        headers = self._request.headers
        return headers.get(PAYMENT_SIGNATURE) or headers.get(X_PAYMENT)

    def get_header(self, name: str) -> str | None:
        """A request header, case-insensitive."""
        if name.upper() == PAYMENT_SIGNATURE:
            return None if self._hide_payment else self.payment_header()
        return self._request.headers.get(name)

    def get_method(self) -> str:
        """The HTTP method."""
        return self._request.method or "GET"

    def get_path(self) -> str:
        """The path (``request.path``, script prefix included)."""
        return self._request.path

    def get_url(self) -> str:
        """The absolute URL of the resource."""
        return self._request.build_absolute_uri()

    def get_accept_header(self) -> str:
        """The ``Accept`` header or ''."""
        return self._request.headers.get("Accept", "")

    def get_user_agent(self) -> str:
        """The ``User-Agent`` header or ''."""
        return self._request.headers.get("User-Agent", "")

    def get_query_params(self) -> dict[str, str | list[str]]:
        """Query parameters (lists where repeated)."""
        return {k: (v if len(v) > 1 else v[0]) for k, v in self._request.GET.lists() if v}

    def get_query_param(self, name: str) -> str | None:
        """One query parameter."""
        return self._request.GET.get(name)

    def get_body(self) -> Any:
        """Not read: the body is the view's business."""
        return None


class PaymentHeaderError(ValueError):
    """The payment header is not base64 JSON of an x402 v2 exact-EVM payload."""


@dataclass(frozen=True)
class Authorization:
    """Who signed a payment and which one-time nonce it spends."""

    payer: str  # EIP-55 checksummed
    nonce: str
    valid_before: int


def read_payment(header: str) -> tuple[PaymentPayload, Authorization]:
    """Decode a payment header with the SDK and check the authorization's shape.

    Raises :class:`PaymentHeaderError` with a reason fit for the client.
    """
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


def authorization_of(payload: object) -> Authorization:
    """Check an x402 v2 payload's authorization shape; who signed it and which nonce.

    Shared by every transport (HTTP headers, WebSocket messages). Raises
    :class:`PaymentHeaderError` with a reason fit for the client.
    """
    if not isinstance(payload, PaymentPayload):
        raise PaymentHeaderError("x402 v1 payment payloads are not accepted; send x402Version 2")
    inner = payload.payload
    auth = inner.get("authorization")
    deadline_key = "validBefore"
    if not isinstance(auth, dict):
        auth = inner.get("permit2Authorization")
        deadline_key = "deadline"
    if not isinstance(auth, dict):
        raise PaymentHeaderError("payment payload has no authorization")
    payer, nonce, deadline = auth.get("from"), auth.get("nonce"), auth.get(deadline_key)
    if not isinstance(payer, str) or not is_address(payer):
        raise PaymentHeaderError("payment authorization has no valid 'from' address")
    if not isinstance(nonce, str) or not (_NONCE.fullmatch(nonce) or nonce.isdigit()):
        raise PaymentHeaderError("payment authorization has no valid nonce")
    try:
        valid_before = int(str(deadline))
    except ValueError:
        raise PaymentHeaderError(f"payment authorization has no valid {deadline_key}") from None
    if not isinstance(inner.get("signature"), str):
        raise PaymentHeaderError("payment payload has no signature")
    return Authorization(to_checksum_address(payer), nonce, valid_before)
