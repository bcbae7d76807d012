"""The errors of the session API: the caller's mistakes and the backend's trouble.

A wrong type raises the built-in ``TypeError``; a value a store refuses
raises :class:`SessionArgumentError` (a ``ValueError``). The other two are for
backend trouble, so callers can tell "you asked wrongly" from "the store
could not answer" (and, with :class:`SessionStoreMisconfigured`, from "the
store will not answer until someone fixes the setup").
"""

from __future__ import annotations


class SessionArgumentError(ValueError):
    """A value a session store refuses: empty, oversized, negative, or not UTF-8.

    The message names the limit. Nothing was written.
    """


class SessionStoreError(Exception):
    """A session store could not carry out an operation."""


class SessionStoreUnavailable(SessionStoreError):
    """The store's backend (Redis, the database, ...) cannot be reached right now.

    Nothing was written by the operation that raised it.
    """


class SessionStoreMisconfigured(SessionStoreError):
    """The store cannot work until the deployment is fixed (a table not migrated, say).

    Unlike :class:`SessionStoreUnavailable`, retrying will not help: the
    transports answer it as a server error that names the fix, not as a 503.
    """
