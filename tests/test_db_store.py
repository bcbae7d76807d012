"""DatabaseSessionStore: the shared contract on SQLite and PostgreSQL, plus its own promises.

The conformance kit and the state machine run their own event loops and the
store hops to Django's database thread, so those tests use transactional
databases (data must be committed to be seen across threads). Tests that
count queries drive the store through ``async_to_sync`` instead: its hop
then runs on the test's own thread and connection, which the capture sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings as django_settings
from django.db import OperationalError, connections
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import run_state_machine_as_test

from aixyz_sessions.exceptions import SessionStoreUnavailable
from aixyz_sessions.models import SessionEntry
from aixyz_sessions.stores.base import ListResult
from aixyz_sessions.stores.db import DatabaseSessionStore, prefix_upper_bound
from aixyz_sessions.testing import ManualClock, StoreConformance
from aixyz_sessions.testing.properties import DEFAULT_TTL, store_state_machine
from tests.services import need_postgres

T = TypeVar("T")

# The ``postgres`` alias exists only when PostgreSQL answered at settings time.
WITH_POSTGRES = ["default", "postgres"] if "postgres" in django_settings.DATABASES else ["default"]

sqlite_db = pytest.mark.django_db(transaction=True, databases=["default"])
postgres_db = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True, databases=WITH_POSTGRES),
]


def _close_database_thread_connections() -> None:
    """Close the connections the store opened in asgiref's shared database thread.

    Left open, they would keep the PostgreSQL test database busy at teardown.
    """
    asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


@pytest.fixture(autouse=True)
def _database_thread_cleanup() -> Iterator[None]:
    yield
    _close_database_thread_connections()


@pytest.fixture
def postgres() -> str:
    need_postgres()
    return "postgres"


# -- the shared contract ---------------------------------------------------------------


@sqlite_db
class TestSQLiteConformance(StoreConformance):
    def make_store(self, clock: ManualClock, **options: Any) -> DatabaseSessionStore:
        return DatabaseSessionStore(using="default", clock=clock, **options)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=WITH_POSTGRES)
class TestPostgresConformance(StoreConformance):
    @pytest.fixture(autouse=True)
    def _needs_postgres(self) -> None:
        need_postgres()

    def make_store(self, clock: ManualClock, **options: Any) -> DatabaseSessionStore:
        return DatabaseSessionStore(using="postgres", clock=clock, **options)


def _run_state_machine(alias: str) -> None:
    def make(clock: ManualClock) -> DatabaseSessionStore:
        # The machine's payers are fixed: each example starts from an empty table.
        SessionEntry.objects.using(alias).all().delete()
        return DatabaseSessionStore(using=alias, clock=clock, ttl_ms=DEFAULT_TTL)

    run_state_machine_as_test(
        store_state_machine(make),
        settings=hypothesis_settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@sqlite_db
def test_state_machine_sqlite() -> None:
    _run_state_machine("default")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=WITH_POSTGRES)
def test_state_machine_postgres(postgres: str) -> None:
    _run_state_machine(postgres)


# -- query budget ---------------------------------------------------------------------------


def run(method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Call a store method from sync code; its database hop runs on this thread."""

    async def call() -> T:
        return await method(*args, **kwargs)

    return async_to_sync(call)()


def _statements(alias: str, call: Callable[[], Any]) -> list[str]:
    with CaptureQueriesContext(connections[alias]) as captured:
        call()
    return [q["sql"] for q in captured.captured_queries]


