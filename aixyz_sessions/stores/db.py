"""``DatabaseSessionStore``: sessions in a table, through the Django ORM.

Shared by every worker process that reaches the same database, and it
survives restarts. Needs ``aixyz_sessions`` in ``INSTALLED_APPS`` and its
migration applied (``manage.py migrate aixyz_sessions``).

Each operation is a fixed, small number of statements, none of which reads a
row only to write it back: a write is one ``INSERT ... ON CONFLICT (payer,
key) DO UPDATE``; a read is one ``SELECT`` plus, for entries with a TTL, one
guarded ``UPDATE`` that slides the expiry; a delete is one ``DELETE ...
RETURNING`` that tells live rows from expired ones; a list page is one keyset
query (``key > last ORDER BY key LIMIT n + 1``) served by the unique index
on ``(payer, key)``, so page 1,000 costs what page 1 costs. Prefixes become a
key range, never ``LIKE``, so ``%``, ``_`` and ``\\`` are plain characters.
A page of payers (``list_payers``) is the same kind of keyset query over the
index's leading column: ``SELECT DISTINCT payer ... WHERE payer > last ORDER
BY payer LIMIT n + 1``, live rows only.

The store also keeps the payment replay guard (:class:`DatabaseReplayGuard`,
from :meth:`DatabaseSessionStore.replay_guard`): a ``PaymentClaim`` row per
claimed authorization, made unique by a constraint on ``(payer, nonce)``.

Django's ORM has no async driver yet, so each operation makes one
``sync_to_async(thread_sensitive=True)`` hop and runs all its statements
there. Connection failures surface as :class:`SessionStoreUnavailable`
naming the database alias; statements that must land together share one
transaction, so a failed operation leaves nothing half-written.
"""

from __future__ import annotations

import builtins
import functools
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    connections,
    transaction,
)
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, DateTimeField, F, Field, Value, When
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.db.models.sql.compiler import SQLInsertCompiler
from django.utils import timezone

from ..exceptions import SessionStoreError, SessionStoreMisconfigured, SessionStoreUnavailable
from ..replay import (
    DEFAULT_GRACE,
    ReplayGuard,
    check_grace,
    claim_expiry,
    claim_key,
    record_expiry,
)
from .base import ListResult, PayerPage, SessionStore

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from ..models import PaymentClaim, SessionEntry, SessionEntryQuerySet

__all__ = ["DatabaseReplayGuard", "DatabaseSessionStore"]

#: Wall-clock epoch milliseconds.
Clock = Callable[[], float]
T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)
# Columns an upsert overwrites; ``created_at`` keeps the first write's time.
_UPSERT_FIELDS = ("value", "ttl_ms", "expires_at", "updated_at")


