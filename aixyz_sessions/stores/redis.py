"""Sessions in Redis or Redis Cluster: ``RedisSessionStore`` and the implementation it shares.

Two stores keep sessions in Redis, with one implementation
(:class:`RedisStoreBase`) and one data layout; they differ only in how they
find the server:

* :class:`~aixyz_sessions.stores.cache.CacheSessionStore` reads the
  connection settings of a Django cache alias (configure Redis once);
* :class:`RedisSessionStore` takes a Redis URL, or a factory of redis-py
  clients, and speaks Redis Cluster (``cluster=True``), which Django's cache
  backends do not.

Why the implementation is built this way:

* **It does not go through Django's cache API.** That is synchronous,
  pickles values and has no sorted sets, so paging in key order would be
  impossible or slow.
* **Async, with no thread hop.** Every operation is one ``redis.asyncio``
  command awaited on the caller's event loop. Connections belong to the loop
  that opened them, and a store is one object shared by the whole process
  (``asyncio.run`` per test, ``async_to_sync`` loops for sync views), so it
  keeps one client per running loop, in a ``WeakKeyDictionary``. A client is
  closed when its loop shuts down (``asyncio.run`` and ``async_to_sync``
  finalize async generators first; one such generator per client does it),
  and clients of loops closed otherwise are dropped. Under WSGI every
  ``async_to_sync`` call runs a new loop, hence opens a new connection: run
  sync-heavy projects under ASGI, where those calls share the server's loop.
* **One atomic round trip per call.** Each operation is a Lua script (see
  :mod:`.redis_scripts`) that updates the value, the sliding expiry and the
  payer's key index together: a lost connection never leaves half a write.
* **Key-ordered pages in O(log n + limit).** A per-payer sorted set (all
  scores 0) is walked with ``ZRANGEBYLEX`` from the cursor's key; entries
  that expired are skipped and unindexed inside the script, so a page still
  holds ``limit`` live entries.
* **Cluster-ready, injective layout.** All keys of one payer share one hash
  tag, ``<prefix>:{<payer tag>}:...``, so every script touches a single
  Redis Cluster slot, and every script is given at least the payer's index
  key in ``KEYS``: the cluster client sends it to the node that owns the
  slot (the value keys a script derives from the index share that slot).
  The tag is the payer itself when it is plain (``[0-9a-z._-]+``, e.g. a
  lower-case 0x address) and ``~`` plus the hex of its UTF-8 bytes
  otherwise: tags never contain ``{``, ``}`` or ``:`` and two payers never
  share one, so one payer's id can never name another's keys.

* **A payers index for ``list_payers``.** One sorted set per store,
  ``<prefix>:{~payers}:index`` (:attr:`RedisStoreBase.payers_key`), holds
  the payers that have a key index, all scores 0, walked with
  ``ZRANGEBYLEX`` like a key index. Its hash tag ``~payers`` is provably no
  payer's (see :func:`payer_tag`: a tag starting with ``~`` is followed by
  hex digits only, and ``p``, ``y``, ``r``, ``s`` are not hex), and its
  last part is ``index``, not ``idx``, so no payer key and no ``SCAN`` for
  key indexes (of this version or an older one) ever takes it for a
  payer's. It sits in a slot of its own, so it is never in a script with a
  payer's keys: the scripts report when a payer's key index appeared (a
  write made it) or emptied (a delete or a sweep removed its last member),
  and the store follows with a plain ``ZADD`` / ``ZREM`` (see
  :meth:`RedisStoreBase._unlist` for why that never loses a live payer).

The store also keeps the payment replay guard (:class:`RedisReplayGuard`,
from :meth:`RedisStoreBase.replay_guard`): one ``SET NX PXAT`` key per
claimed authorization, ``<prefix>:replay:{<payer tag>}:<nonce>``, which
Redis drops by itself once the authorization's window has passed.

Redis expires entries by itself; ``purge_expired`` only drops index members
left behind by expired entries (they are also dropped lazily when met) and
brings the payers index up to date; on a cluster it scans every primary.
Use ``maxmemory-policy noeviction`` for a Redis holding sessions: an
evicting policy silently loses session data.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import secrets
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

from django.core import checks
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.exceptions import ClusterDownError, NoScriptError, RedisClusterException, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import SessionStoreError, SessionStoreUnavailable
from ..replay import (
    DEFAULT_GRACE,
    PayerRecords,
    Record,
    ReplayGuard,
    check_grace,
    claim_expiry,
    claim_key,
    record_expiry,
)
from . import redis_scripts as lua
from . import validation as v
from .base import ListResult, PayerPage, SessionStore, Write
from .redis_config import redact, with_client_defaults

__all__ = [
    "RedisClient",
    "RedisReplayGuard",
    "RedisSessionStore",
    "RedisStoreBase",
    "payer_tag",
]

#: What the stores talk to: a plain client or a cluster client (``redis.asyncio``).
RedisClient: TypeAlias = Redis | RedisCluster

# What "Redis is down or unreachable" looks like from redis-py (socket errors
# surface as OSError, asyncio timeouts as TimeoutError, an OSError too; a
# cluster whose slots are not all served answers CLUSTERDOWN).
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, ClusterDownError)
# Everything redis-py raises: the cluster client's own errors (no reachable
# node, slots not covered, ...) are not RedisError subclasses.
_REDIS_FAILURES = (RedisError, OSError, RedisClusterException)
#: The cluster client's default cap of connections per node and event loop
#: (redis-py's own, 100, fails the 101st concurrent command; this is Redis's
#: default ``maxclients``, so the server decides).
CLUSTER_MAX_CONNECTIONS = 10_000
_PLAIN_PAYER = re.compile(r"[0-9a-z._-]+")
_SWEEP_BATCH = 500
#: Payers read from the payers index per round trip (and checked per pipeline).
_PAYER_BATCH = 500
#: The hash tag of the payers index: "~" then letters that are not hex
#: digits, which no payer tag can be (see ``payer_tag``).
_PAYERS_TAG = "~payers"
T = TypeVar("T")


def payer_tag(payer: str) -> str:
    """The payer's part of its Redis keys: itself if plain, else ``~`` + hex.

    Plain tags never start with ``~`` and hex tags are injective, so distinct
    payers always get distinct tags; neither form contains ``{``, ``}``, ``:``.
    """
    if _PLAIN_PAYER.fullmatch(payer):
        return payer
    return "~" + payer.encode("utf-8", "surrogatepass").hex()


def _payer_of_tag(tag: str) -> str | None:
    """The payer whose tag is ``tag`` (the inverse of :func:`payer_tag`), else ``None``."""
    try:
        payer = bytes.fromhex(tag[1:]).decode("utf-8") if tag.startswith("~") else tag
        v.check_payer(payer)
    except ValueError:  # not hex, not UTF-8, or no payer id at all: not our key
        return None
    return payer if payer_tag(payer) == tag else None


@lru_cache(maxsize=4096)
def _payer_base(key_prefix: str, payer: str) -> str:
    return f"{key_prefix}:{{{payer_tag(payer)}}}:"


def _lex_range(after: str | None, prefix: str | None) -> tuple[str, str | bytes]:
    """``ZRANGEBYLEX`` bounds: the members after ``after`` that start with ``prefix``."""
    lo: str
    if after is not None and (prefix is None or after >= prefix):
        lo = "(" + after
    elif prefix is not None:
        lo = "[" + prefix
    else:
        lo = "-"
    # No valid UTF-8 string holds the byte 0xFF, so "<prefix>\xff" bounds every
    # member that starts with the prefix from above.
    hi: str | bytes = "+" if prefix is None else b"[" + prefix.encode() + b"\xff"
    return lo, hi


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` means "Redis cannot be reached" rather than "Redis refused"."""
    seen: BaseException | None = exc
    for _ in range(4):  # the cluster client wraps the socket error it met
        if seen is None:
            return False
        if isinstance(seen, _UNREACHABLE):
            return True
        if isinstance(seen, RedisClusterException) and "not covered" in str(seen):
            return True
        seen = seen.__cause__
    return False


