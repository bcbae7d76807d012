"""The housekeeping commands on the configured store, and their clear errors."""

from __future__ import annotations

import asyncio
import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from aixyz_sessions import get_store
from aixyz_sessions.stores.base import ListResult, SessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from aixyz_sessions.testing import ManualClock

CLOCK = ManualClock()
PAYER = "0xAbC0000000000000000000000000000000000001"


def clocked_store() -> InMemorySessionStore:
    return InMemorySessionStore(clock=CLOCK, max_entries=5000)


class ListlessStore(SessionStore):
    """A store that can do nothing but fail: for the error paths."""

    async def get(self, payer: str, key: str) -> str | None:
        return None

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        return None

    async def delete(self, payer: str, key: str) -> bool:
        return False

    async def list(self, payer: str, **kwargs: Any) -> ListResult:
        raise NotImplementedError("this store cannot list")


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def store(settings: Any) -> InMemorySessionStore:
    settings.AIXYZ_SESSION_STORE = "tests.test_commands.clocked_store"
    made = get_store()
    assert isinstance(made, InMemorySessionStore)
    return made


def fill(store: SessionStore, payer: str, entries: dict[str, str], ttl_ms: int = 0) -> None:
    async def write() -> None:
        items = list(entries.items())
        for start in range(0, len(items), store.max_batch):
            await store.set_many(payer, dict(items[start : start + store.max_batch]), ttl_ms=ttl_ms)

    asyncio.run(write())


def test_show_lists_live_entries(store: InMemorySessionStore) -> None:
    fill(store, PAYER.lower(), {"b": "2", "a": "1", "c:x": "3"})
    fill(store, "0xother", {"a": "secret"})
    out, err = run("aixyz_sessions_show", PAYER)
    assert out.splitlines() == ["a = 1", "b = 2", "c:x = 3", f"3 entries for {PAYER.lower()}."]
    assert "secret" not in out
    assert "InMemorySessionStore" in err  # the per-process note
    out, _ = run("aixyz_sessions_show", PAYER, "--prefix", "c:", "--json")
    assert json.loads(out) == {"payer": PAYER.lower(), "entries": {"c:x": "3"}}
    out, _ = run("aixyz_sessions_show", PAYER, "--keys-only")
    assert out.splitlines()[:3] == ["a", "b", "c:x"]


def test_show_pages_through_many(store: InMemorySessionStore) -> None:
    fill(store, PAYER.lower(), {f"k{i:04d}": str(i) for i in range(1200)})
    out, _ = run("aixyz_sessions_show", PAYER, "--json")
    assert len(json.loads(out)["entries"]) == 1200


def test_show_nothing(store: InMemorySessionStore) -> None:
    out, _ = run("aixyz_sessions_show", "0xnobody")
    assert out.strip() == "No live entries for 0xnobody."


def test_show_without_a_payer_lists_the_payers(store: InMemorySessionStore) -> None:
    for payer in ("0xCCC", "0xaaa", "0xBbb"):
        fill(store, payer.lower(), {"k": "v", "k2": "v"})
    fill(store, "0xgone", {"k": "v"}, ttl_ms=10)
    CLOCK.advance(50)
    out, err = run("aixyz_sessions_show")
    assert out.splitlines() == ["0xaaa", "0xbbb", "0xccc", "3 payers."]
    assert "InMemorySessionStore" in err  # the per-process note
    out, _ = run("aixyz_sessions_show", "--json")
    assert json.loads(out) == {"payers": ["0xaaa", "0xbbb", "0xccc"], "cursor": None}
    out, _ = run("aixyz_sessions_show", "--prefix", "0xB")  # payers are filed lower-case
    assert out.splitlines() == ["0xbbb", "1 payer."]
    out, _ = run("aixyz_sessions_show", "--prefix", "0xz")
    assert out.strip() == "No payers starting with '0xz' with live entries."


