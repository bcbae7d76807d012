"""Errors a session store raises when its backend, not the caller, is at fault.

Bad arguments raise the built-in ``TypeError`` / ``ValueError``; these two are
for backend trouble, so callers can tell "you asked wrongly" from "the store
could not answer".
"""

from __future__ import annotations


class SessionStoreError(Exception):
    """A session store could not carry out an operation."""


class SessionStoreUnavailable(SessionStoreError):
    """The store's backend (Redis, the database, ...) cannot be reached right now.

    Nothing was written by the operation that raised it.
    """