class RedisStoreBase(SessionStore):
    """Sessions in Redis, whatever says where Redis is (see the module doc).

    A subclass provides :meth:`_new_client` (a fresh, unconnected client for
    the running event loop) and :attr:`label` (where the sessions live, for
    messages); it may report a configuration problem through
    :meth:`_config_problem`, which then fails every operation with
    :class:`SessionStoreError` and shows up in :meth:`check`.

    ``key_prefix`` starts every Redis key the store writes (it must not
    contain ``{`` or ``}``); give each project sharing a Redis its own.
    ``ttl_ms``, ``max_value_bytes`` and ``max_batch`` are as on
    :class:`SessionStore`. Nothing connects before the first operation.
    """

    def __init__(
        self,
        *,
        key_prefix: str = "aixyz:sess",
        ttl_ms: int | None = None,
        max_value_bytes: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        super().__init__(ttl_ms=ttl_ms, max_value_bytes=max_value_bytes, max_batch=max_batch)
        if not isinstance(key_prefix, str):
            raise TypeError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
        if not key_prefix or "{" in key_prefix or "}" in key_prefix:
            raise ValueError("key_prefix must be a non-empty str without '{' or '}'")
        self.key_prefix = key_prefix
        #: The sorted set of the payers that have a key index (``list_payers``).
        self.payers_key = f"{key_prefix}:{{{_PAYERS_TAG}}}:index"
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, RedisClient] | None = None
        self._lock = threading.Lock()

    # -- what a subclass says -------------------------------------------------------

    @property
    def label(self) -> str:
        """Where the sessions live, without credentials, e.g. ``Redis at redis://h:6379/0``."""
        raise NotImplementedError

    def _new_client(self) -> RedisClient:
        """A fresh client for the running loop; it must connect lazily and decode responses."""
        raise NotImplementedError

    def _config_problem(self) -> checks.CheckMessage | None:
        """Why this store cannot work at all (a check ``Error``), or ``None``."""
        return None

    def check(self) -> builtins.list[Any]:
        """An ``Error`` when the store's configuration cannot work."""
        problem = self._config_problem()
        return [] if problem is None else [problem]

    # -- connections --------------------------------------------------------------

    def _client(self) -> RedisClient:
        """This loop's client (made on first use in the loop; connects lazily)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        return self._bind(loop)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> RedisClient:
        problem = self._config_problem()
        if problem is not None:
            raise SessionStoreError(problem.msg)
        with self._lock:
            bound = self._clients.get(loop)
            if bound is None:
                for stale in [other for other in self._clients if other.is_closed()]:
                    del self._clients[stale]
                client = self._checked_client()
                bound = _LoopClient(client, self._close_at_loop_shutdown(client))
                self._clients[loop] = bound
            self._last = (loop, bound.client)
            return bound.client

    def _checked_client(self) -> RedisClient:
        try:
            client = self._new_client()
        except (TypeError, ValueError, RedisClusterException) as exc:
            raise SessionStoreError(f"cannot configure {self.label}: {exc}") from exc
        if not isinstance(client, Redis | RedisCluster):
            raise SessionStoreError(
                f"cannot use {self.label}: expected a redis.asyncio Redis or RedisCluster "
                f"client, got {type(client).__name__}"
            )
        if not client.get_encoder().decode_responses:
            raise SessionStoreError(
                f"cannot use {self.label}: the client must be made with decode_responses=True"
            )
        return client

    async def _close_at_loop_shutdown(self, client: RedisClient) -> AsyncGenerator[None, None]:
        """Close ``client`` when its loop shuts down.

        Started up to its ``yield`` when the client is made, this generator is
        registered with the running loop; ``asyncio.run`` and ``async_to_sync``
        close such generators (``loop.shutdown_asyncgens()``) before closing
        the loop, which runs the ``finally`` while the connections can still
        be closed properly. If the store drops it first, the loop's
        finalizer closes it the same way.
        """
        try:
            yield
        finally:
            with self._lock:
                for loop, bound in builtins.list(self._clients.items()):
                    if bound.client is client:
                        del self._clients[loop]
                if self._last is not None and self._last[1] is client:
                    self._last = None
            try:
                await client.aclose()
            except _REDIS_FAILURES:  # closing a broken connection is not an error
                pass

    def _failure(self, op: str, exc: BaseException) -> SessionStoreError:
        if _unreachable(exc):
            return SessionStoreUnavailable(
                f"{self.label} is unavailable: {op} failed: {type(exc).__name__}: {exc}"
            )
        return SessionStoreError(f"{self.label} failed on {op}: {type(exc).__name__}: {exc}")

    async def _ready(self, op: str) -> RedisClient:
        """This loop's client; a cluster client has read the slot map first.

        redis-py's cluster client picks a command's node before it awaits
        its own first ``initialize()``; until that has run it knows no
        nodes, so it sends every command to the default node. A fresh
        worker's first burst of concurrent calls then meets ``MOVED``, and
        after a few of those the client closes every connection it has,
        failing the calls still in flight (seen as "Connection closed").
        Awaiting ``initialize()`` here (a no-op once done; its lock makes
        concurrent callers wait for the one read) routes every command by
        its slot from the first one on.
        """
        client = self._client()
        if isinstance(client, RedisCluster):
            try:
                await client.initialize()
            except _REDIS_FAILURES as exc:
                raise self._failure(op, exc) from exc
        return client

    async def _run(self, op: str, script: lua.LuaScript, numkeys: int, *args: Any) -> Any:
        # ``args`` starts with the script's KEYS, the payer's index first: a
        # cluster client routes EVALSHA to the node owning their (one) slot.
        execute: Callable[..., Awaitable[Any]] = (await self._ready(op)).execute_command
        try:
            try:
                return await execute("EVALSHA", script.sha, numkeys, *args)
            except NoScriptError:  # the server does not know the script (yet): send it
                return await execute("EVAL", script.source, numkeys, *args)
        except _REDIS_FAILURES as exc:
            raise self._failure(op, exc) from exc

    async def _call(self, op: str, command: Awaitable[T]) -> T:
        """Await one plain command (made on this loop's client), translating failures."""
        try:
            await self._ready(op)
            return await command
        except _REDIS_FAILURES as exc:
            raise self._failure(op, exc) from exc

    # -- the payers index ------------------------------------------------------------

    async def _enlist(self, op: str, payer: str) -> None:
        """Add ``payer`` to the payers index: a write has just made its key index.

        Shielded, so a caller cancelled between the write and this command
        still leaves the payer listed.
        """
        add = self._call(op, self._client().zadd(self.payers_key, {payer: 0}))
        await asyncio.shield(add)

    async def _payers_range(
        self, op: str, lo: str, hi: str | bytes, count: int
    ) -> builtins.list[str]:
        """Up to ``count`` payers from the payers index between ``lo`` and ``hi`` (lex bounds)."""
        command = self._client().zrangebylex(self.payers_key, lo, hi, start=0, num=count)
        return [str(member) for member in await self._call(op, command)]

    async def _indexes_exist(self, op: str, payers: builtins.list[str]) -> builtins.list[bool]:
        """Whether each payer's key index exists: one pipeline (split by node on a cluster)."""
        client = self._client()
        keys = [_payer_base(self.key_prefix, payer) + "idx" for payer in payers]
        if len(keys) == 1:
            return [bool(await self._call(op, client.exists(keys[0])))]
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        found: builtins.list[Any] = await self._call(op, pipe.execute())
        return [bool(n) for n in found]

    async def _unlist(self, op: str, payers: builtins.list[str]) -> builtins.list[str]:
        """Take ``payers``, whose key indexes were seen gone, out of the payers index.

        Returns those that turned out to have a key index again (they stay).
        The payers index and a key index live in different slots, so this
        cannot be one atomic step; instead it removes first, then looks at
        the key indexes again and puts back every payer that has one by now.
        A write that makes a key index after that look lists its payer
        itself, with a ``ZADD`` that comes after this ``ZREM``. Either way a
        payer with entries ends up listed, whatever the interleaving.
        Shielded, so a cancelled caller never stops it between the two steps.
        """

        async def unlist() -> builtins.list[str]:
            client = self._client()
            await self._call(op, client.zrem(self.payers_key, *payers))
            exist = await self._indexes_exist(op, payers)
            back = [payer for payer, there in zip(payers, exist, strict=True) if there]
            if back:
                await self._call(op, client.zadd(self.payers_key, dict.fromkeys(back, 0)))
            return back

        return await asyncio.shield(unlist())

    # -- the contract -----------------------------------------------------------------

    async def get(self, payer: str, key: str) -> str | None:
        base = _payer_base(self.key_prefix, payer)
        value: str | None = await self._run("get", lua.GET, 2, base + "idx", base + "v:" + key)
        return value

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        ttl = self.effective_ttl(ttl_ms)
        base = _payer_base(self.key_prefix, payer)
        if await self._run(
            "set", lua.SET, 2, base + "idx", base + "v:" + key, ttl, f"{ttl}:{value}"
        ):
            await self._enlist("set", payer)  # the payer's first key: list the payer

    async def delete(self, payer: str, key: str) -> bool:
        base = _payer_base(self.key_prefix, payer)
        removed, emptied = await self._run("delete", lua.DELETE, 2, base + "idx", base + "v:" + key)
        if emptied:
            await self._unlist("delete", [payer])
        return bool(removed)

    async def list(
        self,
        payer: str,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
    ) -> ListResult:
        lo, hi = _lex_range(self.decode_cursor(payer, cursor), prefix)
        base = _payer_base(self.key_prefix, payer)
        reply: builtins.list[Any] = await self._run(
            "list",
            lua.LIST,
            1,
            base + "idx",
            base + "v:",
            lo,
            hi,
            limit or 0,
            1 if keys_only else 0,
        )
        items = reply[1:]
        if keys_only:
            entries = dict.fromkeys(items, "")
        else:
            entries = dict(zip(items[::2], items[1::2], strict=True))
        more = reply[0] == 1 and bool(entries)
        next_cursor = self.encode_cursor(payer, next(reversed(entries))) if more else None
        return ListResult(entries, next_cursor)

    async def get_many(self, payer: str, keys: Iterable[str]) -> dict[str, str | None]:
        unique = builtins.list(dict.fromkeys(keys))
        if not unique:
            return {}
        base = _payer_base(self.key_prefix, payer)
        vbase = base + "v:"
        values: builtins.list[str | None] = await self._run(
            "get_many",
            lua.GET_MANY,
            1 + len(unique),
            base + "idx",
            *[vbase + key for key in unique],
        )
        return dict(zip(unique, values, strict=True))

    async def set_many(
        self, payer: str, entries: Mapping[str, str], *, ttl_ms: int | None = None
    ) -> None:
        if not entries:
            return
        ttl = self.effective_ttl(ttl_ms)
        base = _payer_base(self.key_prefix, payer)
        vbase = base + "v:"
        made_index = await self._run(
            "set_many",
            lua.SET_MANY,
            1 + len(entries),
            base + "idx",
            *[vbase + key for key in entries],
            ttl,
            *[f"{ttl}:{value}" for value in entries.values()],
        )
        if made_index:
            await self._enlist("set_many", payer)

    async def delete_many(self, payer: str, keys: Iterable[str]) -> int:
        unique = builtins.list(dict.fromkeys(keys))
        if not unique:
            return 0
        base = _payer_base(self.key_prefix, payer)
        vbase = base + "v:"
        removed, emptied = await self._run(
            "delete_many",
            lua.DELETE_MANY,
            1 + len(unique),
            base + "idx",
            *[vbase + key for key in unique],
        )
        if emptied:
            await self._unlist("delete_many", [payer])
        return int(removed)

    async def commit(
        self,
        payer: str,
        writes: Mapping[str, Write],
        *,
        records: Sequence[Record] = (),
        guard: PayerRecords | None = None,
    ) -> bool:
        """A settled paid call's writes and its payment's records: one ``EVALSHA commit``.

        The records go along when ``guard`` is this store's own
        :class:`RedisReplayGuard` and they are the payer's (its keys then
        share the payer's hash tag with the session's keys: one slot on a
        cluster); else only the writes do, and this returns ``False``. On a
        plain Redis the script also lists the payer in the payers index when
        it made the key index (or unlists one it emptied); on a cluster that
        index lives in another slot, so a separate command follows, as after
        ``set_many``. More writes than ``max_batch`` take the base class's
        batches (then the records are the caller's).
        """
        if len(writes) > self.max_batch:
            return await super().commit(payer, writes, records=records, guard=guard)
        together = bool(records) and self._keeps_records_of(payer, records, guard)
        if not writes and not together:
            return False
        client = await self._ready("commit")
        plain = not isinstance(client, RedisCluster)
        base = _payer_base(self.key_prefix, payer)
        vbase = base + "v:"
        sets: builtins.list[str] = []
        set_args: builtins.list[Any] = []
        deletes: builtins.list[str] = []
        for key, write in writes.items():
            if write is None:
                deletes.append(vbase + key)
            else:
                ttl = self.effective_ttl(write[1])
                sets.append(vbase + key)
                set_args += (ttl, f"{ttl}:{write[0]}")
        record_keys: builtins.list[str] = []
        record_args: builtins.list[Any] = []
        if together and isinstance(guard, RedisReplayGuard):
            for record in records:
                name, value, expires_ms = guard.record_args(record)
                record_keys.append(name)
                record_args += (value, expires_ms)
        keys = [base + "idx", *sets, *deletes, *record_keys]
        if plain:
            keys.append(self.payers_key)
        made, emptied = await self._run(
            "commit",
            lua.COMMIT,
            len(keys),
            *keys,
            len(sets),
            len(deletes),
            len(record_keys),
            payer if plain else "",
            *set_args,
            *record_args,
        )
        if not plain:  # the payers index is in another slot: its own command
            if made:
                await self._enlist("commit", payer)
            elif emptied:
                await self._unlist("commit", [payer])
        return together

    def _keeps_records_of(
        self, payer: str, records: Sequence[Record], guard: PayerRecords | None
    ) -> bool:
        """Whether ``records`` can go in this store's commit of ``payer``'s writes."""
        return (
            isinstance(guard, RedisReplayGuard)
            and guard.store is self
            and all(record.payer.lower() == payer for record in records)
        )

    async def list_payers(
        self,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> PayerPage:
        """Payers from the payers index, each checked against its key index.

        ``ZRANGEBYLEX`` from the cursor's payer (exclusive) within the prefix
        bounds, then one pipeline of ``EXISTS`` on the members' key indexes:
        members whose key index is gone (all their entries expired or were
        deleted without this store seeing it empty) are left out and taken
        out of the payers index on the way, and reading goes on until the
        page holds ``limit`` payers and one more (so a next page is known to
        exist) or the index ends.
        """
        lo, hi = _lex_range(self.decode_payer_cursor(cursor), prefix)
        found: builtins.list[str] = []
        while True:
            want = _PAYER_BATCH if limit is None else min(limit + 1 - len(found), _PAYER_BATCH)
            members = await self._payers_range("list_payers", lo, hi, want)
            if members:
                exist = await self._indexes_exist("list_payers", members)
                gone = [m for m, there in zip(members, exist, strict=True) if not there]
                back = set(await self._unlist("list_payers", gone)) if gone else set()
                found.extend(
                    m for m, there in zip(members, exist, strict=True) if there or m in back
                )
            if len(members) < want or (limit is not None and len(found) > limit):
                break
            lo = "(" + members[-1]
        if limit is None or len(found) <= limit:
            return PayerPage(found, None)
        del found[limit:]  # the look-ahead payer: more remain
        return PayerPage(found, self.encode_payer_cursor(found[-1]))

    async def entry_ttl_ms(self, payer: str, key: str) -> int | None:
        """Milliseconds ``key`` has left (``None``: never expires; 0: absent or expired).

        For inspection (the admin): Redis's own ``PTTL`` of the value, which
        slides nothing.
        """
        base = _payer_base(self.key_prefix, payer)
        try:
            left = int(await (await self._ready("entry_ttl_ms")).pttl(base + "v:" + key))
        except _REDIS_FAILURES as exc:
            raise self._failure("entry_ttl_ms", exc) from exc
        if left == -1:
            return None
        return max(0, left)

    async def purge_expired(self) -> int:
        """Drop index members whose entry Redis has already expired; return how many.

        Redis deletes expired values by itself, so there is no data to purge;
        what remains are their names in the payers' key indexes (also dropped
        lazily whenever a ``get`` or ``list`` meets them). This walks every
        index under ``key_prefix`` (``SCAN``, on every primary of a cluster,
        then ``_SWEEP_BATCH`` members per script call, so Redis is never
        blocked for long).

        It also brings the payers index (``list_payers``) up to date, both
        ways. Every payer whose key index the ``SCAN`` finds is added to it:
        that is how payers written before the payers index existed (by an
        older version of this store) get listed, so run it once after
        upgrading (it also lists a payer whose key index a read re-made
        after Redis evicted it, which no script reports). ``SCAN`` only as
        such a repair tool, never on a request path, and never ``KEYS``.
        Then the payers index is walked and every payer whose key index has
        gone (all its entries expired) is taken out. Neither changes the
        count returned.
        """
        client = await self._ready("purge_expired")
        pattern = _glob_escape(self.key_prefix) + ":{*}:idx"
        head = self.key_prefix + ":{"
        removed = 0
        found: builtins.list[str] = []
        try:
            async for idx in client.scan_iter(match=pattern, count=500, _type="zset"):
                tag, _, rest = str(idx)[len(head) :].partition("}")
                if not str(idx).startswith(head) or rest != ":idx" or not tag:
                    continue
                swept, emptied = await self._sweep(str(idx))
                removed += swept
                payer = _payer_of_tag(tag)
                if payer is not None and not emptied:
                    found.append(payer)
                if len(found) >= _PAYER_BATCH:
                    await client.zadd(self.payers_key, dict.fromkeys(found, 0))
                    found.clear()
            if found:
                await client.zadd(self.payers_key, dict.fromkeys(found, 0))
        except _REDIS_FAILURES as exc:
            raise self._failure("purge_expired", exc) from exc
        await self._unlist_gone_payers()
        return removed

    async def _sweep(self, idx: str) -> tuple[int, bool]:
        """Sweep one key index; return how many members went and whether it emptied."""
        vbase = idx[: -len("idx")] + "v:"
        lo, removed, emptied = "-", 0, False
        while True:
            count, scanned, last, now_empty = await self._run(
                "purge_expired", lua.SWEEP, 1, idx, vbase, lo, _SWEEP_BATCH
            )
            removed += int(count)
            emptied = emptied or bool(now_empty)
            if int(scanned) < _SWEEP_BATCH:
                return removed, emptied
            lo = "(" + str(last)

    async def _unlist_gone_payers(self) -> None:
        """Walk the payers index and take out the payers whose key index is gone."""
        lo = "-"
        while True:
            members = await self._payers_range("purge_expired", lo, "+", _PAYER_BATCH)
            if members:
                exist = await self._indexes_exist("purge_expired", members)
                gone = [m for m, there in zip(members, exist, strict=True) if not there]
                if gone:
                    await self._unlist("purge_expired", gone)
            if len(members) < _PAYER_BATCH:
                return
            lo = "(" + members[-1]

    def replay_guard(self) -> RedisReplayGuard:
        """Claims of payment authorizations in this store's Redis, shared by every process."""
        return RedisReplayGuard(self)

    async def close(self) -> None:
        """Close this event loop's connections; drop the clients of other loops.

        A client bound to another loop cannot be closed from here (its
        connections belong to that loop); once dropped, its loop closes it
        (asyncio finalizes the hook generator there), or it closes when its
        loop shuts down. A later call on any loop opens a fresh client.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            bound = self._clients.pop(loop, None)
            self._clients.clear()
            self._last = None
        if bound is not None:
            await bound.closer.aclose()


class RedisSessionStore(RedisStoreBase):
    """Sessions in the Redis (or Redis Cluster) at ``url``, or of ``client_factory``'s clients.

    Pass exactly one of:

    * ``url``: ``redis://[user:password@]host:port/db``, ``rediss://...``
      (TLS) or ``unix:///path?db=N``. ``options`` are extra keyword
      arguments of ``Redis.from_url`` (``RedisCluster.from_url`` with
      ``cluster=True``), e.g. ``{"max_connections": 50}``; the store's
      defaults are a 2 s connect timeout, a 5 s socket timeout, one quick
      retry, ``decode_responses=True`` (always) and, for a cluster,
      ``max_connections=10_000`` per node (redis-py's 100 makes the 101st
      concurrent command on one node fail instead of wait).
    * ``client_factory``: a zero-argument callable returning a new
      ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster`` made
      with ``decode_responses=True``. It is called once per event loop (a
      client belongs to the loop it first runs on), so return a fresh client
      each time rather than a shared one. Give a ``RedisCluster`` a
      ``max_connections`` above your peak concurrency per node.

    ``cluster=True`` makes the ``url`` store use redis-py's asyncio Redis
    Cluster client: ``url`` names any one node (``redis://`` or
    ``rediss://``, database 0), the client discovers the others and sends
    each operation to the primary owning the payer's hash slot. With
    ``client_factory``, the factory decides (``cluster`` must stay False).

    A malformed URL or unusable ``options`` raise ``ValueError`` /
    ``TypeError`` here (a system-check error when built from settings);
    nothing connects before the first operation.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        client_factory: Callable[[], RedisClient] | None = None,
        cluster: bool = False,
        options: Mapping[str, Any] | None = None,
        key_prefix: str = "aixyz:sess",
        ttl_ms: int | None = None,
        max_value_bytes: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        super().__init__(
            key_prefix=key_prefix,
            ttl_ms=ttl_ms,
            max_value_bytes=max_value_bytes,
            max_batch=max_batch,
        )
        if not isinstance(cluster, bool):
            raise TypeError(f"cluster must be a bool, not {type(cluster).__name__}")
        if (url is None) == (client_factory is None):
            raise ValueError(
                "RedisSessionStore needs exactly one of url= (e.g. 'redis://127.0.0.1:6379/0') "
                "and client_factory= (a callable returning a new redis.asyncio client)"
            )
        self.cluster = cluster
        self.url = url
        self.client_factory = client_factory
        self._options: dict[str, Any] = {}
        if client_factory is not None:
            if not callable(client_factory):
                raise TypeError("client_factory must be a zero-argument callable")
            if cluster or options:
                raise ValueError(
                    "cluster= and options= apply to url=; with client_factory= configure "
                    "the client the factory returns (e.g. return RedisCluster(...))"
                )
            self._label = f"Redis of client_factory {_callable_name(client_factory)}"
            return
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"options must be a dict, not {type(options).__name__}")
        self._label = f"{'Redis Cluster' if cluster else 'Redis'} at {redact(url)}"
        self._options = with_client_defaults(dict(options or {}))
        if cluster:
            # redis-py's cluster client fails a command (MaxConnectionsError)
            # rather than wait once 100 connections to one node are busy:
            # 101 concurrent requests of payers on one primary would fail.
            self._options.setdefault("max_connections", CLUSTER_MAX_CONNECTIONS)
        self._check_url(url)
        # A dry run: the constructors check the options without connecting
        # (a plain client's connection options are only read by its connections).
        try:
            client = self._from_url()
            if isinstance(client, Redis):
                client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        except (TypeError, ValueError, RedisClusterException) as exc:
            raise ValueError(f"RedisSessionStore cannot use {self._label}: {exc}") from exc

    def _check_url(self, url: str) -> None:
        hint = (
            "write redis://[user:password@]host:port/db, rediss://... or unix:///path"
            if not self.cluster
            else "a cluster needs redis://[user:password@]host:port or rediss://... (db 0)"
        )
        try:
            parsed = parse_url(url)
        except ValueError as exc:
            raise ValueError(f"url {redact(url)!r} is not a Redis URL ({exc}); {hint}") from None
        if self.cluster:
            if urlsplit(url).scheme not in ("redis", "rediss"):
                raise ValueError(f"url {redact(url)!r} cannot name a cluster node; {hint}")
            if int(parsed.get("db") or 0) != 0:
                raise ValueError(f"url {redact(url)!r}: Redis Cluster has only database 0")

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} cluster={self.cluster} key_prefix={self.key_prefix!r} "
            f"of {self._label}>"
        )

    @property
    def label(self) -> str:
        return self._label

    def _from_url(self) -> RedisClient:
        assert self.url is not None
        if self.cluster:
            return RedisCluster.from_url(self.url, **self._options)
        return Redis.from_url(self.url, **self._options)

    def _new_client(self) -> RedisClient:
        if self.client_factory is not None:
            return self.client_factory()
        return self._from_url()


