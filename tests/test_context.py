"""payer_context / get_session / Session: binding, restoring, isolation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aixyz_sessions import Session, get_payer, get_session, payer_context
from aixyz_sessions.stores.memory import InMemorySessionStore

CHECKSUMMED = "0x52908400098527886E0F7030069857D2E4169EE7"


def test_nothing_bound_by_default() -> None:
    assert get_session() is None
    assert get_payer() is None


def test_with_binds_and_restores() -> None:
    with payer_context(CHECKSUMMED) as session:
        assert session is get_session()
        assert get_payer() == CHECKSUMMED
        assert session is not None and session.key == CHECKSUMMED.lower()
        with payer_context("0xother"):
            assert get_payer() == "0xother"
            with payer_context(None):
                assert get_session() is None
            assert get_payer() == "0xother"
        assert get_payer() == CHECKSUMMED
    assert get_session() is None


def test_restores_on_exception() -> None:
    with pytest.raises(RuntimeError), payer_context("0xabc"):
        raise RuntimeError("boom")
    assert get_session() is None


async def test_async_with_and_restore_on_exception() -> None:
    async with payer_context("0xabc") as session:
        assert get_session() is session
    assert get_session() is None
    with pytest.raises(KeyError):
        async with payer_context("0xdef"):
            raise KeyError("x")
    assert get_session() is None


def test_reentrant_object() -> None:
    ctx = payer_context("0xabc")
    with ctx, ctx:
        assert get_payer() == "0xabc"
    assert get_session() is None


@pytest.mark.parametrize("bad", [123, b"0xabc", ""])
def test_bad_payer(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        payer_context(bad)  # type: ignore[arg-type]


async def test_checksummed_and_lower_case_share_one_session() -> None:
    store = InMemorySessionStore()
    async with payer_context(CHECKSUMMED, store=store) as s:
        assert s is not None
        await s.set("k", "v")
    async with payer_context(CHECKSUMMED.lower(), store=store) as s:
        assert s is not None
        assert await s.get("k") == "v"
        assert s.payer == CHECKSUMMED.lower()
    assert await store.get(CHECKSUMMED.lower(), "k") == "v"


async def test_session_api_round_trip() -> None:
    store = InMemorySessionStore()
    session = Session("0xABC", store)
    await session.set("a", "1")
    await session.set_many({"b": "2", "c": "3"}, ttl_ms=0)
    assert await session.get("a") == "1"
    assert await session.get_many(["a", "x"]) == {"a": "1", "x": None}
    page = await session.list(limit=2)
    assert page.entries == {"a": "1", "b": "2"}
    assert (await session.list(cursor=page.cursor)).entries == {"c": "3"}
    assert (await session.list(prefix="b", keys_only=True)).entries == {"b": ""}
    assert await session.delete("a") is True
    assert await session.delete_many(["b", "c", "d"]) == 2
    with pytest.raises(TypeError):
        await session.set("k", 5)  # type: ignore[arg-type]


async def test_concurrent_tasks_do_not_leak() -> None:
    seen: dict[str, list[str | None]] = {}

    async def request(payer: str) -> None:
        async with payer_context(payer):
            out = seen.setdefault(payer, [])
            for _ in range(20):
                await asyncio.sleep(0)
                out.append(get_payer())

    async def free() -> None:
        for _ in range(20):
            await asyncio.sleep(0)
            assert get_session() is None

    await asyncio.gather(*(request(f"0x{i:040x}") for i in range(10)), free())
    for payer, values in seen.items():
        assert values == [payer] * 20


async def test_task_started_inside_inherits_but_cannot_change_parent() -> None:
    async with payer_context("0xparent"):

        async def child() -> str | None:
            with payer_context("0xchild"):
                pass
            with payer_context(None):
                await asyncio.sleep(0)
            return get_payer()

        assert await asyncio.create_task(child()) == "0xparent"
        assert get_payer() == "0xparent"


def test_threads_do_not_leak() -> None:
    results: dict[int, list[str | None]] = {}
    barrier = threading.Barrier(6)

    def work(n: int) -> None:
        out = results.setdefault(n, [])
        barrier.wait()
        out.append(get_payer())
        with payer_context(f"0x{n}"):
            barrier.wait()
            out.append(get_payer())
        out.append(get_payer())

    with payer_context("0xmain"):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for n, values in results.items():
        assert values == [None, f"0x{n}", None]


async def test_session_uses_configured_store(settings: object) -> None:
    from aixyz_sessions import get_store

    async with payer_context("0xconf") as session:
        assert session is not None
        assert session.store is get_store()
