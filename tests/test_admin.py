"""The SessionEntry admin: list, search, expiry filter, purge action, read-only values."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from aixyz_sessions.models import SessionEntry

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:aixyz_sessions_sessionentry_changelist")
ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20


@pytest.fixture
def entries() -> dict[str, SessionEntry]:
    now = timezone.now()
    rows = {
        "notes": SessionEntry(payer=ALICE, key="notes", value="n" * 200, ttl_ms=0),
        "stale": SessionEntry(
            payer=ALICE, key="stale", value="old", ttl_ms=1000, expires_at=now - timedelta(hours=1)
        ),
        "cart": SessionEntry(
            payer=BOB,
            key="cart",
            value="apples",
            ttl_ms=60_000,
            expires_at=now + timedelta(hours=1),
        ),
        "gone": SessionEntry(
            payer=BOB, key="gone", value="pears", ttl_ms=1000, expires_at=now - timedelta(seconds=1)
        ),
    }
    for row in rows.values():
        row.save()
    return rows


def _keys(response: Any) -> set[str]:
    return {entry.key for entry in response.context["cl"].result_list}


def test_changelist_lists_entries_with_a_short_value(
    admin_client: Client, entries: dict[str, SessionEntry]
) -> None:
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert _keys(response) == {"notes", "stale", "cart", "gone"}
    html = response.content.decode()
    assert ALICE in html and "apples" in html
    assert "n" * 59 + "…" in html and "n" * 61 not in html


def test_search_by_payer_finds_only_that_payer(
    admin_client: Client, entries: dict[str, SessionEntry]
) -> None:
    response = admin_client.get(CHANGELIST, {"q": BOB})
    assert _keys(response) == {"cart", "gone"}
    assert {entry.payer for entry in response.context["cl"].result_list} == {BOB}
    assert _keys(admin_client.get(CHANGELIST, {"q": "notes"})) == {"notes"}


def test_expiry_filter(admin_client: Client, entries: dict[str, SessionEntry]) -> None:
    assert _keys(admin_client.get(CHANGELIST, {"expiry": "active"})) == {"notes", "cart"}
    assert _keys(admin_client.get(CHANGELIST, {"expiry": "expired"})) == {"stale", "gone"}


def test_purge_action_deletes_only_expired_rows(
    admin_client: Client, entries: dict[str, SessionEntry]
) -> None:
    response = admin_client.post(
        CHANGELIST,
        {"action": "purge_expired", "_selected_action": [e.pk for e in entries.values()]},
        follow=True,
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["Purged 2 expired session entries."]
    assert set(SessionEntry.objects.values_list("key", flat=True)) == {"notes", "cart"}


def test_purge_action_acts_on_the_selection(
    admin_client: Client, entries: dict[str, SessionEntry]
) -> None:
    selected = [entries["stale"].pk, entries["cart"].pk]
    response = admin_client.post(
        CHANGELIST, {"action": "purge_expired", "_selected_action": selected}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["Purged 1 expired session entry."]
    assert set(SessionEntry.objects.values_list("key", flat=True)) == {"notes", "cart", "gone"}


def test_change_form_shows_the_value_read_only(
    admin_client: Client, entries: dict[str, SessionEntry]
) -> None:
    url = reverse("admin:aixyz_sessions_sessionentry_change", args=[entries["cart"].pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert "apples" in html
    assert 'name="value"' not in html and "<textarea" not in html
    # A POST cannot change it either.
    admin_client.post(url, {"payer": BOB, "key": "cart", "value": "hacked", "ttl_ms": 0})
    assert SessionEntry.objects.get(pk=entries["cart"].pk).value == "apples"


def test_no_add_by_default(admin_client: Client) -> None:
    assert admin_client.get(reverse("admin:aixyz_sessions_sessionentry_add")).status_code == 403


def test_editable_setting_opens_the_form(
    admin_client: Client, entries: dict[str, SessionEntry], settings: Any
) -> None:
    settings.AIXYZ_SESSIONS_ADMIN_EDITABLE = True
    url = reverse("admin:aixyz_sessions_sessionentry_change", args=[entries["cart"].pk])
    assert 'name="value"' in admin_client.get(url).content.decode()
    assert admin_client.get(reverse("admin:aixyz_sessions_sessionentry_add")).status_code == 200


@pytest.mark.parametrize(
    ("store", "listed"),
    [
        ("aixyz_sessions.stores.db.DatabaseSessionStore", True),
        ("aixyz_sessions.stores.memory.InMemorySessionStore", False),
    ],
)
def test_session_entries_are_listed_only_for_the_database_store(
    admin_client: Client, settings: Any, store: str, listed: bool
) -> None:
    """With another store the table is empty: the index shows *Sessions* only."""
    settings.AIXYZ_SESSION_STORE = store
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert "Sessions" in index
    assert (CHANGELIST in index) is listed
