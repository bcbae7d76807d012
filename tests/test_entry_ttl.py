"""``entry_ttl_ms``: how long an entry has left, read without sliding it (for the admin)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.test import override_settings

from aixyz_sessions.stores.base import SessionStore
from aixyz_sessions.stores.db import DatabaseSessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.testing import ManualClock
from tests.test_replay_guard import ALIAS, drop_keys, redis_caches, unique_prefix

PAYER = "0x" + "ab" * 20

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["memory", "database", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SessionStore, Any]]:
    if request.param == "memory":
        clock = ManualClock()
        yield InMemorySessionStore(clock=clock), clock
        return
    if request.param == "database":
        clock = ManualClock(1_700_000_000_000)
        yield DatabaseSessionStore(clock=clock), clock
        return
    from aixyz_sessions.stores.cache import CacheSessionStore
    from tests.services import need_redis

    need_redis()
    prefix = unique_prefix()
    with override_settings(CACHES=redis_caches()):
        redis_store = CacheSessionStore(cache_alias=ALIAS, key_prefix=prefix)
        try:
            yield redis_store, None
        finally:
            await redis_store.close()
            await drop_keys(prefix)


async def test_ttl_left_never_and_absent(store: tuple[SessionStore, Any]) -> None:
    backend, clock = store
    await backend.set(PAYER, "timed", "v", ttl_ms=60_000)
    await backend.set(PAYER, "forever", "v", ttl_ms=0)
    left = await backend.entry_ttl_ms(PAYER, "timed")  # type: ignore[attr-defined]
    assert left is not None and 59_000 <= left <= 60_000
    assert await backend.entry_ttl_ms(PAYER, "forever") is None  # type: ignore[attr-defined]
    assert await backend.entry_ttl_ms(PAYER, "absent") == 0  # type: ignore[attr-defined]
    if clock is not None:  # reading the TTL does not slide it; time does
        clock.advance(20_000)
        assert await backend.entry_ttl_ms(PAYER, "timed") == 40_000  # type: ignore[attr-defined]
        clock.advance(40_000)
        assert await backend.entry_ttl_ms(PAYER, "timed") == 0  # type: ignore[attr-defined]
    else:
        await asyncio.sleep(0.05)
        again = await backend.entry_ttl_ms(PAYER, "timed")  # type: ignore[attr-defined]
        assert again is not None and again < left


async def test_arguments_are_checked_by_the_base_class(store: tuple[SessionStore, Any]) -> None:
    backend, _ = store
    with pytest.raises(TypeError):
        await backend.entry_ttl_ms(PAYER, 5)  # type: ignore[attr-defined]
    for payer, key in ((PAYER, ""), ("", "k"), (PAYER, "k" * 513), (PAYER, "a\x00b")):
        with pytest.raises(ValueError):
            await backend.entry_ttl_ms(payer, key)  # type: ignore[attr-defined]
