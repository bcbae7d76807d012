"""x402 payments for Django views, on the official ``x402`` SDK.

``@paid("$0.01")`` marks a view; ``X402Middleware`` (in ``.middleware``)
answers 402, verifies and settles through the facilitator configured in
``AIXYZ_X402`` and binds the payer's session around the view.
``@paid(..., sign_in="after_payment")`` lets a returning payer in with a
wallet signature (x402's sign-in-with-x) instead of paying again;
``@sign_in_required()`` marks a free view that needs a proven payer.
``@paid(upto="$0.05")`` is a metered price: the view reports what it used
with ``charge()``; ``@paid(accepts=[...])`` offers several networks or assets.
"""

from __future__ import annotations

from ..replay import InMemoryReplayGuard, ReplayGuard
from .decorators import PaidSpec, paid, refused_before_work, sign_in_required
from .metering import ChargeError, charge

__all__ = [
    "ChargeError",
    "InMemoryReplayGuard",
    "PaidSpec",
    "ReplayGuard",
    "charge",
    "paid",
    "refused_before_work",
    "sign_in_required",
]
