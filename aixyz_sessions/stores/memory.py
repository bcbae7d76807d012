"""``InMemorySessionStore``: process-local, LRU-capped, sliding TTL.

Good for development, tests and single-process deployments. Data lives in
this process only: several workers do not share it and a restart loses it.

Layout: one ``OrderedDict`` keyed by ``(payer, key)`` in least-recently-used
order (the LRU spans all payers, so ``max_entries`` is a hard cap on the
whole process), plus a sorted key index per payer so a list page is a
bisection and a slice: O(log n + limit), whatever page it is. New keys wait
in a small unsorted set and join the sorted index at that payer's next
``list``, so a ``set`` does not pay for ordering that may never be asked for;
each key is still inserted once, in O(log n).

A ``SortedList`` of the payers holding at least one entry, kept in step with
the per-payer indexes (a payer joins it when its index is made and leaves
when the index empties), serves ``list_payers`` the same way. Payers only
join and leave it, so a ``set`` of a payer's second and later keys pays
nothing for it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from itertools import chain

from sortedcontainers import SortedList

from .base import ListResult, PayerPage, SessionStore

__all__ = ["InMemorySessionStore"]

Clock = Callable[[], float]

# An entry is a tuple (value, ttl in clock ticks, expires_at): tuples of atoms
# leave the garbage collector's tracking, so 100k entries cost no GC passes.
_Entry = tuple[str, float, float]
_NEVER = float("inf")


class _KeyIndex:
    """One payer's keys: a ``SortedList`` plus the keys added since the last list."""

    __slots__ = ("pending", "sorted")

    def __init__(self) -> None:
        self.sorted = SortedList()
        self.pending: set[str] = set()

    def __len__(self) -> int:
        return len(self.sorted) + len(self.pending)

    def remove(self, key: str) -> None:
        if key in self.pending:
            self.pending.remove(key)
        else:
            self.sorted.remove(key)

    def settled(self) -> SortedList:
        if self.pending:
            self.sorted.update(self.pending)
            self.pending.clear()
        return self.sorted