def _callable_name(fn: Callable[..., Any]) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    return f"{module}.{name}" if module else str(name)


class RedisReplayGuard(ReplayGuard):
    """Payment replay guard in the Redis of a Redis session store.

    A claim is one ``SET <prefix>:replay:{<payer tag>}:<nonce> <token> NX
    PXAT <valid_before + grace>``: Redis decides atomically which of any
    number of concurrent claims (from any process) wins, and deletes the key
    when the authorization's window has passed. The key shares the payer's
    hash tag (one Cluster slot) but never a name with a session key, and
    uses the store's per-loop client, so failures raise what the store's
    operations raise (:class:`SessionStoreUnavailable` when Redis is down).

    The random token covers the one retry the client makes after a lost
    connection: if the first ``SET`` landed but its reply was lost, the
    retried ``SET`` answers "exists", and the key holding this claim's own
    token shows the claim is ours.
    """

    def __init__(self, store: RedisStoreBase, *, grace: float = DEFAULT_GRACE) -> None:
        if not isinstance(store, RedisStoreBase):
            raise TypeError(
                "store must be a CacheSessionStore or RedisSessionStore, "
                f"not {type(store).__name__}"
            )
        self.store = store
        self.grace = check_grace(grace)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.store!r}>"

    def key(self, payer: str, nonce: str) -> str:
        """The Redis key that holds the claim of ``(payer, nonce)``."""
        payer, nonce = claim_key(payer, nonce)
        return f"{self.store.key_prefix}:replay:{{{payer_tag(payer)}}}:{nonce}"

    async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
        key = self.key(payer, nonce)
        expires_ms = max(1, int(claim_expiry(valid_before, self.grace) * 1000))
        token = secrets.token_hex(8)
        client = await self.store._ready("replay claim")
        try:
            if await client.set(key, token, nx=True, pxat=expires_ms):
                return True
            return bool(await client.get(key) == token)
        except _REDIS_FAILURES as exc:
            raise self.store._failure("replay claim", exc) from exc

    async def release(self, payer: str, nonce: str) -> None:
        key = self.key(payer, nonce)
        try:
            await (await self.store._ready("replay release")).delete(key)
        except _REDIS_FAILURES as exc:
            raise self.store._failure("replay release", exc) from exc

    def shares_server(self, store: SessionStore) -> bool:
        """Its store's: a payer's claims and session keys share the payer's hash tag
        (one server, even on a cluster)."""
        return store is self.store

    def record_args(self, record: Record) -> tuple[str, str, int]:
        """The Redis key, value and ``PXAT`` (unix ms) of ``record``; raises as :meth:`remember`."""
        if not isinstance(record, Record):
            raise TypeError(f"record must be a Record, not {type(record).__name__}")
        name = self.key(record.payer, record.key)
        if not isinstance(record.value, str):
            raise TypeError(f"value must be a str, not {type(record.value).__name__}")
        return name, record.value, max(1, int(record_expiry(record.expires_at) * 1000))

    async def take(self, payer: str, key: str, value: str, expires_at: float) -> str | None:
        """One ``EVALSHA take``: keep ``value`` unless the key holds something; what it holds.

        A reply lost to a dropped connection makes the client send the
        script again, which then finds ``value`` itself: that is our own
        write (``value`` is unique to the call), so the name is ours.
        """
        name, value, expires_ms = self.record_args(Record(payer, key, value, expires_at))
        found = await self.store._run("record take", lua.TAKE, 1, name, value, expires_ms)
        if found is None:
            return None
        found = found.decode() if isinstance(found, bytes) else str(found)
        return None if found == value else found

    async def remember(self, payer: str, key: str, value: str, expires_at: float) -> None:
        """``SET`` the record with ``PXAT`` (replacing a claim or record under that name)."""
        name, value, expires_ms = self.record_args(Record(payer, key, value, expires_at))
        try:
            await (await self.store._ready("record write")).set(name, value, pxat=expires_ms)
        except _REDIS_FAILURES as exc:
            raise self.store._failure("record write", exc) from exc

    async def recall(self, payer: str, key: str) -> str | None:
        """``GET`` the record (Redis drops it when it expires)."""
        name = self.key(payer, key)
        try:
            value = await (await self.store._ready("record read")).get(name)
        except _REDIS_FAILURES as exc:
            raise self.store._failure("record read", exc) from exc
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)


class _LoopClient:
    """One event loop's client and the generator that closes it with the loop."""

    __slots__ = ("client", "closer")

    def __init__(self, client: RedisClient, closer: AsyncGenerator[None, None]) -> None:
        self.client = client
        self.closer = closer
        # Run it to its ``yield`` now: that registers it with the running loop.
        try:
            closer.asend(None).send(None)
        except StopIteration:
            pass
