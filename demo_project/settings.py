"""Settings of the demo project ("x402 sessions"): embedded defaults, overridable by env.

With no environment variable set, everything runs in this process, offline:

* sessions in the database (``DatabaseSessionStore``) on SQLite next to this
  file, so they show up in the admin;
* payments verified by the in-process ``LocalFacilitator`` (real signature
  checks, NO MONEY MOVES).

Environment variables switch each part (see docs/demo.md):

=========================  ==========================================================
``AIXYZ_DEMO_STORE``       ``db`` (default), ``memory`` or ``cache`` (Redis)
``AIXYZ_ALLOW_IN_MEMORY_WORKERS``  ``1``: start ``memory`` under several workers anyway
``REDIS_URL``              Redis for ``AIXYZ_DEMO_STORE=cache``
                           (default ``redis://127.0.0.1:6379/0``)
``DATABASE_URL``           ``postgres://user:pass@host:port/name`` instead of SQLite
``AIXYZ_DEMO_SQLITE``      the SQLite file (default ``demo_project/db.sqlite3``)
``X402_FACILITATOR_URL``   a real x402 facilitator instead of the local one
``X402_PAY_TO``            the address that receives payments
``X402_NETWORK``           CAIP-2 network (default ``eip155:84532``, Base Sepolia)
``AIXYZ_DEMO_CHANNELS``    ``1`` (default): every paid tool also offers payment channels
                           (x402 ``batch-settlement``); ``0`` turns them off
``OPENAI_API_KEY``         the agent answers text messages with a model (``/agent``);
                           ``OPENAI_BASE_URL``, ``OPENAI_MODEL`` choose the server and model
``X402_ORIGIN``            the public ``scheme://host`` sign-ins must name (default:
                           the request's own; set it behind a proxy or balancer)
``AIXYZ_METRICS_TOKEN``    a bearer token for scrapers of ``/metrics`` (staff users may
                           read it without one)
``DJANGO_DEBUG``           ``1`` (default) or ``0``
``DJANGO_ALLOWED_HOSTS``   comma-separated (default ``127.0.0.1,localhost,[::1]``)
``DJANGO_SECRET_KEY``      replaces the demo-only key
=========================  ==========================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent

#: Receives the demo's (local, fictitious) payments unless X402_PAY_TO says otherwise.
DEMO_PAY_TO = "0x000000000000000000000000000000000000dEaD"
DEFAULT_NETWORK = "eip155:84532"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in ("1", "true", "yes", "on")


def parse_database_url(url: str) -> dict[str, Any]:
    """A ``DATABASES`` entry from ``postgres://user:pass@host:port/name`` (or ``sqlite:///path``).

    ``postgres``, ``postgresql`` and ``pgsql`` schemes select PostgreSQL;
    ``sqlite:///relative/or//absolute`` selects SQLite. Anything else raises
    ``ValueError`` naming what is accepted.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        name = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name or ":memory:"}
    if scheme not in ("postgres", "postgresql", "pgsql"):
        raise ValueError(
            f"DATABASE_URL {url!r}: use postgres://user:pass@host:port/name or sqlite:///path"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError(f"DATABASE_URL {url!r} names no database (postgres://.../NAME)")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-secret-key-change-me")
DEBUG = _flag("DJANGO_DEBUG", "1")
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "aixyz_sessions",
    "demo_project",  # its tools.py is autodiscovered; its management commands
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "aixyz_sessions.payments.middleware.X402Middleware",
]

ROOT_URLCONF = "demo_project.urls"
ASGI_APPLICATION = "demo_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": parse_database_url(os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("AIXYZ_DEMO_SQLITE", str(BASE_DIR / "db.sqlite3")),
            # Several paid calls may write at once: wait for the lock, don't fail.
            "OPTIONS": {"timeout": 20},
        }
    }

REDIS_URL = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)

_STORES: dict[str, Any] = {
    "db": "aixyz_sessions.stores.db.DatabaseSessionStore",
    "memory": "aixyz_sessions.stores.memory.InMemorySessionStore",
    "cache": {
        "BACKEND": "aixyz_sessions.stores.cache.CacheSessionStore",
        "OPTIONS": {"cache_alias": "sessions"},
    },
}
DEMO_STORE = os.environ.get("AIXYZ_DEMO_STORE", "db").strip().lower() or "db"
if DEMO_STORE not in _STORES:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"AIXYZ_DEMO_STORE={DEMO_STORE!r}: use one of {', '.join(sorted(_STORES))}"
    )
