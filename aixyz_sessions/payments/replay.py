"""Replay guard: one payment authorization buys one request.

A facilitator only refuses an authorization once it has *settled*; between
verification and settlement the same signed header would verify again. The
middleware therefore claims ``(payer, nonce)`` right after verification and
before the view runs: the first claim wins, any other use, concurrent or
later, gets a 402. A request that fails before settlement releases its claim
(no money moved, so the client may retry with the same authorization).

:class:`InMemoryReplayGuard` is the default and covers one process. Several
processes need a shared guard (Redis ``SET NX`` with an expiry at
``valid_before``, or a unique database row): subclass :class:`ReplayGuard`
and name it in ``AIXYZ_X402["REPLAY_GUARD"]``.
"""

from __future__ import annotations

import heapq
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

__all__ = ["InMemoryReplayGuard", "ReplayGuard"]


class ReplayGuard(ABC):
    """Atomic "first use wins" over payment authorizations."""

    @abstractmethod
    async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
        """Claim ``(payer, nonce)``; ``False`` if it is already claimed.

        ``valid_before`` (unix seconds) is when the authorization stops being
        valid anywhere; the guard may forget the claim after it.
        """

    @abstractmethod
    async def release(self, payer: str, nonce: str) -> None:
        """Give back a claim whose request failed before settlement."""


class InMemoryReplayGuard(ReplayGuard):
    """Claims held in this process's memory; safe across threads and tasks.

    Claims are forgotten ``grace`` seconds after their ``valid_before``; by
    then every facilitator rejects the authorization as expired anyway.
    """

    def __init__(self, *, grace: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self._grace = grace
        self._clock = clock
        self._lock = threading.Lock()
        self._claims: dict[tuple[str, str], int] = {}
        self._expiry: list[tuple[int, tuple[str, str]]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._claims)

    @staticmethod
    def _key(payer: str, nonce: str) -> tuple[str, str]:
        return payer.lower(), nonce.lower()

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] + self._grace < now:
            valid_before, key = heapq.heappop(self._expiry)
            if self._claims.get(key) == valid_before:
                del self._claims[key]

    async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
        """Claim atomically (a lock, no awaits inside it)."""
        key = self._key(payer, nonce)
        with self._lock:
            self._purge(self._clock())
            if key in self._claims:
                return False
            self._claims[key] = valid_before
            heapq.heappush(self._expiry, (valid_before, key))
            return True

    async def release(self, payer: str, nonce: str) -> None:
        """Drop the claim (its heap entry goes lazily)."""
        with self._lock:
            self._claims.pop(self._key(payer, nonce), None)
