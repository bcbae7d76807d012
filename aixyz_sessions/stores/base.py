"""The contract every session store keeps: ``SessionStore``, ``ListResult``, ``PayerPage``.

A backend subclasses ``SessionStore`` and implements ``get``, ``set``,
``delete`` and ``list`` (and, when it can do better than one call per key,
the batch forms; and, optionally, ``list_payers``). The base class checks
every argument *before* the subclass's method runs, for built-in and custom
stores alike, so all stores refuse bad input with the same ``TypeError`` /
``ValueError`` and never write anything on a refused call. Methods therefore
receive clean arguments: ``limit`` is ``None`` (no limit) or a positive int,
``prefix`` is ``None`` or a non-empty str, ``keys`` is a list and ``entries``
a dict.
"""

from __future__ import annotations

import abc
import builtins
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from asgiref.sync import markcoroutinefunction

from . import validation as v
from .cursor import CursorCodec

if TYPE_CHECKING:
    from ..replay import PayerRecords, Record, ReplayGuard

__all__ = ["ListResult", "PayerPage", "SessionStore", "Write"]

#: One write of a :meth:`SessionStore.commit`: ``(value, ttl_ms)`` sets, ``None`` deletes.
Write: TypeAlias = tuple[str, int | None] | None


@dataclass(slots=True)
class ListResult:
    """One page of a payer's entries, in ascending key order.

    ``cursor`` is present only when more entries remain; pass it back as
    ``list(cursor=...)`` for the next page.
    """

    entries: dict[str, str] = field(default_factory=dict)
    cursor: str | None = None


@dataclass(slots=True)
class PayerPage:
    """One page of the payers a store holds entries for, in ascending code-point order.

    ``cursor`` is present only when more payers remain; pass it back as
    ``list_payers(cursor=...)`` for the next page.
    """

    payers: list[str] = field(default_factory=list)
    cursor: str | None = None


#: The cursor context of payer pages. The cursor codec binds a cursor to a
#: payer id; no payer id contains NUL, so a list cursor (bound to a real
#: payer) never decodes as a payer cursor, nor the other way round.
_PAYERS_CURSOR_CONTEXT = "\x00payers"


# The fast path of the checks: one expression for the common case (ASCII key,
# where characters == bytes); anything else goes through ``validation`` for
# the exact rule and message.
_MAX_PAYER = v.MAX_PAYER_CHARS
_MAX_KEY = v.MAX_KEY_BYTES


