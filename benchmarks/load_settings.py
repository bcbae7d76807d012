"""Settings of the load-test server (``benchmarks/load.py`` starts it under uvicorn).

The paid tools of :mod:`benchmarks.load_app` behind ``X402Middleware``, with
the in-process ``LocalFacilitator`` (real signature checks, NO MONEY MOVES;
its ledger is per worker process, while the replay guard lives in Redis with
the sessions, so a payment is refused for replay by every worker alike).

Environment (set by ``load.py``):

==========================  ===================================================
``AIXYZ_LOAD_REDIS_URL``    the Redis (default ``redis://127.0.0.1:6379/0``)
``AIXYZ_LOAD_PREFIX``       the store's ``key_prefix`` (one per run)
``AIXYZ_LOAD_STORE``        ``redis`` (``RedisSessionStore``, default) or
                            ``cache`` (``CacheSessionStore`` over ``CACHES``)
==========================  ===================================================
"""

from __future__ import annotations

import os
from typing import Any

REDIS_URL = os.environ.get("AIXYZ_LOAD_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY_PREFIX = os.environ.get("AIXYZ_LOAD_PREFIX", "aixyz:load")
STORE = os.environ.get("AIXYZ_LOAD_STORE", "redis")
PAY_TO = "0x" + "ab" * 20

SECRET_KEY = "load-test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "aixyz_sessions"]
MIDDLEWARE = ["aixyz_sessions.payments.middleware.X402Middleware"]
ROOT_URLCONF = "benchmarks.load_app"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CACHES: dict[str, Any] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "sessions": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
}

if STORE == "cache":
    AIXYZ_SESSION_STORE: dict[str, Any] = {
        "BACKEND": "aixyz_sessions.stores.cache.CacheSessionStore",
        "OPTIONS": {"cache_alias": "sessions", "key_prefix": KEY_PREFIX},
    }
elif STORE == "redis":
    AIXYZ_SESSION_STORE = {
        "BACKEND": "aixyz_sessions.stores.redis.RedisSessionStore",
        "OPTIONS": {"url": REDIS_URL, "key_prefix": KEY_PREFIX},
    }
else:
    raise ValueError(f"AIXYZ_LOAD_STORE must be 'redis' or 'cache', not {STORE!r}")

AIXYZ_X402 = {"PAY_TO": PAY_TO, "NETWORK": "eip155:84532", "FACILITATOR": "local"}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # The local facilitator's "NO MONEY MOVES" warning once per worker is expected here.
    "loggers": {"aixyz_sessions.payments": {"handlers": ["console"], "level": "ERROR"}},
}
