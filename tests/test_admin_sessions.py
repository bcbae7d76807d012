"""The admin's "Sessions" section on every store: search, pages, entry, delete, erase, permissions.

The flows run on the in-memory store, the database store, a Redis
``CacheSessionStore`` and a ``RedisSessionStore`` on a 3-primary Redis
Cluster (the cluster fixture of ``tests/test_redis_cluster.py``). Redis tests
skip without Redis (fail under ``CI=true``); each writes under its own key
prefix and deletes it afterwards. Sessions are written straight into the
configured store (``get_store()``), the one the admin reads.
"""

from __future__ import annotations

import builtins
import html
import re
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.contenttypes.models import ContentType
from django.test import Client, override_settings
from django.urls import reverse

from aixyz_sessions.admin.sessions import describe_ttl
from aixyz_sessions.conf import get_store
from aixyz_sessions.models import StoredSession
from aixyz_sessions.stores.base import ListResult, SessionStore
from aixyz_sessions.stores.memory import InMemorySessionStore
from tests.services import need_redis
from tests.test_redis_cluster import (  # noqa: F401 - ``cluster`` is a fixture, used by name
    Cluster,
    cluster,
    drop_cluster_keys,
)
from tests.test_replay_guard import drop_keys, redis_caches, unique_prefix
from tests.test_store_outage import DEAD_REDIS, DEAD_STORE

pytestmark = pytest.mark.django_db

PAYERS_URL = reverse("admin:aixyz_sessions_storedsession_changelist")
PAGE_SIZE = 3
MEMORY_STORE = "aixyz_sessions.stores.memory.InMemorySessionStore"


def payer_url(payer: str, page: str = "payer") -> str:
    return reverse(f"admin:aixyz_sessions_storedsession_{page}", args=[payer])


def new_payer(start: str = "") -> str:
    """A random lower-case 0x address whose hex digits start with ``start``."""
    return "0x" + (start + secrets.token_hex(20))[:40]


def write(store: SessionStore, payer: str, entries: dict[str, str]) -> None:
    async def work() -> None:
        await store.set_many(payer, entries)

    async_to_sync(work)()


def listed(store: SessionStore, payer: str) -> ListResult:
    async def work() -> ListResult:
        return await store.list(payer)

    return async_to_sync(work)()


def text(response: Any) -> str:
    return str(response.content.decode())


def link(response: Any, element_id: str) -> str | None:
    """The href of the link with ``id`` in the page, unescaped; ``None`` if absent."""
    tag = re.search(rf'<a [^>]*id="{element_id}"[^>]*>', text(response))
    href = re.search(r'href="([^"]*)"', tag.group(0)) if tag else None
    return html.unescape(href.group(1)) if href else None


def row_links(response: Any, cls: str) -> dict[str, str]:
    """``{link text: href}`` of the links in the table's ``<th class=cls>`` cells, in order."""
    found = re.findall(rf'<th class="{cls}"><a href="([^"]*)">([^<]*)</a></th>', text(response))
    return {html.unescape(label): html.unescape(href) for href, label in found}


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def deletions() -> builtins.list[LogEntry]:
    kind = ContentType.objects.get_for_model(StoredSession)
    return builtins.list(
        LogEntry.objects.filter(content_type=kind, action_flag=DELETION).order_by("pk")
    )


# -- the configured store, four ways -------------------------------------------------------


@contextmanager
def _memory() -> Iterator[None]:
    with override_settings(AIXYZ_SESSION_STORE=MEMORY_STORE):
        yield


@contextmanager
def _database() -> Iterator[None]:
    with override_settings(AIXYZ_SESSION_STORE="aixyz_sessions.stores.db.DatabaseSessionStore"):
        yield


@contextmanager
def _redis_cache() -> Iterator[None]:
    need_redis()
    prefix = unique_prefix()
    store = {
        "BACKEND": "aixyz_sessions.stores.cache.CacheSessionStore",
        "OPTIONS": {"cache_alias": "sessions", "key_prefix": prefix},
    }
    try:
        with override_settings(CACHES=redis_caches(), AIXYZ_SESSION_STORE=store):
            yield
    finally:
        async_to_sync(drop_keys)(prefix)