def _check_query_budget(alias: str) -> None:
    clock = ManualClock()
    store = DatabaseSessionStore(using=alias, clock=clock)
    payer = "0xbudget"
    run(store.set, payer, "warm-up", "v")  # opens the connection outside the counts

    sql = _statements(alias, lambda: run(store.set, payer, "k", "v"))
    assert len(sql) == 1 and "ON CONFLICT" in sql[0].upper(), sql
    sql = _statements(alias, lambda: run(store.set, payer, "k", "v2", ttl_ms=0))
    assert len(sql) == 1, sql

    sql = _statements(alias, lambda: run(store.get, payer, "k"))  # ttl 0: no slide to write
    assert len(sql) == 1 and sql[0].upper().startswith("SELECT"), sql
    run(store.set, payer, "k", "v3", ttl_ms=5000)
    sql = _statements(alias, lambda: run(store.get, payer, "k"))
    assert len(sql) == 2 and sql[1].upper().startswith("UPDATE"), sql
    assert len(_statements(alias, lambda: run(store.get, payer, "missing"))) == 1

    sql = _statements(alias, lambda: run(store.delete, payer, "k"))
    assert len(sql) == 1 and sql[0].upper().startswith("DELETE"), sql
    assert len(_statements(alias, lambda: run(store.delete, payer, "k"))) == 1

    entries = {f"key{i:03d}": f"value{i}" for i in range(300)}
    assert len(_statements(alias, lambda: run(store.set_many, payer, entries))) == 1
    keys = list(entries)[:200]
    assert len(_statements(alias, lambda: run(store.get_many, payer, keys))) == 2
    assert len(_statements(alias, lambda: run(store.delete_many, payer, keys))) == 1

    cursor = None
    for _ in range(3):
        pages: list[ListResult] = []

        def next_page(after: str | None = cursor, into: list[ListResult] = pages) -> None:
            into.append(run(store.list, payer, limit=30, cursor=after))

        sql = _statements(alias, next_page)
        assert len(sql) == 1, sql
        assert "OFFSET" not in sql[0].upper() and "LIMIT 31" in sql[0].upper(), sql
        cursor = pages[0].cursor
        assert cursor is not None
    sql = _statements(alias, lambda: run(store.list, payer, prefix="key1_%", limit=5))
    assert len(sql) == 1 and "LIKE" not in sql[0].upper(), sql


@sqlite_db
def test_query_budget_sqlite() -> None:
    _check_query_budget("default")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=WITH_POSTGRES)
def test_query_budget_postgres(postgres: str) -> None:
    _check_query_budget(postgres)


# -- ordering on PostgreSQL ---------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, databases=WITH_POSTGRES)
def test_postgres_orders_by_code_point_through_the_index(postgres: str) -> None:
    store = DatabaseSessionStore(using=postgres)
    payer = "0xorder"
    # A locale collation (en_US) would give a, A, b, B, é, ...; code points do not.
    keys = ["b", "a", "B", "A", "aa", "a b", "a_", "É", "é", "z", "\uff5a", "😀", "~", "0", "10"]
    run(store.set_many, payer, dict.fromkeys(keys, "v"))
    assert list(run(store.list, payer).entries) == sorted(keys)

    pages: list[str] = []
    cursor = None
    while True:
        page = run(store.list, payer, limit=4, cursor=cursor)
        pages.extend(page.entries)
        cursor = page.cursor
        if cursor is None:
            break
    assert pages == sorted(keys)

    connection = connections[postgres]
    with connection.cursor() as cursor_:
        cursor_.execute(
            "SELECT column_name, collation_name FROM information_schema.columns "
            "WHERE table_name = %s AND column_name IN ('payer', 'key')",
            [SessionEntry._meta.db_table],
        )
        assert dict(cursor_.fetchall()) == {"payer": "C", "key": "C"}

    sql = _statements(postgres, lambda: run(store.list, payer, limit=4, cursor=cursor))
    with connection.cursor() as cursor_:
        cursor_.execute("SET enable_seqscan = off")
        try:
            cursor_.execute("EXPLAIN " + sql[0])
            plan = "\n".join(row[0] for row in cursor_.fetchall())
        finally:
            cursor_.execute("RESET enable_seqscan")
    # The unique (payer, key) index yields rows in page order: no sort step.
    assert "aixyz_sessions_payer_key_uniq" in plan and "Sort" not in plan, plan


# -- housekeeping -----------------------------------------------------------------------


