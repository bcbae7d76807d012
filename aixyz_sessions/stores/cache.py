"""``CacheSessionStore``: sessions in Redis, configured through Django's ``CACHES``.

Why it is built this way:

* **Configured once.** It reads the connection settings of a Django cache
  alias (``django_redis`` or Django's own ``RedisCache``), so a project that
  already has a Redis cache points the store at it and is done. It does not
  go through the cache API: that is synchronous, pickles values and has no
  sorted sets, so paging in key order would be impossible or slow.
* **Async, with no thread hop.** Every operation is one ``redis.asyncio``
  command awaited on the caller's event loop. Connections belong to the loop
  that opened them, and this store is one object shared by the whole process
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
* **Cluster-friendly, injective layout.** All keys of one payer share one
  hash tag, ``<prefix>:{<payer tag>}:...``, so every script touches a single
  Redis Cluster slot. The tag is the payer itself when it is plain
  (``[0-9a-z._-]+``, e.g. a lower-case 0x address) and ``~`` plus the hex of
  its UTF-8 bytes otherwise: tags never contain ``{``, ``}`` or ``:`` and two
  payers never share one, so one payer's id can never name another's keys.

The store also keeps the payment replay guard (:class:`RedisReplayGuard`,
from :meth:`CacheSessionStore.replay_guard`): one ``SET NX PXAT`` key per
claimed authorization, ``<prefix>:replay:{<payer tag>}:<nonce>``, which
Redis drops by itself once the authorization's window has passed.

Redis expires entries by itself; ``purge_expired`` only drops index members
left behind by expired entries (they are also dropped lazily when met).
Use ``maxmemory-policy noeviction`` for a Redis holding sessions: an evicting
policy silently loses session data.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import secrets
import threading
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from django.core import checks
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..exceptions import SessionStoreError, SessionStoreUnavailable
from ..replay import DEFAULT_GRACE, ReplayGuard, check_grace, claim_expiry, claim_key
from . import redis_scripts as lua
from .base import ListResult, SessionStore
from .redis_config import RedisTarget, resolve_cache_alias

__all__ = ["CacheSessionStore", "RedisReplayGuard", "payer_tag"]

# What "Redis is down or unreachable" looks like from redis-py (socket errors
# surface as OSError, asyncio timeouts as TimeoutError, an OSError too).
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_PLAIN_PAYER = re.compile(r"[0-9a-z._-]+")
_SWEEP_BATCH = 500


def payer_tag(payer: str) -> str:
    """The payer's part of its Redis keys: itself if plain, else ``~`` + hex.

    Plain tags never start with ``~`` and hex tags are injective, so distinct
    payers always get distinct tags; neither form contains ``{``, ``}``, ``:``.
    """
    if _PLAIN_PAYER.fullmatch(payer):
        return payer
    return "~" + payer.encode("utf-8", "surrogatepass").hex()


@lru_cache(maxsize=4096)
def _payer_base(key_prefix: str, payer: str) -> str:
    return f"{key_prefix}:{{{payer_tag(payer)}}}:"


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class CacheSessionStore(SessionStore):
    """Sessions in the Redis server of the Django cache alias ``cache_alias``.

    ``key_prefix`` starts every Redis key the store writes (it must not
    contain ``{`` or ``}``); give each project sharing a Redis its own.
    ``ttl_ms``, ``max_value_bytes`` and ``max_batch`` are as on
    :class:`SessionStore`. Building the store reads ``settings.CACHES`` but
    does not connect; an alias whose backend is not Redis is reported by the
    system check and makes every operation raise :class:`SessionStoreError`.
    """

    def __init__(
        self,
        *,
        cache_alias: str = "default",
        key_prefix: str = "aixyz:sess",
        ttl_ms: int | None = None,
        max_value_bytes: int | None = None,
        max_batch: int | None = None,
    ) -> None:
        super().__init__(ttl_ms=ttl_ms, max_value_bytes=max_value_bytes, max_batch=max_batch)
        if not isinstance(cache_alias, str):
            raise TypeError(f"cache_alias must be a str, not {type(cache_alias).__name__}")
        if not isinstance(key_prefix, str):
            raise TypeError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
        if not key_prefix or "{" in key_prefix or "}" in key_prefix:
            raise ValueError("key_prefix must be a non-empty str without '{' or '}'")
        self.cache_alias = cache_alias
        self.key_prefix = key_prefix
        self._target: RedisTarget = resolve_cache_alias(cache_alias)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop, Redis] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} cache_alias={self.cache_alias!r} "
            f"key_prefix={self.key_prefix!r} at {self._target.where}>"
        )

    # -- configuration --------------------------------------------------------

    def check(self) -> builtins.list[Any]:
        """An ``Error`` when the cache alias is not a usable Redis cache."""
        target = self._target
        if target.problem is None:
            return []
        return [checks.Error(target.problem, hint=target.hint, id=target.problem_id, obj=self)]

    # -- connections --------------------------------------------------------------

    def _client(self) -> Redis:
        """This loop's client (made on first use in the loop; connects lazily)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        return self._bind(loop)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> Redis:
        target = self._target
        if target.problem is not None:
            raise SessionStoreError(target.problem)
        with self._lock:
            bound = self._clients.get(loop)
            if bound is None:
                for stale in [other for other in self._clients if other.is_closed()]:
                    del self._clients[stale]
                try:
                    client = target.new_client()
                except (TypeError, ValueError) as exc:
                    raise SessionStoreError(
                        f"cannot configure Redis for cache alias {self.cache_alias!r} "
                        f"({target.where}): {exc}"
                    ) from exc
                bound = _LoopClient(client, self._close_at_loop_shutdown(client))
                self._clients[loop] = bound
            self._last = (loop, bound.client)
            return bound.client

    async def _close_at_loop_shutdown(self, client: Redis) -> AsyncGenerator[None, None]:
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
            except (RedisError, OSError):  # closing a broken connection is not an error
                pass

    def _failure(self, op: str, exc: BaseException) -> SessionStoreError:
        where = f"Redis of cache alias {self.cache_alias!r} ({self._target.where})"
        if isinstance(exc, _UNREACHABLE):
            return SessionStoreUnavailable(
                f"{where} is unavailable: {op} failed: {type(exc).__name__}: {exc}"
            )
        return SessionStoreError(f"{where} failed on {op}: {type(exc).__name__}: {exc}")

    async def _run(self, op: str, script: lua.LuaScript, numkeys: int, *args: Any) -> Any:
        execute: Callable[..., Awaitable[Any]] = self._client().execute_command
        try:
            try:
                return await execute("EVALSHA", script.sha, numkeys, *args)
            except NoScriptError:  # the server does not know the script (yet): send it
                return await execute("EVAL", script.source, numkeys, *args)
        except (RedisError, OSError) as exc:
            raise self._failure(op, exc) from exc

    # -- the contract -----------------------------------------------------------------

    async def get(self, payer: str, key: str) -> str | None:
        base = _payer_base(self.key_prefix, payer)
        value: str | None = await self._run("get", lua.GET, 2, base + "idx", base + "v:" + key)
        return value

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        ttl = self.effective_ttl(ttl_ms)
        base = _payer_base(self.key_prefix, payer)
        await self._run("set", lua.SET, 2, base + "idx", base + "v:" + key, ttl, f"{ttl}:{value}")

    async def delete(self, payer: str, key: str) -> bool:
        base = _payer_base(self.key_prefix, payer)
        removed = await self._run("delete", lua.DELETE, 2, base + "idx", base + "v:" + key)
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
        after = self.decode_cursor(payer, cursor)
        lo: str
        if after is not None and (prefix is None or after >= prefix):
            lo = "(" + after
        elif prefix is not None:
            lo = "[" + prefix
        else:
            lo = "-"
        # No valid UTF-8 string holds the byte 0xFF, so "<prefix>\xff" bounds
        # every key that starts with the prefix from above.
        hi: str | bytes = "+" if prefix is None else b"[" + prefix.encode() + b"\xff"
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
        await self._run(
            "set_many",
            lua.SET_MANY,
            1 + len(entries),
            base + "idx",
            *[vbase + key for key in entries],
            ttl,
            *[f"{ttl}:{value}" for value in entries.values()],
        )

    async def delete_many(self, payer: str, keys: Iterable[str]) -> int:
        unique = builtins.list(dict.fromkeys(keys))
        if not unique:
            return 0
        base = _payer_base(self.key_prefix, payer)
        vbase = base + "v:"
        removed = await self._run(
            "delete_many",
            lua.DELETE_MANY,
            1 + len(unique),
            base + "idx",
            *[vbase + key for key in unique],
        )
        return int(removed)

    async def purge_expired(self) -> int:
        """Drop index members whose entry Redis has already expired; return how many.

        Redis deletes expired values by itself, so there is no data to purge;
        what remains are their names in the payers' key indexes (also dropped
        lazily whenever a ``get`` or ``list`` meets them). This walks every
        index under ``key_prefix`` (``SCAN``, then ``_SWEEP_BATCH`` members per
        script call, so Redis is never blocked for long).
        """
        client = self._client()
        pattern = _glob_escape(self.key_prefix) + ":{*}:idx"
        head = self.key_prefix + ":{"
        removed = 0
        try:
            async for idx in client.scan_iter(match=pattern, count=500, _type="zset"):
                tag, _, rest = str(idx)[len(head) :].partition("}")
                if not str(idx).startswith(head) or rest != ":idx" or not tag:
                    continue
                removed += await self._sweep(str(idx))
        except (RedisError, OSError) as exc:
            raise self._failure("purge_expired", exc) from exc
        return removed

    async def _sweep(self, idx: str) -> int:
        vbase = idx[: -len("idx")] + "v:"
        lo, removed = "-", 0
        while True:
            count, scanned, last = await self._run(
                "purge_expired", lua.SWEEP, 1, idx, vbase, lo, _SWEEP_BATCH
            )
            removed += int(count)
            if int(scanned) < _SWEEP_BATCH:
                return removed
            lo = "(" + str(last)

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


class RedisReplayGuard(ReplayGuard):
    """Payment replay guard in the Redis of a :class:`CacheSessionStore`.

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

    def __init__(self, store: CacheSessionStore, *, grace: float = DEFAULT_GRACE) -> None:
        if not isinstance(store, CacheSessionStore):
            raise TypeError(f"store must be a CacheSessionStore, not {type(store).__name__}")
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
        client = self.store._client()
        try:
            if await client.set(key, token, nx=True, pxat=expires_ms):
                return True
            return bool(await client.get(key) == token)
        except (RedisError, OSError) as exc:
            raise self.store._failure("replay claim", exc) from exc

    async def release(self, payer: str, nonce: str) -> None:
        key = self.key(payer, nonce)
        try:
            await self.store._client().delete(key)
        except (RedisError, OSError) as exc:
            raise self.store._failure("replay release", exc) from exc


class _LoopClient:
    """One event loop's client and the generator that closes it with the loop."""

    __slots__ = ("client", "closer")

    def __init__(self, client: Redis, closer: AsyncGenerator[None, None]) -> None:
        self.client = client
        self.closer = closer
        # Run it to its ``yield`` now: that registers it with the running loop.
        try:
            closer.asend(None).send(None)
        except StopIteration:
            pass
