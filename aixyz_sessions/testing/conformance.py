"""``StoreConformance``: the whole session-store contract as a pytest class.

Checking a custom store
-----------------------

Subclass :class:`~aixyz_sessions.stores.base.SessionStore` and implement, as
coroutines::

    async def get(self, payer, key) -> str | None
    async def set(self, payer, key, value, *, ttl_ms=None) -> None
    async def delete(self, payer, key) -> bool
    async def list(self, payer, *, prefix, cursor, limit, keys_only) -> ListResult

The batch methods ``get_many``, ``set_many`` and ``delete_many`` are optional
(the base class falls back to one call per key), and so is ``close()``
(release connections). Build cursors with ``self.encode_cursor(payer,
last_key)`` and read them back with ``self.decode_cursor(payer, cursor)``.
``list_payers`` is optional too (there is no fallback): implement it and its
tests run, with cursors from ``self.encode_payer_cursor(last_payer)`` and
``self.decode_payer_cursor(cursor)``; leave it out and they are skipped,
saying so.
Then subclass ``StoreConformance`` in a test module and say how to build your
store::

    from aixyz_sessions.testing import StoreConformance

    class TestMyStore(StoreConformance):
        def make_store(self, clock, **options):
            return MyStore(clock=clock, **options)

``make_store`` is called for every store a test needs and may be a coroutine
function. ``options`` may hold ``ttl_ms`` (the store's default TTL) and
``max_value_bytes``; pass them to your constructor (``SessionStore.__init__``
takes both). ``clock`` is a :class:`ManualClock`: a callable returning the
current time in milliseconds, which the test moves forward with
``clock.advance(ms)`` instead of sleeping. If your store can read its time from
such a callable, pass it on and the TTL tests run instantly; if it cannot (a
server keeps time, like Redis), set ``clock_controlled = False`` and they
really sleep, in units of ``ttl_unit_ms``. Override ``cleanup_store`` to drop
what a test left behind (default: ``await store.close()``). Every test uses
fresh random payer ids, so a persistent backend needs no emptying between
runs.

The tests need no pytest plugin: each runs its own event loop. A failing test
says which rule broke: ``AssertionError: contract rule broken: <rule>: <what
the store did>``.

The contract
------------

Every method is a coroutine; ``payer`` is an opaque id string.

Arguments
    A key is a ``str`` of 1 to 512 UTF-8 bytes; a value is a ``str`` of at most
    ``max_value_bytes`` UTF-8 bytes (1 MiB unless the store is configured
    otherwise). Neither may contain NUL (``"\\x00"``) or be unencodable as
    UTF-8 (a lone surrogate). A wrong type raises ``TypeError``; an empty or
    oversized key, an oversized value, NUL, a negative ``ttl_ms`` or ``limit``
    raise ``SessionArgumentError`` (a ``ValueError``) whose message names the
    limit. The ``SessionStore`` base class makes these checks before the
    subclass's method runs. A refused call writes nothing; a refused batch
    writes none of its entries. ``prefix`` is literal text, never a pattern:
    ``%``, ``_``, ``*``, ``[`` and ``\\`` match only themselves.

TTL
    ``ttl_ms=None`` takes the store's default (3,600,000 ms unless the store
    is built with ``ttl_ms``); ``0`` never expires; a positive ``ttl_ms``
    expires that long after the entry's last write or read. Expiry slides:
    ``get`` and ``get_many`` refresh an entry with its own TTL, ``list`` does
    not; overwriting an entry replaces its TTL. An expired entry is gone for
    every purpose: ``get`` and ``get_many`` give ``None``, ``list`` leaves it
    out, ``delete`` returns ``False`` and ``delete_many`` does not count it.

Listing
    ``list(payer, *, prefix=None, cursor=None, limit=None, keys_only=False)``
    returns ``ListResult(entries: dict[str, str], cursor: str | None)``, the
    entries in ascending key order by code point (Python's ``sorted``).
    ``prefix`` keeps the keys that start with it. ``limit`` ``None`` or ``0``
    returns everything; any positive int is accepted (a huge one is clamped,
    never a backend error). ``cursor`` is present only when more entries
    remain; it is opaque: URL-safe base64 text (as ``encode_cursor`` makes)
    showing neither the payer nor any key in clear, raw or decoded. The page
    a cursor opens holds exactly the live keys after the last key already
    returned, so keys deleted, expired or added between pages never make an
    entry go missing or come twice. A cursor the store cannot decode
    (garbage, tampered, or made for another payer) raises ``ValueError``
    naming ``cursor``. ``keys_only=True`` gives the same keys, each with the
    value ``""``.

Isolation
    Nothing a store returns for payer A ever came from payer B, and nothing
    done for payer B changes A's entries, whatever key, prefix or cursor is
    passed, even when one payer id is a prefix of the other.

Listing payers (optional)
    ``list_payers(*, prefix=None, cursor=None, limit=None)`` returns
    ``PayerPage(payers: list[str], cursor: str | None)``: the payer ids the
    store holds entries for, each once, in ascending code-point order, paged
    like ``list``: ``prefix`` is literal, ``limit`` ``None``/``0`` means all
    and any positive int is served, a negative one raises ``ValueError``;
    the cursor is opaque, present only when more payers remain, and the
    next page holds exactly the payers after the last one returned; a
    cursor the store cannot decode (a ``list`` cursor included) raises
    ``ValueError`` naming ``cursor``. A payer with a live entry is never
    left out; a payer whose last entry was deleted is not named; one whose
    entries expired may be named for a while, but not after
    ``purge_expired()``.

Batches
    ``get_many(payer, keys) -> dict[str, str | None]`` answers every key asked
    (``None`` when absent); ``set_many(payer, entries, *, ttl_ms=None)``
    writes all entries with the same TTL; ``delete_many(payer, keys) -> int``
    counts the live entries removed (a key repeated counts once). A batch
    holds at most ``max_batch`` keys (1000 by default): more raise
    ``ValueError`` naming the batch limit. Empty batches are fine.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import inspect
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from ..stores.base import ListResult, PayerPage, SessionStore
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


# -- failure messages -----------------------------------------------------------
# The kit's own asserts are not rewritten by pytest (it is not a test module),
# so a bare ``assert`` would fail with an empty AssertionError: every check
# raises one naming the rule instead. Raising explicitly also keeps the checks
# under ``python -O``, which strips ``assert`` statements.


def _show(value: object, width: int = 300) -> str:
    """``repr`` cut to ``width`` characters: values under test may be 1 MiB."""
    text = repr(value)
    if len(text) <= width:
        return text
    return f"{text[: width - 40]}...{text[-20:]} ({len(text)} characters)"


def _broken(rule: str, detail: str) -> AssertionError:
    return AssertionError(f"contract rule broken: {rule}: {detail}")


def _expect(condition: object, rule: str, detail: str) -> None:
    """Fail, naming ``rule``, unless ``condition`` is true."""
    __tracebackhide__ = True
    if not condition:
        raise _broken(rule, detail)


def _expect_equal(got: object, want: object, rule: str, call: str) -> None:
    """Fail, naming ``rule``, unless ``got == want`` (``call`` says where ``got`` came from)."""
    __tracebackhide__ = True
    if not got == want:
        raise _broken(rule, f"{call}: got {_show(got)}, expected {_show(want)}")


def _expect_is(got: object, want: object, rule: str, call: str) -> None:
    """Fail, naming ``rule``, unless ``got is want`` (``None``, ``True`` or ``False``)."""
    __tracebackhide__ = True
    if got is not want:
        raise _broken(rule, f"{call}: got {_show(got)}, expected {want!r}")


@contextlib.contextmanager
def _raises(
    expected: type[Exception], rule: str, call: str, *, match: str | None = None
) -> Iterator[None]:
    """``pytest.raises(expected, match=match)`` whose failures name ``rule``."""
    __tracebackhide__ = True
    try:
        with pytest.raises(expected, match=match):
            yield
    except pytest.fail.Exception:  # pytest's "DID NOT RAISE"
        raise _broken(rule, f"{call} raised nothing, expected {expected.__name__}") from None
    except Exception as exc:
        # pytest reports a message not matching ``match`` as an AssertionError
        # raised while handling the expected exception.
        raised = exc.__context__
        if isinstance(exc, AssertionError) and isinstance(raised, expected):
            detail = (
                f"{call} raised {type(raised).__name__}({_show(str(raised))}),"
                f" whose message does not mention {match!r}"
            )
            raise _broken(rule, detail) from raised
        detail = (
            f"{call} raised {type(exc).__name__}({_show(str(exc))}), expected {expected.__name__}"
        )
        raise _broken(rule, detail) from exc


@contextlib.contextmanager
def _accepts(rule: str, call: str) -> Iterator[None]:
    """Fail, naming ``rule``, if the block raises: for calls the contract must accept."""
    __tracebackhide__ = True
    try:
        yield
    except Exception as exc:
        raise _broken(rule, f"{call} raised {type(exc).__name__}({_show(str(exc))})") from exc


# Rules checked in several places.
_CURSOR_WHEN_MORE = "list(): a page with more entries after it must carry a cursor"
_ORDER = "list(): pages must come in ascending code-point key order"
_NOTHING_WRITTEN = "validation: a refused call must write nothing"
_ISOLATED = (
    "isolation: nothing returned or changed for one payer may involve another payer's entries"
)
_EXPIRED_INVISIBLE = "TTL: an entry must be invisible to get() once its ttl_ms has passed"
_TTL_ZERO = "TTL: an entry set with ttl_ms=0 must never expire"
_PAYER_ORDER = "list_payers(): payers must come once each, in ascending code-point order"
_PAYER_CURSOR_WHEN_MORE = "list_payers(): a page with more payers after it must carry a cursor"
_PAYER_LIVE = "list_payers(): a payer with a live entry must always be listed"


class StoreConformance:
    """The store contract of the module docstring, run against the store ``make_store`` builds."""

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
        _expect(
            isinstance(store, SessionStore),
            "make_store() must return a SessionStore (or an awaitable of one)",
            f"it returned {store!r}",
        )
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
            _expect(
                len(pages) < 10_000,
                "list(): paging must end with a page that carries no cursor",
                f"still getting cursors after {len(pages)} pages of list({kw})",
            )

    async def payer_listing_store(self, **options: Any) -> SessionStore:
        """A new store, or skip the test if it does not implement ``list_payers``."""
        store = await self.new_store(**options)
        if not store.supports_list_payers:
            pytest.skip(
                f"{type(store).__name__} does not implement list_payers(), which is optional"
            )
        return store

    @staticmethod
    async def payer_pages(store: SessionStore, **kw: Any) -> list[PayerPage]:
        pages: list[PayerPage] = []
        cursor = None
        while True:
            page = await store.list_payers(cursor=cursor, **kw)
            pages.append(page)
            if page.cursor is None:
                return pages
            cursor = page.cursor
            _expect(
                len(pages) < 10_000,
                "list_payers(): paging must end with a page that carries no cursor",
                f"still getting cursors after {len(pages)} pages of list_payers({kw})",
            )

    async def listed(self, store: SessionStore, prefix: str) -> list[str]:
        """Every payer ``list_payers(prefix=prefix)`` names, in one page (no cursor)."""
        page = await store.list_payers(prefix=prefix)
        _expect(
            page.cursor is None,
            "list_payers(): without a limit, every payer must come in one page, no cursor",
            f"list_payers(prefix={prefix!r}) gave the cursor {page.cursor!r}",
        )
        return page.payers

    # -- CRUD -------------------------------------------------------------------

    @_case
    async def test_get_missing_is_none(self) -> None:
        """get() of a key that was never set returns None."""
        store = await self.new_store()
        _expect_is(
            await store.get(new_payer(), "nothing"),
            None,
            "get(): a key that was never set must read as None",
            "get(payer, 'nothing') on an empty store",
        )

    @_case
    async def test_set_get_overwrite_delete(self) -> None:
        """set() stores and overwrites; delete() removes and says whether a live entry existed."""
        store, payer = await self.new_store(), new_payer()
        await store.set(payer, "k", "v1")
        _expect_equal(
            await store.get(payer, "k"),
            "v1",
            "set/get: get() must return the value set() stored",
            "get(payer, 'k') after set(payer, 'k', 'v1')",
        )
        await store.set(payer, "k", "v2")
        _expect_equal(
            await store.get(payer, "k"),
            "v2",
            "set(): setting an existing key must replace its value",
            "get(payer, 'k') after set(payer, 'k', 'v2')",
        )
        _expect_is(
            await store.delete(payer, "k"),
            True,
            "delete(): must return True when it removed a live entry",
            "delete(payer, 'k') of a live entry",
        )
        _expect_is(
            await store.get(payer, "k"),
            None,
            "delete(): a deleted key must read as None",
            "get(payer, 'k') after delete(payer, 'k')",
        )
        _expect_is(
            await store.delete(payer, "k"),
            False,
            "delete(): must return False when the key holds no live entry",
            "a second delete(payer, 'k')",
        )
        _expect_is(
            await store.delete(payer, "never"),
            False,
            "delete(): must return False when the key holds no live entry",
            "delete(payer, 'never') of a key never set",
        )

    @_case
    async def test_empty_value_and_unicode(self) -> None:
        """The empty string is a value like any other; any Unicode key or value round-trips."""
        store, payer = await self.new_store(), new_payer()
        await store.set(payer, "empty", "")
        _expect_equal(
            await store.get(payer, "empty"),
            "",
            "values: the empty string must be stored and read back as ''",
            "get(payer, 'empty') after set(payer, 'empty', '')",
        )
        _expect_equal(
            await self.all_entries(store, payer),
            {"empty": ""},
            "values: list() must return an entry whose value is '' (not drop it)",
            "list(payer).entries",
        )
        key, value = "clé 🔑 ключ", "valeur ✓ 值 \U0001f600\n\t\"'\\"
        await store.set(payer, key, value)
        _expect_equal(
            await store.get(payer, key),
            value,
            "keys and values: any Unicode text must round-trip unchanged",
            f"get(payer, {key!r})",
        )

    @_case
    async def test_size_limits_are_inclusive(self) -> None:
        """A key of exactly 512 UTF-8 bytes and a value of exactly 1 MiB are accepted."""
        store, payer = await self.new_store(), new_payer()
        longest_key = "é" * (MAX_KEY_BYTES // 2)  # 512 UTF-8 bytes
        rule = "keys: a key of exactly 512 UTF-8 bytes must be accepted"
        with _accepts(rule, "set(payer, <512-byte key>, 'x')"):
            await store.set(payer, longest_key, "x")
        _expect_equal(await store.get(payer, longest_key), "x", rule, "get(payer, <512-byte key>)")
        biggest = "v" * DEFAULT_MAX_VALUE_BYTES
        rule = "values: a value of exactly max_value_bytes (1 MiB by default) must be accepted"
        with _accepts(rule, "set(payer, 'big', <1 MiB value>)"):
            await store.set(payer, "big", biggest)
        _expect_equal(await store.get(payer, "big"), biggest, rule, "get(payer, 'big')")

    @_case
    async def test_configured_value_limit(self) -> None:
        """max_value_bytes=64 accepts a 64-byte value and refuses 65 bytes, naming 64."""
        store, payer = await self.new_store(max_value_bytes=64), new_payer()
        with _accepts(
            "values: a value of exactly max_value_bytes must be accepted",
            "set(payer, 'k', <64-byte value>) with max_value_bytes=64",
        ):
            await store.set(payer, "k", "é" * 32)
        with _raises(
            ValueError,
            "values: a value over max_value_bytes must raise ValueError naming the limit",
            "set(payer, 'k2', <65-byte value>) with max_value_bytes=64",
            match="64",
        ):
            await store.set(payer, "k2", "é" * 32 + "x")
        _expect_is(
            await store.get(payer, "k2"),
            None,
            _NOTHING_WRITTEN,
            "get(payer, 'k2') after the refused set()",
        )

    # -- validation writes nothing -------------------------------------------

    @_case
    async def test_wrong_types_raise_type_error(self) -> None:
        """An argument of the wrong type raises TypeError and writes nothing."""
        store, payer = await self.new_store(), new_payer()
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("set(payer, 1, 'v')", lambda: store.set(payer, 1, "v")),  # type: ignore[arg-type]
            ("set(payer, b'k', 'v')", lambda: store.set(payer, b"k", "v")),  # type: ignore[arg-type]
            ("set(payer, 'k', 1)", lambda: store.set(payer, "k", 1)),  # type: ignore[arg-type]
            ("set(payer, 'k', b'v')", lambda: store.set(payer, "k", b"v")),  # type: ignore[arg-type]
            ("set(payer, 'k', None)", lambda: store.set(payer, "k", None)),  # type: ignore[arg-type]
            (
                "set(payer, 'k', 'v', ttl_ms='10')",
                lambda: store.set(payer, "k", "v", ttl_ms="10"),  # type: ignore[arg-type]
            ),
            (
                "set(payer, 'k', 'v', ttl_ms=1.5)",
                lambda: store.set(payer, "k", "v", ttl_ms=1.5),  # type: ignore[arg-type]
            ),
            ("set(None, 'k', 'v')", lambda: store.set(None, "k", "v")),  # type: ignore[arg-type]
            ("get(payer, None)", lambda: store.get(payer, None)),  # type: ignore[arg-type]
            ("delete(payer, 3)", lambda: store.delete(payer, 3)),  # type: ignore[arg-type]
            ("list(payer, limit='3')", lambda: store.list(payer, limit="3")),  # type: ignore[arg-type]
            ("list(payer, prefix=3)", lambda: store.list(payer, prefix=3)),  # type: ignore[arg-type]
            ("list(payer, cursor=3)", lambda: store.list(payer, cursor=3)),  # type: ignore[arg-type]
            (
                "set_many(payer, {'k': 1})",
                lambda: store.set_many(payer, {"k": 1}),  # type: ignore[dict-item]
            ),
            (
                "set_many(payer, [('k', 'v')])",
                lambda: store.set_many(payer, [("k", "v")]),  # type: ignore[arg-type]
            ),
            ("get_many(payer, 'key')", lambda: store.get_many(payer, "key")),
            ("delete_many(payer, [1])", lambda: store.delete_many(payer, [1])),  # type: ignore[list-item]
        ]
        for call, make_call in calls:
            with _raises(
                TypeError, "types: an argument of the wrong type must raise TypeError", call
            ):
                await make_call()
        _expect_equal(
            (await store.list(payer)).entries,
            {},
            _NOTHING_WRITTEN,
            "list(payer).entries after the refused calls",
        )

    @_case
    async def test_bad_values_raise_value_error_naming_the_limit(self) -> None:
        """Bad keys, values, ttl_ms or limit raise ValueError naming the limit, writing nothing."""
        store, payer = await self.new_store(), new_payer()
        with _raises(
            ValueError,
            "keys: an empty key must raise ValueError naming the 512-byte limit",
            "set(payer, '', 'v')",
            match="512",
        ):
            await store.set(payer, "", "v")
        with _raises(
            ValueError,
            "keys: a key over 512 UTF-8 bytes must raise ValueError naming the limit",
            "set(payer, <513-byte key>, 'v')",
            match="512",
        ):
            await store.set(payer, "é" * 256 + "x", "v")  # 513 bytes
        with _raises(
            ValueError,
            "values: a value over max_value_bytes must raise ValueError naming the limit",
            "set(payer, 'k', <1 MiB + 1 byte value>)",
            match=str(DEFAULT_MAX_VALUE_BYTES),
        ):
            await store.set(payer, "k", "v" * (DEFAULT_MAX_VALUE_BYTES + 1))
        with _raises(
            ValueError,
            "TTL: a negative ttl_ms must raise ValueError naming ttl_ms",
            "set(payer, 'k', 'v', ttl_ms=-1)",
            match="ttl_ms",
        ):
            await store.set(payer, "k", "v", ttl_ms=-1)
        with _raises(
            ValueError,
            "list(): a negative limit must raise ValueError naming limit",
            "list(payer, limit=-1)",
            match="limit",
        ):
            await store.list(payer, limit=-1)
        with _raises(
            ValueError,
            "keys: a key containing NUL must raise ValueError",
            "set(payer, 'k\\x00', 'v')",
        ):
            await store.set(payer, "k\x00", "v")
        with _raises(
            ValueError,
            "values: a value containing NUL must raise ValueError",
            "set(payer, 'k', 'v\\x00')",
        ):
            await store.set(payer, "k", "v\x00")
        with _raises(
            ValueError,
            "keys: a key that is not valid UTF-8 (a lone surrogate) must raise ValueError",
            "set(payer, '\\ud800', 'v')",
        ):
            await store.set(payer, "\ud800", "v")
        _expect_equal(
            (await store.list(payer)).entries,
            {},
            _NOTHING_WRITTEN,
            "list(payer).entries after the refused calls",
        )

    @_case
    async def test_failed_batch_writes_nothing(self) -> None:
        """A refused batch writes none of its entries; over max_batch keys raises ValueError."""
        store, payer = await self.new_store(), new_payer()
        with _raises(
            ValueError,
            "batch: set_many() with one invalid key must raise ValueError",
            "set_many(payer, {'a': '1', 'b': '2', '': '3'})",
        ):
            await store.set_many(payer, {"a": "1", "b": "2", "": "3"})
        with _raises(
            TypeError,
            "batch: set_many() with one value of the wrong type must raise TypeError",
            "set_many(payer, {'a': '1', 'b': 2})",
        ):
            await store.set_many(payer, {"a": "1", "b": 2})  # type: ignore[dict-item]
        with _raises(
            ValueError,
            "batch: more than max_batch keys must raise ValueError naming the batch limit",
            f"set_many(payer, <{store.max_batch + 1} entries>)",
            match="batch",
        ):
            await store.set_many(payer, {f"k{i}": "v" for i in range(store.max_batch + 1)})
        with _raises(
            ValueError,
            "batch: more than max_batch keys must raise ValueError naming the batch limit",
            f"get_many(payer, <{store.max_batch + 1} keys>)",
            match="batch",
        ):
            await store.get_many(payer, [f"k{i}" for i in range(store.max_batch + 1)])
        _expect_equal(
            (await store.list(payer)).entries,
            {},
            "batch: a refused set_many() must write none of its entries, not even the valid ones",
            "list(payer).entries after the refused batches",
        )

    # -- isolation ----------------------------------------------------------------

    @_case
    async def test_payers_are_isolated(self) -> None:
        """No read, list or delete for one payer involves another's entries, prefix ids included."""
        store = await self.new_store()
        a = new_payer()
        b = a + "0"  # one payer id a prefix of the other must not matter
        await store.set(a, "shared", "from a")
        await store.set(a, "only-a", "secret")
        await store.set(b, "shared", "from b")
        # A and B below: B's id is A's id + "0".
        _expect_equal(await store.get(a, "shared"), "from a", _ISOLATED, "get(A, 'shared')")
        _expect_equal(await store.get(b, "shared"), "from b", _ISOLATED, "get(B, 'shared')")
        _expect_is(await store.get(b, "only-a"), None, _ISOLATED, "get(B, 'only-a')")
        _expect_equal(
            await self.all_entries(store, b), {"shared": "from b"}, _ISOLATED, "list(B).entries"
        )
        _expect_equal(
            await self.all_entries(store, b, prefix="only"),
            {},
            _ISOLATED,
            "list(B, prefix='only').entries",
        )
        _expect_equal(
            await store.get_many(b, ["only-a", "shared"]),
            {"only-a": None, "shared": "from b"},
            _ISOLATED,
            "get_many(B, ['only-a', 'shared'])",
        )
        _expect_is(await store.delete(b, "only-a"), False, _ISOLATED, "delete(B, 'only-a')")
        _expect_equal(
            await store.delete_many(b, ["only-a"]), 0, _ISOLATED, "delete_many(B, ['only-a'])"
        )
        _expect_equal(
            await store.get(a, "only-a"),
            "secret",
            _ISOLATED,
            "get(A, 'only-a') after delete(B, 'only-a') and delete_many(B, ['only-a'])",
        )
        await store.delete(b, "shared")
        _expect_equal(
            await store.get(a, "shared"),
            "from a",
            _ISOLATED,
            "get(A, 'shared') after delete(B, 'shared')",
        )

    @_case
    async def test_cursor_of_one_payer_is_refused_for_another(self) -> None:
        """A cursor made for one payer raises ValueError when another payer passes it."""
        store, a, b = await self.new_store(), new_payer(), new_payer()
        await store.set_many(a, {"k1": "1", "k2": "2", "k3": "3"})
        await store.set_many(b, {"k1": "x", "k2": "y", "k3": "z"})
        page = await store.list(a, limit=1)
        _expect(
            page.cursor is not None, _CURSOR_WHEN_MORE, f"list(A, limit=1) of 3 entries gave {page}"
        )
        with _raises(
            ValueError,
            "isolation: a cursor made for payer A must raise ValueError naming 'cursor' "
            "when payer B passes it",
            "list(B, cursor=<cursor of payer A>)",
            match="cursor",
        ):
            await store.list(b, cursor=page.cursor)

    # -- TTL --------------------------------------------------------------------

    @_case
    async def test_default_ttl_expires(self) -> None:
        """ttl_ms=None takes the store's default TTL; once it passes the entry is gone."""
        u = self.unit
        store, payer = await self.new_store(ttl_ms=2 * u), new_payer()
        await store.set(payer, "k", "v")
        await self.elapse(3 * u)
        what = f"on a store with default ttl_ms={2 * u}, {3 * u} ms after set(payer, 'k', 'v')"
        _expect_is(
            await store.get(payer, "k"),
            None,
            f"{_EXPIRED_INVISIBLE} (ttl_ms=None means the store's default)",
            f"get(payer, 'k') {what}",
        )
        _expect_equal(
            await self.all_entries(store, payer),
            {},
            "TTL: an expired entry must be invisible to list()",
            f"list(payer).entries {what}",
        )
        _expect_is(
            await store.delete(payer, "k"),
            False,
            "TTL: delete() of an expired entry must return False",
            f"delete(payer, 'k') {what}",
        )

    @_case
    async def test_ttl_zero_never_expires(self) -> None:
        """ttl_ms=0 never expires, whether given to set() or set_many()."""
        u = self.unit
        store, payer = await self.new_store(ttl_ms=u), new_payer()
        await store.set(payer, "forever", "v", ttl_ms=0)
        await store.set_many(payer, {"also": "w"}, ttl_ms=0)
        await self.elapse(3 * u)
        what = f"{3 * u} ms later, on a store with default ttl_ms={u}"
        _expect_equal(
            await store.get(payer, "forever"),
            "v",
            _TTL_ZERO,
            f"get(payer, 'forever') after set(..., ttl_ms=0) {what}",
        )
        _expect_equal(
            await self.all_entries(store, payer),
            {"also": "w", "forever": "v"},
            _TTL_ZERO,
            f"list(payer).entries after set() and set_many() with ttl_ms=0 {what}",
        )

    @_case
    async def test_store_default_ttl_zero_means_never(self) -> None:
        """On a store whose default TTL is 0, entries set with ttl_ms=None never expire."""
        u = self.unit
        store, payer = await self.new_store(ttl_ms=0), new_payer()
        await store.set(payer, "k", "v")
        await self.elapse(3 * u)
        _expect_equal(
            await store.get(payer, "k"),
            "v",
            "TTL: on a store whose default ttl_ms is 0, set() with ttl_ms=None must never expire",
            f"get(payer, 'k') {3 * u} ms after set(payer, 'k', 'v')",
        )

    @_case
    async def test_per_key_ttl_overrides_default(self) -> None:
        """An explicit ttl_ms overrides the store's default TTL."""
        u = self.unit
        store, payer = await self.new_store(ttl_ms=10 * u), new_payer()
        await store.set(payer, "short", "v", ttl_ms=u)
        await store.set(payer, "default", "v")
        await self.elapse(3 * u)
        rule = "TTL: an explicit ttl_ms must override the store's default"
        _expect_is(
            await store.get(payer, "short"),
            None,
            rule,
            f"get(payer, 'short') {3 * u} ms after set with ttl_ms={u} (store default {10 * u})",
        )
        _expect_equal(
            await store.get(payer, "default"),
            "v",
            "TTL: ttl_ms=None must take the store's default TTL",
            f"get(payer, 'default') {3 * u} ms after set with ttl_ms=None (store default {10 * u})",
        )

    @_case
    async def test_get_slides_expiry_with_the_entry_ttl(self) -> None:
        """get() refreshes an entry's expiry with the entry's own TTL, not the store default."""
        u = self.unit
        store, payer = await self.new_store(ttl_ms=100 * u), new_payer()
        await store.set(payer, "k", "v", ttl_ms=4 * u)
        await store.set(payer, "idle", "v", ttl_ms=4 * u)
        await self.elapse(2 * u)
        _expect_equal(
            await store.get(payer, "k"),  # refreshed: now expires 4u from here
            "v",
            "TTL: an entry must stay readable until its ttl_ms has passed",
            f"get(payer, 'k') {2 * u} ms after set with ttl_ms={4 * u}",
        )
        await self.elapse(3 * u)  # 5u after set, 3u after the read
        _expect_equal(
            await store.get(payer, "k"),
            "v",
            "TTL: get() must refresh the entry's expiry (sliding TTL)",
            f"get(payer, 'k') with ttl_ms={4 * u}, {5 * u} ms after set, {3 * u} ms after a get",
        )
        _expect_is(
            await store.get(payer, "idle"),
            None,
            _EXPIRED_INVISIBLE,
            f"get(payer, 'idle') {5 * u} ms after set with ttl_ms={4 * u}, never read",
        )
        await self.elapse(6 * u)
        _expect_is(
            await store.get(payer, "k"),
            None,
            "TTL: get() must refresh with the entry's own ttl_ms, not the store's default",
            f"get(payer, 'k') with ttl_ms={4 * u} (store default {100 * u}), "
            f"{6 * u} ms after the last get",
        )

    @_case
    async def test_get_many_slides_expiry(self) -> None:
        """get_many() refreshes an entry's expiry like get() does."""
        u = self.unit
        store, payer = await self.new_store(), new_payer()
        await store.set(payer, "k", "v", ttl_ms=4 * u)
        await self.elapse(2 * u)
        _expect_equal(
            await store.get_many(payer, ["k"]),
            {"k": "v"},
            "TTL: an entry must stay readable by get_many() until its ttl_ms has passed",
            f"get_many(payer, ['k']) {2 * u} ms after set with ttl_ms={4 * u}",
        )
        await self.elapse(3 * u)
        _expect_equal(
            await store.get(payer, "k"),
            "v",
            "TTL: get_many() must refresh the entry's expiry (sliding TTL)",
            f"get(payer, 'k') with ttl_ms={4 * u}, {5 * u} ms after set, "
            f"{3 * u} ms after a get_many",
        )

    @_case
    async def test_overwrite_replaces_ttl(self) -> None:
        """Overwriting an entry replaces its TTL."""
        u = self.unit
        store, payer = await self.new_store(), new_payer()
        await store.set(payer, "k", "v", ttl_ms=u)
        await store.set(payer, "k", "w", ttl_ms=0)
        await self.elapse(3 * u)
        _expect_equal(
            await store.get(payer, "k"),
            "w",
            "TTL: overwriting an entry must replace its TTL",
            f"get(payer, 'k') {3 * u} ms after set with ttl_ms={u} then overwritten with ttl_ms=0",
        )

    @_case
    async def test_expired_entries_invisible_everywhere(self) -> None:
        """Expired entries are invisible to list(), get_many(), delete(), delete_many(), paging."""
        u = self.unit
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "c": "3"}, ttl_ms=u)
        await store.set_many(payer, {"b": "2", "d": "4"}, ttl_ms=0)
        await self.elapse(3 * u)
        what = f"{3 * u} ms after 'a' and 'c' were set with ttl_ms={u} ('b', 'd': ttl_ms=0)"
        _expect_equal(
            await self.all_entries(store, payer),
            {"b": "2", "d": "4"},
            "TTL: an expired entry must be invisible to list()",
            f"list(payer).entries {what}",
        )
        _expect_equal(
            await store.get_many(payer, ["a", "b", "c"]),
            {"a": None, "b": "2", "c": None},
            "TTL: an expired entry must read as None in get_many()",
            f"get_many(payer, ['a', 'b', 'c']) {what}",
        )
        _expect_is(
            await store.delete(payer, "a"),
            False,
            "TTL: delete() of an expired entry must return False",
            f"delete(payer, 'a') {what}",
        )
        _expect_equal(
            await store.delete_many(payer, ["c", "d"]),
            1,
            "TTL: delete_many() must not count expired entries",
            f"delete_many(payer, ['c', 'd']) {what}",
        )
        pages = await self.page_through(store, payer, limit=1)
        _expect_equal(
            [p.entries for p in pages],
            [{"b": "2"}],
            "TTL: an expired entry must be invisible to paging with list(limit=...)",
            f"the pages of list(payer, limit=1) {what}, after deleting 'd'",
        )

    # -- ordering, prefix, pagination ----------------------------------------------

    @_case
    async def test_list_is_in_code_point_order(self) -> None:
        """list() returns every entry in ascending code-point key order."""
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
        _expect_equal(
            list(listed),
            sorted(keys),
            f"{_ORDER} (Python's sorted(), not locale collation or UTF-16 order)",
            "the keys of list(payer)",
        )
        _expect_equal(
            listed,
            {k: k.upper() for k in keys},
            "list(): must return every live entry with its value",
            "list(payer).entries",
        )

    @_case
    async def test_prefix_filters_literally(self) -> None:
        """prefix is literal text: '%', '_', '\\' and non-ASCII characters match only themselves."""
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
        rule = (
            "list(): prefix must be matched as literal text, never as a pattern"
            " ('%', '_', '*', '[' and '\\' match only themselves), keys in order"
        )
        for prefix, expected in (
            ("a_", ["a_", "a_b"]),
            ("a%", ["a%c"]),
            ("a\\", ["a\\b"]),
            ("user:", ["user:1", "user:2"]),
            ("é", ["é1", "é2"]),
        ):
            _expect_equal(
                list(await self.all_entries(store, payer, prefix=prefix)),
                expected,
                rule,
                f"the keys of list(payer, prefix={prefix!r})",
            )
        _expect_equal(
            await self.all_entries(store, payer, prefix="zzz"),
            {},
            "list(): a prefix that no key starts with must give no entries",
            "list(payer, prefix='zzz').entries",
        )
        _expect_equal(
            list(await self.all_entries(store, payer, prefix="")),
            sorted(keys),
            "list(): prefix='' must filter nothing",
            "the keys of list(payer, prefix='')",
        )

    @_case
    async def test_pages_cover_everything_once(self) -> None:
        """Paging with a limit returns every entry exactly once, in order, limit entries a page."""
        store, payer = await self.new_store(), new_payer()
        data = {f"key{i:03d}": f"value{i}" for i in range(25)}
        await store.set_many(payer, data)
        pages = await self.page_through(store, payer, limit=10)
        _expect_equal(
            [len(p.entries) for p in pages],
            [10, 10, 5],
            "list(): every page but the last must hold exactly `limit` entries",
            "the page sizes of list(payer, limit=10) over 25 entries",
        )
        merged: dict[str, str] = {}
        for page in pages:
            merged.update(page.entries)
        _expect_equal(
            merged,
            data,
            "list(): paging must return every entry exactly once, with its value",
            "the pages of list(payer, limit=10), merged",
        )
        _expect_equal(list(merged), sorted(data), _ORDER, "the keys of the pages, in turn")

    @_case
    async def test_no_cursor_when_nothing_remains(self) -> None:
        """list() returns a cursor only when more entries remain."""
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {f"k{i:02d}": "v" for i in range(20)})
        first = await store.list(payer, limit=10)
        _expect(
            first.cursor is not None,
            _CURSOR_WHEN_MORE,
            "list(payer, limit=10) of 20 entries gave no cursor",
        )
        rule = "list(): the last page must carry no cursor (cursor=None)"
        second = await store.list(payer, limit=10, cursor=first.cursor)
        _expect(
            len(second.entries) == 10 and second.cursor is None,
            rule,
            f"the second page of list(payer, limit=10) over 20 entries held"
            f" {len(second.entries)} entries and cursor {second.cursor!r}",
        )
        whole = await store.list(payer, limit=20)
        _expect(
            len(whole.entries) == 20 and whole.cursor is None,
            rule,
            f"list(payer, limit=20) over 20 entries held {len(whole.entries)} entries"
            f" and cursor {whole.cursor!r}",
        )
        _expect_equal(
            await store.list(new_payer(), limit=5),
            ListResult({}, None),
            "list(): a payer with no entries must get ListResult({}, None)",
            "list(<new payer>, limit=5)",
        )

    @_case
    async def test_limit_zero_or_none_means_all(self) -> None:
        """limit=None and limit=0 return every entry in one page, with no cursor."""
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {f"k{i:03d}": "v" for i in range(150)})
        for limit in (None, 0):
            page = await store.list(payer, limit=limit)
            _expect(
                len(page.entries) == 150 and page.cursor is None,
                "list(): limit=None or limit=0 must return every entry in one page, no cursor",
                f"list(payer, limit={limit}) over 150 entries held {len(page.entries)} entries"
                f" and cursor {page.cursor!r}",
            )

    @_case
    async def test_any_positive_limit_is_served(self) -> None:
        """Any positive limit, however large, is served (clamped), never a backend error."""
        # Past what a backend's integers hold: served (clamped), never a backend error.
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2"})
        rule = "list(): any positive limit must be accepted (a huge one clamped, never an error)"
        for limit in (2**31, 2**63, 2**64 + 1, 10**100):
            with _accepts(rule, f"list(payer, limit={limit})"):
                page = await store.list(payer, limit=limit)
            _expect_equal(page, ListResult({"a": "1", "b": "2"}, None), rule, f"limit={limit}")
            with _accepts(rule, f"list(payer, limit={limit}, keys_only=True, prefix='b')"):
                keys = await store.list(payer, limit=limit, keys_only=True, prefix="b")
            _expect_equal(
                keys,
                ListResult({"b": ""}, None),
                rule,
                f"list(payer, limit={limit}, keys_only=True, prefix='b')",
            )

    @_case
    async def test_deleted_cursor_key_does_not_lose_the_rest(self) -> None:
        """Deleting a page's last key (and the next) before the next page loses nothing after."""
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {f"k{i}": str(i) for i in range(10)})
        first = await store.list(payer, limit=3)
        _expect_equal(
            list(first.entries),
            ["k0", "k1", "k2"],
            _ORDER,
            "the keys of list(payer, limit=3) over k0..k9",
        )
        await store.delete_many(payer, ["k2", "k3"])  # the cursor key and the next one
        second = await store.list(payer, limit=3, cursor=first.cursor)
        _expect_equal(
            list(second.entries),
            ["k4", "k5", "k6"],
            "list(): the next page must hold exactly the live keys after the last key returned,"
            " even when that key was deleted in between",
            "the keys of the second page after deleting k2 and k3",
        )

    @_case
    async def test_inserts_between_pages(self) -> None:
        """Keys added between pages appear exactly when they sort after the last key returned."""
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"b": "1", "d": "2", "f": "3", "h": "4"})
        first = await store.list(payer, limit=2)
        _expect_equal(list(first.entries), ["b", "d"], _ORDER, "the keys of list(payer, limit=2)")
        await store.set_many(payer, {"a": "new", "c": "new", "e": "new", "i": "new"})
        rest: list[str] = []
        cursor = first.cursor
        while cursor is not None:
            page = await store.list(payer, limit=2, cursor=cursor)
            rest.extend(page.entries)
            cursor = page.cursor
        _expect_equal(
            rest,
            ["e", "f", "h", "i"],
            "list(): the next pages must hold exactly the keys after the last key returned,"
            " including keys added in between",
            "the keys of the later pages after adding a, c, e, i past page ['b', 'd']",
        )

    @_case
    async def test_expired_cursor_key_continues(self) -> None:
        """When a page's last key expires before the next page, listing continues after it."""
        u = self.unit
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "c": "3", "d": "4"}, ttl_ms=0)
        await store.set(payer, "b", "2", ttl_ms=u)
        first = await store.list(payer, limit=2)
        _expect_equal(list(first.entries), ["a", "b"], _ORDER, "the keys of list(payer, limit=2)")
        await self.elapse(3 * u)
        second = await store.list(payer, limit=2, cursor=first.cursor)
        _expect(
            second.entries == {"c": "3", "d": "4"} and second.cursor is None,
            "list(): the next page must hold exactly the live keys after the last key returned,"
            " even when that key has expired in between",
            f"the second page after 'b' expired was {second}",
        )

    @_case
    async def test_cursor_with_prefix(self) -> None:
        """A cursor continues a prefix-filtered listing within that prefix."""
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {f"p:{i}": "v" for i in range(5)} | {"a": "v", "q": "v"})
        pages = await self.page_through(store, payer, prefix="p:", limit=2)
        _expect_equal(
            [list(p.entries) for p in pages],
            [["p:0", "p:1"], ["p:2", "p:3"], ["p:4"]],
            "list(): paging with a prefix must stay within the prefix, in key order",
            "the keys of the pages of list(payer, prefix='p:', limit=2)",
        )

    @_case
    async def test_keys_only(self) -> None:
        """keys_only=True returns the same keys, each with the value '', across pages."""
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2", "c": "3"})
        rule = "list(): keys_only=True must return the same keys, every value ''"
        page = await store.list(payer, keys_only=True, limit=2)
        _expect_equal(
            page.entries, {"a": "", "b": ""}, rule, "list(payer, keys_only=True, limit=2)"
        )
        rest = await store.list(payer, keys_only=True, cursor=page.cursor)
        _expect_equal(rest.entries, {"c": ""}, rule, "the next page of list(keys_only=True)")

    @_case
    async def test_cursor_is_opaque(self) -> None:
        """A cursor shows neither the payer id nor any key in clear, even base64-decoded."""
        store, payer = await self.new_store(), new_payer()
        secret_key = "customer-email@example.com"
        await store.set_many(payer, {secret_key: "1", "zzz": "2"})
        cursor = (await store.list(payer, limit=1)).cursor
        if cursor is None:
            raise _broken(_CURSOR_WHEN_MORE, "list(payer, limit=1) of 2 entries gave no cursor")
        with _accepts(
            "list(): the cursor must be opaque; to look inside it this check base64-decodes it,"
            " so it must be URL-safe base64 text",
            f"decoding the cursor {_show(cursor)}",
        ):
            views = [
                cursor,
                base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("latin-1"),
            ]
        for how, view in zip(("as is", "base64-decoded"), views, strict=True):
            for secret in (secret_key, payer, payer[2:], "customer"):
                _expect(
                    secret not in view,
                    "list(): the cursor must be opaque: neither payer nor key may appear in clear",
                    f"the cursor after {secret_key!r} contains {secret!r} ({how}): {_show(view)}",
                )

    @_case
    async def test_undecodable_cursor_is_value_error(self) -> None:
        """A cursor the store did not make (garbage, forged, tampered) raises ValueError."""
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2"})
        rule = "list(): a cursor the store cannot decode must raise ValueError naming 'cursor'"
        for bad in (
            "garbage",
            "",
            "!!!",
            "AAAA",
            base64.urlsafe_b64encode(b"\x01" * 40).decode(),
            f"{payer}:a",
            "a" * 5000,
        ):
            with _raises(ValueError, rule, f"list(payer, cursor={_show(bad)})", match="cursor"):
                await store.list(payer, cursor=bad)
        good = (await store.list(payer, limit=1)).cursor
        if good is None:
            raise _broken(_CURSOR_WHEN_MORE, "list(payer, limit=1) of 2 entries gave no cursor")
        tampered = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
        with _raises(
            ValueError,
            "list(): a tampered cursor must raise ValueError naming 'cursor'",
            f"list(payer, cursor={_show(tampered)}), one character changed from {_show(good)}",
            match="cursor",
        ):
            await store.list(payer, cursor=tampered)

    # -- batches ------------------------------------------------------------------

    @_case
    async def test_batch_operations(self) -> None:
        """get_many() answers every key; delete_many() counts live entries once; empty is fine."""
        store, payer = await self.new_store(), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2", "c": "3"})
        _expect_equal(
            await store.get_many(payer, ["a", "x", "c"]),
            {"a": "1", "x": None, "c": "3"},
            "batch: get_many() must answer every key asked, None for an absent one",
            "get_many(payer, ['a', 'x', 'c'])",
        )
        _expect_equal(
            await store.get_many(payer, []),
            {},
            "batch: get_many() of no keys must return {}",
            "get_many(payer, [])",
        )
        _expect_equal(
            await store.delete_many(payer, ["a", "x", "a"]),
            1,
            "batch: delete_many() must count the live entries it removed, a repeated key once",
            "delete_many(payer, ['a', 'x', 'a'])",
        )
        _expect_equal(
            await self.all_entries(store, payer),
            {"b": "2", "c": "3"},
            "batch: set_many() must write every entry and delete_many() remove exactly its keys",
            "list(payer).entries",
        )
        with _accepts("batch: an empty batch must be accepted", "set_many(payer, {})"):
            await store.set_many(payer, {})
        _expect_equal(
            await store.delete_many(payer, []),
            0,
            "batch: delete_many() of no keys must return 0",
            "delete_many(payer, [])",
        )

    @_case
    async def test_batch_ttl(self) -> None:
        """set_many() gives every entry it writes its ttl_ms."""
        u = self.unit
        store, payer = await self.new_store(ttl_ms=100 * u), new_payer()
        await store.set_many(payer, {"a": "1", "b": "2"}, ttl_ms=u)
        await store.set(payer, "c", "3")
        await self.elapse(3 * u)
        _expect_equal(
            await self.all_entries(store, payer),
            {"c": "3"},
            "TTL: set_many() must give every entry its ttl_ms",
            f"list(payer).entries {3 * u} ms after set_many(..., ttl_ms={u})",
        )

    # -- listing payers (optional) ----------------------------------------------------
    # Every payer id below starts with a fresh random prefix and every listing
    # filters on it, so a persistent backend holding other data passes too.

    @_case
    async def test_list_payers_once_in_code_point_order(self) -> None:
        """list_payers() names each payer with entries once, in ascending code-point order."""
        store, base = await self.payer_listing_store(), new_payer()
        suffixes = ["b", "a", "aa", "a b", "0", "10", "9", "~", "é", "\uff5a", "😀"]
        payers = [base + suffix for suffix in suffixes]
        for payer in payers:
            await store.set_many(payer, {"k1": "v", "k2": "v", "k3": "v"})
        _expect_equal(
            await self.listed(store, base),
            sorted(payers),
            f"{_PAYER_ORDER} (Python's sorted(), whatever number of keys each holds)",
            f"list_payers(prefix=<base>) over {len(payers)} payers of 3 keys each",
        )
        _expect_equal(
            await store.list_payers(prefix=base + "zzz"),
            PayerPage([], None),
            "list_payers(): a prefix that no payer starts with must give PayerPage([], None)",
            "list_payers(prefix=<base> + 'zzz')",
        )

    @_case
    async def test_list_payers_pages_cover_everyone_once(self) -> None:
        """Paging with limit 1, 2 or 3 names every payer exactly once, in order, limit a page."""
        store, base = await self.payer_listing_store(), new_payer()
        payers = [f"{base}{i:02d}" for i in range(6)]
        for number, payer in enumerate(payers):
            await store.set_many(payer, {f"k{j}": "v" for j in range(1 + number % 3)})
        for limit in (1, 2, 3):
            pages = await self.payer_pages(store, prefix=base, limit=limit)
            _expect_equal(
                [len(page.payers) for page in pages],
                [limit] * (len(payers) // limit),
                "list_payers(): every page must hold exactly `limit` payers, and the last"
                " (full) page must carry no cursor",
                f"the page sizes of list_payers(prefix=<base>, limit={limit}) over 6 payers",
            )
            _expect_equal(
                [payer for page in pages for payer in page.payers],
                payers,
                "list_payers(): paging must name every payer exactly once, in order",
                f"the pages of list_payers(prefix=<base>, limit={limit}), joined",
            )

    @_case
    async def test_list_payers_prefix_is_literal(self) -> None:
        """A payer prefix is literal text: '%', '_', '*', '[' and '\\' match only themselves."""
        store, base = await self.payer_listing_store(), new_payer()
        suffixes = ["a", "a_b", "a%c", "ab", "a\\b", "a*", "a[1]", "b_a"]
        for suffix in suffixes:
            await store.set(base + suffix, "k", "v")
        rule = (
            "list_payers(): prefix must be matched as literal text, never as a pattern"
            " ('%', '_', '*', '[' and '\\' match only themselves), payers in order"
        )
        for tail, expected in (
            ("a_", ["a_b"]),
            ("a%", ["a%c"]),
            ("a\\", ["a\\b"]),
            ("a*", ["a*"]),
            ("a[", ["a[1]"]),
            ("a", ["a", "a%c", "a*", "a[1]", "a\\b", "a_b", "ab"]),
            ("a\x00", []),
        ):
            _expect_equal(
                await self.listed(store, base + tail),
                [base + suffix for suffix in expected],
                rule,
                f"list_payers(prefix=<base> + {tail!r})",
            )

    @_case
    async def test_list_payers_drops_a_payer_whose_entries_were_deleted(self) -> None:
        """A payer whose last entry was deleted is no longer named; one with entries left is."""
        store, base = await self.payer_listing_store(), new_payer()
        one, two, many = base + "1", base + "2", base + "3"
        await store.set(one, "only", "v")
        await store.set_many(two, {"a": "1", "b": "2"})
        await store.set_many(many, {"x": "1", "y": "2"})
        await store.delete(one, "only")
        await store.delete(two, "a")
        await store.delete_many(many, ["x", "y", "never"])
        _expect_equal(
            await self.listed(store, base),
            [two],
            "list_payers(): a payer whose last entry was deleted (delete() or delete_many())"
            " must not be named; a payer with entries left must be",
            "list_payers(prefix=<base>) after emptying payers 1 and 3, and one key of payer 2",
        )
        await store.set(one, "again", "v")
        _expect_equal(
            await self.listed(store, base),
            [one, two],
            _PAYER_LIVE,
            "list_payers(prefix=<base>) after set(<payer 1>, 'again', 'v')",
        )

    @_case
    async def test_list_payers_forgets_expired_payers_after_a_purge(self) -> None:
        """A payer whose entries all expired is not named after purge_expired()."""
        u = self.unit
        store, base = await self.payer_listing_store(), new_payer()
        gone, kept = base + "gone", base + "kept"
        await store.set_many(gone, {"a": "1", "b": "2"}, ttl_ms=u)
        await store.set(kept, "k", "v", ttl_ms=0)
        _expect_equal(
            await self.listed(store, base),
            [gone, kept],
            _PAYER_LIVE,
            "list_payers(prefix=<base>) right after writing both payers",
        )
        await self.elapse(3 * u)
        before = await self.listed(store, base)
        _expect(
            kept in before and set(before) <= {gone, kept},
            _PAYER_LIVE,
            f"list_payers(prefix=<base>) {3 * u} ms after <gone>'s entries expired gave"
            f" {_show(before)} (<kept> never expires)",
        )
        try:
            await store.purge_expired()
        except NotImplementedError:
            return  # without a purge, an expired payer may be named for a while
        _expect_equal(
            await self.listed(store, base),
            [kept],
            "list_payers(): a payer whose entries all expired must not be named after"
            " purge_expired()",
            f"list_payers(prefix=<base>) after purge_expired(), {3 * u} ms after <gone>'s"
            f" entries (ttl_ms={u}) were set",
        )
        _expect_equal(
            await store.list_payers(prefix=base, limit=1),
            PayerPage([kept], None),
            "list_payers(): the last page must carry no cursor, expired payers not counted",
            "list_payers(prefix=<base>, limit=1) after purge_expired()",
        )

    @_case
    async def test_list_payers_cursor_continues_after_changes(self) -> None:
        """The next page holds exactly the payers after the last one returned, whatever changed."""
        store, base = await self.payer_listing_store(), new_payer()
        for name in ("b", "d", "f", "h"):
            await store.set(base + name, "k", "v")
        first = await store.list_payers(prefix=base, limit=2)
        _expect_equal(
            first.payers,
            [base + "b", base + "d"],
            _PAYER_ORDER,
            "list_payers(prefix=<base>, limit=2) over payers b, d, f, h",
        )
        _expect(first.cursor is not None, _PAYER_CURSOR_WHEN_MORE, f"the first page was {first}")
        await store.delete(base + "d", "k")  # the cursor's payer goes away
        for name in ("a", "c", "e", "i"):
            await store.set(base + name, "k", "v")
        rest: list[str] = []
        cursor = first.cursor
        while cursor is not None:
            page = await store.list_payers(prefix=base, limit=2, cursor=cursor)
            rest.extend(page.payers)
            cursor = page.cursor
        _expect_equal(
            rest,
            [base + name for name in ("e", "f", "h", "i")],
            "list_payers(): the next pages must hold exactly the payers after the last one"
            " returned, even when that payer was emptied and others were added in between",
            "the later pages after emptying d and adding a, c, e, i past page [b, d]",
        )

    @_case
    async def test_list_payers_cursor_is_opaque_and_checked(self) -> None:
        """A payer cursor hides the payer; a cursor the store did not make raises ValueError."""
        store, base = await self.payer_listing_store(), new_payer()
        first, second = base + "a", base + "b"
        await store.set_many(first, {"k1": "v", "k2": "v"})
        await store.set(second, "k", "v")
        cursor = (await store.list_payers(prefix=base, limit=1)).cursor
        if cursor is None:
            raise _broken(_PAYER_CURSOR_WHEN_MORE, "list_payers(limit=1) of 2 payers gave none")
        with _accepts(
            "list_payers(): the cursor must be opaque; to look inside it this check"
            " base64-decodes it, so it must be URL-safe base64 text",
            f"decoding the cursor {_show(cursor)}",
        ):
            views = [
                cursor,
                base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("latin-1"),
            ]
        for view in views:
            _expect(
                base[2:] not in view,
                "list_payers(): the cursor must be opaque: no payer id may appear in clear",
                f"the cursor after {first!r} shows it: {_show(view)}",
            )
        rule = "list_payers(): a cursor the store cannot decode must raise ValueError naming cursor"
        list_cursor = (await store.list(first, limit=1)).cursor
        if list_cursor is None:
            raise _broken(_CURSOR_WHEN_MORE, "list(payer, limit=1) of 2 entries gave no cursor")
        tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
        for what, bad in (
            ("'garbage'", "garbage"),
            ("''", ""),
            ("'AAAA'", "AAAA"),
            ("<base64 of 40 bytes>", base64.urlsafe_b64encode(b"\x01" * 40).decode()),
            ("<a payer id>", first),
            ("<5000 characters>", "a" * 5000),
            ("<a list() cursor>", list_cursor),
            ("<a payer cursor with one character changed>", tampered),
        ):
            with _raises(ValueError, rule, f"list_payers(cursor={what})", match="cursor"):
                await store.list_payers(prefix=base, cursor=bad)
        with _raises(
            ValueError,
            "list(): a list_payers() cursor is no list() cursor: it must raise ValueError",
            "list(payer, cursor=<a list_payers() cursor>)",
            match="cursor",
        ):
            await store.list(first, cursor=cursor)

    @_case
    async def test_list_payers_limits_and_argument_types(self) -> None:
        """Any positive limit is served, None/0 mean all, negative is ValueError; types checked."""
        store, base = await self.payer_listing_store(), new_payer()
        payers = [base + "a", base + "b"]
        for payer in payers:
            await store.set(payer, "k", "v")
        rule = (
            "list_payers(): any positive limit must be accepted (a huge one clamped, never an"
            " error), and None or 0 must mean all"
        )
        for limit in (None, 0, 2, 2**31, 2**63, 2**64 + 1, 10**100):
            with _accepts(rule, f"list_payers(prefix=<base>, limit={limit})"):
                page = await store.list_payers(prefix=base, limit=limit)
            _expect_equal(page, PayerPage(payers, None), rule, f"limit={limit}")
        with _raises(
            ValueError,
            "list_payers(): a negative limit must raise ValueError naming limit",
            "list_payers(limit=-1)",
            match="limit",
        ):
            await store.list_payers(limit=-1)
        for call, bad in (
            ("list_payers(limit='3')", {"limit": "3"}),
            ("list_payers(limit=1.5)", {"limit": 1.5}),
            ("list_payers(prefix=3)", {"prefix": 3}),
            ("list_payers(cursor=3)", {"cursor": 3}),
        ):
            with _raises(
                TypeError, "types: an argument of the wrong type must raise TypeError", call
            ):
                await store.list_payers(**bad)

    @_case
    async def test_list_payers_keeps_payers_sharing_a_prefix_apart(self) -> None:
        """Payers whose ids share a prefix (0xab, 0xabc) are listed and dropped independently."""
        store = await self.payer_listing_store()
        short = new_payer()
        long = short + "c"  # the shorter id is a prefix of the longer one
        await store.set(short, "k", "v")
        await store.set(long, "k", "v")
        rule = (
            f"{_ISOLATED}: a payer id that is a prefix of another must be listed and dropped"
            " on its own"
        )
        _expect_equal(await self.listed(store, short), [short, long], rule, "prefix=<A>")
        _expect_equal(await self.listed(store, long), [long], rule, "prefix=<A>c")
        await store.delete(short, "k")
        _expect_equal(
            await self.listed(store, short),
            [long],
            rule,
            "list_payers(prefix=<A>) after deleting A's only entry",
        )
        await store.set(short, "k", "v")
        await store.delete(long, "k")
        _expect_equal(
            await self.listed(store, short),
            [short],
            rule,
            "list_payers(prefix=<A>) after deleting <A>c's only entry",
        )
