"""``RedisChannelStorage``: channels in Redis (needs the ``[redis]`` extra).

Import it from :mod:`aixyz_sessions.channels.storage`, which loads this module
only when it is asked for: the database storage must work without Redis.
"""

from __future__ import annotations

import builtins
import random
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar

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

from ..exceptions import SessionStoreError, SessionStoreUnavailable
from . import redis_scripts as lua
from .storage import ChannelConflictError, _apply, _dump, _key, _load

__all__ = ["RedisChannelStorage"]

T = TypeVar("T")

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
