"""x402 payments for Django views, on the official ``x402`` SDK.

``@paid("$0.01")`` marks a view; ``X402Middleware`` (in ``.middleware``)
answers 402, verifies and settles through the facilitator configured in
``AIXYZ_X402`` and binds the payer's session around the view.
"""

from __future__ import annotations

from ..replay import InMemoryReplayGuard, ReplayGuard
from .decorators import PaidSpec, paid

__all__ = ["InMemoryReplayGuard", "PaidSpec", "ReplayGuard", "paid"]
