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
import random
import secrets
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from x402.mechanisms.evm.batch_settlement.server.storage import (
    Channel,
    ChannelUpdate,
    ChannelUpdateResult,
)
from x402.mechanisms.evm.batch_settlement.utils import normalize_channel_id

from ..exceptions import SessionStoreError, SessionStoreUnavailable
from . import redis_scripts as lua

if TYPE_CHECKING:
    from .models import Channel as ChannelRow

__all__ = [
    "ChannelConflictError",
    "DatabaseChannelStorage",
    "RedisChannelStorage",
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
            raise SessionStoreUnavailable(
                f"DatabaseChannelStorage: {op} failed on database {self.using!r}: {exc}".strip()
            ) from exc

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

        return self._guarded("get", read)

    def list(self) -> builtins.list[Channel]:
        def read() -> builtins.list[Channel]:
            rows = self._model.objects.using(self.using).order_by("pk")
            return [Channel.from_dict(data) for data in rows.values_list("data", flat=True)]

        return self._guarded("list", read)

    def update_channel(self, channel_id: str, update: ChannelUpdate) -> ChannelUpdateResult:
        key = _key(channel_id)
        vendor = connections[self.using].vendor
        for attempt in range(_DB_CREATE_ATTEMPTS):
            try:
                if vendor == "sqlite":
                    with self._sqlite_lock():
                        return self._guarded("update_channel", lambda: self._update(key, update))
                return self._guarded("update_channel", lambda: self._update(key, update))
            except IntegrityError:
                # Another process created the channel first: lock its row this time.
                if attempt == _DB_CREATE_ATTEMPTS - 1:
                    raise ChannelConflictError(
                        f"DatabaseChannelStorage: channel {key} could not be created: "
                        f"{_DB_CREATE_ATTEMPTS} concurrent creations in a row"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

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


# -- Redis -------------------------------------------------------------------------------

RedisSyncClient = Redis | RedisCluster
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class RedisChannelStorage:
    """Channels in Redis: one hash per channel, written only if its version is unchanged.

    Layout: ``<prefix>{<channel id>}`` is a hash of ``data`` (the channel's
    JSON) and ``ver`` (a random token renewed on every write). The channel
    id, lower-case hex, is the key's hash tag, so each script touches one
    Redis Cluster slot. ``update_channel`` reads ``data`` and ``ver``, runs
    ``update`` on the channel, then writes (or deletes) with one script that
    does so only if ``ver`` is still the one read; otherwise it reads again,
    up to ``max_attempts`` times with a short random back-off, then raises
    :class:`ChannelConflictError`. ``list`` ``SCAN``s ``<prefix>{0x*}``
    (every primary, on a cluster).

    Pass a sync ``redis.Redis`` / ``redis.cluster.RedisCluster`` client, or
    a URL (``redis://...``; one ``redis.Redis`` is made from it). Give each
    project sharing a Redis its own ``prefix``. Synchronous: do not call it
    on a running event loop.
    """

    def __init__(
        self,
        client: RedisSyncClient | str,
        prefix: str = "aixyz:ch:",
        *,
        max_attempts: int = 50,
    ) -> None:
        if isinstance(client, str):
            client = Redis.from_url(client, decode_responses=True)
        if not isinstance(client, Redis | RedisCluster):
            raise TypeError(
                "client must be a redis.Redis / redis.cluster.RedisCluster or a URL, "
                f"not {type(client).__name__}"
            )
        if not isinstance(prefix, str) or "{" in prefix or "}" in prefix or "*" in prefix:
            raise ValueError("prefix must be a str without '{', '}' or '*'")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.client = client
        self.prefix = prefix
        self.max_attempts = max_attempts
        self._write = client.register_script(lua.WRITE_IF_VERSION)
        self._delete = client.register_script(lua.DELETE_IF_VERSION)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prefix={self.prefix!r})"

    def key(self, channel_id: str) -> str:
        """The Redis key of a channel (its id normalised)."""
        return f"{self.prefix}{{{_key(channel_id)}}}"

    def _call(self, op: str, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except _UNREACHABLE as exc:
            raise SessionStoreUnavailable(
                f"RedisChannelStorage is unavailable: {op} failed: {type(exc).__name__}: {exc}"
            ) from exc
        except RedisError as exc:
            raise SessionStoreError(
                f"RedisChannelStorage failed on {op}: {type(exc).__name__}: {exc}"
            ) from exc

    def _script(self, op: str, script: Any, key: str, *args: str) -> bool:
        return bool(self._call(op, lambda: script(keys=[key], args=list(args))))

    def _read(self, op: str, key: str) -> tuple[Channel | None, str]:
        raw, version = self._call(op, lambda: self.client.hmget(key, ["data", "ver"]))
        if raw is None:
            return None, ""
        return _load(raw), _text(version or "")

    def get(self, channel_id: str) -> Channel | None:
        return self._read("get", self.key(channel_id))[0]

    def list(self) -> builtins.list[Channel]:
        pattern = f"{_glob_escape(self.prefix)}{{0x*}}"

        def scan() -> builtins.list[Channel]:
            keys = sorted({_text(k) for k in self.client.scan_iter(match=pattern, count=1000)})
            if not keys:
                return []
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "data")
            return [_load(raw) for raw in pipe.execute() if raw is not None]

        return self._call("list", scan)

    def update_channel(self, channel_id: str, update: ChannelUpdate) -> ChannelUpdateResult:
        key = self.key(channel_id)
        channel_key = _key(channel_id)
        for attempt in range(self.max_attempts):
            current, version = self._read("update_channel", key)
            nxt = _apply(channel_key, update, current)
            if nxt is current:
                return ChannelUpdateResult(channel=current, status="unchanged")
            if nxt is None:
                done = self._script("update_channel", self._delete, key, version)
                if done:
                    return ChannelUpdateResult(channel=None, status="deleted")
            else:
                data, new_version = _dump(nxt), secrets.token_hex(8)
                done = self._script("update_channel", self._write, key, version, data, new_version)
                if done:
                    return ChannelUpdateResult(channel=nxt.copy(), status="updated")
            if attempt < self.max_attempts - 1:
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
        raise ChannelConflictError(
            f"RedisChannelStorage: channel {channel_key} changed under update_channel "
            f"{self.max_attempts} times in a row; nothing was written"
        )

    def close(self) -> None:
        self.client.close()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