def _checked(name: str, impl: Callable[..., Awaitable[Any]], store_cls: type) -> Callable[..., Any]:
    """Wrap a store method so its arguments are validated before it runs.

    The wrapper is a plain function returning the method's coroutine: the
    checks cost no extra coroutine frame on the hot path, and a refused call
    raises as soon as it is made.
    """

    if name in ("get", "delete", "entry_ttl_ms"):  # (payer, key)

        def payer_key(self: SessionStore, payer: str, key: str) -> Awaitable[Any]:
            if not (
                type(payer) is str
                and 0 < len(payer) <= _MAX_PAYER
                and payer.isascii()
                and type(key) is str
                and 0 < len(key) <= _MAX_KEY
                and key.isascii()
                and "\x00" not in key
                and "\x00" not in payer
            ):
                v.check_payer(payer)
                v.check_key(key)
            return impl(self, payer, key)

        wrapper: Callable[..., Any] = payer_key
    elif name == "set":

        def set(
            self: SessionStore, payer: str, key: str, value: str, *, ttl_ms: int | None = None
        ) -> Awaitable[None]:
            if not (
                type(payer) is str
                and 0 < len(payer) <= _MAX_PAYER
                and payer.isascii()
                and type(key) is str
                and 0 < len(key) <= _MAX_KEY
                and key.isascii()
                and "\x00" not in key
                and "\x00" not in payer
                and type(value) is str
                and len(value) <= self.max_value_bytes
                and value.isascii()
                and "\x00" not in value
                and (ttl_ms is None or (type(ttl_ms) is int and ttl_ms >= 0))
            ):
                v.check_payer(payer)
                v.check_key(key)
                v.check_value(value, self.max_value_bytes)
                v.check_ttl(ttl_ms)
            return impl(self, payer, key, value, ttl_ms=ttl_ms)

        wrapper = set
    elif name == "list":

        def list(
            self: SessionStore,
            payer: str,
            *,
            prefix: str | None = None,
            cursor: str | None = None,
            limit: int | None = None,
            keys_only: bool = False,
        ) -> Awaitable[ListResult]:
            return impl(
                self,
                v.check_payer(payer),
                prefix=v.check_prefix(prefix),
                cursor=v.check_cursor(cursor),
                limit=v.check_limit(limit),
                keys_only=v.check_bool(keys_only, "keys_only"),
            )

        wrapper = list
    elif name == "get_many":

        def get_many(
            self: SessionStore, payer: str, keys: Iterable[str]
        ) -> Awaitable[dict[str, str | None]]:
            return impl(self, v.check_payer(payer), v.check_keys(keys, self.max_batch))

        wrapper = get_many
    elif name == "set_many":

        def set_many(
            self: SessionStore,
            payer: str,
            entries: Mapping[str, str],
            *,
            ttl_ms: int | None = None,
        ) -> Awaitable[None]:
            return impl(
                self,
                v.check_payer(payer),
                v.check_entries(entries, self.max_value_bytes, self.max_batch),
                ttl_ms=v.check_ttl(ttl_ms),
            )

        wrapper = set_many
    elif name == "commit":

        def commit(
            self: SessionStore,
            payer: str,
            writes: Mapping[str, Write],
            *,
            records: Sequence[Record] = (),
            guard: PayerRecords | None = None,
        ) -> Awaitable[bool]:
            return impl(
                self,
                v.check_payer(payer),
                v.check_writes(writes, self.max_value_bytes),
                records=_check_records(records),
                guard=guard,
            )

        wrapper = commit
    elif name == "list_payers":

        def list_payers(
            self: SessionStore,
            *,
            prefix: str | None = None,
            cursor: str | None = None,
            limit: int | None = None,
        ) -> Awaitable[PayerPage]:
            return impl(
                self,
                prefix=v.check_prefix(prefix),
                cursor=v.check_cursor(cursor),
                limit=v.check_limit(limit),
            )

        wrapper = list_payers
    else:

        def delete_many(self: SessionStore, payer: str, keys: Iterable[str]) -> Awaitable[int]:
            return impl(self, v.check_payer(payer), v.check_keys(keys, self.max_batch))

        wrapper = delete_many

    functools.update_wrapper(wrapper, impl)
    wrapper.__aixyz_checked__ = True  # type: ignore[attr-defined]
    wrapper.__qualname__ = f"{store_cls.__qualname__}.{name}"
    # Still reads as a coroutine function to asyncio and asgiref (Django's check).
    return markcoroutinefunction(wrapper)


def _check_records(records: object) -> tuple[Record, ...]:
    from ..replay import Record

    if isinstance(records, str | bytes) or not isinstance(records, Iterable):
        raise TypeError(f"records must be a sequence of Record, not {type(records).__name__}")
    checked = tuple(records)
    for record in checked:
        if not isinstance(record, Record):
            raise TypeError(f"records must hold Record objects, not {type(record).__name__}")
    return checked


_CHECKED_METHODS = (
    "commit",
    "get",
    "set",
    "delete",
    "list",
    "get_many",
    "set_many",
    "delete_many",
    "list_payers",
    "entry_ttl_ms",  # optional, for inspection: built-in stores have it
)


