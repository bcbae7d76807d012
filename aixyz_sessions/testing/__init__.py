"""Test helpers for projects using aixyz-sessions.

``StoreConformance`` runs the store contract against any ``SessionStore``;
``ManualClock`` moves time by hand; ``PayingClient`` (async) and
``SyncPayingClient`` are Django test clients that pay x402 402s with a real
key. Needs pytest (the ``dev`` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .clock import ManualClock
from .conformance import StoreConformance

if TYPE_CHECKING:
    from .paying import PayingClient, SyncPayingClient

__all__ = ["ManualClock", "PayingClient", "StoreConformance", "SyncPayingClient"]


def __getattr__(name: str) -> object:
    # The paying clients import Django's test client and the x402 SDK: load on use.
    if name in ("PayingClient", "SyncPayingClient"):
        from . import paying

        return getattr(paying, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