def _wall_clock_ms() -> float:
    return time.time() * 1000.0


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``, in code-point order.

    ``key >= prefix AND key < bound`` selects exactly the keys with that
    prefix and is an index range scan; ``None`` means no upper bound (the
    prefix is all U+10FFFF).
    """
    chars = builtins.list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code in _SURROGATES:  # not storable as UTF-8; nothing sorts between
            code = _SURROGATES.stop
        if code <= _MAX_CODE_POINT:
            return "".join(chars) + chr(code)
    return None


def _is_missing_table(exc: Exception) -> bool:
    text = str(exc).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


class DatabaseSessionStore(SessionStore):
    """Keeps sessions in the ``SessionEntry`` table of the database ``using``.

    Options: ``using`` (a ``DATABASES`` alias, default ``"default"``),
    ``ttl_ms`` (default TTL), ``max_value_bytes``, ``max_batch`` and ``clock``
    (wall-clock epoch milliseconds, for tests; default ``time.time() * 1000``).
    Expired rows stay invisible until :meth:`purge_expired` (or the
    ``aixyz_sessions_purge`` command) deletes them.
    """

    def __init__(
        self,
        *,
        using: str = DEFAULT_DB_ALIAS,
        ttl_ms: int | None = None,
        max_value_bytes: int | None = None,
        max_batch: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(ttl_ms=ttl_ms, max_value_bytes=max_value_bytes, max_batch=max_batch)
        if not isinstance(using, str):
            raise TypeError(f"using must be a database alias (str), not {type(using).__name__}")
        if using not in settings.DATABASES:
            known = ", ".join(repr(alias) for alias in settings.DATABASES) or "none"
            raise ValueError(
                f"using={using!r} is not a database alias in settings.DATABASES (defined: {known})"
            )
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a callable returning epoch milliseconds")
        self.using = using
        self._clock: Clock = clock or _wall_clock_ms
        # One reusable hop for every operation: the whole operation runs in it.
        self._hop = sync_to_async(self._run, thread_sensitive=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(using={self.using!r})"

    # -- plumbing -------------------------------------------------------------

    @functools.cached_property
    def _model(self) -> type[SessionEntry]:
        # Imported on first use: the store may be built before the app registry is ready.
        from ..models import SessionEntry

        return SessionEntry

    def _rows(self) -> SessionEntryQuerySet:
        from ..models import SessionEntryQuerySet

        return SessionEntryQuerySet(self._model, using=self.using)

    def _moment(self, ms: float) -> datetime:
        """Epoch milliseconds as the datetime the database stores (naive local without USE_TZ)."""
        moment = _EPOCH + timedelta(microseconds=round(ms * 1000))
        return moment if settings.USE_TZ else timezone.make_naive(moment)

    async def _db(self, operation: Callable[..., T], *args: Any) -> T:
        return cast(T, await self._hop(operation, *args))

    def _run(self, operation: Callable[..., Any], *args: Any) -> Any:
        """Run one whole operation in the database thread, translating backend failures."""
        try:
            return operation(*args)
        except (OperationalError, InterfaceError, ProgrammingError) as exc:
            if _is_missing_table(exc):
                table = self._model._meta.db_table
                raise SessionStoreMisconfigured(
                    f"DatabaseSessionStore: table {table!r} does not exist in database "
                    f"{self.using!r}; run `manage.py migrate aixyz_sessions --database "
                    f"{self.using}`"
                ) from exc
            if isinstance(exc, ProgrammingError):
                raise
            self._drop_broken_connection()
            raise SessionStoreUnavailable(
                f"DatabaseSessionStore: database {self.using!r} is unavailable: {exc}".strip()
            ) from exc

    def _drop_broken_connection(self) -> None:
        # Let the next operation reconnect instead of reusing a dead connection;
        # inside a caller's transaction the caller owns the connection.
        connection = connections[self.using]
        if not connection.in_atomic_block:
            try:
                connection.close_if_unusable_or_obsolete()
            except DatabaseError:
                pass

    def _param_budget(self, connection: BaseDatabaseWrapper) -> int:
        """How many query parameters one statement may carry on this connection."""
        if connection.vendor == "sqlite":
            connection.ensure_connection()
            raw = connection.connection
            if raw is not None:  # the real compile-time limit, often 32766, not Django's 999
                return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        limit = connection.features.max_query_params
        return int(limit) if limit else 65_535

    @staticmethod
    def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
        for start in range(0, len(items), max(size, 1)):
            yield items[start : start + size]

    # -- statements ---------------------------------------------------------------

    def _upsert(self, payer: str, entries: Mapping[str, str], ttl_ms: int | None) -> None:
        ttl = self.effective_ttl(ttl_ms)
        expires_at = self._moment(self._clock() + ttl) if ttl else None
        model = self._model
        rows = [
            model(payer=payer, key=key, value=value, ttl_ms=ttl, expires_at=expires_at)
            for key, value in entries.items()
        ]
        connection = connections[self.using]
        meta = model._meta
        fields: builtins.list[Field[Any, Any]] = [
            f for f in meta.concrete_fields if not f.primary_key
        ]
        per_statement = (
            max(1, self._param_budget(connection) // len(fields)) if len(rows) > 1 else 1
        )
        batches = builtins.list(self._chunks(rows, per_statement))
        if len(batches) == 1:
            self._insert(connection, fields, batches[0])  # one statement: atomic by itself
            return
        with transaction.atomic(using=self.using):
            for batch in batches:
                self._insert(connection, fields, batch)

    def _insert(
        self,
        connection: BaseDatabaseWrapper,
        fields: Sequence[Field[Any, Any]],
        rows: Sequence[SessionEntry],
    ) -> None:
        # What QuerySet.bulk_create(update_conflicts=True) builds, minus the
        # transaction it opens around its batches: a single INSERT in autocommit
        # is already atomic, and BEGIN/COMMIT would cost two more round trips.
        meta = self._model._meta
        unique = (
            [meta.get_field("payer"), meta.get_field("key")]
            if connection.features.supports_update_conflicts_with_target
            else None
        )
        query = InsertQuery(
            self._model,
            on_conflict=OnConflict.UPDATE,
            update_fields=[meta.get_field(name) for name in _UPSERT_FIELDS],
            unique_fields=unique,
        )
        query.insert_values(fields, builtins.list(rows))
        compiler = cast(SQLInsertCompiler, query.get_compiler(using=self.using))
        compiler.execute_sql(None)

    def _delete(self, payer: str, keys: Sequence[str]) -> int:
        """Delete ``keys`` (expired rows too) and return how many were live."""
        now = self._moment(self._clock())
        connection = connections[self.using]
        batches = builtins.list(self._chunks(keys, self._param_budget(connection) - 2))
        if len(batches) == 1:
            return self._delete_batch(connection, payer, batches[0], now)
        with transaction.atomic(using=self.using):
            return sum(self._delete_batch(connection, payer, b, now) for b in batches)

    def _column(self, name: str) -> str:
        column = getattr(self._model._meta.get_field(name), "column", None)
        if not isinstance(column, str):  # pragma: no cover - the model defines them
            raise SessionStoreError(f"SessionEntry.{name} has no database column")
        return column

    def _delete_batch(
        self, connection: BaseDatabaseWrapper, payer: str, keys: Sequence[str], now: datetime
    ) -> int:
        if connection.vendor in ("postgresql", "sqlite") and (
            connection.features.can_return_rows_from_bulk_insert
        ):
            # One statement both removes the rows and says which were live;
            # the ORM's delete() only returns a count.
            meta = self._model._meta
            quote = connection.ops.quote_name
            payer_col, key_col, expires_col = (
                quote(self._column(name)) for name in ("payer", "key", "expires_at")
            )
            marks = ", ".join(["%s"] * len(keys))
            # COALESCE, not "IS NULL OR": SQLite 3.40 evaluates IS NULL wrongly in
            # the RETURNING clause of a table with AUTOINCREMENT (Django's id).
            sql = (
                f"DELETE FROM {quote(meta.db_table)} "
                f"WHERE {payer_col} = %s AND {key_col} IN ({marks}) "
                f"RETURNING COALESCE({expires_col} > %s, TRUE)"
            )
            params = [payer, *keys, connection.ops.adapt_datetimefield_value(now)]
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return sum(int(live) for (live,) in cursor.fetchall())
        # Other backends: count the live rows, then drop the expired ones, together.
        rows = self._rows().filter(payer=payer, key__in=keys)
        with transaction.atomic(using=self.using):
            live = rows.live(now).delete()[0]
            rows.delete()
            return live

    # -- operations, run in the database thread --------------------------------------

    def _get_now(self, payer: str, key: str) -> str | None:
        now_ms = self._clock()
        now = self._moment(now_ms)
        # Expiry is checked here rather than in SQL: the lookup stays a plain
        # unique-index probe and the ORM builds a smaller query (the hot path).
        found = builtins.list(
            self._rows()
            .filter(payer=payer, key=key)
            .values_list("pk", "value", "ttl_ms", "expires_at")
        )
        if not found:
            return None
        pk, value, ttl, expires_at = found[0]
        if expires_at is not None and expires_at <= now:
            return None
        if ttl:
            slid = self._moment(now_ms + ttl)
            # Guarded so a concurrent rewrite (other TTL) or a later read is never undone.
            self._rows().filter(pk=pk, ttl_ms=ttl, expires_at__lt=slid).update(expires_at=slid)
        return cast(str, value)

    def _get_many_now(self, payer: str, keys: Sequence[str]) -> dict[str, str | None]:
        now_ms = self._clock()
        now = self._moment(now_ms)
        connection = connections[self.using]
        found: dict[str, tuple[int, str, int]] = {}
        for batch in self._chunks(keys, self._param_budget(connection) - 1):
            for pk, key, value, ttl, expires_at in (
                self._rows()
                .filter(payer=payer, key__in=batch)
                .values_list("pk", "key", "value", "ttl_ms", "expires_at")
            ):
                if expires_at is None or expires_at > now:
                    found[key] = (pk, value, ttl)
        sliding = {pk: ttl for pk, _, ttl in found.values() if ttl}
        if sliding:
            slid = {ttl: self._moment(now_ms + ttl) for ttl in set(sliding.values())}
            self._rows().filter(pk__in=builtins.list(sliding)).update(
                expires_at=Case(
                    *(
                        When(ttl_ms=ttl, expires_at__lt=at, then=Value(at))
                        for ttl, at in slid.items()
                    ),
                    default=F("expires_at"),
                    output_field=DateTimeField(),
                )
            )
        return {key: found[key][1] if key in found else None for key in keys}

    def _list_now(
        self,
        payer: str,
        after: str | None,
        prefix: str | None,
        limit: int | None,
        keys_only: bool,
    ) -> ListResult:
        rows = self._rows().live(self._moment(self._clock())).filter(payer=payer)
        if after is not None:
            rows = rows.filter(key__gt=after)
        if prefix is not None:
            rows = rows.filter(key__gte=prefix)
            bound = prefix_upper_bound(prefix)
            if bound is not None:
                rows = rows.filter(key__lt=bound)
        rows = rows.order_by("key")
        entries: dict[str, str]
        if keys_only:
            keys = rows.values_list("key", flat=True)
            page = builtins.list(keys if limit is None else keys[: limit + 1])
            entries = dict.fromkeys(page, "")
        else:
            pairs = rows.values_list("key", "value")
            entries = dict(pairs if limit is None else pairs[: limit + 1])
        if limit is None or len(entries) <= limit:
            return ListResult(entries, None)
        entries.popitem()  # the look-ahead row: more remain
        return ListResult(entries, self.encode_cursor(payer, next(reversed(entries))))

    def _list_payers_now(
        self, after: str | None, prefix: str | None, limit: int | None
    ) -> PayerPage:
        rows = self._rows().live(self._moment(self._clock()))
        if after is not None:
            rows = rows.filter(payer__gt=after)
        if prefix is not None:
            # A range on the (payer, key) index, never LIKE: the prefix is literal.
            rows = rows.filter(payer__gte=prefix)
            bound = prefix_upper_bound(prefix)
            if bound is not None:
                rows = rows.filter(payer__lt=bound)
        payers = rows.values_list("payer", flat=True).distinct().order_by("payer")
        page = builtins.list(payers if limit is None else payers[: limit + 1])
        if limit is None or len(page) <= limit:
            return PayerPage(page, None)
        del page[limit:]  # the look-ahead payer: more remain
        return PayerPage(page, self.encode_payer_cursor(page[-1]))

    def _purge_now(self) -> int:
        now = self._moment(self._clock())
        return self._rows().purge_expired(now) + DatabaseReplayGuard(self).purge_now(now)

    # -- the contract -------------------------------------------------------------------

    async def get(self, payer: str, key: str) -> str | None:
        return await self._db(self._get_now, payer, key)

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        await self._db(self._upsert, payer, {key: value}, ttl_ms)

    async def delete(self, payer: str, key: str) -> bool:
        return await self._db(self._delete, payer, [key]) > 0

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
        return await self._db(self._list_now, payer, after, prefix, limit, keys_only)

    async def get_many(self, payer: str, keys: Iterable[str]) -> dict[str, str | None]:
        unique = builtins.list(dict.fromkeys(keys))
        if not unique:
            return {}
        return await self._db(self._get_many_now, payer, unique)

    async def set_many(
        self, payer: str, entries: Mapping[str, str], *, ttl_ms: int | None = None
    ) -> None:
        if entries:
            await self._db(self._upsert, payer, entries, ttl_ms)

    async def delete_many(self, payer: str, keys: Iterable[str]) -> int:
        unique = builtins.list(dict.fromkeys(keys))
        if not unique:
            return 0
        return await self._db(self._delete, payer, unique)

    async def list_payers(
        self,
        *,
        prefix: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> PayerPage:
        """Payers with a live row, one keyset query on the ``(payer, key)`` index."""
        after = self.decode_payer_cursor(cursor)
        if prefix is not None and "\x00" in prefix:
            return PayerPage()  # no payer holds NUL, and PostgreSQL text cannot carry it
        return await self._db(self._list_payers_now, after, prefix, limit)

    def _ttl_left_now(self, payer: str, key: str) -> int | None:
        now_ms = self._clock()
        found = builtins.list(
            self._rows().filter(payer=payer, key=key).values_list("expires_at", flat=True)[:1]
        )
        if not found:
            return 0
        expires_at: datetime | None = found[0]
        if expires_at is None:
            return None
        left = (expires_at - self._moment(now_ms)).total_seconds() * 1000
        return max(0, round(left))

    async def entry_ttl_ms(self, payer: str, key: str) -> int | None:
        """Milliseconds ``key`` has left (``None``: never expires; 0: absent or expired).

        For inspection (the admin): one read that slides nothing.
        """
        left: int | None = await self._db(self._ttl_left_now, payer, key)
        return left

    async def purge_expired(self) -> int:
        """Delete every expired row now, entries and replay claims, in batches; return how many."""
        return await self._db(self._purge_now)

    def replay_guard(self) -> DatabaseReplayGuard:
        """Claims of payment authorizations in this store's database, shared by every process."""
        return DatabaseReplayGuard(self)

    async def close(self) -> None:
        """Nothing to release: Django opens and closes database connections itself."""

    def check(self) -> builtins.list[Any]:
        errors: builtins.list[checks.CheckMessage] = []
        if self.using not in settings.DATABASES:
            known = ", ".join(repr(alias) for alias in settings.DATABASES) or "none"
            errors.append(
                checks.Error(
                    f"DatabaseSessionStore uses the database alias {self.using!r}, "
                    "which is not in settings.DATABASES",
                    hint=f"Pass OPTIONS={{'using': <alias>}} with one of: {known}; "
                    f"or add {self.using!r} to DATABASES.",
                    id="aixyz_sessions.E010",
                )
            )
        if not apps.is_installed("aixyz_sessions"):
            errors.append(
                checks.Error(
                    "DatabaseSessionStore needs 'aixyz_sessions' in INSTALLED_APPS: "
                    "its SessionEntry table comes from that app's migration",
                    hint="Add 'aixyz_sessions' to INSTALLED_APPS, then run "
                    "`manage.py migrate aixyz_sessions`.",
                    id="aixyz_sessions.E011",
                )
            )
        return errors


