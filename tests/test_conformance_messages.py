"""StoreConformance tells a custom store's author which contract rule broke."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aixyz_sessions import ListResult, PayerPage, SessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.testing import StoreConformance
from aixyz_sessions.testing.clock import ManualClock


class ReversedList(InMemorySessionStore):
    """Lists in descending key order: breaks the ordering rule."""

    async def list(self, payer: str, **options: Any) -> ListResult:
        page = await super().list(payer, **options)
        return ListResult(dict(reversed(page.entries.items())), page.cursor)


class NeverExpires(InMemorySessionStore):
    """Ignores TTLs: breaks the expiry rule."""

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        await super().set(payer, key, value, ttl_ms=0)


class LenientCursor(InMemorySessionStore):
    """Treats an undecodable cursor as "from the start": breaks the cursor rule."""

    async def list(self, payer: str, *, cursor: str | None = None, **options: Any) -> ListResult:
        try:
            return await super().list(payer, cursor=cursor, **options)
        except ValueError:
            return await super().list(payer, **options)


class ReversedPayers(InMemorySessionStore):
    """Lists payers in descending order: breaks the payer ordering rule."""

    async def list_payers(self, **options: Any) -> PayerPage:
        page = await super().list_payers(**options)
        return PayerPage(page.payers[::-1], page.cursor)


class NoPayerListing(InMemorySessionStore):
    """Keeps the base class's list_payers: the optional method left out."""

    list_payers = SessionStore.list_payers


def _case(store: type[InMemorySessionStore]) -> StoreConformance:
    class Case(StoreConformance):
        def make_store(self, clock: ManualClock, **options: Any) -> InMemorySessionStore:
            return store(clock=clock, **options)

    return Case()


def test_the_kit_passes_a_correct_store() -> None:
    _case(InMemorySessionStore).test_list_is_in_code_point_order()


@pytest.mark.parametrize(
    ("store", "test", "rule"),
    [
        (ReversedList, "test_list_is_in_code_point_order", "ascending code-point key order"),
        (NeverExpires, "test_default_ttl_expires", "TTL: an entry must be invisible"),
        (LenientCursor, "test_undecodable_cursor_is_value_error", "raised nothing"),
        (
            ReversedPayers,
            "test_list_payers_once_in_code_point_order",
            "list_payers(): payers must come once each, in ascending code-point order",
        ),
    ],
)
def test_a_broken_store_fails_naming_the_rule(
    store: type[InMemorySessionStore], test: str, rule: str
) -> None:
    with pytest.raises(AssertionError, match="contract rule broken: ") as raised:
        getattr(_case(store), test)()
    assert rule in str(raised.value), str(raised.value)


def test_list_payers_is_optional_and_its_cases_skip_saying_so() -> None:
    assert InMemorySessionStore.supports_list_payers is True
    assert InMemorySessionStore().supports_list_payers is True
    assert NoPayerListing.supports_list_payers is False
    assert NoPayerListing().supports_list_payers is False
    with pytest.raises(NotImplementedError, match="NoPayerListing does not list payers"):
        asyncio.run(NoPayerListing().list_payers())
    with pytest.raises(ValueError, match="limit"):  # arguments are still checked first
        asyncio.run(NoPayerListing().list_payers(limit=-1))
    with pytest.raises(pytest.skip.Exception, match="does not implement list_payers"):
        _case(NoPayerListing).test_list_payers_pages_cover_everyone_once()
