"""Replay guard: one payment authorization buys one request.

A facilitator only refuses an authorization once it has *settled*; between
verification and settlement the same signed header would verify again. The
payment middleware therefore claims ``(payer, nonce)`` right after
verification and before the view runs: the first claim wins, any other use,
concurrent or later, gets a 402. A request that fails before settlement
releases its claim (no money moved, so the client may retry with the same
authorization).

A guard answers one question atomically: is this the first use of the
payment authorization ``(payer, nonce)``? Payer and nonce compare
case-insensitively (an address and a hex nonce may arrive in any case). A
claim may be forgotten ``grace`` seconds after the authorization's
``valid_before``: by then every facilitator refuses it as expired.

Where the claims live follows the session store, so several worker
processes agree whenever their sessions are shared: the runtime asks
:meth:`SessionStore.replay_guard() <aixyz_sessions.SessionStore.replay_guard>`,
which gives a Redis ``SET NX`` guard for ``CacheSessionStore`` and a
unique-row guard for ``DatabaseSessionStore``; a store without one (the
in-memory store) gets :class:`InMemoryReplayGuard`, which covers one
process. ``AIXYZ_X402["REPLAY_GUARD"]`` names any other :class:`ReplayGuard`
(e.g. ``"aixyz_sessions.replay.InMemoryReplayGuard"``).

A guard has two jobs, each with its own small interface: *claims*
(:class:`PaymentClaims`: first use wins) and short-lived *records* per payer
(:class:`PayerRecords`: "this payer paid for this resource" for sign-in, the
kept answer of a paid call for payment identifiers, a payer's A2A tasks).
Every built-in backend (:class:`ReplayGuard`: memory, database, Redis) does
both in one place, so every worker process that shares the claims sees the
records too; the last write wins and each record expires on its own.

This module lives outside :mod:`aixyz_sessions.payments` so that a store can
offer a guard kept in its own backend without importing the x402 machinery:
``payments`` imports ``stores``, never the other way round.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stores.base import SessionStore

__all__ = [
    "DEFAULT_GRACE",
    "MAX_CLAIM_FIELD",
    "MAX_EXPIRY",
    "InMemoryReplayGuard",
    "PayerRecords",
    "PaymentClaims",
    "Record",
    "ReplayGuard",
    "check_grace",
    "claim_expiry",
    "claim_key",
    "record_expiry",
]

#: Seconds a claim outlives its authorization's ``valid_before`` (clock skew).
DEFAULT_GRACE = 60.0
#: Longest payer or nonce accepted, in characters (a nonce is bytes32 hex or a uint256).
MAX_CLAIM_FIELD = 256
#: The latest expiry a guard stores (9999-12-31T00:00:00Z): every backend, and a
#: datetime in any local time zone, can hold it.
MAX_EXPIRY = 253_402_214_400


def claim_key(payer: str, nonce: str) -> tuple[str, str]:
    """``(payer, nonce)`` lower-cased; ``TypeError``/``ValueError`` when unusable."""
    for name, value in (("payer", payer), ("nonce", nonce)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        if not 0 < len(value) <= MAX_CLAIM_FIELD:
            raise ValueError(f"{name} must be 1..{MAX_CLAIM_FIELD} characters")
    return payer.lower(), nonce.lower()


def claim_expiry(valid_before: int, grace: float) -> float:
    """When a claim may be forgotten (unix seconds), within what every backend stores."""
    if isinstance(valid_before, bool) or not isinstance(valid_before, int):
        raise TypeError(f"valid_before must be an int, not {type(valid_before).__name__}")
    # Clamp the int first: a client-chosen 10**308 would overflow a float sum.
    return min(max(min(valid_before, MAX_EXPIRY) + grace, 0.0), float(MAX_EXPIRY))


def check_grace(grace: float) -> float:
    """``grace`` as a float; ``ValueError`` when negative."""
    if isinstance(grace, bool) or not isinstance(grace, int | float):
        raise TypeError(f"grace must be a number of seconds, not {type(grace).__name__}")
    if not grace >= 0:
        raise ValueError("grace must be >= 0")
    return float(grace)


@dataclass(frozen=True, slots=True)
class Record:
    """One record a guard keeps (what :meth:`ReplayGuard.remember` takes), made now, written later.

    A settled paid call's records (sign-in, its kept answer) are built before
    the commit, so that a store keeping them in its own backend can write them
    in the same step as the session writes (see
    :meth:`~aixyz_sessions.SessionStore.commit`).
    """

    payer: str
    key: str
    value: str
    expires_at: float


async def _logging_failure(step: Awaitable[None], what: str, payer: str) -> None:
    """Await ``step``; a backend failure is logged, not raised (for cleanup paths)."""
    try:
        await step
    except Exception:
        logging.getLogger("aixyz_sessions.payments").warning(
            "replay guard: could not %s of %s", what, payer, exc_info=True
        )


class PaymentClaims(ABC):
    """One job of a guard: atomic "first use wins" over signed authorizations.

    A payment authorization ``(payer, nonce)`` is claimed right after
    verification; a sign-in's nonce is claimed when it is accepted. What the
    paid-call core asks of claims, and nothing else.
    """

    @abstractmethod
    async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
        """Claim ``(payer, nonce)``; ``False`` if it is already claimed.

        ``valid_before`` (unix seconds) is when the authorization stops being
        valid anywhere; the guard may forget the claim after it.
        """

    @abstractmethod
    async def release(self, payer: str, nonce: str) -> None:
        """Give back a claim whose request failed before its work started."""

    async def release_quietly(self, payer: str, nonce: str) -> None:
        """:meth:`release`, logging instead of raising when the backend fails.

        Used in ``finally`` blocks, where raising would hide the original
        error; an unreleased claim only means the client must sign anew.
        """
        await _logging_failure(self.release(payer, nonce), "release the claim", payer)

    def shares_server(self, store: SessionStore) -> bool:
        """Whether a claim of a payer is answered by the server that holds the payer's
        session in ``store``: then a claim that just answered shows that the store
        answers (see :meth:`~aixyz_sessions.staging.StagedSession.ready`). Default: no.
        """
        return False


class PayerRecords(ABC):
    """The other job: short-lived records per payer, each expiring on its own.

    "This payer paid for this resource" (sign-in), the kept answer of a paid
    call (payment identifiers), a payer's A2A tasks. The last write wins.
    """

    @abstractmethod
    async def remember(self, payer: str, key: str, value: str, expires_at: float) -> None:
        """Keep ``value`` under ``(payer, key)`` until ``expires_at`` (unix seconds)."""

    @abstractmethod
    async def recall(self, payer: str, key: str) -> str | None:
        """What :meth:`remember` kept under ``(payer, key)`` and has not expired, else ``None``."""

    @abstractmethod
    async def forget(self, payer: str, key: str) -> None:
        """Drop what is kept under ``(payer, key)`` (nothing there: nothing happens)."""

    @abstractmethod
    async def take(self, payer: str, key: str, value: str, expires_at: float) -> str | None:
        """Keep ``value`` under ``(payer, key)`` unless something live is there.

        ``None``: this call took the name (``value`` is kept until
        ``expires_at``); else what is there (as :meth:`recall` reads it).
        Give ``value`` something unique to this call (a random token): a
        backend that retries a lost reply tells its own write by it.
        """

    async def forget_quietly(self, payer: str, key: str) -> None:
        """:meth:`forget`, logging instead of raising when the backend fails."""
        await _logging_failure(self.forget(payer, key), "drop a record", payer)

    def shares_server(self, store: SessionStore) -> bool:
        """Whether records of a payer live on the server of the payer's session in
        ``store`` (then :meth:`SessionStore.commit <aixyz_sessions.SessionStore.commit>`
        may write them with the session). Default: no."""
        return False


class ReplayGuard(PaymentClaims, PayerRecords):
    """Both jobs in one backend: claims and payer records, under one ``(payer, name)``.

    The built-in guards (in memory, the database's ``PaymentClaim`` table,
    Redis) are these; the runtime hands the paid-call core their two faces
    (:attr:`~aixyz_sessions.payments.runtime.PaymentRuntime.claims` and
    :attr:`~aixyz_sessions.payments.runtime.PaymentRuntime.records`). A
    record and a claim share a name space: a live claim reads as a record
    (its token, possibly empty: "taken, nothing kept yet"), and
    :meth:`remember` replaces a claim. A custom guard written before records
    existed implements only :meth:`claim` and :meth:`release`: its records
    raise ``NotImplementedError`` (check ``W104``: sign-in and payment
    identifiers need them).
    """

    async def remember(self, payer: str, key: str, value: str, expires_at: float) -> None:
        """Keep ``value`` under ``(payer, key)`` until ``expires_at``; replaces a claim there."""
        raise NotImplementedError(
            f"{type(self).__name__} keeps no records; implement remember() and recall() "
            "to use sign-in and payment identifiers"
        )

    async def recall(self, payer: str, key: str) -> str | None:
        """What is kept under ``(payer, key)`` (a live claim reads as its token)."""
        raise NotImplementedError(
            f"{type(self).__name__} keeps no records; implement remember() and recall() "
            "to use sign-in and payment identifiers"
        )

    async def forget(self, payer: str, key: str) -> None:
        """A record and a claim are one name here: :meth:`release` drops either."""
        await self.release(payer, key)

    async def take(self, payer: str, key: str, value: str, expires_at: float) -> str | None:
        """Default: :meth:`claim`, then :meth:`remember` (or :meth:`recall` when refused)."""
        if await self.claim(payer, key, int(expires_at)):
            await self.remember(payer, key, value, expires_at)
            return None
        found = await self.recall(payer, key)
        return "" if found is None else found  # gone since the claim: read as "taken"


class InMemoryReplayGuard(ReplayGuard):
    """Claims held in this process's memory; safe across threads and tasks.

    Claims are forgotten ``grace`` seconds after their ``valid_before``; by
    then every facilitator rejects the authorization as expired anyway.
    """

    def __init__(
        self, *, grace: float = DEFAULT_GRACE, clock: Callable[[], float] = time.time
    ) -> None:
        self._grace = check_grace(grace)
        self._clock = clock
        self._lock = threading.Lock()
        self._claims: dict[tuple[str, str], float] = {}
        self._values: dict[tuple[str, str], str] = {}
        self._expiry: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._claims)

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            expires, key = heapq.heappop(self._expiry)
            if self._claims.get(key) == expires:
                del self._claims[key]
                self._values.pop(key, None)

    async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
        """Claim atomically (a lock, no awaits inside it)."""
        key = claim_key(payer, nonce)
        expires = claim_expiry(valid_before, self._grace)
        with self._lock:
            now = self._clock()
            self._purge(now)
            if key in self._claims:
                return False
            if expires <= now:  # its window has already passed: nothing to remember
                return True
            self._claims[key] = expires
            heapq.heappush(self._expiry, (expires, key))
            return True

    async def release(self, payer: str, nonce: str) -> None:
        """Drop the claim (its heap entry goes lazily)."""
        key = claim_key(payer, nonce)
        with self._lock:
            self._claims.pop(key, None)
            self._values.pop(key, None)

    async def remember(self, payer: str, key: str, value: str, expires_at: float) -> None:
        """Keep ``value`` (replacing a claim or record) until ``expires_at``."""
        pair = claim_key(payer, key)
        expires = record_expiry(expires_at)
        if not isinstance(value, str):
            raise TypeError(f"value must be a str, not {type(value).__name__}")
        with self._lock:
            now = self._clock()
            self._purge(now)
            if expires <= now:
                self._claims.pop(pair, None)
                self._values.pop(pair, None)
                return
            self._claims[pair] = expires
            self._values[pair] = value
            heapq.heappush(self._expiry, (expires, pair))

    async def recall(self, payer: str, key: str) -> str | None:
        """The live value under ``(payer, key)``; ``""`` for a claim without one."""
        pair = claim_key(payer, key)
        with self._lock:
            self._purge(self._clock())
            if pair not in self._claims:
                return None
            return self._values.get(pair, "")


def record_expiry(expires_at: float) -> float:
    """``expires_at`` (unix seconds) within what every backend stores."""
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
        raise TypeError(f"expires_at must be unix seconds, not {type(expires_at).__name__}")
    if not math.isfinite(expires_at):
        raise ValueError("expires_at must be finite")
    return min(max(float(expires_at), 0.0), float(MAX_EXPIRY))