class _Overrides:
    """``True`` on a store class, or instance, whose class overrides ``SessionStore.<name>``.

    A descriptor rather than a property so that both ``store.supports_x``
    and ``StoreClass.supports_x`` read as a bool (a property read on the
    class is a property object, which is always true).
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type[SessionStore]) -> bool:
        return getattr(owner, self.name) is not getattr(SessionStore, self.name)


class SessionStore(abc.ABC):
    """Abstract base of every session store; subclass it for a custom backend.

    All methods are coroutines. ``payer`` is already normalised (lower-case)
    by :class:`~aixyz_sessions.Session`; stores treat it as an opaque id.

    TTL semantics: ``ttl_ms=None`` takes the store's default
    (:attr:`default_ttl_ms`), ``0`` never expires, ``> 0`` expires that long
    after the last write or read (``get`` refreshes with the entry's own TTL).
    """

    #: TTL (ms) applied when ``set`` is given ``ttl_ms=None``.
    default_ttl_ms: int = v.DEFAULT_TTL_MS
    #: Largest value accepted, in UTF-8 bytes.
    max_value_bytes: int = v.DEFAULT_MAX_VALUE_BYTES
    #: Most keys (or entries) accepted by one batch call.
    max_batch: int = v.DEFAULT_MAX_BATCH

    #: Whether this store implements the optional :meth:`list_payers` (its
    #: class overrides it). Callers such as the admin check it first.
    supports_list_payers = _Overrides("list_payers")

    _CURSOR_CODEC: ClassVar[CursorCodec | None] = None

    def __init__(
        self,
        *,
        ttl_ms: int | None = None,
        max_value_bytes: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        if ttl_ms is not None:
            if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
                raise TypeError("ttl_ms must be an int")
            if ttl_ms < 0:
                raise ValueError("ttl_ms must be >= 0")
            self.default_ttl_ms = ttl_ms
        if max_value_bytes is not None:
            if isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int):
                raise TypeError("max_value_bytes must be an int")
            if max_value_bytes < 1:
                raise ValueError("max_value_bytes must be >= 1")
            self.max_value_bytes = max_value_bytes
        if max_batch is not None:
            if isinstance(max_batch, bool) or not isinstance(max_batch, int):
                raise TypeError("max_batch must be an int")
            if max_batch < 1:
                raise ValueError("max_batch must be >= 1")
            self.max_batch = max_batch

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _CHECKED_METHODS:
            impl = cls.__dict__.get(name)
            if callable(impl) and not getattr(impl, "__aixyz_checked__", False):
                setattr(cls, name, _checked(name, impl, cls))

    # -- required --------------------------------------------------------

    @abc.abstractmethod
    async def get(self, payer: str, key: str) -> str | None:
        """Return the live value of ``key``, refreshing its sliding TTL; else ``None``."""

    @abc.abstractmethod
    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        """Store ``value`` under ``key`` with ``ttl_ms`` (see the class doc)."""

    @abc.abstractmethod
    async def delete(self, payer: str, key: str) -> bool:
        """Remove ``key``; return whether a live entry existed."""

    @abc.abstractmethod
    async def list(
        self,
        payer: str,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
    ) -> ListResult:
        """Return one page of live entries in ascending key order."""

    # -- optional, with working defaults ----------------------------------

    async def get_many(self, payer: str, keys: Iterable[str]) -> dict[str, str | None]:
        """Return ``{key: value or None}`` for ``keys``. Default: one ``get`` per key."""
        return {key: await self.get(payer, key) for key in keys}

    async def set_many(
        self, payer: str, entries: Mapping[str, str], *, ttl_ms: int | None = None
    ) -> None:
        """Store every entry with the same ``ttl_ms``. Default: one ``set`` per entry."""
        for key, value in entries.items():
            await self.set(payer, key, value, ttl_ms=ttl_ms)

    async def delete_many(self, payer: str, keys: Iterable[str]) -> int:
        """Remove ``keys``; return how many live entries existed. Default: one ``delete`` each."""
        removed = 0
        for key in dict.fromkeys(keys):
            removed += await self.delete(payer, key)
        return removed

    async def commit(
        self,
        payer: str,
        writes: Mapping[str, Write],
        *,
        records: Sequence[Record] = (),
        guard: PayerRecords | None = None,
    ) -> bool:
        """Store a settled paid call's staged writes; whether ``records`` went with them.

        ``writes`` maps keys to ``(value, ttl_ms)`` (a set) or ``None`` (a
        delete). ``records`` are what the payment leaves in ``guard``
        (sign-in, the kept answer of a payment identifier): a store that
        keeps ``guard``'s records in its own backend may write them in the
        same step and return ``True``; ``False`` leaves them to the caller,
        who writes them with ``guard.remember`` afterwards. Raises
        :class:`~aixyz_sessions.SessionStoreError`; then any of the writes
        may have landed or not (each is idempotent).

        Default: the sets with :meth:`set_many`, one call per TTL, then the
        deletes with :meth:`delete_many`, in batches of :attr:`max_batch`;
        the records are left to the caller. A store that can do it all in
        one round trip overrides this (Redis does).
        """
        by_ttl: dict[int | None, dict[str, str]] = {}
        deletes: builtins.list[str] = []
        for key, write in writes.items():
            if write is None:
                deletes.append(key)
            else:
                by_ttl.setdefault(write[1], {})[key] = write[0]
        step = self.max_batch
        for ttl, entries in by_ttl.items():
            items = builtins.list(entries.items())
            for start in range(0, len(items), step):
                await self.set_many(payer, dict(items[start : start + step]), ttl_ms=ttl)
        for start in range(0, len(deletes), step):
            await self.delete_many(payer, deletes[start : start + step])
        return False

    async def list_payers(
        self,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> PayerPage:
        """Return one page of the payers that have entries, in ascending code-point order.

        Optional (``supports_list_payers`` says whether a store has it); every
        built-in store implements it. Payers are the ids the store files
        (lower-case, as :class:`~aixyz_sessions.Session` passes them). Paged
        like :meth:`list`: ``prefix`` is literal text, ``limit`` ``None`` or
        ``0`` means all, ``cursor`` is opaque and present only when more
        payers remain, and the next page holds exactly the payers after the
        last one returned. A payer with a live entry is never left out; one
        whose entries expired moments ago may still be named. Build cursors
        with :meth:`encode_payer_cursor` and read them with
        :meth:`decode_payer_cursor`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not list payers")

    async def purge_expired(self) -> int:
        """Delete expired entries now and return how many (``aixyz_sessions_purge``).

        Optional: stores whose backend drops expired entries by itself may
        leave it unimplemented; the purge command then says so.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot purge expired entries on demand")

    async def close(self) -> None:  # noqa: B027 - optional hook, deliberately empty
        """Release connections or memory held by the store. Default: nothing."""

    def replay_guard(self) -> ReplayGuard | None:
        """A payment replay guard kept in this store's backend, or ``None``.

        Not part of the per-payer API (no argument checks). The x402 runtime
        uses it when ``AIXYZ_X402["REPLAY_GUARD"]`` is not set, so payments
        are refused for replay wherever the sessions are shared (Redis, the
        database). ``None`` (the default, and the in-memory store's answer)
        means the runtime keeps claims in process memory.
        """
        return None

    # -- helpers for implementations ---------------------------------------

    def effective_ttl(self, ttl_ms: int | None) -> int:
        """The TTL an entry gets: the store default for ``None``."""
        return self.default_ttl_ms if ttl_ms is None else ttl_ms

    @property
    def cursor_codec(self) -> CursorCodec:
        """The codec for opaque cursors, keyed by Django's ``SECRET_KEY``.

        Using ``SECRET_KEY`` lets a cursor made by one worker process be
        decoded by another; without Django settings a per-process random
        secret is used.
        """
        codec = SessionStore._CURSOR_CODEC
        if codec is None:
            codec = SessionStore._CURSOR_CODEC = CursorCodec(_secret_key())
        return codec

    def encode_cursor(self, payer: str, last_key: str) -> str:
        """The cursor for the page that follows ``last_key``."""
        return self.cursor_codec.encode(payer, last_key)

    def decode_cursor(self, payer: str, cursor: str | None) -> str | None:
        """The key a cursor continues after (``None`` for no cursor); ``ValueError`` if bad."""
        return None if cursor is None else self.cursor_codec.decode(payer, cursor)

    def encode_payer_cursor(self, last_payer: str) -> str:
        """The :meth:`list_payers` cursor for the page that follows ``last_payer``."""
        return self.cursor_codec.encode(_PAYERS_CURSOR_CONTEXT, last_payer)

    def decode_payer_cursor(self, cursor: str | None) -> str | None:
        """The payer a :meth:`list_payers` cursor continues after; ``ValueError`` if bad."""
        return None if cursor is None else self.cursor_codec.decode(_PAYERS_CURSOR_CONTEXT, cursor)

    def check(self) -> builtins.list[Any]:
        """System-check messages about this store's configuration (``django.core.checks``)."""
        return []


def _secret_key() -> str | None:
    try:
        from django.conf import settings

        secret = settings.SECRET_KEY if settings.configured else None
    except Exception:  # settings present but unusable: fall back to a process secret
        secret = None
    return str(secret) if secret else None


def reset_cursor_codec() -> None:
    """Forget the cursor secret (after ``SECRET_KEY`` changes, e.g. in tests)."""
    SessionStore._CURSOR_CODEC = None


for _name in ("commit", "get_many", "set_many", "delete_many", "list_payers"):
    setattr(SessionStore, _name, _checked(_name, getattr(SessionStore, _name), SessionStore))