class InMemorySessionStore(SessionStore):
    """Keeps sessions in this process's memory.

    ``max_entries`` caps the number of entries over all payers: at the cap a
    new entry evicts the least recently used one (``get`` and ``set`` count
    as use; ``list`` does not). ``ttl_ms`` is the default TTL. ``clock``
    (monotonic milliseconds) exists for tests that need to move time. Safe
    to share between threads and asyncio tasks: every operation runs under
    one lock and never awaits while holding it.
    """

    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        ttl_ms: int = 3_600_000,
        max_value_bytes: int | None = None,
        max_batch: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int):
            raise TypeError("max_entries must be an int")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
            raise TypeError("ttl_ms must be an int")
        if ttl_ms < 0:
            raise ValueError("ttl_ms must be >= 0")
        super().__init__(ttl_ms=ttl_ms, max_value_bytes=max_value_bytes, max_batch=max_batch)
        self.max_entries = max_entries
        # The default clock is time.monotonic itself (seconds): one C call per
        # operation. TTLs are converted to the clock's unit once, at write.
        self._clock: Clock = clock or time.monotonic
        self._tick = 1.0 if clock else 0.001
        self._default_ttl = self.default_ttl_ms * self._tick
        self._lock = threading.Lock()
        self._acquire = self._lock.acquire
        self._release = self._lock.release
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._keys: dict[str, _KeyIndex] = {}
        #: The payers of ``_keys``, sorted: always exactly its keys.
        self._payers = SortedList()

    def __len__(self) -> int:
        """Entries held, expired ones not yet collected included."""
        return len(self._entries)

    # -- internals (call with the lock held) --------------------------------

    def _unindex(self, payer: str, key: str) -> None:
        index = self._keys[payer]
        index.remove(key)
        if not index:
            del self._keys[payer]
            self._payers.remove(payer)

    def _new_index(self, payer: str) -> _KeyIndex:
        index = self._keys[payer] = _KeyIndex()
        self._payers.add(payer)
        return index

    def _has_live(self, payer: str, now: float) -> bool:
        """Whether ``payer`` has a live entry; drops the expired ones met on the way.

        Stops at the first live entry, and each expired entry is met once
        (it is dropped), so over time this costs O(1) per live payer asked.
        When it answers False the payer had only expired entries and is gone.
        """
        index = self._keys[payer]
        expired: list[str] = []
        live = False
        for key in chain(index.pending, index.sorted):
            if self._entries[(payer, key)][2] > now:
                live = True
                break
            expired.append(key)
        for key in expired:
            del self._entries[(payer, key)]
            self._unindex(payer, key)
        return live

    def _read(self, payer: str, key: str, now: float) -> str | None:
        slot = (payer, key)
        entry = self._entries.get(slot)
        if entry is None:
            return None
        value, ttl, expires_at = entry
        if expires_at <= now:
            del self._entries[slot]
            self._unindex(payer, key)
            return None
        if ttl:
            self._entries[slot] = (value, ttl, now + ttl)
        self._entries.move_to_end(slot)
        return value

    def _write(self, payer: str, key: str, value: str, ttl_ms: int | None, now: float) -> None:
        ttl = self._default_ttl if ttl_ms is None else ttl_ms * self._tick
        slot = (payer, key)
        entries = self._entries
        if slot in entries:
            entries[slot] = (value, ttl, now + ttl if ttl else _NEVER)
            entries.move_to_end(slot)
            return
        while len(entries) >= self.max_entries:
            (old_payer, old_key), _ = entries.popitem(last=False)
            self._unindex(old_payer, old_key)
        entries[slot] = (value, ttl, now + ttl if ttl else _NEVER)
        index = self._keys.get(payer)
        if index is None:
            index = self._new_index(payer)
        index.pending.add(key)

    def _remove(self, payer: str, key: str, now: float) -> bool:
        entry = self._entries.pop((payer, key), None)
        if entry is None:
            return False
        self._unindex(payer, key)
        return entry[2] > now

    # -- the contract -------------------------------------------------------

    async def get(self, payer: str, key: str) -> str | None:
        self._acquire()
        try:
            return self._read(payer, key, self._clock())
        finally:
            self._release()

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        # The hot path: _write inlined, for the common case of an existing or new key.
        ttl = self._default_ttl if ttl_ms is None else ttl_ms * self._tick
        slot = (payer, key)
        entries = self._entries
        self._acquire()
        try:
            entry = (value, ttl, self._clock() + ttl if ttl else _NEVER)
            if entries.setdefault(slot, entry) is not entry:  # the key existed
                entries[slot] = entry
                entries.move_to_end(slot)
                return
            if len(entries) > self.max_entries:
                del entries[slot]  # make room first, so the new entry is never the one evicted
                while len(entries) >= self.max_entries:
                    (old_payer, old_key), _ = entries.popitem(last=False)
                    self._unindex(old_payer, old_key)
                entries[slot] = entry
            index = self._keys.get(payer)
            if index is None:
                index = self._new_index(payer)
            index.pending.add(key)
        finally:
            self._release()

    async def delete(self, payer: str, key: str) -> bool:
        with self._lock:
            return self._remove(payer, key, self._clock())

    async def list(
        self,
        payer: str,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
    ) -> ListResult:
        after = self.decode_cursor(payer, cursor)
        entries: dict[str, str] = {}
        more = False
        with self._lock:
            index = self._keys.get(payer)
            if index is None:
                return ListResult()
            keys = index.settled()
            now = self._clock()
            if after is not None and (prefix is None or after >= prefix):
                start = keys.bisect_right(after)
            else:
                start = keys.bisect_left(prefix) if prefix is not None else 0
            expired: list[str] = []
            for key in keys.islice(start):
                if prefix is not None and not key.startswith(prefix):
                    break
                value, _, expires_at = self._entries[(payer, key)]
                if expires_at <= now:
                    expired.append(key)
                    continue
                if limit is not None and len(entries) == limit:
                    more = True
                    break
                entries[key] = "" if keys_only else value
            for key in expired:
                del self._entries[(payer, key)]
                self._unindex(payer, key)
        next_cursor = self.encode_cursor(payer, next(reversed(entries))) if more else None
        return ListResult(entries, next_cursor)

    async def list_payers(
        self,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> PayerPage:
        """Payers with a live entry, from the sorted payer list: O(log n + limit).

        A payer whose entries have all expired is skipped, and its entries are
        dropped on the way (as ``list`` drops the expired entries it meets).
        """
        after = self.decode_payer_cursor(cursor)
        found: list[str] = []
        more = False
        with self._lock:
            payers = self._payers
            now = self._clock()
            if after is not None and (prefix is None or after >= prefix):
                at = payers.bisect_right(after)
            else:
                at = payers.bisect_left(prefix) if prefix is not None else 0
            # By position, not an iterator: _has_live may remove the payer at ``at``.
            while at < len(payers):
                payer = payers[at]
                if prefix is not None and not payer.startswith(prefix):
                    break
                if not self._has_live(payer, now):
                    continue  # it left the list: the next payer is now at ``at``
                if limit is not None and len(found) == limit:
                    more = True
                    break
                found.append(payer)
                at += 1
        return PayerPage(found, self.encode_payer_cursor(found[-1]) if more else None)

    async def get_many(self, payer: str, keys: Iterable[str]) -> dict[str, str | None]:
        with self._lock:
            now = self._clock()
            return {key: self._read(payer, key, now) for key in keys}

    async def set_many(
        self, payer: str, entries: Mapping[str, str], *, ttl_ms: int | None = None
    ) -> None:
        with self._lock:
            now = self._clock()
            for key, value in entries.items():
                self._write(payer, key, value, ttl_ms, now)

    async def delete_many(self, payer: str, keys: Iterable[str]) -> int:
        with self._lock:
            now = self._clock()
            return sum(self._remove(payer, key, now) for key in dict.fromkeys(keys))

    async def entry_ttl_ms(self, payer: str, key: str) -> int | None:
        """Milliseconds ``key`` has left (``None``: never expires; 0: absent or expired).

        For inspection (the admin): it reads without counting as use, so the
        sliding expiry and the LRU order stay as they are.
        """
        self._acquire()
        try:
            entry = self._entries.get((payer, key))
            now = self._clock()
        finally:
            self._release()
        if entry is None or entry[2] <= now:
            return 0
        if entry[2] == _NEVER:
            return None
        return max(0, round((entry[2] - now) / self._tick))

    async def purge_expired(self) -> int:
        """Drop every expired entry now; return how many."""
        with self._lock:
            now = self._clock()
            expired = [slot for slot, entry in self._entries.items() if entry[2] <= now]
            for payer, key in expired:
                del self._entries[(payer, key)]
                self._unindex(payer, key)
            return len(expired)

    async def close(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._keys.clear()
            self._payers.clear()
