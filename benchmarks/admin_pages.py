"""The admin's "Sessions" pages against the bare store calls behind them, in one run.

One payer holds 10,000 keys (and 1,000 other payers one key each), in the
in-memory store and in Redis (``CacheSessionStore``). Through Django's test
client, logged in as a superuser, it times rendering:

* the payer's keys page, first page and a page deep inside (by its cursor);
* the payers page (first page);

and beside each, measured in the same run: the bare store call the page
makes (``store.list(payer, limit=page_size)``, or ``list_payers``) awaited
in one running event loop, and the same call through ``async_to_sync`` as
the (synchronous) admin view makes it: a fresh event loop per request, so
for Redis a fresh connection. The admin index page, which calls no store,
is timed too, for the admin's own cost. Each figure is the median of ``--runs`` (20)
after a warm-up, in milliseconds.

    .venv/bin/python benchmarks/admin_pages.py [--runs 20] [--keys 10000] [--page-size 100]

Redis at 127.0.0.1:6379 (db 0): written under a random prefix, deleted
afterwards; without Redis its rows are skipped with a message.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.conf import settings

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"

settings.configure(
    SECRET_KEY="benchmark-only",
    DEBUG=False,
    ALLOWED_HOSTS=["testserver"],
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "aixyz_sessions",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    ROOT_URLCONF=__name__,
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    CACHES={
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sessions": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        },
    },
    TEMPLATES=[
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ],
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
    SILENCED_SYSTEM_CHECKS=["aixyz_sessions.W010"],
)

import django  # noqa: E402

django.setup()

from asgiref.sync import async_to_sync  # noqa: E402
from django.contrib import admin  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.urls import path, reverse  # noqa: E402

from aixyz_sessions.conf import get_store  # noqa: E402
from aixyz_sessions.stores.base import SessionStore  # noqa: E402

urlpatterns = [path("admin/", admin.site.urls)]

PAYER = "0x" + "be" * 20


def median_ms(timings: list[float]) -> float:
    return statistics.median(timings) * 1000


def time_page(client: Client, url: str, runs: int) -> float:
    client.get(url)  # warm-up
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        timings.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
    return median_ms(timings)


def time_sync(call: Callable[[], Awaitable[Any]], runs: int) -> float:
    """The call as the admin view makes it: ``async_to_sync``, a new event loop each time."""

    async def awaited() -> Any:
        return await call()

    def once() -> Any:
        return async_to_sync(awaited)()

    once()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        once()
        timings.append(time.perf_counter() - start)
    return median_ms(timings)


async def time_bare(call: Callable[[], Awaitable[Any]], runs: int) -> float:
    """The call awaited in one running loop (its connection, if any, kept)."""
    await call()
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        timings.append(time.perf_counter() - start)
    return median_ms(timings)


async def fill(store: SessionStore, keys: int, payers: int) -> str:
    """Write the data; the cursor of the page in the middle of the big payer's keys."""
    value = '{"note": "' + "x" * 80 + '"}'
    for start in range(0, keys, 1000):
        batch = {f"item:{i:06d}": value for i in range(start, min(start + 1000, keys))}
        await store.set_many(PAYER, batch, ttl_ms=0)
    for i in range(payers):
        await store.set_many(f"0x{i:040x}", {"k": "v"}, ttl_ms=0)
    middle = await store.list(PAYER, limit=keys // 2, keys_only=True)
    assert middle.cursor is not None
    return middle.cursor


def bench(name: str, client: Client, runs: int, keys: int, payers: int, page_size: int) -> None:
    store = get_store()
    cursor = async_to_sync(fill)(store, keys, payers)
    keys_url = reverse("admin:aixyz_sessions_storedsession_payer", args=[PAYER])
    payers_url = reverse("admin:aixyz_sessions_storedsession_changelist")

    def first() -> Awaitable[Any]:
        return store.list(PAYER, limit=page_size)

    def deep() -> Awaitable[Any]:
        return store.list(PAYER, cursor=cursor, limit=page_size)

    def payer_page() -> Awaitable[Any]:
        return store.list_payers(limit=page_size)

    rows = [
        ("keys, first page", f"{keys_url}", first, "store.list(limit)"),
        (
            "keys, page deep inside",
            f"{keys_url}?cursor={cursor}",
            deep,
            "store.list(cursor, limit)",
        ),
        ("payers, first page", payers_url, payer_page, "store.list_payers(limit)"),
    ]
    print(f"\n{name}: one payer with {keys:,} keys, {payers:,} more payers, pages of {page_size}")
    print(
        f"{'page':<24} {'admin ms':>9} {'bare ms':>8} {'sync ms':>8} {'admin/bare':>11}  baseline"
    )
    for label, url, call, baseline in rows:
        page_ms = time_page(client, url, runs)
        bare_ms = asyncio.run(time_bare(call, runs))
        sync_ms = time_sync(call, runs)
        figures = f"{page_ms:>9.2f} {bare_ms:>8.2f} {sync_ms:>8.2f} {page_ms / bare_ms:>10.1f}x"
        print(f"{label:<24} {figures}  {baseline}")


def redis_up() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5):
            return True
    except OSError:
        return False


async def drop(prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        batch = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(batch), 1000):
            await client.delete(*batch[start : start + 1000])
    finally:
        await client.aclose()


def main(runs: int, keys: int, payers: int, page_size: int) -> None:
    call_command("migrate", verbosity=0)
    user = User.objects.create_superuser("bench", "bench@example.com", "bench")
    client = Client()
    client.force_login(user)
    print(
        f"Median of {runs} renders after a warm-up (Django test client, superuser). "
        "bare: the store call awaited in one event loop; sync: the same call through "
        "async_to_sync, as the admin view makes it (a new event loop per request)."
    )
    index_ms = time_page(client, reverse("admin:index"), runs)
    print(f"For scale: the admin index page (no store call) renders in {index_ms:.2f} ms.")
    with override_settings(
        AIXYZ_SESSIONS_ADMIN_PAGE_SIZE=page_size,
        AIXYZ_SESSION_STORE={
            "BACKEND": "aixyz_sessions.stores.memory.InMemorySessionStore",
            "OPTIONS": {"max_entries": keys + payers + 10},
        },
    ):
        bench("InMemorySessionStore", client, runs, keys, payers, page_size)

    if not redis_up():
        print(f"\nCacheSessionStore: skipped, no Redis at {REDIS_HOST}:{REDIS_PORT}")
        return
    prefix = f"aixyz:bench:{secrets.token_hex(6)}"
    try:
        with override_settings(
            AIXYZ_SESSIONS_ADMIN_PAGE_SIZE=page_size,
            AIXYZ_SESSION_STORE={
                "BACKEND": "aixyz_sessions.stores.cache.CacheSessionStore",
                "OPTIONS": {"cache_alias": "sessions", "key_prefix": prefix},
            },
        ):
            bench(f"CacheSessionStore ({REDIS_URL})", client, runs, keys, payers, page_size)
    finally:
        asyncio.run(drop(prefix))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keys", type=int, default=10_000, help="keys of the big payer")
    parser.add_argument("--payers", type=int, default=1_000, help="other payers, one key each")
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()
    main(args.runs, args.keys, args.payers, args.page_size)
