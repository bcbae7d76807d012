"""``CacheSessionStore``: sessions in Redis, configured through Django's ``CACHES``.

It reads the connection settings of a Django cache alias (``django_redis``
or Django's own ``RedisCache``, see :mod:`.redis_config`), so a project that
already has a Redis cache points the store at it and is done. Everything
else (per-loop ``redis.asyncio`` clients, one Lua script per operation,
key-ordered pages, the hash-tagged layout, the replay guard) is
:class:`~aixyz_sessions.stores.redis.RedisStoreBase`, shared with
:class:`~aixyz_sessions.stores.redis.RedisSessionStore`, which takes a Redis
URL instead and also speaks Redis Cluster (Django's cache backends do not).
"""

from __future__ import annotations

from django.core import checks

from .redis import RedisClient, RedisReplayGuard, RedisStoreBase, payer_tag
from .redis_config import RedisTarget, resolve_cache_alias

__all__ = ["CacheSessionStore", "RedisReplayGuard", "payer_tag"]


class CacheSessionStore(RedisStoreBase):
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
        super().__init__(
            key_prefix=key_prefix,
            ttl_ms=ttl_ms,
            max_value_bytes=max_value_bytes,
            max_batch=max_batch,
        )
        if not isinstance(cache_alias, str):
            raise TypeError(f"cache_alias must be a str, not {type(cache_alias).__name__}")
        self.cache_alias = cache_alias
        self._target: RedisTarget = resolve_cache_alias(cache_alias)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} cache_alias={self.cache_alias!r} "
            f"key_prefix={self.key_prefix!r} at {self._target.where}>"
        )

    @property
    def label(self) -> str:
        return f"Redis of cache alias {self.cache_alias!r} ({self._target.where})"

    def _config_problem(self) -> checks.CheckMessage | None:
        """An ``Error`` when the cache alias is not a usable Redis cache."""
        target = self._target
        if target.problem is None:
            return None
        return checks.Error(target.problem, hint=target.hint, id=target.problem_id, obj=self)

    def _new_client(self) -> RedisClient:
        return self._target.new_client()
