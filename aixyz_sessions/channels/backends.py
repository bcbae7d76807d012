"""Which ``ChannelStorage`` ``BATCH_SETTLEMENT["STORAGE"]`` names (see :mod:`.settings`)."""

from __future__ import annotations

import inspect
from typing import Any

from django.utils.module_loading import import_string

__all__ = ["build_channel_storage", "redis_url_of"]

#: Channels of a Redis session store live beside its sessions, under this prefix.
CHANNEL_PREFIX = "aixyz:ch:"


def redis_url_of(store: object) -> tuple[str, bool] | None:
    """``(url, cluster)`` of the Redis a session store uses, if it is one reachable by URL."""
    try:
        from ..stores.cache import CacheSessionStore
        from ..stores.redis import RedisSessionStore
    except ImportError:  # no redis package: the session store is no Redis store either
        return None

    if isinstance(store, RedisSessionStore) and store.url is not None:
        return store.url, store.cluster
    if isinstance(store, CacheSessionStore):
        target = store._target
        if target.url is not None and target.problem is None:
            return target.url, False
    return None


def _redis(url: str, cluster: bool = False) -> Any:
    from redis import Redis
    from redis.cluster import RedisCluster

    from .redis_storage import RedisChannelStorage

    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 5.0,
    }
    client = RedisCluster.from_url(url, **options) if cluster else Redis.from_url(url, **options)
    return RedisChannelStorage(client, CHANNEL_PREFIX)


def build_channel_storage(spec: str) -> Any:
    """The storage ``spec`` names; raises ``X402ConfigError`` (``E113``) when it cannot work."""
    from ..conf import get_store
    from ..payments.conf import X402ConfigError
    from .storage import DatabaseChannelStorage

    if spec == "default":
        found = redis_url_of(get_store())
        if found is not None:
            return _redis(*found)
        from ..stores.db import DatabaseSessionStore

        store = get_store()
        using = store.using if isinstance(store, DatabaseSessionStore) else "default"
        return DatabaseChannelStorage(using)
    if spec == "database":
        return DatabaseChannelStorage()
    if spec.startswith("database:"):
        return DatabaseChannelStorage(spec.partition(":")[2])
    if spec.startswith(("redis://", "rediss://")):
        return _redis(spec)
    target = import_string(spec)
    storage = target() if inspect.isclass(target) or inspect.isfunction(target) else target
    methods = ("get", "list", "update_channel")
    if not all(callable(getattr(storage, name, None)) for name in methods):
        raise X402ConfigError(
            f"AIXYZ_X402['BATCH_SETTLEMENT']['STORAGE'] = {spec!r} does not give a "
            "ChannelStorage (get, list, update_channel)",
            id="aixyz_sessions.E113",
            hint="Name a ChannelStorage class, instance or zero-argument factory, or use "
            "'database' / a redis:// URL.",
        )
    return storage