@sqlite_db
def test_purge_expired_deletes_in_batches() -> None:
    clock = ManualClock()
    store = DatabaseSessionStore(clock=clock, ttl_ms=1000)
    run(store.set_many, "0xa", {f"old{i:02d}": "v" for i in range(25)})
    run(store.set_many, "0xb", {f"keep{i}": "v" for i in range(5)}, ttl_ms=0)
    clock.advance(500)
    run(store.set, "0xc", "fresh", "v")
    clock.advance(600)  # the 25 expired; "fresh" has 400 ms left

    now = store._moment(clock())
    sql = _statements("default", lambda: SessionEntry.objects.purge_expired(now, batch_size=10))
    deletes = [s for s in sql if s.upper().startswith("DELETE")]
    assert len(deletes) == 3
    assert SessionEntry.objects.count() == 6
    assert run(store.purge_expired) == 0
    clock.advance(1000)
    assert run(store.purge_expired) == 1
    assert set(SessionEntry.objects.values_list("payer", flat=True)) == {"0xb"}


def test_purge_batch_size_must_be_positive() -> None:
    from datetime import UTC, datetime

    with pytest.raises(ValueError, match="batch_size"):
        SessionEntry.objects.purge_expired(datetime.now(UTC), batch_size=0)


@sqlite_db
def test_live_and_expired_querysets() -> None:
    clock = ManualClock()
    store = DatabaseSessionStore(clock=clock)
    run(store.set, "0xa", "short", "v", ttl_ms=10)
    run(store.set, "0xa", "never", "v", ttl_ms=0)
    clock.advance(10)
    now = store._moment(clock())
    assert list(SessionEntry.objects.live(now).values_list("key", flat=True)) == ["never"]
    assert list(SessionEntry.objects.expired(now).values_list("key", flat=True)) == ["short"]
    entry = SessionEntry.objects.get(key="never")
    assert entry.expires_at is None and entry.ttl_ms == 0 and str(entry) == "0xa / never"


# -- configuration ------------------------------------------------------------------------


def test_unknown_alias_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"'nope' is not a database alias in settings\.DATABASES"):
        DatabaseSessionStore(using="nope")
    with pytest.raises(TypeError, match="using"):
        DatabaseSessionStore(using=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl_ms"):
        DatabaseSessionStore(ttl_ms=-1)


def test_check_reports_a_vanished_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    store = DatabaseSessionStore(using="default")
    assert store.check() == []
    monkeypatch.setattr(django_settings, "DATABASES", {"other": {}})
    (error,) = store.check()
    assert error.id == "aixyz_sessions.E010" and "'default'" in error.msg and error.hint


def test_setting_builds_the_store() -> None:
    from aixyz_sessions.conf import StoreConfigError, build_store

    store = build_store(
        {
            "BACKEND": "aixyz_sessions.stores.db.DatabaseSessionStore",
            "OPTIONS": {"using": "default", "ttl_ms": 5},
        }
    )
    assert isinstance(store, DatabaseSessionStore) and store.default_ttl_ms == 5
    with pytest.raises(StoreConfigError, match="nope") as info:
        build_store(
            {
                "BACKEND": "aixyz_sessions.stores.db.DatabaseSessionStore",
                "OPTIONS": {"using": "nope"},
            }
        )
    assert info.value.id == "aixyz_sessions.E003"


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("a", "b"),
        ("user:", "user;"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff", None),
        ("\ud7ff", "\ue000"),
        ("é", "ê"),
    ],
)
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert prefix_upper_bound(prefix) == bound


@sqlite_db
def test_works_without_use_tz(settings: Any) -> None:
    settings.USE_TZ = False
    clock = ManualClock()
    store = DatabaseSessionStore(clock=clock)
    run(store.set, "0xa", "k", "v", ttl_ms=1000)
    clock.advance(600)
    assert run(store.get, "0xa", "k") == "v"
    clock.advance(600)
    assert run(store.get, "0xa", "k") == "v"  # slid at the read
    clock.advance(1000)
    assert run(store.get, "0xa", "k") is None


