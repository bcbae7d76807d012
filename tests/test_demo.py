"""The demo project in process: its tools' result shapes, its URLs, demo_setup, its settings."""

from __future__ import annotations

import json
import runpy
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import AsyncClient

from aixyz_sessions import payer_context
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.testing.paying import PayingClient
from aixyz_sessions.tools import Tool
from tests.demo_fixtures import DB_STORE

SETTINGS = Path(__file__).resolve().parent.parent / "demo_project" / "settings.py"


async def call(client: AsyncClient, name: str, arguments: dict[str, Any]) -> Any:
    response = await client.post(
        f"/tools/{name}", json.dumps(arguments), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return json.loads(response.content)["result"]


db = pytest.mark.django_db(transaction=True)


# --- the five result shapes, through paid HTTP calls on the demo's URLs ----------------


@db
async def test_put_and_get_a_key(demo_urls: None) -> None:
    payer = PayingClient()
    stored = await call(payer, "put-content", {"key": "greeting", "value": "hi"})
    assert stored == {"success": True, "key": "greeting", "value": "hi"}
    read = await call(payer, "get-content", {"key": "greeting"})
    assert read == {"success": True, "key": "greeting", "value": "hi"}


@db
async def test_null_value_deletes_and_says_whether_it_existed(demo_urls: None) -> None:
    payer = PayingClient()
    await call(payer, "put-content", {"key": "k", "value": "v"})
    deleted = await call(payer, "put-content", {"key": "k", "value": None})
    assert deleted == {"success": True, "key": "k", "deleted": True}
    again = await call(payer, "put-content", {"key": "k", "value": None})
    assert again == {"success": True, "key": "k", "deleted": False}


@db
async def test_without_a_key_lists_all_content_of_this_payer_only(demo_urls: None) -> None:
    a, b = PayingClient(), PayingClient()
    for key in ("b", "a", "c"):
        await call(a, "put-content", {"key": key, "value": key.upper()})
    await call(b, "put-content", {"key": "mine", "value": "B"})
    listed = await call(a, "get-content", {})
    assert listed == {"success": True, "content": {"a": "A", "b": "B", "c": "C"}, "count": 3}
    assert list(listed["content"]) == ["a", "b", "c"]
    assert await call(b, "get-content", {}) == {
        "success": True,
        "content": {"mine": "B"},
        "count": 1,
    }
    assert await call(PayingClient(), "get-content", {}) == {
        "success": True,
        "content": {},
        "count": 0,
    }


@db
async def test_missing_key_is_an_error_naming_the_key(demo_urls: None) -> None:
    a, b = PayingClient(), PayingClient()
    await call(a, "put-content", {"key": "secret", "value": "A's"})
    missing = await call(b, "get-content", {"key": "secret"})
    assert missing["success"] is False and set(missing) == {"success", "error"}
    assert "'secret'" in missing["error"]


async def test_without_a_session_the_tools_say_so(demo_tools: dict[str, Tool]) -> None:
    async with payer_context(None):
        for name, arguments in (("get-content", {}), ("put-content", {"key": "k", "value": "v"})):
            result = await demo_tools[name].call(arguments)
            assert result["success"] is False and set(result) == {"success", "error"}
            assert "session" in result["error"]


@db
@pytest.mark.parametrize(
    "arguments",
    [{"key": "", "value": "v"}, {"key": "k" * 513, "value": "v"}, {"key": "k", "value": "\x00"}],
)
async def test_refused_key_or_value_is_invalid_arguments_and_not_charged(
    demo_urls: None, arguments: dict[str, Any]
) -> None:
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    response = await PayingClient().post(
        "/tools/put-content", json.dumps(arguments), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    body = json.loads(response.content)
    assert body["error"] == "invalid_arguments" and body["message"]
    assert "PAYMENT-RESPONSE" not in response
    assert ledger.settled_count == before


@db
async def test_listing_is_paged_by_entries_and_bytes(demo_urls: None) -> None:
    from demo_project.tools import PAGE_BYTES

    payer = PayingClient()
    big = "x" * (PAGE_BYTES // 2)
    expected = {f"k{i:02d}": (big if i % 2 else str(i)) for i in range(12)}
    for key, value in expected.items():
        await call(payer, "put-content", {"key": key, "value": value})

    pages: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {"limit": 5}
    while True:
        page = await call(payer, "get-content", arguments)
        pages.append(page)
        size = sum(len(v) for v in page["content"].values())
        assert page["success"] is True and 1 <= page["count"] <= 5
        # The budget stops a page once it is spent: at most one value past it.
        assert size - max(len(v) for v in page["content"].values()) < PAGE_BYTES
        if "cursor" not in page:
            break
        arguments = {"limit": 5, "cursor": page["cursor"]}
    seen = [key for page in pages for key in page["content"]]
    assert seen == sorted(expected)  # every key once, in order
    assert {k: v for page in pages for k, v in page["content"].items()} == expected
    assert any(page["count"] < 5 and "cursor" in page for page in pages)  # bytes cut a page

    one = await call(payer, "get-content", {"limit": 1})
    assert list(one["content"]) == ["k00"] and one["cursor"]
    for bad in ({"limit": 0}, {"limit": 101}, {"cursor": "not-a-cursor"}):
        response = await payer.post(
            "/tools/get-content", json.dumps(bad), content_type="application/json"
        )
        assert response.status_code == 400, (bad, response.content)
        assert "PAYMENT-RESPONSE" not in response


# --- schema, prices, URLs --------------------------------------------------------------


def test_prices_and_schemas(demo_tools: dict[str, Tool]) -> None:
    put, get = demo_tools["put-content"], demo_tools["get-content"]
    assert (put.price, get.price) == ("$0.01", "$0.001")
    assert put.input_schema["required"] == ["key", "value"]  # value: str | null, required
    assert put.input_schema["properties"]["value"]["anyOf"] == [
        {"type": "string"},
        {"type": "null"},
    ]
    assert "required" not in get.input_schema  # key, cursor and limit are optional
    assert (
        get.input_schema["properties"]["limit"] | {"minimum": 1, "maximum": 100}
        == (get.input_schema["properties"]["limit"])
    )


@db
async def test_forgetting_the_value_deletes_nothing(demo_urls: None) -> None:
    payer = PayingClient()
    await call(payer, "put-content", {"key": "k", "value": "v"})
    response = await payer.post(
        "/tools/put-content", json.dumps({"key": "k"}), content_type="application/json"
    )
    assert response.status_code == 400
    assert await call(payer, "get-content", {"key": "k"}) == {
        "success": True,
        "key": "k",
        "value": "v",
    }


@db
async def test_index_lists_the_tools_and_what_to_try(demo_urls: None) -> None:
    response = await AsyncClient().get("/")
    index = json.loads(response.content)
    assert response.status_code == 200
    assert index["tools"]["get-content"]["price"] == "$0.001"
    assert index["endpoints"]["mcp"].endswith("/mcp")
    assert index["store"] == "DatabaseSessionStore"


@db
async def test_paid_tool_url_opened_by_a_browser_is_the_sdk_paywall(demo_urls: None) -> None:
    browser = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "Mozilla/5.0 (X11)"}
    response = await AsyncClient().get("/tools/get-content?key=greeting", headers=browser)
    assert response.status_code == 402
    assert response["Content-Type"].startswith("text/html")
    assert b"<title>Payment Required</title>" in response.content
    agent = await AsyncClient().get("/tools/get-content")
    assert agent.status_code == 402 and agent["Content-Type"] == "application/json"


@db
async def test_a_paid_get_runs_the_tool_with_query_arguments(demo_urls: None) -> None:
    payer = PayingClient()
    await call(payer, "put-content", {"key": "greeting", "value": "hi"})
    response = await payer.get("/tools/get-content", {"key": "greeting"})
    assert response.status_code == 200 and "PAYMENT-RESPONSE" in response
    assert json.loads(response.content)["result"] == {
        "success": True,
        "key": "greeting",
        "value": "hi",
    }


# --- demo_setup -----------------------------------------------------------------------


def setup_command(**options: Any) -> str:
    from demo_project.management.commands.demo_setup import Command

    out = StringIO()
    call_command(Command(), stdout=out, **options)
    return out.getvalue()


@pytest.mark.django_db
def test_demo_setup_creates_the_admin_once_with_a_printed_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIXYZ_DEMO_ADMIN_USER", raising=False)
    monkeypatch.delenv("AIXYZ_DEMO_ADMIN_PASSWORD", raising=False)
    first = setup_command(url="http://127.0.0.1:8000")
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.is_staff
    password = first.split("password: ", 1)[1].split()[0]
    assert len(password) >= 12 and user.check_password(password)
    assert "demo_call" in first and "http://127.0.0.1:8000/admin/" in first
    assert "--transport ws | mcp | a2a" in first and "/.well-known/agent-card.json" in first
    second = setup_command()
    assert "exists" in second and password not in second
    assert get_user_model().objects.count() == 1
    assert get_user_model().objects.get(username="admin").check_password(password)


@pytest.mark.django_db
def test_demo_setup_takes_credentials_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIXYZ_DEMO_ADMIN_USER", "boss")
    monkeypatch.setenv("AIXYZ_DEMO_ADMIN_PASSWORD", "s3cret-pass")
    out = setup_command()
    assert "s3cret-pass" not in out
    assert get_user_model().objects.get(username="boss").check_password("s3cret-pass")
    monkeypatch.setenv("AIXYZ_DEMO_ADMIN_PASSWORD", "changed-pass")
    setup_command()
    assert get_user_model().objects.get(username="boss").check_password("changed-pass")
    assert get_user_model().objects.count() == 1


# --- settings and their environment switches ---------------------------------------------


def demo_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in (
        "AIXYZ_DEMO_STORE",
        "REDIS_URL",
        "DATABASE_URL",
        "AIXYZ_DEMO_SQLITE",
        "X402_FACILITATOR_URL",
        "X402_PAY_TO",
        "X402_NETWORK",
        "DJANGO_DEBUG",
        "DJANGO_ALLOWED_HOSTS",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = demo_settings(monkeypatch)
    assert s["AIXYZ_SESSION_STORE"] == DB_STORE
    assert s["DATABASES"]["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s["AIXYZ_X402"]["FACILITATOR"] == "local" and "FACILITATOR_URL" not in s["AIXYZ_X402"]
    assert s["AIXYZ_X402"]["NETWORK"] == "eip155:84532"
    assert s["DEBUG"] is True
    assert {"127.0.0.1", "localhost"} <= set(s["ALLOWED_HOSTS"])
    assert "demo_project" in s["INSTALLED_APPS"]
    assert "aixyz_sessions.payments.middleware.X402Middleware" in s["MIDDLEWARE"]
    assert "sessions" not in s["CACHES"]


def test_environment_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    s = demo_settings(
        monkeypatch,
        AIXYZ_DEMO_STORE="cache",
        REDIS_URL="redis://127.0.0.1:6390/3",
        DATABASE_URL="postgres://u:p%40ss@db.local:5433/demo",
        X402_FACILITATOR_URL="https://facilitator.example/x402",
        X402_PAY_TO="0x" + "12" * 20,
        X402_NETWORK="eip155:8453",
        DJANGO_DEBUG="0",
    )
    assert s["AIXYZ_SESSION_STORE"]["BACKEND"].endswith("CacheSessionStore")
    assert s["CACHES"]["sessions"]["LOCATION"] == "redis://127.0.0.1:6390/3"
    assert s["DATABASES"]["default"] == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "demo",
        "USER": "u",
        "PASSWORD": "p@ss",
        "HOST": "db.local",
        "PORT": "5433",
    }
    assert s["AIXYZ_X402"] == {
        "PAY_TO": "0x" + "12" * 20,
        "NETWORK": "eip155:8453",
        "FACILITATOR_URL": "https://facilitator.example/x402",
    }
    assert s["DEBUG"] is False
    memory = demo_settings(monkeypatch, AIXYZ_DEMO_STORE="memory")
    assert memory["AIXYZ_SESSION_STORE"].endswith("InMemorySessionStore")


def test_unknown_store_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"AIXYZ_DEMO_STORE='redis'.*cache"):
        demo_settings(monkeypatch, AIXYZ_DEMO_STORE="redis")


def test_parse_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = demo_settings(monkeypatch)["parse_database_url"]
    assert parse("postgresql://localhost/app")["PORT"] == ""
    assert parse("sqlite:///tmp/x.db") == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "tmp/x.db",
    }
    assert parse("sqlite:////tmp/x.db")["NAME"] == "/tmp/x.db"
    with pytest.raises(ValueError, match="postgres://"):
        parse("mysql://u@h/db")
    with pytest.raises(ValueError, match="names no database"):
        parse("postgres://u@h:5432/")