@contextmanager
def _redis_cluster(where: Cluster) -> Iterator[None]:
    prefix = unique_prefix()
    store = {
        "BACKEND": "aixyz_sessions.stores.redis.RedisSessionStore",
        "OPTIONS": {"url": where.url, "cluster": True, "key_prefix": prefix},
    }
    try:
        with override_settings(AIXYZ_SESSION_STORE=store):
            yield
    finally:
        async_to_sync(drop_cluster_keys)(where, prefix)


@pytest.fixture(
    params=[
        "memory",
        "database",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
def store(request: pytest.FixtureRequest, settings: Any) -> Iterator[SessionStore]:
    """The configured store (``get_store()``), on each backend; the admin's pages of 3."""
    settings.AIXYZ_SESSIONS_ADMIN_PAGE_SIZE = PAGE_SIZE
    configured: AbstractContextManager[None]
    if request.param == "memory":
        configured = _memory()
    elif request.param == "database":
        configured = _database()
    elif request.param == "redis":
        configured = _redis_cache()
    else:
        configured = _redis_cluster(request.getfixturevalue("cluster"))
    with configured:
        yield get_store()


# -- the flows, on every store ---------------------------------------------------------------


def test_search_page_open_delete_erase(admin_client: Client, store: SessionStore) -> None:
    alice, bob = new_payer("ab12"), new_payer("ab13")
    keys = {f"k{i}": f"value {i}" for i in range(6)}
    keys["long"] = "x" * 200
    write(store, alice, keys)
    write(store, bob, {"cart": "apples", "k1": "bob's"})

    # The admin index lists "Sessions" under the app.
    index = admin_client.get(reverse("admin:index"))
    assert f'<a href="{PAYERS_URL}">Sessions</a>' in text(index)

    # Search by part of A's address: surrounding spaces and case do not matter.
    found = admin_client.get(PAYERS_URL, {"q": "  " + alice[:8].upper() + " "})
    assert found.status_code == 200
    assert row_links(found, "field-payer") == {alice: payer_url(alice)}
    assert f'value="{alice[:8]}"' in text(found)
    assert "1 payer on this page" in text(found)
    both = admin_client.get(PAYERS_URL, {"q": "0xab1"})
    assert builtins.list(row_links(both, "field-payer")) == sorted([alice, bob])

    # A's keys, 3 a page: k0 k1 k2 | k3 k4 k5 | long.
    pages: builtins.list[builtins.list[str]] = []
    url: str | None = row_links(found, "field-payer")[alice]
    page: Any = None
    while url is not None and len(pages) < 5:
        page = admin_client.get(url)
        assert page.status_code == 200
        pages.append(builtins.list(row_links(page, "field-key")))
        count = len(pages[-1])
        assert f"{count} {'entry' if count == 1 else 'entries'} on this page" in text(page)
        assert (link(page, "first-page") is None) == (len(pages) == 1)
        url = link(page, "next-page")
    assert pages == [["k0", "k1", "k2"], ["k3", "k4", "k5"], ["long"]]
    assert "x" * 59 + "…" in text(page) and "x" * 61 not in text(page)
    first = admin_client.get(link(page, "first-page") or "")
    assert builtins.list(row_links(first, "field-key")) == ["k0", "k1", "k2"]
    filtered = admin_client.get(payer_url(alice), {"prefix": "lo"})
    assert builtins.list(row_links(filtered, "field-key")) == ["long"]

    # One entry, read-only, in full.
    entry = admin_client.get(row_links(page, "field-key")["long"])
    assert entry.status_code == 200
    assert f'<pre class="session-value" id="entry-value">{"x" * 200}</pre>' in text(entry)
    if hasattr(store, "entry_ttl_ms"):  # every built-in store reports it
        assert "not reported by this store" not in text(entry)
        assert re.search(r'id="ttl-left">(59 min|1 h)', text(entry)), text(entry)
    else:
        assert "not reported by this store" in text(entry)
    assert "<textarea" not in text(entry) and 'name="value"' not in text(entry)

    # Delete one key: a confirmation page (the GET deletes nothing), then a POST.
    delete_url = link(entry, "delete-key")
    assert delete_url is not None
    confirm = admin_client.get(delete_url)
    assert confirm.status_code == 200 and "Are you sure" in text(confirm)
    assert 'name="csrfmiddlewaretoken"' in text(confirm)
    assert "long" in listed(store, alice).entries
    done = admin_client.post(delete_url, {"key": "long"}, follow=True)
    assert done.redirect_chain == [(payer_url(alice), 302)]
    assert messages_of(done) == [f"Deleted “long” of {alice}."]
    assert "long" not in listed(store, alice).entries
    [logged] = deletions()
    assert logged.object_id == alice and logged.object_repr == f"{alice} / long"
    assert logged.user.get_username() == "admin"

    # Erase A: the confirmation counts the entries, the POST deletes them all.
    erase = admin_client.get(payer_url(alice, "erase"))
    assert erase.status_code == 200
    assert '<strong id="erase-count">6 entries</strong>' in text(erase)
    assert listed(store, alice).entries  # still there
    erased = admin_client.post(payer_url(alice, "erase"), follow=True)
    assert erased.redirect_chain == [(PAYERS_URL, 302)]
    assert messages_of(erased) == [f"Erased 6 session entries of {alice}."]
    assert listed(store, alice).entries == {}
    assert row_links(erased, "field-payer") == {bob: payer_url(bob)}
    assert [(e.object_id, e.object_repr) for e in deletions()][1:] == [(alice, alice)]
    assert deletions()[1].change_message == "Erased 6 session entries."

    # B untouched.
    assert listed(store, bob).entries == {"cart": "apples", "k1": "bob's"}


def test_payers_page_by_page(admin_client: Client, store: SessionStore) -> None:
    payers = sorted(new_payer("feed") for _ in range(7))
    for payer in payers:
        write(store, payer, {"k": "v"})
    seen: builtins.list[str] = []
    url: str | None = f"{PAYERS_URL}?q=0xfeed"
    while url is not None and len(seen) < 20:
        page = admin_client.get(url)
        on_page = builtins.list(row_links(page, "field-payer"))
        assert 1 <= len(on_page) <= PAGE_SIZE
        seen += on_page
        url = link(page, "next-page")
        if url is not None:
            assert "q=0xfeed" in url and "cursor=" in url
    assert seen == payers
    assert link(page, "first-page") == f"{PAYERS_URL}?q=0xfeed"


# -- permissions and CSRF (memory store) -----------------------------------------------------


@pytest.fixture
def memory(settings: Any) -> SessionStore:
    settings.AIXYZ_SESSION_STORE = MEMORY_STORE
    settings.AIXYZ_SESSIONS_ADMIN_PAGE_SIZE = PAGE_SIZE
    return get_store()


def _staff(*codenames: str) -> Client:
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_view_only_staff_sees_no_delete_actions_and_gets_403(memory: SessionStore) -> None:
    alice = new_payer()
    write(memory, alice, {"a": "1", "b": "2"})
    client = _staff("view_storedsession")
    assert f'<a href="{PAYERS_URL}">Sessions</a>' in text(client.get(reverse("admin:index")))
    payers = client.get(PAYERS_URL)
    assert payers.status_code == 200 and alice in text(payers)
    keys = client.get(payer_url(alice))
    entry = client.get(payer_url(alice, "entry"), {"key": "a"})
    for page in (payers, keys, entry):
        assert page.status_code == 200
        assert "Erase" not in text(page) and "deletelink" not in text(page)
    assert client.get(payer_url(alice, "delete_key"), {"key": "a"}).status_code == 403
    assert client.post(payer_url(alice, "delete_key"), {"key": "a"}).status_code == 403
    assert client.get(payer_url(alice, "erase")).status_code == 403
    assert client.post(payer_url(alice, "erase")).status_code == 403
    assert listed(memory, alice).entries == {"a": "1", "b": "2"}
    assert deletions() == []


def test_delete_permission_allows_the_actions(memory: SessionStore) -> None:
    alice = new_payer()
    write(memory, alice, {"a": "1"})
    client = _staff("view_storedsession", "delete_storedsession")
    assert 'id="erase-payer"' in text(client.get(payer_url(alice)))
    assert client.post(payer_url(alice, "delete_key"), {"key": "a"}).status_code == 302
    assert listed(memory, alice).entries == {}


def test_staff_without_permission_gets_403(memory: SessionStore) -> None:
    client = _staff()
    assert client.get(PAYERS_URL).status_code == 403
    assert "Sessions" not in text(client.get(reverse("admin:index")))


@pytest.mark.parametrize("method", ["get", "post"])
def test_not_staff_is_sent_to_the_login(memory: SessionStore, method: str) -> None:
    User.objects.create_user("someone", password="pw")
    client = Client()
    client.login(username="someone", password="pw")
    alice = new_payer()
    write(memory, alice, {"a": "1"})
    for url in (PAYERS_URL, payer_url(alice), payer_url(alice, "erase")):
        response = getattr(client, method)(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login") + "?next=")
    assert listed(memory, alice).entries == {"a": "1"}


def test_posts_need_the_csrf_token(memory: SessionStore, admin_user: User) -> None:
    alice = new_payer()
    write(memory, alice, {"a": "1"})
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(payer_url(alice, "delete_key"), {"key": "a"}).status_code == 403
    assert client.post(payer_url(alice, "erase")).status_code == 403
    assert listed(memory, alice).entries == {"a": "1"}
    # With the token of the confirmation page it goes through.
    confirm = client.get(payer_url(alice, "erase"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', text(confirm))
    assert token is not None
    done = client.post(payer_url(alice, "erase"), {"csrfmiddlewaretoken": token.group(1)})
    assert done.status_code == 302 and listed(memory, alice).entries == {}


# -- odd cases ----------------------------------------------------------------------------------


def test_store_down_shows_the_unavailable_page(admin_client: Client) -> None:
    with override_settings(CACHES=DEAD_REDIS, AIXYZ_SESSION_STORE=DEAD_STORE):
        alice = new_payer()
        for url in (
            PAYERS_URL,
            payer_url(alice),
            f"{payer_url(alice, 'entry')}?key=a",
            payer_url(alice, "erase"),
        ):
            response = admin_client.get(url)
            assert response.status_code == 503, url
            assert "The session store cannot answer right now" in text(response)
            assert "&#x27;dead&#x27;" in text(response) or "'dead'" in text(response)
            assert response["Retry-After"]
        assert admin_client.post(payer_url(alice, "erase")).status_code == 503


class DictStore(SessionStore):
    """A custom store with the four required methods only: no ``list_payers``."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.data: dict[str, dict[str, str]] = {}

    async def get(self, payer: str, key: str) -> str | None:
        return self.data.get(payer, {}).get(key)

    async def set(self, payer: str, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        self.data.setdefault(payer, {})[key] = value

    async def delete(self, payer: str, key: str) -> bool:
        return self.data.get(payer, {}).pop(key, None) is not None

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
        keys = sorted(
            k
            for k in self.data.get(payer, {})
            if (prefix is None or k.startswith(prefix)) and (after is None or k > after)
        )
        page = keys[:limit] if limit else keys
        entries = {k: "" if keys_only else self.data[payer][k] for k in page}
        more = len(keys) > len(page)
        return ListResult(entries, self.encode_cursor(payer, page[-1]) if more else None)


def test_a_store_that_cannot_list_payers(admin_client: Client, settings: Any) -> None:
    settings.AIXYZ_SESSION_STORE = "tests.test_admin_sessions.DictStore"
    settings.AIXYZ_SESSIONS_ADMIN_PAGE_SIZE = PAGE_SIZE
    store = get_store()
    alice = new_payer()
    write(store, alice, {f"k{i}": str(i) for i in range(5)})
    page = admin_client.get(PAYERS_URL)
    assert page.status_code == 200
    assert "This store cannot list payers" in text(page)
    assert row_links(page, "field-payer") == {}
    # One payer typed into the search box (any case) still opens.
    typed = admin_client.get(PAYERS_URL, {"q": alice.upper().replace("0X", "0x")})
    assert row_links(typed, "field-payer") == {alice: payer_url(alice)}
    keys = admin_client.get(payer_url(alice))
    assert builtins.list(row_links(keys, "field-key")) == ["k0", "k1", "k2"]
    nobody = admin_client.get(PAYERS_URL, {"q": new_payer()})
    assert "has no entries in this store" in text(nobody)
    # Erasing works through list and the default delete_many.
    erased = admin_client.post(payer_url(alice, "erase"), follow=True)
    assert messages_of(erased) == [f"Erased 5 session entries of {alice}."]
    assert store.data[alice] == {}  # type: ignore[attr-defined]


class TtlStore(InMemorySessionStore):
    """The in-memory store, reporting every entry's time left as 1 h 2 min 5 s."""

    async def entry_ttl_ms(self, payer: str, key: str) -> int | None:
        return None if key == "forever" else 3_725_000


def test_entry_shows_the_time_left_when_the_store_reports_it(
    admin_client: Client, settings: Any
) -> None:
    settings.AIXYZ_SESSION_STORE = "tests.test_admin_sessions.TtlStore"
    alice = new_payer()
    write(get_store(), alice, {"a": "1", "forever": "2"})
    entry = admin_client.get(payer_url(alice, "entry"), {"key": "a"})
    assert '<div class="readonly" id="ttl-left">1 h 2 min 5 s</div>' in text(entry)
    forever = admin_client.get(payer_url(alice, "entry"), {"key": "forever"})
    assert '<div class="readonly" id="ttl-left">never expires</div>' in text(forever)


def test_describe_ttl() -> None:
    assert describe_ttl(None) == "never expires"
    assert describe_ttl(250) == "250 ms"
    assert describe_ttl(59_999) == "59 s"
    assert describe_ttl(60_000) == "1 min 0 s"
    assert describe_ttl(90_061_000) == "1 d 1 h 1 min 1 s"


def test_a_missing_entry_and_a_forged_cursor(admin_client: Client, memory: SessionStore) -> None:
    alice = new_payer()
    write(memory, alice, {"a": "1"})
    gone = admin_client.get(payer_url(alice, "entry"), {"key": "nope"}, follow=True)
    assert gone.redirect_chain == [(payer_url(alice), 302)]
    assert messages_of(gone) == [f"{alice} has no entry “nope” (deleted, or expired)."]
    forged = admin_client.get(payer_url(alice), {"cursor": "not-a-cursor"})
    assert forged.status_code == 400 and "cursor is not valid" in text(forged)
    assert admin_client.get(PAYERS_URL, {"cursor": "xyz"}).status_code == 400
    # A payer id with a "/" travels quoted in the URL.
    odd = "a/b c"
    write(memory, "a/bc", {"k": "v"})
    assert row_links(admin_client.get(PAYERS_URL, {"q": odd}), "field-payer") == {
        "a/bc": payer_url("a_2Fbc")
    }
    assert builtins.list(row_links(admin_client.get(payer_url("a_2Fbc")), "field-key")) == ["k"]


def test_keys_that_reorder_or_hide_text_are_marked_visibly(
    admin_client: Client, memory: SessionStore
) -> None:
    """A bidi override (U+202E) makes a key read backwards: the admin shows a marker instead."""
    alice = new_payer()
    tricky = "user\u202egpj.exe"
    write(memory, alice, {tricky: "zero\u200bwidth\nline", "plain": "ok"})
    listed = text(admin_client.get(payer_url(alice)))
    assert "\u202e" not in listed and "\u200b" not in listed
    assert 'title="RIGHT-TO-LEFT OVERRIDE">[U+202E]</span>gpj.exe' in listed
    assert "[U+200B]" in listed and "plain" in listed
    entry = text(admin_client.get(payer_url(alice, "entry"), {"key": tricky}))
    assert "\u202e" not in entry.split("<form")[0] and "[U+202E]" in entry
    assert "zero<span" in entry and "width\nline" in entry  # the value's newline stays
    # Blank letters and marks show nothing either: marked too (a plain space is not).
    for i, blank in enumerate(("\u034f", "\u2800", "\u3164", "\ufe0f", "\u00a0")):
        write(memory, alice, {f"report{i}{blank}": "lookalike"})
        page = text(admin_client.get(payer_url(alice), {"prefix": f"report{i}"}))
        assert f"[U+{ord(blank):04X}]" in page, blank
    # The key still round-trips through the page's links and its delete form.
    confirm = text(admin_client.get(payer_url(alice, "delete_key"), {"key": tricky}))
    assert f'value="{html.escape(tricky)}"' in confirm and "[U+202E]" in confirm