# -- failures ------------------------------------------------------------------------------


@pytest.fixture
def unreachable_alias() -> Iterator[str]:
    """A DATABASES entry for PostgreSQL on a closed port."""
    alias = "unreachable"
    entry = connections.configure_settings(
        {
            "default": {"ENGINE": "django.db.backends.dummy"},  # required by the helper
            alias: {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": 1,
                "NAME": "nowhere",
                "USER": "postgres",
                "OPTIONS": {"connect_timeout": 2},
            },
        }
    )[alias]
    # Django reads DATABASES through connections.settings (normally the same dict).
    targets = {id(d): d for d in (django_settings.DATABASES, connections.settings)}.values()
    for databases in targets:
        databases[alias] = entry

    def forget() -> None:
        try:
            del connections[alias]
        except AttributeError:  # never used on this thread
            pass

    try:
        yield alias
    finally:
        asyncio.run(sync_to_async(forget, thread_sensitive=True)())
        forget()
        for databases in targets:
            databases.pop(alias, None)


async def test_unreachable_database_is_unavailable(
    unreachable_alias: str, django_db_blocker: Any
) -> None:
    # No django_db mark: a test case would refuse an alias it does not manage.
    django_db_blocker.unblock()
    try:
        await _every_operation_is_unavailable(unreachable_alias)
    finally:
        django_db_blocker.restore()


async def _every_operation_is_unavailable(alias: str) -> None:
    store = DatabaseSessionStore(using=alias)
    calls = {
        "get": lambda: store.get("0xa", "k"),
        "set": lambda: store.set("0xa", "k", "v"),
        "delete": lambda: store.delete("0xa", "k"),
        "list": lambda: store.list("0xa", limit=3),
        "get_many": lambda: store.get_many("0xa", ["k"]),
        "set_many": lambda: store.set_many("0xa", {"k": "v", "l": "w"}),
        "delete_many": lambda: store.delete_many("0xa", ["k"]),
        "purge_expired": lambda: store.purge_expired(),
    }
    for name, call in calls.items():
        with pytest.raises(SessionStoreUnavailable, match=f"'{alias}'") as info:
            await call()
        assert "unavailable" in str(info.value), name
    # Validation still comes first: a bad argument is the caller's error, not the database's.
    with pytest.raises(ValueError):
        await store.set("0xa", "", "v")


@sqlite_db
def test_a_refused_write_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = ManualClock()
    store = DatabaseSessionStore(clock=clock)
    run(store.set_many, "0xa", {"a": "old", "b": "old"}, ttl_ms=0)
    # Two rows per INSERT, so four entries need two statements in one transaction.
    monkeypatch.setattr(DatabaseSessionStore, "_param_budget", lambda self, connection: 14)
    inserts: list[str] = []

    def lose_second_insert(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.upper().startswith("INSERT"):
            inserts.append(sql)
            if len(inserts) >= 2:
                raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(lose_second_insert):
        with pytest.raises(SessionStoreUnavailable, match="'default'"):
            run(store.set_many, "0xa", {"a": "new", "b": "new", "c": "new", "d": "new"})
        assert len(inserts) == 2
        with pytest.raises(SessionStoreUnavailable):
            run(store.set, "0xa", "a", "newer")
    assert run(store.list, "0xa").entries == {"a": "old", "b": "old"}


@sqlite_db
def test_get_slide_never_shortens_a_later_expiry() -> None:
    """The slide is guarded: a read computed with an older clock cannot pull expiry back."""
    clock = ManualClock()
    store = DatabaseSessionStore(clock=clock)
    run(store.set, "0xa", "k", "v", ttl_ms=1000)
    entry = SessionEntry.objects.get(key="k")
    later = entry.expires_at
    assert later is not None
    SessionEntry.objects.filter(pk=entry.pk).update(expires_at=later + timedelta(seconds=5))
    assert run(store.get, "0xa", "k") == "v"
    assert SessionEntry.objects.get(pk=entry.pk).expires_at == later + timedelta(seconds=5)
