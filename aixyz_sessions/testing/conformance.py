"""``StoreConformance``: the whole session-store contract as a pytest class.

Subclass it in a test module and say how to build your store::

    from aixyz_sessions.testing import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self, clock, **options):
            return MyStore(clock=clock, **options)

``options`` may hold ``ttl_ms`` (the store's default TTL) and
``max_value_bytes``; pass them to your constructor. ``clock`` is a
:class:`ManualClock` returning milliseconds: if your store can take a clock,
pass it on and time-dependent tests run instantly; if it cannot (a server
keeps time, like Redis), set ``clock_controlled = False`` and they use short
real sleeps of ``ttl_unit_ms``. ``make_store`` may be a coroutine function.
Override ``cleanup_store`` to drop what a test left behind (default:
``await store.close()``).

The tests need no pytest plugin: each runs its own event loop.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from ..stores.base import ListResult, SessionStore
from ..stores.validation import DEFAULT_MAX_VALUE_BYTES, MAX_KEY_BYTES
from .clock import ManualClock

__all__ = ["ManualClock", "StoreConformance"]

T = TypeVar("T", bound="StoreConformance")


def _case(
    fn: Callable[[T], Coroutine[Any, Any, None]],
) -> Callable[[T], None]:
    """Turn an async test body into a plain test with its own loop and cleanup."""

    @functools.wraps(fn)
    def run(self: T) -> None:
        async def main() -> None:
            self.clock = ManualClock()
            self._stores = []
            try:
                await fn(self)
            finally:
                for store in self._stores:
                    await self.cleanup_store(store)

        asyncio.run(main())

    return run


def new_payer() -> str:
    """A fresh lower-case address, so runs on persistent stores never collide."""
    return "0x" + secrets.token_hex(20)


class StoreConformance:
    """The semantic contract of DESIGN.md, run against the store ``make_store`` builds."""

    #: Whether ``make_store`` hands ``clock`` to the store.
    clock_controlled: bool = True
    #: The TTL unit of time-dependent tests when they must really sleep (ms).
    ttl_unit_ms: int = 250

    clock: ManualClock
    _stores: list[SessionStore]

    # -- for subclasses ------------------------------------------------------

    def make_store(
        self, clock: ManualClock, **options: Any
    ) -> SessionStore | Awaitable[SessionStore]:
        raise NotImplementedError("subclass StoreConformance and define make_store()")

    async def cleanup_store(self, store: SessionStore) -> None:
        await store.close()

    # -- helpers --------------------------------------------------------------

    async def new_store(self, **options: Any) -> SessionStore:
        made = self.make_store(self.clock, **options)
        store = await made if inspect.isawaitable(made) else made
        assert isinstance(store, SessionStore), f"make_store returned {store!r}"
        self._stores.append(store)
        return store

    @property
    def unit(self) -> int:
        return 1000 if self.clock_controlled else self.ttl_unit_ms

    async def elapse(self, ms: float) -> None:
        if self.clock_controlled:
            self.clock.advance(ms)
        else:
            await asyncio.sleep(ms / 1000)

    @staticmethod
    async def all_entries(store: SessionStore, payer: str, **kw: Any) -> dict[str, str]:
        return (await store.list(payer, **kw)).entries

    @staticmethod
    async def page_through(store: SessionStore, payer: str, **kw: Any) -> list[ListResult]:
        pages: list[ListResult] = []
        cursor = None
        while True:
            page = await store.list(payer, cursor=cursor, **kw)
            pages.append(page)
            if page.cursor is None:
                return pages
            cursor = page.cursor
            assert len(pages) < 10_000, "pagination does not end"

    # -- CRUD -------------------------------------------------------------------

    @_case
    async def test_get_missing_is_none(self) -> None:
        store = await self.new_store()
        assert await store.get(new_payer(), "nothing") is None

    @_case
    async def test_set_get_overwrite_delete(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set(payer, "k", "v1")
        assert await store.get(payer, "k") == "v1"
        await store.set(payer, "k", "v2")
        assert await store.get(payer, "k") == "v2"
        assert await store.delete(payer, "k") is True
        assert await store.get(payer, "k") is None
        assert await store.delete(payer, "k") is False
        assert await store.delete(payer, "never") is False

    @_case
    async def test_empty_value_and_unicode(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set(payer, "empty", "")
        assert await store.get(payer, "empty") == ""
        assert (await self.all_entries(store, payer)) == {"empty": ""}
        key, value = "clé 🔑 ключ", "valeur ✓ 值 \U0001f600\n\t\"'\\"
        await store.set(payer, key, value)
        assert await store.get(payer, key) == value

    @_case
    async def test_size_limits_are_inclusive(self) -> None:
        store, payer = await self.new_store(), new_payer()
        longest_key = "é" * (MAX_KEY_BYTES // 2)  # 512 UTF-8 bytes
        await store.set(payer, longest_key, "x")
        assert await store.get(payer, longest_key) == "x"
        biggest = "v" * DEFAULT_MAX_VALUE_BYTES
        await store.set(payer, "big", biggest)
        assert await store.get(payer, "big") == biggest

    @_case
    async def test_configured_value_limit(self) -> None:
        store, payer = await self.new_store(max_value_bytes=64), new_payer()
        await store.set(payer, "k", "é" * 32)
        with pytest.raises(ValueError, match="64"):
            await store.set(payer, "k2", "é" * 32 + "x")
        assert await store.get(payer, "k2") is None

    # -- validation writes nothing -------------------------------------------

    @_case
    async def test_wrong_types_raise_type_error(self) -> None:
        store, payer = await self.new_store(), new_payer()
        for call in (
            lambda: store.set(payer, 1, "v"),  # type: ignore[arg-type]
            lambda: store.set(payer, b"k", "v"),  # type: ignore[arg-type]
            lambda: store.set(payer, "k", 1),  # type: ignore[arg-type]
            lambda: store.set(payer, "k", b"v"),  # type: ignore[arg-type]
            lambda: store.set(payer, "k", None),  # type: ignore[arg-type]
            lambda: store.set(payer, "k", "v", ttl_ms="10"),  # type: ignore[arg-type]
            lambda: store.set(payer, "k", "v", ttl_ms=1.5),  # type: ignore[arg-type]
            lambda: store.set(None, "k", "v"),  # type: ignore[arg-type]
            lambda: store.get(payer, None),  # type: ignore[arg-type]
            lambda: store.delete(payer, 3),  # type: ignore[arg-type]
            lambda: store.list(payer, limit="3"),  # type: ignore[arg-type]
            lambda: store.list(payer, prefix=3),  # type: ignore[arg-type]
            lambda: store.list(payer, cursor=3),  # type: ignore[arg-type]
            lambda: store.set_many(payer, {"k": 1}),  # type: ignore[dict-item]
            lambda: store.set_many(payer, [("k", "v")]),  # type: ignore[arg-type]
            lambda: store.get_many(payer, "key"),
            lambda: store.delete_many(payer, [1]),  # type: ignore[list-item]
        ):
            with pytest.raises(TypeError):
                await call()
        assert (await store.list(payer)).entries == {}

    @_case
    async def test_bad_values_raise_value_error_naming_the_limit(self) -> None:
        store, payer = await self.new_store(), new_payer()
        with pytest.raises(ValueError, match="512"):
            await store.set(payer, "", "v")
        with pytest.raises(ValueError, match="512"):
            await store.set(payer, "é" * 256 + "x", "v")  # 513 bytes
        with pytest.raises(ValueError, match=str(DEFAULT_MAX_VALUE_BYTES)):
            await store.set(payer, "k", "v" * (DEFAULT_MAX_VALUE_BYTES + 1))
        with pytest.raises(ValueError, match="ttl_ms"):
            await store.set(payer, "k", "v", ttl_ms=-1)
        with pytest.raises(ValueError, match="limit"):
            await store.list(payer, limit=-1)
        with pytest.raises(ValueError):
            await store.set(payer, "k\x00", "v")
        with pytest.raises(ValueError):
            await store.set(payer, "k", "v\x00")
        with pytest.raises(ValueError):
            await store.set(payer, "\ud800", "v")
        assert (await store.list(payer)).entries == {}

    @_case
    async def test_failed_batch_writes_nothing(self) -> None:
        store, payer = await self.new_store(), new_payer()
        with pytest.raises(ValueError):
            await store.set_many(payer, {"a": "1", "b": "2", "": "3"})
        with pytest.raises(TypeError):
            await store.set_many(payer, {"a": "1", "b": 2})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="batch"):
            await store.set_many(payer, {f"k{i}": "v" for i in range(store.max_batch + 1)})
        with pytest.raises(ValueError, match="batch"):
            await store.get_many(payer, [f"k{i}" for i in range(store.max_batch + 1)])
        assert (await store.list(payer)).entries == {}

    # -- isolation ----------------------------------------------------------------

    @_case
    async def test_payers_are_isolated(self) -> None:
        store = await self.new_store()
        a = new_payer()
        b = a + "0"  # one payer id a prefix of the other must not matter
        await store.set(a, "shared", "from a")
        await store.set(a, "only-a", "secret")
        await store.set(b, "shared", "from b")
        assert await store.get(a, "shared") == "from a"
        assert await store.get(b, "shared") == "from b"
        assert await store.get(b, "only-a") is None
        assert await self.all_entries(store, b) == {"shared": "from b"}
        assert await self.all_entries(store, b, prefix="only") == {}
        assert await store.get_many(b, ["only-a", "shared"]) == {"only-a": None, "shared": "from b"}
        assert await store.delete(b, "only-a") is False
        assert await store.delete_many(b, ["only-a"]) == 0
        assert await store.get(a, "only-a") == "secret"
        await store.delete(b, "shared")
        assert await store.get(a, "shared") == "from a"

    @_case
    async def test_cursor_of_one_payer_is_refused_for_another(self) -> None:
        store, a, b = await self.new_store(), new_payer(), new_payer()
        await store.set_many(a, {"k1": "1", "k2": "2", "k3": "3"})
        await store.set_many(b, {"k1": "x", "k2": "y", "k3": "z"})
        page = await store.list(a, limit=1)
        assert page.cursor is not None
        with pytest.raises(ValueError, match="cursor"):
            await store.list(b, cursor=page.cursor)

    # -- TTL --------------------------------------------------------------------

    @_case
    async def test_default_ttl_expires(self) -> None:
        u = self.unit
        store, payer = await self.new_store(ttl_ms=2 * u), new_payer()
        await store.set(payer, "k", "v")
        await self.elapse(3 * u)
        assert await store.get(payer, "k") is None
        assert await self.all_entries(store, payer) == {}
        assert await store.delete(payer, "k") is False

    @_case
    async def test_ttl_zero_never_expires(self) -> None:
        u = self.unit
        store, payer = await self.new_store(ttl_ms=u), new_payer()
        await store.set(payer, "forever", "v", ttl_ms=0)
        await store.set_many(payer, {"also": "w"}, ttl_ms=0)
        await self.elapse(3 * u)
        assert await store.get(payer, "forever") == "v"
        assert await self.all_entries(store, payer) == {"also": "w", "forever": "v"}

    @_case
    async def test_store_default_ttl_zero_means_never(self) -> None:
        u = self.unit
        store, payer = await self.new_store(ttl_ms=0), new_payer()
        await store.set(payer, "k", "v")
        await self.elapse(3 * u)
        assert await store.get(payer, "k") == "v"

    @_case
    async def test_per_key_ttl_overrides_default(self) -> None:
        u = self.unit
        store, payer = await self.new_store(ttl_ms=10 * u), new_payer()
        await store.set(payer, "short", "v", ttl_ms=u)
        await store.set(payer, "default", "v")
        await self.elapse(3 * u)
        assert await store.get(payer, "short") is None
        assert await store.get(payer, "default") == "v"

    @_case
    async def test_get_slides_expiry_with_the_entry_ttl(self) -> None:
        u = self.unit
        store, payer = await self.new_store(ttl_ms=100 * u), new_payer()
        await store.set(payer, "k", "v", ttl_ms=4 * u)
        await store.set(payer, "idle", "v", ttl_ms=4 * u)
        await self.elapse(2 * u)
        assert await store.get(payer, "k") == "v"  # refreshed: now expires 4u from here
        await self.elapse(3 * u)  # 5u after set, 3u after the read
        assert await store.get(payer, "k") == "v"
        assert await store.get(payer, "idle") is None
        await self.elapse(6 * u)
        assert await store.get(payer, "k") is None

    @_case
    async def test_get_many_slides_expiry(self) -> None:
        u = self.unit
        store, payer = await self.new_store(), new_payer()
        await store.set(payer, "k", "v", ttl_ms=4 * u)
        await self.elapse(2 * u)
        assert await store.get_many(payer, ["k"]) == {"k": "v"}
        await self.elapse(3 * u)
        assert await store.get(payer, "k") == "v"

    @_case
    async def test_overwrite_replaces_ttl(self) -> None:
        u = self.unit
        store, payer = await self.new_store(), new_payer()
        await store.set(payer, "k", "v", ttl_ms=u)
        await store.set(payer, "k", "w", ttl_ms=0)
        await self.elapse(3 * u)
        assert await store.get(payer, "k") == "w"

    @_case
    async def test_expired_entries_invisible_everywhere(self) -> None:
        u = self.unit
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "c": "3"}, ttl_ms=u)
        await store.set_many(payer, {"b": "2", "d": "4"}, ttl_ms=0)
        await self.elapse(3 * u)
        assert await self.all_entries(store, payer) == {"b": "2", "d": "4"}
        assert await store.get_many(payer, ["a", "b", "c"]) == {"a": None, "b": "2", "c": None}
        assert await store.delete(payer, "a") is False
        assert await store.delete_many(payer, ["c", "d"]) == 1
        pages = await self.page_through(store, payer, limit=1)
        assert [p.entries for p in pages] == [{"b": "2"}]

    # -- ordering, prefix, pagination ----------------------------------------------

    @_case
    async def test_list_is_in_code_point_order(self) -> None:
        store, payer = await self.new_store(), new_payer()
        keys = [
            "b",
            "a",
            "B",
            "A",
            "aa",
            "a b",
            "a_",
            "a%",
            "é",
            "z",
            "\uff5a",  # fullwidth z
            "😀",
            "~",
            "0",
            "10",
            "9",
        ]
        await store.set_many(payer, {k: k.upper() for k in keys})
        listed = await self.all_entries(store, payer)
        assert list(listed) == sorted(keys)
        assert listed == {k: k.upper() for k in keys}

    @_case
    async def test_prefix_filters_literally(self) -> None:
        store, payer = await self.new_store(), new_payer()
        keys = [
            "a",
            "a_b",
            "a%c",
            "ab",
            "a_",
            "a\\b",
            "b_a",
            "user:1",
            "user:2",
            "users",
            "é1",
            "é2",
        ]
        await store.set_many(payer, {k: "v" for k in keys})
        assert list(await self.all_entries(store, payer, prefix="a_")) == ["a_", "a_b"]
        assert list(await self.all_entries(store, payer, prefix="a%")) == ["a%c"]
        assert list(await self.all_entries(store, payer, prefix="a\\")) == ["a\\b"]
        assert list(await self.all_entries(store, payer, prefix="user:")) == ["user:1", "user:2"]
        assert list(await self.all_entries(store, payer, prefix="é")) == ["é1", "é2"]
        assert await self.all_entries(store, payer, prefix="zzz") == {}
        assert list(await self.all_entries(store, payer, prefix="")) == sorted(keys)

    @_case
    async def test_pages_cover_everything_once(self) -> None:
        store, payer = await self.new_store(), new_payer()
        data = {f"key{i:03d}": f"value{i}" for i in range(25)}
        await store.set_many(payer, data)
        pages = await self.page_through(store, payer, limit=10)
        assert [len(p.entries) for p in pages] == [10, 10, 5]
        merged: dict[str, str] = {}
        for page in pages:
            merged.update(page.entries)
        assert merged == data
        assert list(merged) == sorted(data)

    @_case
    async def test_no_cursor_when_nothing_remains(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {f"k{i:02d}": "v" for i in range(20)})
        first = await store.list(payer, limit=10)
        assert first.cursor is not None
        second = await store.list(payer, limit=10, cursor=first.cursor)
        assert len(second.entries) == 10 and second.cursor is None
        whole = await store.list(payer, limit=20)
        assert len(whole.entries) == 20 and whole.cursor is None
        assert (await store.list(new_payer(), limit=5)) == ListResult({}, None)

    @_case
    async def test_limit_zero_or_none_means_all(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {f"k{i:03d}": "v" for i in range(150)})
        for limit in (None, 0):
            page = await store.list(payer, limit=limit)
            assert len(page.entries) == 150 and page.cursor is None

    @_case
    async def test_any_positive_limit_is_served(self) -> None:
        # Past what a backend's integers hold: served (clamped), never a backend error.
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2"})
        for limit in (2**31, 2**63, 2**64 + 1, 10**100):
            page = await store.list(payer, limit=limit)
            assert page == ListResult({"a": "1", "b": "2"}, None), limit
            keys = await store.list(payer, limit=limit, keys_only=True, prefix="b")
            assert keys == ListResult({"b": ""}, None), limit

    @_case
    async def test_deleted_cursor_key_does_not_lose_the_rest(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {f"k{i}": str(i) for i in range(10)})
        first = await store.list(payer, limit=3)
        assert list(first.entries) == ["k0", "k1", "k2"]
        await store.delete_many(payer, ["k2", "k3"])  # the cursor key and the next one
        second = await store.list(payer, limit=3, cursor=first.cursor)
        assert list(second.entries) == ["k4", "k5", "k6"]

    @_case
    async def test_inserts_between_pages(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"b": "1", "d": "2", "f": "3", "h": "4"})
        first = await store.list(payer, limit=2)
        assert list(first.entries) == ["b", "d"]
        await store.set_many(payer, {"a": "new", "c": "new", "e": "new", "i": "new"})
        rest: list[str] = []
        cursor = first.cursor
        while cursor is not None:
            page = await store.list(payer, limit=2, cursor=cursor)
            rest.extend(page.entries)
            cursor = page.cursor
        assert rest == ["e", "f", "h", "i"]

    @_case
    async def test_expired_cursor_key_continues(self) -> None:
        u = self.unit
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "c": "3", "d": "4"}, ttl_ms=0)
        await store.set(payer, "b", "2", ttl_ms=u)
        first = await store.list(payer, limit=2)
        assert list(first.entries) == ["a", "b"]
        await self.elapse(3 * u)
        second = await store.list(payer, limit=2, cursor=first.cursor)
        assert second.entries == {"c": "3", "d": "4"} and second.cursor is None

    @_case
    async def test_cursor_with_prefix(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {f"p:{i}": "v" for i in range(5)} | {"a": "v", "q": "v"})
        pages = await self.page_through(store, payer, prefix="p:", limit=2)
        assert [list(p.entries) for p in pages] == [["p:0", "p:1"], ["p:2", "p:3"], ["p:4"]]

    @_case
    async def test_keys_only(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2", "c": "3"})
        page = await store.list(payer, keys_only=True, limit=2)
        assert page.entries == {"a": "", "b": ""}
        rest = await store.list(payer, keys_only=True, cursor=page.cursor)
        assert rest.entries == {"c": ""}

    @_case
    async def test_cursor_is_opaque(self) -> None:
        store, payer = await self.new_store(), new_payer()
        secret_key = "customer-email@example.com"
        await store.set_many(payer, {secret_key: "1", "zzz": "2"})
        cursor = (await store.list(payer, limit=1)).cursor
        assert cursor is not None
        views = [
            cursor,
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("latin-1"),
        ]
        for view in views:
            for secret in (secret_key, payer, payer[2:], "customer"):
                assert secret not in view

    @_case
    async def test_undecodable_cursor_is_value_error(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2"})
        for bad in (
            "garbage",
            "",
            "!!!",
            "AAAA",
            base64.urlsafe_b64encode(b"\x01" * 40).decode(),
            f"{payer}:a",
            "a" * 5000,
        ):
            with pytest.raises(ValueError, match="cursor"):
                await store.list(payer, cursor=bad)
        good = (await store.list(payer, limit=1)).cursor
        assert good is not None
        tampered = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
        with pytest.raises(ValueError, match="cursor"):
            await store.list(payer, cursor=tampered)

    # -- batches ------------------------------------------------------------------

    @_case
    async def test_batch_operations(self) -> None:
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2", "c": "3"})
        assert await store.get_many(payer, ["a", "x", "c"]) == {"a": "1", "x": None, "c": "3"}
        assert await store.get_many(payer, []) == {}
        assert await store.delete_many(payer, ["a", "x", "a"]) == 1
        assert await self.all_entries(store, payer) == {"b": "2", "c": "3"}
        await store.set_many(payer, {})
        assert await store.delete_many(payer, []) == 0

    @_case
    async def test_batch_ttl(self) -> None:
        u = self.unit
        store, payer = await self.new_store(ttl_ms=100 * u), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2"}, ttl_ms=u)
        await store.set(payer, "c", "3")
        await self.elapse(3 * u)
        assert await self.all_entries(store, payer) == {"c": "3"}
