"""Replay guard: one payment authorization buys one request.

A facilitator only refuses an authorization once it has *settled*; between
verification and settlement the same signed header would verify again. The
middleware therefore claims ``(payer, nonce)`` right after verification and
before the view runs: the first claim wins, any other use, concurrent or
later, gets a 402. A request that fails before settlement releases its claim
(no money moved, so the client may retry with the same authorization).

Where the claims live follows the session store, so several worker
processes agree whenever their sessions are shared: the runtime asks
:meth:`SessionStore.replay_guard() <aixyz_sessions.SessionStore.replay_guard>`,
which gives a Redis ``SET NX`` guard for ``CacheSessionStore`` and a
unique-row guard for ``DatabaseSessionStore``; a store without one (the
in-memory store) gets :class:`InMemoryReplayGuard`, which covers one
process. ``AIXYZ_X402["REPLAY_GUARD"]`` names any other :class:`ReplayGuard`.

The classes are defined in :mod:`aixyz_sessions.replay` (stores reach them
there without importing the x402 machinery) and re-exported here.
"""

from __future__ import annotations

from ..replay import InMemoryReplayGuard, ReplayGuard

__all__ = ["InMemoryReplayGuard", "ReplayGuard"]
