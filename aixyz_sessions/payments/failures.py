"""Every way a paid call can fail, named once: the code, the HTTP status, the message.

The transports report a :class:`PaymentFailure` each in their own form
(HTTP: the status and ``{"error": code, ...}``; WebSocket: an ``error``
reply; MCP: an error result or the x402 payment-required result), but the
codes and the messages come from here only.

=============================  ======  ===============================================
code                           status  when
=============================  ======  ===============================================
``payment_required``           402     no payment sent
``invalid_payment``            402     malformed, not verified, or already used
``sign_in_required``           402     a sign-in-only resource got no sign-in
``invalid_sign_in``            402     a sign-in that proves no payer for this resource
``invalid_payment_identifier`` 400     a payment-identifier id against the extension's rules
``payment_identifier_conflict`` 409    the id was used with another request or payment
``payment_in_progress``        409     the first call with this id is still running
``settlement_failed``          402     the facilitator refused to settle
``facilitator_unavailable``    502     the facilitator failed or answered garbage
``facilitator_timeout``        504     it did not answer within ``FACILITATOR_TIMEOUT``
``session_store_unavailable``  503     the replay guard's or the session's store is down
``session_store_misconfigured`` 500    a store that needs the deployment fixed
``server_misconfigured``       500     the app's settings cannot take payments
=============================  ======  ===============================================
"""

from __future__ import annotations

import json
import logging
from typing import Any

from x402.schemas import PaymentRequired

from ..exceptions import SessionStoreError, SessionStoreMisconfigured
from .facilitators import facilitator_failures

__all__ = [
    "FACILITATOR_TIMEOUT",
    "FACILITATOR_UNAVAILABLE",
    "INVALID_PAYMENT",
    "INVALID_PAYMENT_IDENTIFIER",
    "INVALID_SIGN_IN",
    "NOT_VERIFIED",
    "PAYMENT_ID_CONFLICT",
    "PAYMENT_IN_PROGRESS",
    "PAYMENT_REQUIRED",
    "REPLAYED",
    "SERVER_MISCONFIGURED",
    "SETTLEMENT_FAILED",
    "SIGN_IN_REQUIRED",
    "STORE_MISCONFIGURED",
    "STORE_UNAVAILABLE",
    "PaymentFailure",
]

PAYMENT_REQUIRED = "payment_required"
INVALID_PAYMENT = "invalid_payment"
SIGN_IN_REQUIRED = "sign_in_required"
INVALID_SIGN_IN = "invalid_sign_in"
INVALID_PAYMENT_IDENTIFIER = "invalid_payment_identifier"
PAYMENT_ID_CONFLICT = "payment_identifier_conflict"
PAYMENT_IN_PROGRESS = "payment_in_progress"
SETTLEMENT_FAILED = "settlement_failed"
FACILITATOR_UNAVAILABLE = "facilitator_unavailable"
FACILITATOR_TIMEOUT = "facilitator_timeout"
SERVER_MISCONFIGURED = "server_misconfigured"
STORE_UNAVAILABLE = "session_store_unavailable"
STORE_MISCONFIGURED = "session_store_misconfigured"
#: What a 503 tells the client to wait before retrying.
RETRY_AFTER_SECONDS = 5

logger = logging.getLogger("aixyz_sessions")

#: The replay guard refused: this authorization already bought a call (one that
#: started, even if it failed: a failed call does not hand its authorization back).
REPLAYED = "payment authorization already used: each one buys one call; sign a new payment"
#: A payment passed verification without the payer check running.
NOT_VERIFIED = "the facilitator did not verify who signed this payment"
#: The payment settled, but the call's session writes could not be stored.
NOT_STORED = "the payment settled but the session could not be updated"

_STATUS = {
    PAYMENT_REQUIRED: 402,
    INVALID_PAYMENT: 402,
    SIGN_IN_REQUIRED: 402,
    INVALID_SIGN_IN: 402,
    INVALID_PAYMENT_IDENTIFIER: 400,
    PAYMENT_ID_CONFLICT: 409,
    PAYMENT_IN_PROGRESS: 409,
    SETTLEMENT_FAILED: 402,
    FACILITATOR_UNAVAILABLE: 502,
    FACILITATOR_TIMEOUT: 504,
    SERVER_MISCONFIGURED: 500,
}


class PaymentFailure(Exception):
    """A paid call that cannot go on: its ``code``, ``message`` and HTTP ``status``.

    ``payment_required`` (the SDK's ``PaymentRequired``) tells the client
    what to pay, when known; ``payment_response`` is the settlement as the
    SDK encodes it for ``PAYMENT-RESPONSE``, when there was one;
    ``retry_after`` (seconds) when waiting helps.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        payment_required: PaymentRequired | None = None,
        payment_response: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else _STATUS.get(code, 500)
        self.payment_required = payment_required
        self.payment_response = payment_response
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"PaymentFailure({self.code!r}, {self.message!r})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready error: ``code``, ``message`` and the payment details present."""
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.payment_required is not None:
            data["payment_required"] = json.loads(
                self.payment_required.model_dump_json(by_alias=True, exclude_none=True)
            )
        if self.payment_response is not None:
            data["payment_response"] = self.payment_response
        return data

    @classmethod
    def facilitator(
        cls, failures: facilitator_failures, exc: BaseException | None = None
    ) -> PaymentFailure:
        """502 for a facilitator that failed, 504 for one that did not answer in time."""
        message = failures.message or (
            f"{type(exc).__name__}: {exc}" if exc is not None else "facilitator failed"
        )
        code = FACILITATOR_TIMEOUT if failures.timed_out else FACILITATOR_UNAVAILABLE
        return cls(code, message)

    @classmethod
    def store(cls, exc: SessionStoreError, where: str, *, prefix: str = "") -> PaymentFailure:
        """The session store (or the replay guard kept in it) failed; logged once here.

        An outage (:class:`~aixyz_sessions.SessionStoreUnavailable`, and any
        other store error) passes by itself: 503 with ``Retry-After``.
        :class:`~aixyz_sessions.SessionStoreMisconfigured` lasts until someone
        fixes the deployment: 500, logged as an error, its message naming the fix.
        What the store said (its host, port, the driver's error) goes to the
        log, and to the client only while ``DEBUG`` is on: it describes the
        infrastructure, not the client's request.
        """
        from django.conf import settings

        place = f" in {where}" if where else ""
        misconfigured = isinstance(exc, SessionStoreMisconfigured)
        if misconfigured:
            logger.error("session store misconfigured%s: %s", place, exc)
        else:
            logger.warning("session store failed%s: %s", place, exc)
        if settings.DEBUG:
            detail = str(exc)
        elif misconfigured:
            detail = "the session store is misconfigured; the server's log names the fix"
        else:
            detail = f"the session store is unavailable; retry in {RETRY_AFTER_SECONDS} seconds"
        message = f"{prefix}: {detail}" if prefix else detail
        if misconfigured:
            return cls(STORE_MISCONFIGURED, message, status=500)
        return cls(STORE_UNAVAILABLE, message, status=503, retry_after=RETRY_AFTER_SECONDS)