def test_show_pages_through_the_payers(store: InMemorySessionStore) -> None:
    payers = [f"0x{i:04x}" for i in range(250)]
    for payer in payers:
        fill(store, payer, {"k": "v"})
    out, _ = run("aixyz_sessions_show")  # 100 a page by default
    lines = out.splitlines()
    assert lines[:100] == payers[:100]
    assert lines[100].startswith("100 payers; more remain: pass --cursor ")
    cursor = lines[100].split("--cursor ")[1].split()[0]
    seen = lines[:100]
    while cursor is not None:
        out, _ = run("aixyz_sessions_show", "--limit", "60", "--cursor", cursor, "--json")
        page = json.loads(out)
        seen += page["payers"]
        cursor = page["cursor"]
    assert seen == payers
    out, _ = run("aixyz_sessions_show", "--limit", "0", "--json")
    assert json.loads(out) == {"payers": payers, "cursor": None}
    out, _ = run("aixyz_sessions_show", "--limit", "2", "--prefix", "0x00f", "--json")
    assert json.loads(out)["payers"] == ["0x00f0", "0x00f1"]
    assert json.loads(out)["cursor"]


def test_show_payers_argument_errors(store: InMemorySessionStore) -> None:
    fill(store, "0xa", {"k": "v"})
    with pytest.raises(CommandError, match="cursor is not valid"):
        run("aixyz_sessions_show", "--cursor", "garbage")
    with pytest.raises(CommandError, match="limit must be >= 0"):
        run("aixyz_sessions_show", "--limit", "-1")
    with pytest.raises(CommandError, match="--keys-only shows one payer's keys"):
        run("aixyz_sessions_show", "--keys-only")
    with pytest.raises(CommandError, match="--limit and --cursor page the list of payers"):
        run("aixyz_sessions_show", PAYER, "--limit", "5")


def test_erase_one_payer(store: InMemorySessionStore) -> None:
    fill(store, PAYER.lower(), {f"k{i:04d}": "v" for i in range(2500)})
    fill(store, "0xother", {"keep": "me"})
    out, _ = run("aixyz_sessions_erase", PAYER)
    assert f"Erased 2500 session entries of {PAYER.lower()}." in out
    assert asyncio.run(store.list(PAYER.lower())).entries == {}
    assert asyncio.run(store.get("0xother", "keep")) == "me"
    out, _ = run("aixyz_sessions_erase", PAYER)
    assert "Erased 0 session entries" in out


def test_purge(store: InMemorySessionStore) -> None:
    fill(store, "0xa", {"x": "1", "y": "2"}, ttl_ms=10)
    fill(store, "0xb", {"z": "3"}, ttl_ms=0)
    CLOCK.advance(50)
    out, _ = run("aixyz_sessions_purge")
    assert "Purged 2 expired session entries." in out
    assert len(store) == 1


def test_store_that_cannot_list_or_purge(settings: Any) -> None:
    settings.AIXYZ_SESSION_STORE = "tests.test_commands.ListlessStore"
    with pytest.raises(CommandError, match="ListlessStore cannot do this: this store cannot list"):
        run("aixyz_sessions_show", PAYER)
    with pytest.raises(CommandError, match="cannot list"):
        run("aixyz_sessions_erase", PAYER)
    with pytest.raises(CommandError, match="cannot purge"):
        run("aixyz_sessions_purge")
    with pytest.raises(CommandError, match=r"ListlessStore cannot list payers .*pass a payer"):
        run("aixyz_sessions_show")


def test_bad_store_setting_is_a_clear_error(settings: Any) -> None:
    settings.AIXYZ_SESSION_STORE = "no.such.Store"
    with pytest.raises(CommandError, match=r"cannot be imported[\s\S]*Hint"):
        run("aixyz_sessions_purge")


def test_empty_payer(store: InMemorySessionStore) -> None:
    with pytest.raises(CommandError, match="payer"):
        run("aixyz_sessions_erase", " ")