AIXYZ_SESSION_STORE = _STORES[DEMO_STORE]
# The in-memory store under several workers is refused at start (E013) unless this is set.
AIXYZ_ALLOW_IN_MEMORY_WORKERS = _flag("AIXYZ_ALLOW_IN_MEMORY_WORKERS", "0")

CACHES: dict[str, Any] = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
if DEMO_STORE == "cache":
    CACHES["sessions"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }

AIXYZ_X402: dict[str, Any] = {
    "PAY_TO": os.environ.get("X402_PAY_TO", DEMO_PAY_TO),
    "NETWORK": os.environ.get("X402_NETWORK", DEFAULT_NETWORK),
}
if os.environ.get("X402_ORIGIN"):
    AIXYZ_X402["ORIGIN"] = os.environ["X402_ORIGIN"]
if os.environ.get("X402_FACILITATOR_URL"):
    AIXYZ_X402["FACILITATOR_URL"] = os.environ["X402_FACILITATOR_URL"]
else:
    AIXYZ_X402["FACILITATOR"] = "local"
# Payment channels: each 402 also offers ``batch-settlement`` after the tool's own
# options (one deposit, then a voucher per call); channels live where the sessions do.
# ``manage.py aixyz_channels`` claims and settles them.
if _flag("AIXYZ_DEMO_CHANNELS", "1"):
    AIXYZ_X402["BATCH_SETTLEMENT"] = {}

# The agent over A2A (the TypeScript template's "x402 sessions" agent): its card
# lists the tools as skills; a message invokes one tool in the payer's session
# ({"tool": ..., "arguments": ...} data part) at that tool's price; PRICE is what
# a text turn costs when a model answers them (OPENAI_API_KEY).
AIXYZ_AGENT: dict[str, Any] = {
    "NAME": "Session Content Agent",
    "DESCRIPTION": "Stores and reads content in the session of whoever pays (x402).",
    "VERSION": "1.0.0",
    "PRICE": "$0.05",  # a text turn (with a model): up to 10 model steps and 5 tool calls
    "SKILLS": [
        {
            "id": "put-content",
            "name": "Store content",
            "description": "Store a value under a key in your session.",
            "tags": ["session", "write"],
            "examples": ['{"tool": "put-content", "arguments": {"key": "a", "value": "b"}}'],
        },
        {
            "id": "get-content",
            "name": "Read content",
            "description": "Read a key, or list your content a page at a time.",
            "tags": ["session", "read"],
            "examples": ['{"tool": "get-content", "arguments": {"key": "a"}}'],
        },
        {
            "id": "list-keys",
            "name": "List keys",
            "description": "List your keys a page at a time; pay on Base Sepolia or Base.",
            "tags": ["session", "read"],
            "examples": ['{"tool": "list-keys", "arguments": {}}'],
        },
        {
            "id": "summarize-content",
            "name": "Summarize content",
            "description": "Count your keys and bytes; metered by the session's size, up to $0.05.",
            "tags": ["session", "read", "metered"],
            "examples": ['{"tool": "summarize-content", "arguments": {}}'],
        },
    ],
}
if os.environ.get("OPENAI_API_KEY"):  # text messages go to a model that calls the tools
    AIXYZ_AGENT["AGENT"] = "demo_project.agents.session_agent"

# Prometheus metrics at /metrics: for a signed-in staff user (the admin's), and for a
# scraper that sends "Authorization: Bearer $AIXYZ_METRICS_TOKEN" when that is set.
AIXYZ_METRICS: dict[str, Any] = {"STAFF": True}
if os.environ.get("AIXYZ_METRICS_TOKEN"):
    AIXYZ_METRICS["TOKEN"] = os.environ["AIXYZ_METRICS_TOKEN"]

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        # Every paid call starts with a 402: not worth a warning line each time.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "aixyz_sessions": {"handlers": ["console"], "level": "WARNING", "propagate": False},
    },
}
