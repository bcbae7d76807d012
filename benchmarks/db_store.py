"""DatabaseSessionStore against the plain ORM calls a view would make, measured in one run.

For SQLite (a file in a temporary directory) and PostgreSQL (database
``aixyz_bench`` at 127.0.0.1:5432, created when missing; skipped with a
reason when unreachable) it prints ops/s of:

- ``set``: ``store.set`` vs ``SessionEntry.objects.update_or_create`` (each key
  written twice in a row: half inserts, half overwrites);
- ``get``: ``store.get`` vs ``filter(payer=, key=).first()``, for entries
  that never expire, then for entries with the default sliding TTL, where
  the store also writes the new expiry (compared with ``first()`` alone and
  with ``first()`` plus the same ``update()``);
- ``list``: one 100-entry page, ``store.list(limit=100, cursor=...)`` vs
  ``filter(payer=, key__gt=last).order_by("key")[:100]``.

Both sides are driven the same way: from async code, each call one
``sync_to_async(thread_sensitive=True)`` hop (the store makes its own hop;
each baseline call is wrapped in one). Each figure is the best of
``--rounds`` runs of at most ``--ops`` calls or ``--seconds`` seconds.
Target: every ratio >= 1.0 (the sliding-TTL read against ``first()`` alone
does a write the baseline does not, and is shown for information).

    .venv/bin/python benchmarks/db_store.py [--ops 3000] [--seconds 1.0] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django
from django.conf import settings

PG_HOST, PG_PORT, PG_DB = "127.0.0.1", 5432, "aixyz_bench"
PAYERS = [f"0x{p:040x}" for p in range(20)]
VALUE = "v" * 64
PAGE = 100


def postgres_reason() -> str | None:
    """Why PostgreSQL cannot be benchmarked here, or None when it can (creating the DB)."""
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=0.5):
            pass
    except OSError:
        return f"nothing listens on {PG_HOST}:{PG_PORT}"
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'aixyz-sessions[postgres]')"
    try:
        with psycopg.connect(
            host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [PG_DB]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DB}"')
    except psycopg.Error as exc:
        return f"cannot prepare database {PG_DB!r}: {exc}".strip()
    return None


def configure(sqlite_path: Path, with_postgres: bool) -> None:
    databases: dict[str, dict[str, Any]] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(sqlite_path)}
    }
    if with_postgres:
        databases["postgresql"] = {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": PG_HOST,
            "PORT": PG_PORT,
            "USER": "postgres",
            "NAME": PG_DB,
        }
    settings.configure(
        SECRET_KEY="benchmark-only",
        USE_TZ=True,
        INSTALLED_APPS=["aixyz_sessions"],
        DATABASES=databases,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


async def rate(call: Callable[[int], Awaitable[Any]], ops: int, seconds: float) -> float:
    """Calls per second of ``call(i)`` for i = 0, 1, ... until ``ops`` calls or ``seconds``."""
    start = time.perf_counter()
    deadline = start + seconds
    done = 0
    while done < ops:
        await call(done)
        done += 1
        if done % 16 == 0 and time.perf_counter() > deadline:
            break
    return done / (time.perf_counter() - start)


async def bench_alias(alias: str, ops: int, seconds: float, rounds: int) -> list[tuple[str, ...]]:
    from asgiref.sync import sync_to_async
    from django.core.management import call_command

    from aixyz_sessions.models import SessionEntry
    from aixyz_sessions.stores.db import DatabaseSessionStore

    await sync_to_async(call_command, thread_sensitive=True)(
        "migrate", "aixyz_sessions", database=alias, verbosity=0
    )
    rows = SessionEntry.objects.db_manager(alias)
    await sync_to_async(lambda: rows.all().delete(), thread_sensitive=True)()
    store = DatabaseSessionStore(using=alias)
    ttl = store.default_ttl_ms

    def keyed(prefix: str, i: int) -> tuple[str, str]:
        return PAYERS[i % len(PAYERS)], f"{prefix}:{i // len(PAYERS):06d}"

    # -- baselines: the ORM calls a hand-written view would make ---------------------

    def orm_set(payer: str, key: str) -> None:
        expires = datetime.now(UTC) + timedelta(milliseconds=ttl)
        rows.update_or_create(
            payer=payer, key=key, defaults={"value": VALUE, "ttl_ms": ttl, "expires_at": expires}
        )

    def orm_get(payer: str, key: str) -> str | None:
        entry = rows.filter(payer=payer, key=key).first()
        return None if entry is None else entry.value

    def orm_get_and_slide(payer: str, key: str) -> str | None:
        entry = rows.filter(payer=payer, key=key).first()
        if entry is None:
            return None
        expires = datetime.now(UTC) + timedelta(milliseconds=entry.ttl_ms)
        rows.filter(pk=entry.pk).update(expires_at=expires)
        return entry.value

    def orm_page(payer: str, after: str) -> list[Any]:
        return list(rows.filter(payer=payer, key__gt=after).order_by("key")[:PAGE])

    hop_set = sync_to_async(orm_set, thread_sensitive=True)
    hop_get = sync_to_async(orm_get, thread_sensitive=True)
    hop_get_slide = sync_to_async(orm_get_and_slide, thread_sensitive=True)
    hop_page = sync_to_async(orm_page, thread_sensitive=True)

    # -- data for reads and pages -----------------------------------------------------------

    n_read = max(ops, 1000)
    for prefix, entry_ttl in (("never", 0), ("slide", None)):
        for payer in PAYERS:
            keys = [keyed(prefix, i)[1] for i in range(n_read) if keyed(prefix, i)[0] == payer]
            for start in range(0, len(keys), 500):
                batch = dict.fromkeys(keys[start : start + 500], VALUE)
                await store.set_many(payer, batch, ttl_ms=entry_ttl)
    list_payer = "0x" + "f" * 40
    list_keys = [f"item:{i:06d}" for i in range(20 * PAGE)]
    for start in range(0, len(list_keys), 500):
        batch = dict.fromkeys(list_keys[start : start + 500], VALUE)
        await store.set_many(list_payer, batch, ttl_ms=0)

    async def store_pages(_: int, state: dict[str, Any] = {}) -> None:  # noqa: B006
        page = await store.list(list_payer, limit=PAGE, cursor=state.get("cursor"))
        state["cursor"] = page.cursor

    async def orm_pages(_: int, state: dict[str, Any] = {}) -> None:  # noqa: B006
        chunk = await hop_page(list_payer, state.get("after", ""))
        state["after"] = chunk[-1].key if len(chunk) == PAGE else ""

    round_no = {"n": 0}

    def store_set() -> Callable[[int], Awaitable[None]]:
        tag = f"s{round_no['n']}"  # fresh keys each round: inserts and overwrites alike
        return lambda i: store.set(*keyed(tag, i // 2), VALUE)

    def orm_set_call() -> Callable[[int], Awaitable[None]]:
        tag = f"b{round_no['n']}"
        return lambda i: hop_set(*keyed(tag, i // 2))

    cases: list[tuple[str, str, Callable[[], Callable[[int], Awaitable[Any]]]]] = [
        ("set", "store", store_set),
        ("set", "update_or_create()", orm_set_call),
        ("get ttl=0", "store", lambda: lambda i: store.get(*keyed("never", i % n_read))),
        ("get ttl=0", "first()", lambda: lambda i: hop_get(*keyed("never", i % n_read))),
        ("get sliding", "store", lambda: lambda i: store.get(*keyed("slide", i % n_read))),
        ("get sliding", "first()", lambda: lambda i: hop_get(*keyed("slide", i % n_read))),
        (
            "get sliding",
            "first()+update()",
            lambda: lambda i: hop_get_slide(*keyed("slide", i % n_read)),
        ),
        ("list page", "store", lambda: store_pages),
        ("list page", "filter()[:100]", lambda: orm_pages),
    ]
    best: dict[tuple[str, str], float] = {}
    for n in range(rounds):
        round_no["n"] = n
        for op, who, make in cases:
            result = await rate(make(), ops, seconds)
            best[(op, who)] = max(best.get((op, who), 0.0), result)

    lines = []
    for op, who, _ in cases:
        if who == "store":
            continue
        ours, base = best[(op, "store")], best[(op, who)]
        lines.append((alias, op, f"{ours:,.0f}", who, f"{base:,.0f}", f"{ours / base:.2f}x"))
    return lines


async def main(ops: int, seconds: float, rounds: int) -> None:
    reason = postgres_reason()
    with tempfile.TemporaryDirectory(prefix="aixyz-bench-") as tmp:
        configure(Path(tmp) / "bench.sqlite3", with_postgres=reason is None)
        print(
            "DatabaseSessionStore vs raw ORM; both driven from async code through one "
            "sync_to_async(thread_sensitive=True) hop per call"
        )
        print(f"best of {rounds} rounds, each at most {ops} calls or {seconds:.1f} s")
        lines = await bench_alias("default", ops, seconds, rounds)
        if reason is None:
            lines += await bench_alias("postgresql", ops, seconds, rounds)
        header = ("database", "op", "store ops/s", "baseline", "baseline ops/s", "ratio")
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        for row in [header, *lines]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if reason is not None:
            print(f"postgresql: skipped, {reason}")
        from asgiref.sync import sync_to_async
        from django.db import connections

        await sync_to_async(connections.close_all, thread_sensitive=True)()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.ops, args.seconds, args.rounds))
