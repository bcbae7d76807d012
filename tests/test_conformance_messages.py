"""StoreConformance tells a custom store's author which contract rule broke."""

from __future__ import annotations

from typing import Any

import pytest

from aixyz_sessions import ListResult
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
    ],
)
def test_a_broken_store_fails_naming_the_rule(
    store: type[InMemorySessionStore], test: str, rule: str
) -> None:
    with pytest.raises(AssertionError, match="contract rule broken: ") as raised:
        getattr(_case(store), test)()
    assert rule in str(raised.value), str(raised.value)
