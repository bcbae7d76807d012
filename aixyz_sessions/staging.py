"""A paid call's session: writes wait for the payment to settle.

Inside a paid call (HTTP view or tool, WebSocket message, MCP tool call) the
bound session is a :class:`StagedSession`. ``set``/``delete`` (and their
batch forms) are checked at once, exactly as the store would check them, and
kept in the call's write buffer; reads see the call's own pending writes on
top of the store. The paid-call flow then either :meth:`~StagedSession.commit`
the buffer after the payment settled, or :meth:`~StagedSession.discard` it
when the view or tool failed, answered non-2xx, or settlement failed. So a
call that is not paid for changes nothing in the session.

After the commit the session writes through (a streaming response body that
is produced after settlement still writes). Free calls and
:func:`~aixyz_sessions.payer_context` used by hand bind a plain
:class:`~aixyz_sessions.Session`, which always writes through.

Other records that belong to the paid work and must not outlive an unpaid
call (the A2A task a message creates, say) wait the same way:
:meth:`~StagedSession.defer` keeps the write until the commit, and the
discard drops it.

What staging cannot cover: side effects outside the session (your own
database rows, e-mails, calls to other services) happen when the code runs,
paid or not.

``list`` overlays the pending writes on the page the store returns: pending
deletes are left out, pending values replace stored ones, and pending new
keys appear in the page whose key range holds them. A page that grows past
``limit`` is cut there, with a cursor after its last key. (Placing new keys
needs the key a cursor continues after, which the built-in stores'
:meth:`~aixyz_sessions.SessionStore.encode_cursor` cursors carry; with a
custom store whose cursors are its own, pending new keys appear on the first
page only.)
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from .context import Session
from .stores import validation as v

if TYPE_CHECKING:
    from .replay import PayerRecords, Record
    from .stores.base import ListResult, SessionStore

__all__ = ["READY_WITHIN", "StagedSession"]

#: A pending write: ``(value, ttl_ms)`` for a set, ``None`` for a delete.
Pending = tuple[str, int | None] | None
_UNKNOWN = object()
#: Seconds for which an answer of the session's store stands in for the
#: probe of :meth:`StagedSession.ready` (see there).
READY_WITHIN = 1.0


class StagedSession(Session):
    """A :class:`~aixyz_sessions.Session` whose writes wait for :meth:`commit`."""

    __slots__ = ("_answered_at", "_committed", "_deferred", "_discarded", "_pending")

    def __init__(self, payer: str, store: SessionStore | None = None) -> None:
        super().__init__(payer, store)
        self._pending: dict[str, Pending] = {}
        self._deferred: dict[str, tuple[object, Callable[[], Awaitable[None]]]] = {}
        self._committed = False
        self._discarded = False
        self._answered_at = float("-inf")

    @property
    def has_pending_writes(self) -> bool:
        """Whether writes wait for the commit."""
        return bool(self._pending)

    # -- writes: checked now, applied at the commit ------------------------------------

    async def set(self, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        if self._committed:
            return await super().set(key, value, ttl_ms=ttl_ms)
        v.check_key(key)
        v.check_value(value, self.store.max_value_bytes)
        self._pending[key] = (value, v.check_ttl(ttl_ms))

    async def set_many(self, entries: Mapping[str, str], *, ttl_ms: int | None = None) -> None:
        if self._committed:
            return await super().set_many(entries, ttl_ms=ttl_ms)
        store = self.store
        checked = v.check_entries(entries, store.max_value_bytes, store.max_batch)
        ttl = v.check_ttl(ttl_ms)
        for key, value in checked.items():
            self._pending[key] = (value, ttl)

    async def delete(self, key: str) -> bool:
        if self._committed:
            return await super().delete(key)
        existed = await self.get(key) is not None
        self._pending[key] = None
        return existed

    async def delete_many(self, keys: Iterable[str]) -> int:
        if self._committed:
            return await super().delete_many(keys)
        found = await self.get_many(keys)
        for key in found:
            self._pending[key] = None
        return sum(value is not None for value in found.values())

    # -- reads: the store, then the pending writes on top ------------------------------

    async def get(self, key: str) -> str | None:
        if self._pending and v.check_key(key) in self._pending:
            pending = self._pending[key]
            return None if pending is None else pending[0]
        value = await super().get(key)
        self.answered()
        return value

    async def get_many(self, keys: Iterable[str]) -> dict[str, str | None]:
        wanted = v.check_keys(keys, self.store.max_batch)
        stored = [key for key in wanted if key not in self._pending]
        found: dict[str, str | None] = {}
        if stored:
            found = await super().get_many(stored)
            self.answered()
        result: dict[str, str | None] = {}
        for key in wanted:
            if key in self._pending:
                pending = self._pending[key]
                result[key] = None if pending is None else pending[0]
            else:
                result[key] = found.get(key)
        return result

    async def list(
        self,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
        keys_only: bool = False,
    ) -> ListResult:
        page = await super().list(prefix=prefix, cursor=cursor, limit=limit, keys_only=keys_only)
        self.answered()
        if not self._pending:
            return page
        from .stores.base import ListResult

        store = self.store
        after: object = None
        if cursor is not None:
            try:
                after = store.decode_cursor(self.key, cursor)
            except ValueError:  # a custom store's own cursor format
                after = _UNKNOWN
        last = next(reversed(page.entries)) if page.entries else None
        upto = last if page.cursor is not None else None  # None: the page runs to the end
        pending_of = self._pending.get
        entries = {k: val for k, val in page.entries.items() if pending_of(k, ()) is not None}
        for key, pending in self._pending.items():
            if pending is None or (prefix is not None and not key.startswith(prefix)):
                continue
            if key not in page.entries:
                if after is _UNKNOWN or (after is not None and key <= after):  # type: ignore[operator]
                    continue
                if upto is not None and key > upto:
                    continue
            entries[key] = "" if keys_only else pending[0]
        ordered = dict(sorted(entries.items()))
        next_cursor = page.cursor
        limit = v.check_limit(limit)
        if limit is not None and len(ordered) > limit:
            kept = list(ordered)[:limit]
            ordered = {key: ordered[key] for key in kept}
            next_cursor = store.encode_cursor(self.key, kept[-1])
        return ListResult(ordered, next_cursor)

    # -- other writes of the paid work -------------------------------------------------

    def savepoint(self) -> dict[str, Pending]:
        """The pending writes as they stand, for :meth:`rollback` (a part of the call failed)."""
        return dict(self._pending)

    def rollback(self, point: dict[str, Pending]) -> None:
        """Drop the writes made since ``point`` (a :meth:`savepoint`); before the commit only.

        One paid call may run several pieces of work (an agent turn runs the
        tools its model calls): a piece that fails keeps none of its writes,
        while the call, and what the pieces before it wrote, go on.
        """
        if not self._committed:
            self._pending = dict(point)

    def defer(self, name: str, value: object, apply: Callable[[], Awaitable[None]]) -> bool:
        """Keep ``apply`` (the write of ``value``) until the commit; the last under ``name`` wins.

        ``False`` when the session already writes through (the payment
        settled): the caller writes now. After a discard the write is dropped
        (``True``): the call was not paid for, and work still running in the
        background must leave nothing behind.
        """
        if self._committed:
            return False
        if not self._discarded:
            self._deferred[name] = (value, apply)
        return True

    def deferred(self, name: str) -> object | None:
        """The value of the write waiting under ``name``, if any (reads see the call's own)."""
        entry = self._deferred.get(name)
        return None if entry is None else entry[0]

    # -- the outcome of the paid call ---------------------------------------------------

    def answered(self) -> None:
        """The session's store has just answered for this payer (see :meth:`ready`).

        The session's own reads say so; the paid-call flow says so after the
        payment's claim when its replay guard shares the store's server
        (:meth:`~aixyz_sessions.replay.PaymentClaims.shares_server`).
        """
        self._answered_at = time.monotonic()

    async def ready(self) -> None:
        """Check, before the payment settles, that the store answers (if writes wait).

        One read of a pending key: a store that is down raises here, while
        the call can still end unsettled, instead of at the commit, after
        the money moved. (It can still fail between this and the commit; the
        paid-call flow then reports it with the settlement.)

        No read when the store answered for this payer within the last
        :data:`READY_WITHIN` seconds (:meth:`answered`): that answer is the
        same proof. The probe never covered the time from itself to the
        commit, which includes the whole settlement (a facilitator's settle
        takes seconds); a second more before it adds little to that window,
        and a store that dies in it ends as the probe-then-commit case does:
        settled, not stored, and reported with the settlement.
        """
        if not self._pending or self._committed:
            return
        if time.monotonic() - self._answered_at < READY_WITHIN:
            return
        await self.store.get_many(self.key, [next(iter(self._pending))])
        self.answered()

    async def commit(
        self, *, records: Sequence[Record] = (), guard: PayerRecords | None = None
    ) -> bool:
        """Apply the pending writes (the payment settled); later writes go straight through.

        One :meth:`SessionStore.commit <aixyz_sessions.SessionStore.commit>`
        of every pending write (``records``, the payment's records in
        ``guard``, may go with them: see there), then the deferred writes, in
        the order they were first deferred. Returns whether ``records`` were
        written; ``False`` leaves them to the caller (always when writes are
        deferred: those come first). Raises what the store raises
        (:class:`~aixyz_sessions.SessionStoreError`); the writes then stay
        pending.
        """
        if self._deferred:
            records = ()
        written = False
        if self._pending or records:
            writes = dict(self._pending)
            written = await self.store.commit(self.key, writes, records=records, guard=guard)
            for key in writes:
                self._pending.pop(key, None)
        await self._apply_deferred()
        self._committed = True
        return written

    async def _apply_deferred(self) -> None:
        while self._deferred:
            name = next(iter(self._deferred))
            await self._deferred[name][1]()
            del self._deferred[name]

    def discard(self) -> None:
        """Forget the pending and deferred writes (the call failed or was not paid for)."""
        self._pending.clear()
        self._deferred.clear()
        self._discarded = True