class DatabaseReplayGuard(ReplayGuard):
    """Payment replay guard in the ``PaymentClaim`` table of a :class:`DatabaseSessionStore`.

    A claim makes one database hop and at most two statements: a ``DELETE``
    of that same ``(payer, nonce)`` if its row has expired (so a pair is
    forgotten only once its window has passed), then an ``INSERT`` that
    ignores a conflict on the unique ``(payer, nonce)`` constraint (``ON
    CONFLICT DO NOTHING`` / ``INSERT OR IGNORE``). The database decides which
    of any number of concurrent inserts, from any process, lands: that one
    claim wins. No exception is involved, so a claim made inside a caller's
    transaction never breaks it. Time is the store's clock; failures raise
    what the store's operations raise.
    """

    def __init__(self, store: DatabaseSessionStore, *, grace: float = DEFAULT_GRACE) -> None:
        if not isinstance(store, DatabaseSessionStore):
            raise TypeError(f"store must be a DatabaseSessionStore, not {type(store).__name__}")
        self.store = store
        self.grace = check_grace(grace)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.store!r}>"

    @functools.cached_property
    def _model(self) -> type[PaymentClaim]:
        from ..models import PaymentClaim

        return PaymentClaim

    def _claims(self) -> QuerySet[PaymentClaim]:
        return self._model.objects.using(self.store.using)

    async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
        payer, nonce = claim_key(payer, nonce)
        expires = claim_expiry(valid_before, self.grace)
        return await self.store._db(self._guarded, self._claim_now, payer, nonce, expires)

    async def release(self, payer: str, nonce: str) -> None:
        payer, nonce = claim_key(payer, nonce)
        await self.store._db(self._guarded, self._release_now, payer, nonce)

    def _guarded(self, operation: Callable[..., T], *args: Any) -> T:
        """Name the claims table (and its migration) when it is missing."""
        try:
            return operation(*args)
        except (OperationalError, ProgrammingError) as exc:
            if not _is_missing_table(exc):
                raise
            raise SessionStoreMisconfigured(
                f"DatabaseReplayGuard: table {self._model._meta.db_table!r} does not exist in "
                f"database {self.store.using!r}; run `manage.py migrate aixyz_sessions "
                f"--database {self.store.using}`"
            ) from exc

    def _claim_now(self, payer: str, nonce: str, expires: float) -> bool:
        store = self.store
        now_ms = store._clock()
        if expires * 1000 <= now_ms:  # its window has passed: nothing left to guard
            return True
        claims = self._claims()
        # _raw_delete: one plain DELETE, without the transaction QuerySet.delete() opens.
        claims.filter(payer=payer, nonce=nonce, expires_at__lte=store._moment(now_ms))._raw_delete(
            store.using
        )
        row = self._model(payer=payer, nonce=nonce, expires_at=store._moment(expires * 1000))
        connection = connections[store.using]
        if not connection.features.supports_ignore_conflicts:
            try:
                with transaction.atomic(using=store.using):
                    row.save(using=store.using, force_insert=True)
            except IntegrityError:
                return False
            return True
        meta = self._model._meta
        query = InsertQuery(self._model, on_conflict=OnConflict.IGNORE)
        fields: builtins.list[Field[Any, Any]] = [
            f for f in meta.concrete_fields if not f.primary_key
        ]
        query.insert_values(fields, [row])
        compiler = cast(SQLInsertCompiler, query.get_compiler(using=store.using))
        ((sql, params),) = compiler.as_sql()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return bool(cursor.rowcount == 1)

    def _release_now(self, payer: str, nonce: str) -> None:
        self._claims().filter(payer=payer, nonce=nonce)._raw_delete(self.store.using)

    async def remember(self, payer: str, key: str, value: str, expires_at: float) -> None:
        """Upsert the record's row (one statement where the database can)."""
        payer, key = claim_key(payer, key)
        if not isinstance(value, str):
            raise TypeError(f"value must be a str, not {type(value).__name__}")
        expires = record_expiry(expires_at)
        await self.store._db(self._guarded, self._remember_now, payer, key, value, expires)

    async def recall(self, payer: str, key: str) -> str | None:
        """The live row's value, or ``None``."""
        payer, key = claim_key(payer, key)
        return await self.store._db(self._guarded, self._recall_now, payer, key)

    def _remember_now(self, payer: str, key: str, value: str, expires: float) -> None:
        store = self.store
        row = self._model(
            payer=payer, nonce=key, value=value, expires_at=store._moment(expires * 1000)
        )
        features = connections[store.using].features
        if features.supports_update_conflicts_with_target:
            self._claims().bulk_create(
                [row],
                update_conflicts=True,
                unique_fields=["payer", "nonce"],
                update_fields=["expires_at", "value"],
            )
            return
        with transaction.atomic(using=store.using):  # pragma: no cover - no such backend here
            updated = (
                self._claims()
                .filter(payer=payer, nonce=key)
                .update(expires_at=row.expires_at, value=value)
            )
            if not updated:
                row.save(using=store.using, force_insert=True)

    def _recall_now(self, payer: str, key: str) -> str | None:
        now = self.store._moment(self.store._clock())
        value: str | None = (
            self._claims()
            .filter(payer=payer, nonce=key, expires_at__gt=now)
            .values_list("value", flat=True)
            .first()
        )
        return value

    def purge_now(self, now: datetime, batch_size: int = 1000) -> int:
        """Delete the claims expired at ``now``, ``batch_size`` per statement; return how many.

        Runs in the database thread (the store's ``purge_expired`` calls it).
        Claims of live authorizations stay, so a purge never reopens a replay.
        """
        return self._guarded(self._purge_batches, now, batch_size)

    def _purge_batches(self, now: datetime, batch_size: int) -> int:
        expired = self._claims().filter(expires_at__lte=now)
        removed = 0
        while True:
            batch = builtins.list(expired.order_by().values_list("pk", flat=True)[:batch_size])
            if batch:
                removed += expired.filter(pk__in=batch)._raw_delete(self.store.using)
            if len(batch) < batch_size:
                return removed
