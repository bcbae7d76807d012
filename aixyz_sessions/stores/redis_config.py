"""Turning a Django ``CACHES`` entry into ``redis.asyncio`` connection settings.

Users configure Redis once, as a Django cache; ``CacheSessionStore`` reads the
same entry and opens its own asyncio connections to the primary server. Two
backends are understood, each with its own way of spelling options:

* ``django_redis.cache.RedisCache``: ``LOCATION`` a URL or a list (or a
  comma-separated string) of URLs, the first being the primary; ``OPTIONS``
  upper-case (``PASSWORD``, ``USERNAME``, ``SOCKET_TIMEOUT``,
  ``SOCKET_CONNECT_TIMEOUT``) plus ``CONNECTION_POOL_KWARGS`` passed to the
  pool.
* ``django.core.cache.backends.redis.RedisCache``: ``LOCATION`` a URL or a
  list (or a ``;``/``,``-separated string), the first being the primary (the
  one Django writes to); ``OPTIONS`` lower-case keyword arguments of the pool.

As in both backends, what the URL says (password, username, db) wins over
``OPTIONS``. Options that only make sense for the synchronous client (parser,
pool or serializer classes) are ignored. Nothing here connects.

:func:`with_client_defaults` (timeouts, one quick retry, decoded replies) is
shared with ``RedisSessionStore``, which takes its options directly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

__all__ = [
    "DJANGO_BUILTIN_REDIS",
    "DJANGO_REDIS",
    "SUPPORTED_BACKENDS",
    "RedisTarget",
    "redact",
    "resolve_cache_alias",
    "with_client_defaults",
]

DJANGO_REDIS = "django_redis.cache.RedisCache"
DJANGO_BUILTIN_REDIS = "django.core.cache.backends.redis.RedisCache"
SUPPORTED_BACKENDS = (DJANGO_REDIS, DJANGO_BUILTIN_REDIS)

#: Connect timeout (s) when the cache config gives none: a dead host fails fast.
DEFAULT_CONNECT_TIMEOUT = 2.0
#: Read/write timeout (s) when the cache config gives none.
DEFAULT_SOCKET_TIMEOUT = 5.0

# Pool/connection keyword arguments that mean the same to redis.asyncio.
_PASSTHROUGH = frozenset(
    {
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "health_check_interval",
        "client_name",
        "max_connections",
        "protocol",
    }
)
_SSL_ONLY = frozenset(
    {
        "ssl_keyfile",
        "ssl_certfile",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_data",
        "ssl_ca_path",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
        "ssl_password",
    }
)
_DJANGO_REDIS_UPPER = {
    "USERNAME": "username",
    "PASSWORD": "password",
    "SOCKET_TIMEOUT": "socket_timeout",
    "SOCKET_CONNECT_TIMEOUT": "socket_connect_timeout",
}

E_NOT_REDIS = "aixyz_sessions.E020"
E_BAD_LOCATION = "aixyz_sessions.E021"


@dataclass(frozen=True)
class RedisTarget:
    """Where and how to connect for one cache alias, or why that is impossible."""

    alias: str
    backend: str
    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: Why this alias cannot serve sessions (``None`` when it can), with its check id and hint.
    problem: str | None = None
    problem_id: str | None = None
    hint: str | None = None

    @property
    def where(self) -> str:
        """The primary's URL without credentials, for messages."""
        return redact(self.url) if self.url else "no LOCATION"

    def new_client(self) -> Redis:
        """A fresh client with its own pool; it connects on first use."""
        assert self.url is not None and self.problem is None
        return Redis.from_url(self.url, **self.options)


