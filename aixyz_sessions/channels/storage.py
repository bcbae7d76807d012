"""``ChannelStorage`` on the shared backends: the database and Redis.

The x402 SDK's ``batch-settlement`` server keeps its channels behind a small
synchronous protocol (``x402.mechanisms.evm.batch_settlement.server.storage``):
``get``, ``list`` and ``update_channel(channel_id, update)``, where
``update(current)`` receives a copy of the stored channel (or ``None``) and
returns the next channel, the very object it was given (unchanged), or
``None`` (delete). The SDK ships ``InMemoryChannelStorage``, one process only;
the two classes here share channels between worker processes without losing
an update, with the same semantics (ids normalised with the SDK's
``normalize_channel_id``, copies returned, results ``"updated"`` /
``"unchanged"`` / ``"deleted"``):

* :class:`DatabaseChannelStorage` -- pessimistic: ``update`` runs inside
  ``transaction.atomic`` while the channel's row is locked
  (``SELECT ... FOR UPDATE``), so concurrent updates of one channel queue up.
* :class:`RedisChannelStorage` -- optimistic: read the channel and its
  version, run ``update``, then write only if the version is still the one
  read (a Lua script); on a conflict, read again and run ``update`` again.

Both are **synchronous**, like the protocol: they block on I/O, so never call
them on a running event loop (Django refuses database access there with
``SynchronousOnlyOperation``); from async code, wrap them in
``asgiref.sync.sync_to_async`` / ``asyncio.to_thread``. ``update`` may be
called more than once for one ``update_channel`` (a Redis conflict, a
database creation race): it must compute the next channel from its argument
only and leave side effects to the result it records (overwriting, not
appending), as the SDK's callbacks do.
"""

from __future__ import annotations

import builtins
import json
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from x402.mechanisms.evm.batch_settlement.server.storage import (
    Channel,
    ChannelUpdate,
    ChannelUpdateResult,
)
from x402.mechanisms.evm.batch_settlement.utils import normalize_channel_id

from ..exceptions import SessionStoreError, SessionStoreUnavailable

if TYPE_CHECKING:
    from .models import Channel as ChannelRow

__all__ = [
    "ChannelConflictError",
    "DatabaseChannelStorage",
]

T = TypeVar("T")
#: Creation races a database update retries before giving up.
_DB_CREATE_ATTEMPTS = 5


class ChannelConflictError(SessionStoreError):
    """``update_channel`` lost the race for one channel too many times in a row.

    Nothing was written by the call that raised it; retrying later may succeed.
    """


def _key(channel_id: str) -> str:
    return normalize_channel_id(channel_id)


def _check_result(key: str, channel: Channel) -> None:
    if not isinstance(channel, Channel):
        raise TypeError(f"update must return a Channel or None, not {type(channel).__name__}")
    if normalize_channel_id(channel.channel_id) != key:
        raise ValueError("update returned a channel with another channel_id")


def _apply(key: str, update: ChannelUpdate, current: Channel | None) -> Channel | None:
    """Run ``update`` on a private copy: the channel to write, ``None`` to delete, or
    ``current`` itself when nothing changes (deleting a channel that is not there
    included), as the SDK's in-memory storage decides."""
    snapshot = current.copy() if current is not None else None
    nxt = update(snapshot)
    if nxt is snapshot or (nxt is None and current is None):
        return current
    if nxt is not None:
        _check_result(key, nxt)
    return nxt


def _dump(channel: Channel) -> str:
    return json.dumps(channel.to_dict(), separators=(",", ":"), sort_keys=True)


def _load(raw: str | bytes) -> Channel:
    return Channel.from_dict(json.loads(raw))


# -- the database ------------------------------------------------------------------------


