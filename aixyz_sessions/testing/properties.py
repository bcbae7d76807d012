"""A hypothesis state machine that checks a store against a plain model.

``store_state_machine(make_store)`` returns a ``RuleBasedStateMachine``
class: random set/get/delete/list/batch operations from several payers, with
per-key TTLs and (when ``clock_controlled``) time moved by a
:class:`ManualClock`, every answer compared with a dict-based model. Run it
in a test module with::

    TestMyStoreMachine = store_state_machine(lambda clock: MyStore(clock=clock)).TestCase
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ..stores.base import SessionStore
from .clock import ManualClock

PAYERS = ["0xaaa", "0xaaab", "0xbbb"]
KEYS = st.sampled_from(["a", "ab", "abc", "b", "b:1", "b:2", "é", "z", "😀"])
# Printable text drawn from printable characters: filtering arbitrary text instead
# rejects most draws, and Hypothesis fails the run's health check now and then.
_PRINTABLE = st.characters(
    exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"), include_characters=" "
)
VALUES = st.text(_PRINTABLE, max_size=8).filter(str.isprintable)
TTLS = st.sampled_from([None, 0, 500, 2000])
DEFAULT_TTL = 1000


def store_state_machine(
    make_store: Callable[[ManualClock], SessionStore],
    *,
    clock_controlled: bool = True,
) -> type[RuleBasedStateMachine]:
    """Build the state machine class for stores made by ``make_store(clock)``.

    The store must use ``DEFAULT_TTL`` (1000 ms) as its default TTL. When
    ``clock_controlled`` is False, TTLs are not exercised (only ``ttl_ms=0``).
    """

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = ManualClock()
            self.store = make_store(self.clock)
            # model: payer -> key -> (value, ttl or 0, expires_at or inf)
            self.model: dict[str, dict[str, tuple[str, int, float]]] = {p: {} for p in PAYERS}

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            try:
                self.run(self.store.close())
            finally:
                self.loop.close()

        def live(self, payer: str) -> dict[str, str]:
            now = self.clock()
            data = self.model[payer]
            for key in [k for k, (_, _, exp) in data.items() if exp <= now]:
                del data[key]
            return {k: data[k][0] for k in sorted(data)}

        def touch(self, payer: str, key: str) -> None:
            value, ttl, _ = self.model[payer][key]
            self.model[payer][key] = (value, ttl, self.clock() + ttl if ttl else float("inf"))

        def remember(self, payer: str, key: str, value: str, ttl_ms: int | None) -> None:
            ttl = DEFAULT_TTL if ttl_ms is None else ttl_ms
            expires = self.clock() + ttl if ttl else float("inf")
            self.model[payer][key] = (value, ttl, expires)

        @rule(payer=st.sampled_from(PAYERS), key=KEYS, value=VALUES, ttl=TTLS)
        def set(self, payer: str, key: str, value: str, ttl: int | None) -> None:
            if not clock_controlled:
                ttl = 0
            self.run(self.store.set(payer, key, value, ttl_ms=ttl))
            self.remember(payer, key, value, ttl)

        @rule(payer=st.sampled_from(PAYERS), entries=st.dictionaries(KEYS, VALUES, max_size=4))
        def set_many(self, payer: str, entries: dict[str, str]) -> None:
            self.run(self.store.set_many(payer, entries, ttl_ms=0))
            for key, value in entries.items():
                self.remember(payer, key, value, 0)

        @rule(payer=st.sampled_from(PAYERS), key=KEYS)
        def get(self, payer: str, key: str) -> None:
            expected = self.live(payer).get(key)
            assert self.run(self.store.get(payer, key)) == expected
            if expected is not None:
                self.touch(payer, key)

        @rule(payer=st.sampled_from(PAYERS), keys=st.lists(KEYS, max_size=4))
        def get_many(self, payer: str, keys: list[str]) -> None:
            live = self.live(payer)
            assert self.run(self.store.get_many(payer, keys)) == {k: live.get(k) for k in keys}
            for key in keys:
                if key in live:
                    self.touch(payer, key)

        @rule(payer=st.sampled_from(PAYERS), key=KEYS)
        def delete(self, payer: str, key: str) -> None:
            existed = key in self.live(payer)
            assert self.run(self.store.delete(payer, key)) is existed
            self.model[payer].pop(key, None)

        @rule(payer=st.sampled_from(PAYERS), keys=st.lists(KEYS, max_size=4))
        def delete_many(self, payer: str, keys: list[str]) -> None:
            live = self.live(payer)
            assert self.run(self.store.delete_many(payer, keys)) == len(set(keys) & set(live))
            for key in keys:
                self.model[payer].pop(key, None)

        @rule(
            payer=st.sampled_from(PAYERS),
            prefix=st.sampled_from([None, "a", "b:", "é", "x"]),
            limit=st.integers(min_value=0, max_value=4),
            keys_only=st.booleans(),
        )
        def list_all_pages(
            self, payer: str, prefix: str | None, limit: int, keys_only: bool
        ) -> None:
            expected = {
                k: ("" if keys_only else v)
                for k, v in self.live(payer).items()
                if prefix is None or k.startswith(prefix)
            }
            seen: dict[str, str] = {}
            cursor = None
            for _ in range(100):
                page = self.run(
                    self.store.list(
                        payer, prefix=prefix, cursor=cursor, limit=limit, keys_only=keys_only
                    )
                )
                if limit:
                    assert len(page.entries) <= limit
                assert not set(page.entries) & set(seen), "a key came back twice"
                seen.update(page.entries)
                cursor = page.cursor
                if cursor is None:
                    break
            assert list(seen) == list(expected)
            assert seen == expected

        @precondition(lambda self: clock_controlled)
        @rule(ms=st.sampled_from([1, 400, 999, 1000, 1500, 2500]))
        def elapse(self, ms: int) -> None:
            self.clock.advance(ms)

        @invariant()
        def payers_stay_apart(self) -> None:
            for payer in PAYERS:
                listed = self.run(self.store.list(payer)).entries
                assert listed == self.live(payer)

    return StoreMachine
