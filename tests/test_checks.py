"""AIXYZ_SESSION_STORE: every form, and check errors instead of tracebacks."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from aixyz_sessions import get_store
from aixyz_sessions.checks.store import check_session_store
from aixyz_sessions.stores.memory import InMemorySessionStore

CUSTOM = InMemorySessionStore(max_entries=7)


def make_custom() -> InMemorySessionStore:
    return InMemorySessionStore(max_entries=9)


def not_a_store_factory() -> object:
    return {"not": "a store"}


def failing_factory() -> InMemorySessionStore:
    raise RuntimeError("no backend")


class NotAStore:
    pass


def ids(messages: list) -> list[str]:  # type: ignore[type-arg]
    return [m.id for m in messages]


def test_default_is_in_memory() -> None:
    store = get_store()
    assert isinstance(store, InMemorySessionStore)
    assert get_store() is store
    assert check_session_store() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("aixyz_sessions.stores.memory.InMemorySessionStore", 10_000),
        (
            {
                "BACKEND": "aixyz_sessions.stores.memory.InMemorySessionStore",
                "OPTIONS": {"max_entries": 5},
            },
            5,
        ),
        ({"BACKEND": "aixyz_sessions.stores.memory.InMemorySessionStore"}, 10_000),
        ("tests.test_checks.CUSTOM", 7),
        ("tests.test_checks.make_custom", 9),
    ],
)
def test_setting_forms(settings, value, expected) -> None:  # type: ignore[no-untyped-def]
    settings.AIXYZ_SESSION_STORE = value
    store = get_store()
    assert isinstance(store, InMemorySessionStore)
    assert store.max_entries == expected
    assert get_store() is store


@pytest.mark.parametrize(
    ("value", "check_id", "words"),
    [
        ("no.such.Store", "aixyz_sessions.E001", "cannot be imported"),
        ("tests.test_checks.NotAStore", "aixyz_sessions.E002", "not a SessionStore"),
        ("tests.test_checks.not_a_store_factory", "aixyz_sessions.E002", "not a SessionStore"),
        ({"BACKEND": "tests.test_checks.NotAStore"}, "aixyz_sessions.E002", "not a SessionStore"),
        (
            {
                "BACKEND": "aixyz_sessions.stores.memory.InMemorySessionStore",
                "OPTIONS": {"max_entries": 0},
            },
            "aixyz_sessions.E003",
            "max_entries must be >= 1",
        ),
        (
            {
                "BACKEND": "aixyz_sessions.stores.memory.InMemorySessionStore",
                "OPTIONS": {"colour": "red"},
            },
            "aixyz_sessions.E003",
            "colour",
        ),
        ({"OPTIONS": {}}, "aixyz_sessions.E004", "BACKEND"),
        ({"BACKEND": "x", "OPTION": {}}, "aixyz_sessions.E004", "BACKEND"),
        (42, "aixyz_sessions.E004", "str or a dict"),
        ("tests.test_checks.failing_factory", "aixyz_sessions.E005", "no backend"),
    ],
)
def test_bad_settings_are_check_errors(settings, value, check_id, words) -> None:  # type: ignore[no-untyped-def]
    settings.AIXYZ_SESSION_STORE = value
    messages = check_session_store()
    assert ids(messages) == [check_id]
    assert words in messages[0].msg
    assert messages[0].hint


def test_manage_py_check_reports_it(settings) -> None:  # type: ignore[no-untyped-def]
    settings.AIXYZ_SESSION_STORE = "no.such.Store"
    with pytest.raises(SystemCheckError) as info:
        call_command("check", stdout=StringIO(), stderr=StringIO())
    text = str(info.value)
    assert "aixyz_sessions.E001" in text and "no.such.Store" in text and "HINT" in text


def test_manage_py_check_passes_by_default() -> None:
    out = StringIO()
    with override_settings(DEBUG=True):
        call_command("check", stdout=out)
    assert "no issues" in out.getvalue()


def test_default_store_outside_debug_is_a_warning_not_an_error() -> None:
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)  # tests.settings: DEBUG = False
    assert "aixyz_sessions.W010" in err.getvalue() and "ERRORS" not in err.getvalue()


def test_a_store_whose_extra_is_not_installed_names_the_extra() -> None:
    """``redis`` missing: E001 says which ``pip install`` brings it (in a fresh interpreter)."""
    script = (
        "import sys\n"
        "sys.modules['redis'] = None  # as if the redis extra were not installed\n"
        "import django\n"
        "from django.conf import settings\n"
        "settings.configure(INSTALLED_APPS=['aixyz_sessions'], SECRET_KEY='x')\n"
        "django.setup()\n"
        "from aixyz_sessions.conf import StoreConfigError, build_store\n"
        "try:\n"
        "    build_store('aixyz_sessions.stores.redis.RedisSessionStore')\n"
        "except StoreConfigError as exc:\n"
        "    print(exc.id, '|', exc.hint)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.startswith("aixyz_sessions.E001 |"), done.stdout + done.stderr
    assert 'pip install "aixyz-sessions[redis]"' in done.stdout