class DatabaseChannelStorage:
    """Channels in the ``Channel`` table of the database ``using`` (one row each).

    ``update_channel`` runs in ``transaction.atomic(using=...)``: it locks
    the channel's row with ``select_for_update()``, runs ``update`` on a copy
    and writes the result (or deletes the row) before the transaction ends,
    so other processes wait for the lock and see the new state. A channel
    that does not exist yet has no row to lock: the first insert wins and
    any concurrent creator gets ``IntegrityError`` on the primary key, rolls
    back and runs again against the row now there (``update`` called again).

    SQLite has no row locks: the transaction starts with a no-op ``UPDATE``
    of the row, which takes SQLite's write lock up front (other writers wait
    for ``timeout``), and threads of one process take turns on a lock per
    alias (a connection to a shared in-memory database does not wait).

    Needs ``aixyz_sessions`` in ``INSTALLED_APPS`` and its migrations applied.
    Synchronous: do not call it on a running event loop.
    """

    _sqlite_locks: dict[str, threading.Lock] = {}
    _sqlite_locks_guard = threading.Lock()

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        if not isinstance(using, str):
            raise TypeError(f"using must be a database alias (str), not {type(using).__name__}")
        if using not in settings.DATABASES:
            known = ", ".join(sorted(settings.DATABASES)) or "none"
            raise ValueError(
                f"using={using!r} is not a database alias in settings.DATABASES (defined: {known})"
            )
        self.using = using

    def __repr__(self) -> str:
        return f"{type(self).__name__}(using={self.using!r})"

    @property
    def _model(self) -> type[ChannelRow]:
        from .models import Channel as ChannelRow

        return ChannelRow

    def _guarded(self, op: str, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except (IntegrityError, ChannelConflictError):
            raise
        except DatabaseError as exc:
            # A connection that failed (the server restarted, say) is dropped, so the
            # thread's next call opens a fresh one: storage threads live long.
            self._drop_if_broken()
            raise SessionStoreUnavailable(
                f"DatabaseChannelStorage: {op} failed on database {self.using!r}: {exc}".strip()
            ) from exc

    def _drop_if_broken(self) -> None:
        connection = connections[self.using]
        if connection.in_atomic_block or connection.connection is None:
            return
        try:
            usable = connection.is_usable()
        except Exception:
            usable = False
        if not usable:
            connection.close()

    def get(self, channel_id: str) -> Channel | None:
        key = _key(channel_id)

        def read() -> Channel | None:
            data = (
                self._model.objects.using(self.using)
                .filter(pk=key)
                .values_list("data", flat=True)
                .first()
            )
            return Channel.from_dict(data) if data is not None else None

        return self._serialized("get", read)

    def list(self) -> builtins.list[Channel]:
        def read() -> builtins.list[Channel]:
            rows = self._model.objects.using(self.using).order_by("pk")
            return [Channel.from_dict(data) for data in rows.values_list("data", flat=True)]

        return self._serialized("list", read)

    def update_channel(self, channel_id: str, update: ChannelUpdate) -> ChannelUpdateResult:
        key = _key(channel_id)
        for attempt in range(_DB_CREATE_ATTEMPTS):
            try:
                return self._serialized("update_channel", lambda: self._update(key, update))
            except IntegrityError:
                # Another process created the channel first: lock its row this time.
                if attempt == _DB_CREATE_ATTEMPTS - 1:
                    raise ChannelConflictError(
                        f"DatabaseChannelStorage: channel {key} could not be created: "
                        f"{_DB_CREATE_ATTEMPTS} concurrent creations in a row"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _serialized(self, op: str, operation: Callable[[], T]) -> T:
        """``operation``, guarded; on SQLite, one thread of this process at a time
        (a shared in-memory database answers "table is locked" instead of waiting)."""
        if connections[self.using].vendor == "sqlite":
            with self._sqlite_lock():
                return self._guarded(op, operation)
        return self._guarded(op, operation)

    def _sqlite_lock(self) -> threading.Lock:
        with self._sqlite_locks_guard:
            return self._sqlite_locks.setdefault(self.using, threading.Lock())

    def _update(self, key: str, update: ChannelUpdate) -> ChannelUpdateResult:
        model = self._model
        rows = model.objects.using(self.using)
        with transaction.atomic(using=self.using):
            if connections[self.using].vendor == "sqlite":
                rows.filter(pk=key).update(channel_id=key)  # take the write lock first
            data = rows.select_for_update().filter(pk=key).values_list("data", flat=True).first()
            current = Channel.from_dict(data) if data is not None else None
            nxt = _apply(key, update, current)
            if nxt is current:
                return ChannelUpdateResult(channel=current, status="unchanged")
            if nxt is None:
                rows.filter(pk=key).delete()
                return ChannelUpdateResult(channel=None, status="deleted")
            columns = self._columns(nxt)
            if current is None:
                rows.create(channel_id=key, **columns)
            else:
                row = model(channel_id=key, **columns)
                row.save(using=self.using, force_update=True)
            return ChannelUpdateResult(channel=nxt.copy(), status="updated")

    @staticmethod
    def _columns(channel: Channel) -> dict[str, Any]:
        return {
            "data": channel.to_dict(),
            "payer": channel.channel_config.payer.lower(),
            "balance": Decimal(channel.balance),
            "charged_cumulative_amount": Decimal(channel.charged_cumulative_amount),
            "total_claimed": Decimal(channel.total_claimed),
            "last_request_timestamp": channel.last_request_timestamp,
        }


def __getattr__(name: str) -> Any:
    # Redis is an optional extra ([redis]): the database storage must not need it.
    if name == "RedisChannelStorage":
        from .redis_storage import RedisChannelStorage

        return RedisChannelStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
