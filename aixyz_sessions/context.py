"""Who is paying right now: the payer contextvar and the ``Session`` handle.

The x402 middleware, the MCP server and the WebSocket consumer each bind the
verified payer with :func:`payer_context` around the code they run; tool code
then calls :func:`get_session` and never threads identity through its
parameters. A ``ContextVar`` gives every asyncio task and every thread its own
binding, so concurrent requests cannot see each other's payer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING

from .stores.validation import check_payer

if TYPE_CHECKING:
    from .stores.base import ListResult, SessionStore

__all__ = ["Session", "get_payer", "get_session", "payer_context"]

_current: ContextVar[Session | None] = ContextVar("aixyz_sessions_current", default=None)


class Session:
    """The key-value session of one payer; every method is a coroutine.

    ``payer`` is the address as the payment reported it (for display); the
    store sees ``payer.lower()``, so a checksummed and a lower-case address
    share one session. ``store`` defaults to the configured one
    (:func:`aixyz_sessions.get_store`).
    """

    __slots__ = ("_store", "key", "payer")

    def __init__(self, payer: str, store: SessionStore | None = None) -> None:
        check_payer(payer)
        self.payer = payer
        #: The id the store files this payer's entries under.
        self.key = payer.lower()
        self._store = store

    def __repr__(self) -> str:
        return f"<Session payer={self.payer!r}>"

    @property
    def store(self) -> SessionStore:
        if self._store is None:
            from .conf import get_store

            self._store = get_store()
        return self._store

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or ``None`` if absent or expired."""
        return await self.store.get(self.key, key)

    async def set(self, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        """Store ``value`` under ``key``; ``ttl_ms``: None=store default, 0=never expires."""
        await self.store.set(self.key, key, value, ttl_ms=ttl_ms)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; ``True`` if it existed."""
        return await self.store.delete(self.key, key)

    async def list(
        self,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
    ) -> ListResult:
        """One page of entries in ascending key order; see :class:`ListResult`."""
        return await self.store.list(
            self.key, prefix=prefix, cursor=cursor, limit=limit, keys_only=keys_only
        )

    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        """``{key: value or None}`` for every key asked."""
        return await self.store.get_many(self.key, keys)

    async def set_many(self, entries: Mapping[str, str], *, ttl_ms: int | None = None) -> None:
        """Store several entries with one TTL."""
        await self.store.set_many(self.key, entries, ttl_ms=ttl_ms)

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove several keys; return how many existed."""
        return await self.store.delete_many(self.key, keys)


def get_session() -> Session | None:
    """The session of the payer of the current request, tool call or message.

    ``None`` where no verified payment is in force (free views, unpaid calls).
    """
    return _current.get()


def get_payer() -> str | None:
    """The current payer's address as reported by the payment, or ``None``."""
    session = _current.get()
    return None if session is None else session.payer


class payer_context:
    """Bind ``payer``'s session for a block: ``with`` or ``async with``.

    ``payer_context(None)`` clears the binding. The previous binding comes
    back on exit, on exceptions too. The object may be entered again after
    exit, and nested.
    """

    __slots__ = ("_session", "_tokens")

    def __init__(self, payer: str | Session | None, *, store: SessionStore | None = None) -> None:
        if payer is None or isinstance(payer, Session):
            self._session = payer
        else:
            self._session = Session(payer, store)
        self._tokens: list[Token[Session | None]] = []

    @property
    def session(self) -> Session | None:
        """The session this block binds (``None`` for a clearing block)."""
        return self._session

    def __enter__(self) -> Session | None:
        self._tokens.append(_current.set(self._session))
        return self._session

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> Session | None:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
