"""Test helpers for projects using aixyz-sessions.

``StoreConformance`` runs the store contract against any ``SessionStore``;
``ManualClock`` moves time by hand. Needs pytest (the ``dev`` extra).
"""

from __future__ import annotations

from .clock import ManualClock
from .conformance import StoreConformance

__all__ = ["ManualClock", "StoreConformance"]