def redact(url: str) -> str:
    """``url`` without its credentials (``***`` in their place), for messages."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, "", ""))


def _locations(backend: str, location: object) -> list[str]:
    if isinstance(location, str):
        separators = "," if backend == DJANGO_REDIS else "[;,]"
        parts = re.split(separators, location)
    elif isinstance(location, list | tuple):
        parts = [str(item) for item in location]
    else:
        return []
    return [part.strip() for part in parts if part.strip()]


def _options(backend: str, raw: Mapping[str, Any], scheme: str) -> dict[str, Any]:
    picked: dict[str, Any] = {}
    if backend == DJANGO_REDIS:
        pool_kwargs = raw.get("CONNECTION_POOL_KWARGS") or {}
        if isinstance(pool_kwargs, Mapping):
            picked.update(pool_kwargs)
        for upper, lower in _DJANGO_REDIS_UPPER.items():
            if raw.get(upper):
                picked[lower] = raw[upper]
    else:
        picked.update(raw)
    allowed = _PASSTHROUGH | (_SSL_ONLY if scheme == "rediss" else frozenset())
    return with_client_defaults({name: value for name, value in picked.items() if name in allowed})


def with_client_defaults(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` (changed in place) with the stores' defaults for a ``redis.asyncio`` client.

    Short timeouts unless given, so a dead host fails fast; one quick retry
    (it covers a pooled connection the server closed on restart or idle
    timeout; more would only delay the error when Redis is down); and
    ``decode_responses=True``, always, as the stores read str replies.
    """
    options.setdefault("socket_connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    options.setdefault("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
    options.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 1))
    options["decode_responses"] = True
    return options


def _not_redis(alias: str, backend: str) -> RedisTarget:
    supported = " or ".join(repr(b) for b in SUPPORTED_BACKENDS)
    return RedisTarget(
        alias=alias,
        backend=backend,
        problem=(
            f"CacheSessionStore needs a Redis cache, but cache alias {alias!r} uses "
            f"{backend!r}; supported backends: {supported}"
        ),
        problem_id=E_NOT_REDIS,
        hint=(
            f"Give settings.CACHES[{alias!r}] one of the supported backends with a "
            "redis:// LOCATION (e.g. {'BACKEND': "
            f"{DJANGO_BUILTIN_REDIS!r}, 'LOCATION': 'redis://127.0.0.1:6379/0'}}), "
            "point OPTIONS['cache_alias'] at such an alias, or choose another session store."
        ),
    )


def resolve_cache_alias(alias: str) -> RedisTarget:
    """Read ``settings.CACHES[alias]``; ``ValueError`` if there is no such alias.

    A backend that is not Redis, or a LOCATION that is not a Redis URL, is not
    an exception here: the returned target carries the problem, which the
    store reports through ``check()`` and raises on use.
    """
    caches = getattr(settings, "CACHES", {}) or {}
    if alias not in caches:
        known = ", ".join(repr(name) for name in caches) or "none"
        raise ValueError(
            f"cache alias {alias!r} is not in settings.CACHES (defined aliases: {known}); "
            "add a Redis cache under that alias or pass an existing cache_alias"
        )
    config = caches[alias]
    backend = str(config.get("BACKEND", ""))
    if backend not in SUPPORTED_BACKENDS:
        return _not_redis(alias, backend)
    locations = _locations(backend, config.get("LOCATION"))
    bad_location_hint = (
        f"Set settings.CACHES[{alias!r}]['LOCATION'] to a redis://, rediss:// or unix:// "
        "URL (or a list whose first entry is the primary)."
    )
    if not locations:
        return RedisTarget(
            alias=alias,
            backend=backend,
            problem=f"cache alias {alias!r} has no Redis LOCATION for CacheSessionStore",
            problem_id=E_BAD_LOCATION,
            hint=bad_location_hint,
        )
    url = locations[0]
    try:
        parse_url(url)
    except ValueError as exc:
        return RedisTarget(
            alias=alias,
            backend=backend,
            url=url,
            problem=f"cache alias {alias!r} has a LOCATION CacheSessionStore cannot use: {exc}",
            problem_id=E_BAD_LOCATION,
            hint=bad_location_hint,
        )
    raw_options = config.get("OPTIONS") or {}
    if not isinstance(raw_options, Mapping):
        raw_options = {}
    scheme = urlsplit(url).scheme
    return RedisTarget(
        alias=alias, backend=backend, url=url, options=_options(backend, raw_options, scheme)
    )
