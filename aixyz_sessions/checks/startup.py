"""Fail fast: the app's checks run when the server starts, not at the first paid request.

``manage.py check`` reports a wrong setting, but servers do not run it:
under uvicorn a misspelled store path or a missing ``PAY_TO`` used to
surface as a 500 with a traceback at the first paid request. So:

* :func:`aixyz_sessions.asgi.get_asgi_application` calls :func:`ensure_ready`
  while it is built, and the server refuses to start with the messages;
* :class:`~aixyz_sessions.payments.middleware.X402Middleware` (the WSGI path
  too) calls :func:`first_request_problem` before its first paid request: the
  problems are logged once and every paid request answers a JSON 500 naming
  them, without a traceback.

The problems are this app's own system checks at error level (tag
``aixyz_sessions``) plus one that needs the database: the database store, or
the database replay guard, with its table not migrated
(``aixyz_sessions.E012``). It is a database check, so ``manage.py check
--database default`` shows it, except while ``manage.py migrate`` runs (that
command checks the databases before it migrates them, and migrating is the
fix). A database that cannot be reached at start-up is an outage, not a
misconfiguration: it does not stop the start.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DatabaseError, connections
from django.dispatch import receiver

from ..replay import ReplayGuard

__all__ = [
    "NotReady",
    "afirst_request_problem",
    "check_tables_migrated",
    "configured_replay_guard",
    "ensure_ready",
    "first_request_problem",
    "startup_problems",
]

logger = logging.getLogger("aixyz_sessions")

TAG = "aixyz_sessions"


class NotReady(ImproperlyConfigured):
    """The app's configuration cannot work; the message lists every problem with its hint."""

    def __init__(self, problems: list[checks.CheckMessage]) -> None:
        self.problems = problems
        lines = [f"  {problem}" for problem in problems]
        super().__init__("aixyz_sessions cannot start; fix these:\n" + "\n".join(lines))


def _missing_tables(aliases: Iterable[str] | None = None) -> list[checks.CheckMessage]:
    """E012 for each database (of ``aliases``, default all) where this app's tables are not
    migrated."""
    from ..conf import get_store
    from ..models import PaymentClaim, SessionEntry
    from ..stores.db import DatabaseReplayGuard, DatabaseSessionStore

    store = get_store()
    needed: dict[str, set[str]] = {}
    if isinstance(store, DatabaseSessionStore):
        needed.setdefault(store.using, set()).add(SessionEntry._meta.db_table)
    guard = configured_replay_guard()
    if isinstance(guard, DatabaseReplayGuard):
        needed.setdefault(guard.store.using, set()).add(PaymentClaim._meta.db_table)
    problems: list[checks.CheckMessage] = []
    for using, tables in needed.items():
        if aliases is not None and using not in aliases:
            continue
        connection = connections[using]
        opened_here = connection.connection is None
        try:
            present = set(connection.introspection.table_names())
            pending = _unapplied_migrations(connection) if tables <= present else []
        except DatabaseError as exc:  # an outage: requests will answer 503 until it passes
            logger.warning("aixyz_sessions: database %r unreachable at start-up: %s", using, exc)
            continue
        finally:
            if opened_here:  # leave a connection someone else opened (a test's) alone
                connection.close()
        missing = sorted(tables - present)
        if missing or pending:
            what = (
                f"the table(s) {', '.join(missing)} of aixyz_sessions do not exist"
                if missing
                # An upgrade's new column (the claims' ``value``): every paid call would fail.
                else f"the aixyz_sessions migration(s) {', '.join(pending)} are not applied"
            )
            problems.append(
                checks.Error(
                    f"{what} in the database {using!r}",
                    hint="Run `python manage.py migrate"
                    + ("" if using == "default" else f" --database {using}")
                    + "` (then `python manage.py check --database "
                    + f"{using}` shows no E012).",
                    id="aixyz_sessions.E012",
                )
            )
    return problems


@checks.register(TAG, checks.Tags.database)
def check_tables_migrated(
    app_configs: Any = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E012 for ``manage.py check --database <alias>`` (database checks run only when asked)."""
    if not databases or sys.argv[1:2] == ["migrate"]:
        return []
    try:
        return _missing_tables(set(databases))
    except Exception:  # a store or guard that cannot be built is reported by its own check
        return []


def _unapplied_migrations(connection: Any) -> list[str]:
    """This app's migrations not applied on ``connection`` (names), in order."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    targets = [node for node in executor.loader.graph.leaf_nodes() if node[0] == "aixyz_sessions"]
    return [migration.name for migration, _ in executor.migration_plan(targets)]


def configured_replay_guard() -> ReplayGuard | None:
    """The replay guard ``AIXYZ_X402`` gives (``None`` without payments), the way the
    payment runtime builds it, without building the rest of the runtime."""
    from django.conf import settings

    if getattr(settings, "AIXYZ_X402", None) is None:
        return None
    from ..payments.conf import get_config
    from ..payments.runtime import build_replay_guard

    return build_replay_guard(get_config().replay_guard)


def _in_a_thread_if_a_loop_runs(function: Any) -> Any:
    # Database access is refused in a thread that runs an event loop.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return function()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(function).result()


def startup_problems() -> list[checks.CheckMessage]:
    """This app's error-level check messages, and tables not migrated."""
    problems = [
        message
        for message in checks.run_checks(tags=[TAG])
        if message.is_serious() and not message.is_silenced()
    ]
    if not problems:  # the store and the payment settings can be built
        problems = _in_a_thread_if_a_loop_runs(_missing_tables)
    return problems


def ensure_ready() -> None:
    """Raise :class:`NotReady` listing the problems, if there are any."""
    problems = startup_problems()
    if problems:
        raise NotReady(problems)


_lock = threading.Lock()
_first: list[NotReady | None] = []


def found_no_problem() -> bool:
    """Whether the first look (see :func:`first_request_problem`) ran and found nothing."""
    return bool(_first) and _first[0] is None


async def afirst_request_problem() -> NotReady | None:
    """:func:`first_request_problem` for async code: the first look runs off the loop."""
    if _first:
        return _first[0]
    return await asyncio.to_thread(first_request_problem)


def first_request_problem() -> NotReady | None:
    """The problems, found once per process (and settings change); logged when found."""
    if not _first:
        with _lock:
            if not _first:
                problems = startup_problems()
                found = NotReady(problems) if problems else None
                if found is not None:
                    logger.error("%s", found)
                _first.append(found)
    return _first[0]


@receiver(setting_changed)
def _forget(**kwargs: Any) -> None:
    with _lock:
        _first.clear()
