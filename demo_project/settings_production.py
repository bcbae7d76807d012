"""Production settings of the demo project: the demo's settings, hardened, from the environment.

What the image (``Dockerfile``) and ``compose.yaml`` run. Every required
variable is checked at import, and all the missing ones are named at once,
so a half-configured server stops before it serves anything instead of
falling back to the demo's development defaults (SQLite, a public secret key,
a facilitator that moves no money).

Required:

=============================  ==================================================
``DJANGO_SECRET_KEY``          a long random string (``check --deploy`` refuses a weak one)
``DJANGO_ALLOWED_HOSTS``       comma-separated host names this server answers to
``DATABASE_URL``               ``postgres://user:pass@host:port/name``
``REDIS_URL``                  sessions, replay guard (and channels) with the default
                               ``AIXYZ_DEMO_STORE=cache``
``X402_ORIGIN``                the public origin clients reach, ``https://api.example.com``
``X402_PAY_TO``                the address that receives payments
``X402_FACILITATOR_URL``       a real facilitator (or ``AIXYZ_ALLOW_LOCAL_FACILITATOR=1``)
=============================  ==================================================

Optional: ``X402_NETWORK``, ``AIXYZ_DEMO_STORE`` (``cache`` or ``db``),
``AIXYZ_DEMO_CHANNELS`` (default ``0`` here), ``DJANGO_BEHIND_PROXY``,
``SECURE_SSL_REDIRECT``, ``SECURE_HSTS_SECONDS``, ``STATIC_ROOT``,
``DJANGO_LOG_LEVEL``. docs/deployment.md explains each.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.http.request import split_domain_port, validate_host

from .settings import *  # noqa: F403
from .settings import _STORES, BASE_DIR, _flag

#: Each required variable and what to put in it (named in the error when missing).
REQUIRED = {
    "DJANGO_SECRET_KEY": 'a long random string: python -c "import secrets; '
    'print(secrets.token_urlsafe(50))"',
    "DJANGO_ALLOWED_HOSTS": "the host names this server answers to, comma-separated",
    "DATABASE_URL": "postgres://user:pass@host:port/name",
    "X402_ORIGIN": "the public origin clients reach, e.g. https://api.example.com",
    "X402_PAY_TO": "the address that receives payments (0x...)",
}


def _env(name: str) -> str:
    return os.environ.get(name, "").strip()


DEBUG = False

DEMO_STORE = _env("AIXYZ_DEMO_STORE").lower() or "cache"
if DEMO_STORE == "memory":
    raise ImproperlyConfigured(
        "AIXYZ_DEMO_STORE=memory in production: each worker and host would keep its own "
        "sessions and accept a payment once each. Use cache (Redis) or db (PostgreSQL)."
    )
if DEMO_STORE == "cache":
    REQUIRED["REDIS_URL"] = "redis://host:6379/0 (sessions and the replay guard live there)"
if not _flag("AIXYZ_ALLOW_LOCAL_FACILITATOR", "0"):
    REQUIRED["X402_FACILITATOR_URL"] = (
        "an https:// x402 facilitator, e.g. https://x402.org/facilitator "
        "(AIXYZ_ALLOW_LOCAL_FACILITATOR=1 runs the local one instead: it checks "
        "signatures but NO MONEY MOVES)"
    )

_missing = [name for name in REQUIRED if not _env(name)]
if _missing:
    raise ImproperlyConfigured(
        "demo_project.settings_production: missing environment variables "
        "(see deploy/.env.example):\n"
        + "\n".join(f"  {name}: {REQUIRED[name]}" for name in _missing)
    )

SECRET_KEY = _env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = [host.strip() for host in _env("DJANGO_ALLOWED_HOSTS").split(",") if host.strip()]

DATABASES = {"default": parse_database_url(_env("DATABASE_URL"))}  # noqa: F405
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        "DATABASE_URL must name PostgreSQL (postgres://...): SQLite is one file on one "
        "host and locks on concurrent writes"
    )
# CONN_MAX_AGE stays 0: Django advises against persistent connections under ASGI
# (each request's ORM calls may run in another thread); use a pooler such as
# PgBouncer if connecting per request costs too much.

AIXYZ_SESSION_STORE = _STORES[DEMO_STORE]
CACHES.pop("sessions", None)  # noqa: F405
if DEMO_STORE == "cache":
    REDIS_URL = _env("REDIS_URL")
    CACHES["sessions"] = {  # noqa: F405
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
    }

SECURE_SSL_REDIRECT = _flag("SECURE_SSL_REDIRECT", "1")
# A redirect to https:// would fail the load balancer's and Docker's plain-HTTP
# probes (Django matches these against the path without its leading slash).
# Probes and a scraper on the private network speak plain HTTP to the container.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

ORIGIN = _env("X402_ORIGIN").rstrip("/")
_origin = urlsplit(ORIGIN)
if _origin.scheme != "https" and not (_origin.scheme == "http" and not SECURE_SSL_REDIRECT):
    raise ImproperlyConfigured(
        f"X402_ORIGIN={ORIGIN!r}: the public https:// origin clients reach "
        "(http:// only with SECURE_SSL_REDIRECT=0, for a trial without TLS)"
    )
if not _origin.netloc or _origin.path or _origin.query:
    raise ImproperlyConfigured(f"X402_ORIGIN={ORIGIN!r}: scheme://host[:port], no path")
if not validate_host(split_domain_port(_origin.netloc)[0], ALLOWED_HOSTS):
    raise ImproperlyConfigured(
        f"X402_ORIGIN={ORIGIN!r} names a host that DJANGO_ALLOWED_HOSTS does not allow: "
        "clients (and the image's health check) reach the server by that name"
    )
CSRF_TRUSTED_ORIGINS = [ORIGIN]

AIXYZ_X402 = {
    **AIXYZ_X402,  # noqa: F405
    "PAY_TO": _env("X402_PAY_TO"),
    "ORIGIN": ORIGIN,
}
if _env("X402_FACILITATOR_URL"):
    AIXYZ_X402.pop("FACILITATOR", None)
    AIXYZ_X402["FACILITATOR_URL"] = _env("X402_FACILITATOR_URL")
# Channels are off unless asked for: vouchers only become money when a claim
# worker (manage.py aixyz_channels --watch) claims them in time, and the
# facilitator must support the batch-settlement scheme.
if not _flag("AIXYZ_DEMO_CHANNELS", "0"):
    AIXYZ_X402.pop("BATCH_SETTLEMENT", None)

# Deliberate opt-outs do not fail `check --deploy --fail-level WARNING` (the
# entrypoint's first step): each is a choice made in the environment, not an oversight.
SILENCED_SYSTEM_CHECKS: list[str] = []
if not SECURE_SSL_REDIRECT:
    SILENCED_SYSTEM_CHECKS.append("security.W008")  # the proxy redirects, or a trial
if AIXYZ_X402.get("FACILITATOR") == "local":
    SILENCED_SYSTEM_CHECKS.append("aixyz_sessions.W101")  # AIXYZ_ALLOW_LOCAL_FACILITATOR=1

# Trust X-Forwarded-Proto only when a proxy you run sets it on every request:
# without one, any client could send the header and pass for HTTPS (secure
# cookies over plain HTTP, no redirect). uvicorn's --proxy-headers does the same
# for the addresses in FORWARDED_ALLOW_IPS only; this is the Django-side switch.
if _flag("DJANGO_BEHIND_PROXY", "0"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
try:
    SECURE_HSTS_SECONDS = int(_env("SECURE_HSTS_SECONDS") or 31_536_000)
except ValueError:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS: a number of seconds") from None
SECURE_HSTS_INCLUDE_SUBDOMAINS = _flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", "1")
SECURE_HSTS_PRELOAD = _flag("SECURE_HSTS_PRELOAD", "1")
for _check, _on in (
    ("security.W004", SECURE_HSTS_SECONDS),
    ("security.W005", SECURE_HSTS_INCLUDE_SUBDOMAINS),
    ("security.W021", SECURE_HSTS_PRELOAD),
):
    if not _on:  # set to 0 in the environment: a choice (see the opt-outs above)
        SILENCED_SYSTEM_CHECKS.append(_check)

# The demo's middleware has no clickjacking protection; the admin needs it.
MIDDLEWARE = [
    *MIDDLEWARE,  # noqa: F405
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# collectstatic gathers the admin's files here for a proxy to serve; the demo's
# ASGI application serves /static/ itself as well (demo_project/asgi.py).
STATIC_ROOT = _env("STATIC_ROOT") or str(BASE_DIR.parent / "static")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"}},
    "root": {"handlers": ["stdout"], "level": _env("DJANGO_LOG_LEVEL").upper() or "INFO"},
    "loggers": {
        # Every paid call starts with a 402: not worth a warning line each time.
        "django.request": {"handlers": ["stdout"], "level": "ERROR", "propagate": False},
        "aixyz_sessions": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
    },
}
