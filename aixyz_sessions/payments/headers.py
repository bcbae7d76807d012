"""The x402 header names, once: every transport and helper spells them from here.

HTTP carries them as headers; a message transport (WebSocket, MCP, a queue)
carries the same values as fields and hands the payment to the paid-call
core as the header the SDK reads.
"""

from __future__ import annotations

__all__ = [
    "PAYMENT_REQUIRED",
    "PAYMENT_RESPONSE",
    "PAYMENT_SIGNATURE",
    "PAY_AND_REPEAT",
    "SIGN_IN_WITH_X",
    "X_PAYMENT",
]

#: The client's signed payment (x402 v2).
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
#: The client's signed payment, as x402 v1 clients send it.
X_PAYMENT = "X-PAYMENT"
#: What to pay: the SDK's encoded ``PaymentRequired`` on a 402.
PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
#: The settlement: the SDK's encoded ``SettleResponse`` on a paid answer.
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
#: A returning payer's sign-in (x402's sign-in-with-x extension).
SIGN_IN_WITH_X = "SIGN-IN-WITH-X"

#: How a client answers a 402, in words: the 402 bodies and the Markdown tool
#: list (``GET /tools/``) say it the same way.
PAY_AND_REPEAT = (
    f"sign a payment for one of 'accepts' and repeat the request with it in the "
    f"{PAYMENT_SIGNATURE} header."
)
