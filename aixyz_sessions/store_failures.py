"""How every transport reports a session store that failed: one code, status and message.

A store (or the replay guard kept in it) raises :class:`SessionStoreError`.
An outage (:class:`SessionStoreUnavailable` and any other store error) is
``session_store_unavailable``, HTTP 503 with ``Retry-After``: it passes by
itself. :class:`SessionStoreMisconfigured` (a table not migrated...) is
``session_store_misconfigured``, HTTP 500 without ``Retry-After``: it lasts
until someone fixes the deployment, so it is logged as an error, and the
message names the fix. Neither is ever settled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .exceptions import SessionStoreError, SessionStoreMisconfigured

__all__ = ["RETRY_AFTER_SECONDS", "StoreFailure", "store_failure"]

logger = logging.getLogger("aixyz_sessions")

#: What a 503 tells the client to wait before retrying.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class StoreFailure:
    """A store failure as the transports report it."""

    code: str
    status: int
    message: str
    retry_after: int | None


def store_failure(exc: SessionStoreError, where: str = "") -> StoreFailure:
    """Classify ``exc`` and log it once, at the level it deserves."""
    place = f" in {where}" if where else ""
    if isinstance(exc, SessionStoreMisconfigured):
        logger.error("session store misconfigured%s: %s", place, exc)
        return StoreFailure("session_store_misconfigured", 500, str(exc), None)
    logger.warning("session store failed%s: %s", place, exc)
    return StoreFailure("session_store_unavailable", 503, str(exc), RETRY_AFTER_SECONDS)
