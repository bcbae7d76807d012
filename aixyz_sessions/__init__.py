"""aixyz-sessions: per-payer key-value sessions for Django agent backends paid with x402.

Public API::

    from aixyz_sessions import get_session, get_payer, payer_context, Session
    from aixyz_sessions import SessionStore, ListResult, PayerPage, get_store
    from aixyz_sessions import SessionArgumentError, SessionStoreError, SessionStoreUnavailable
    from aixyz_sessions import SessionStoreMisconfigured
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import Session, get_payer, get_session, payer_context
from .exceptions import (
    SessionArgumentError,
    SessionStoreError,
    SessionStoreMisconfigured,
    SessionStoreUnavailable,
)
from .stores.base import ListResult, PayerPage, SessionStore

if TYPE_CHECKING:
    from .conf import get_store

__all__ = [
    "ListResult",
    "PayerPage",
    "Session",
    "SessionArgumentError",
    "SessionStore",
    "SessionStoreError",
    "SessionStoreMisconfigured",
    "SessionStoreUnavailable",
    "get_payer",
    "get_session",
    "get_store",
    "payer_context",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``get_store`` reads Django settings; import it lazily so that importing the
    # package (e.g. from settings.py) never touches settings.
    if name == "get_store":
        from .conf import get_store

        return get_store
    raise AttributeError(f"module 'aixyz_sessions' has no attribute {name!r}")
