"""A clock tests can move by hand, for stores that accept ``clock=``."""

from __future__ import annotations


class ManualClock:
    """Milliseconds that pass only when :meth:`advance` says so."""

    def __init__(self, start_ms: float = 1_000_000.0) -> None:
        self.now_ms = float(start_ms)

    def __call__(self) -> float:
        return self.now_ms

    def advance(self, ms: float) -> None:
        """Move time forward by ``ms`` milliseconds."""
        if ms < 0:
            raise ValueError("time only moves forward")
        self.now_ms += ms
