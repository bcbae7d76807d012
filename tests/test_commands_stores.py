"""The housekeeping commands on the persistent stores (database, Redis)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections

from aixyz_sessions import get_store
from aixyz_sessions.stores.base import SessionStore
from tests.services import REDIS_HOST, REDIS_PORT, need_redis
from tests.test_cache_store import drop_keys

PAYER = "0xAbC0000000000000000000000000000000000042"


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def fill(store: SessionStore, payer: str, entries: dict[str, str], ttl_ms: int = 0) -> None:
    asyncio.run(store.set_many(payer, entries, ttl_ms=ttl_ms))


def exercise(store: SessionStore) -> None:
    """show, erase and purge on whatever store is configured."""
    fill(store, PAYER.lower(), {"b": "2", "a": "1"})
    fill(store, "0xother", {"a": "theirs"})
    assert run("aixyz_sessions_show", PAYER).splitlines() == [
        "a = 1",
        "b = 2",
        f"2 entries for {PAYER.lower()}.",
    ]
    first = json.loads(run("aixyz_sessions_show", "--prefix", "0x", "--limit", "1", "--json"))
    assert first["payers"] == [PAYER.lower()] and first["cursor"]
    rest = run("aixyz_sessions_show", "--prefix", "0x", "--cursor", first["cursor"])
    assert rest.splitlines() == ["0xother", "1 payer."]
    assert f"Erased 2 session entries of {PAYER.lower()}." in run("aixyz_sessions_erase", PAYER)
    assert asyncio.run(store.list(PAYER.lower())).entries == {}
    assert asyncio.run(store.get("0xother", "a")) == "theirs"
    assert json.loads(run("aixyz_sessions_show", "--prefix", "0x", "--json")) == {
        "payers": ["0xother"],
        "cursor": None,
    }
    assert "Purged" in run("aixyz_sessions_purge")


@pytest.fixture
def database_store(settings: Any) -> Iterator[SessionStore]:
    settings.AIXYZ_SESSION_STORE = "aixyz_sessions.stores.db.DatabaseSessionStore"
    yield get_store()
    asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


@pytest.mark.django_db(transaction=True)
def test_commands_on_the_database_store(database_store: SessionStore) -> None:
    exercise(database_store)
    fill(database_store, "0xshort", {"x": "1", "y": "2"}, ttl_ms=1)
    asyncio.run(asyncio.sleep(0.01))
    assert "Purged 2 expired session entries." in run("aixyz_sessions_purge")


@pytest.fixture
def redis_store(settings: Any) -> Iterator[SessionStore]:
    need_redis()
    prefix = f"aixyz:test:{secrets.token_hex(6)}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
        }
    }
    settings.AIXYZ_SESSION_STORE = {
        "BACKEND": "aixyz_sessions.stores.cache.CacheSessionStore",
        "OPTIONS": {"key_prefix": prefix},
    }
    yield get_store()
    asyncio.run(drop_keys(prefix))


def test_commands_on_the_redis_store(redis_store: SessionStore) -> None:
    exercise(redis_store)


def test_redis_down_is_a_clear_command_error(settings: Any) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
        }
    }
    settings.AIXYZ_SESSION_STORE = "aixyz_sessions.stores.cache.CacheSessionStore"
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="'default'"):
        run("aixyz_sessions_show", PAYER)
