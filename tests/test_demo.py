"""The demo project in process: its tools' results and prices, its URLs, demo_setup, settings."""

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
from x402 import prefer_network
from x402.http import decode_payment_required_header, decode_payment_response_header

from aixyz_sessions import payer_context
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.testing.paying import PayingClient
from aixyz_sessions.tools import Tool
from tests.demo_fixtures import DB_STORE

SETTINGS = Path(__file__).resolve().parent.parent / "demo_project" / "settings.py"
BASE_SEPOLIA, BASE = "eip155:84532", "eip155:8453"
#: Base Sepolia's and Base's USDC (6 decimals): what the demo's dollar prices are paid in.
USDC = {
    84532: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    8453: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
}
BROWSER = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "Mozilla/5.0 (X11)"}


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
        for name, arguments in (
            ("get-content", {}),
            ("put-content", {"key": "k", "value": "v"}),
            ("list-keys", {}),
            ("summarize-content", {}),
        ):
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


# --- list-keys: one price on two networks ------------------------------------------------


@db
async def test_list_keys_402_offers_base_sepolia_then_base(demo_urls: None) -> None:
    response = await AsyncClient().post("/tools/list-keys", "{}", content_type="application/json")
    assert response.status_code == 402
    offers = decode_payment_required_header(response["PAYMENT-REQUIRED"]).accepts
    assert [(o.network, o.scheme, o.amount) for o in offers] == [
        (BASE_SEPOLIA, "exact", "1000"),
        (BASE, "exact", "1000"),
    ]
    assert [o.asset for o in offers] == [USDC[84532], USDC[8453]]


@db
async def test_list_keys_paid_on_either_network_lists_the_payers_keys(demo_urls: None) -> None:
    ledger = get_local_facilitator().ledger
    payer = PayingClient()
    for key in ("b", "a", "c"):
        await call(payer, "put-content", {"key": key, "value": key})
    await call(PayingClient(), "put-content", {"key": "other", "value": "x"})

    first = await payer.post("/tools/list-keys", "{}", content_type="application/json")
    assert first.status_code == 200
    assert json.loads(first.content)["result"] == {
        "success": True,
        "keys": ["a", "b", "c"],
        "count": 3,
    }
    assert decode_payment_response_header(first["PAYMENT-RESPONSE"]).network == BASE_SEPOLIA

    payer.signer.register_policy(prefer_network(BASE))  # the same payer, on Base this time
    paged = await call(payer, "list-keys", {"limit": 2})
    assert paged["keys"] == ["a", "b"] and paged["count"] == 2 and paged["cursor"]
    rest = await call(payer, "list-keys", {"limit": 2, "cursor": paged["cursor"]})
    assert rest == {"success": True, "keys": ["c"], "count": 1}
    assert ledger.settled_amount(payer.address, chain_id=8453) == 2 * 1000
    assert ledger.settled_amount(payer.address, token=USDC[8453]) == 2 * 1000
    assert ledger.settled_amount(payer.address, chain_id=84532) == 3 * 10_000 + 1000


# --- summarize-content: metered by the session's size --------------------------------------


def test_summary_price_grows_by_the_kib_and_is_capped() -> None:
    from demo_project.tools import summary_price

    prices = {size: f"{summary_price(size):f}" for size in (0, 1, 1024, 1025, 10 * 1024)}
    assert prices == {0: "0.001", 1: "0.0011", 1024: "0.0011", 1025: "0.0012", 10240: "0.002"}
    assert f"{summary_price(490 * 1024):f}" == "0.05"  # $0.001 + 490 x $0.0001: the cap
    assert f"{summary_price(10**9):f}" == "0.05"


async def summarize(payer: PayingClient) -> tuple[dict[str, Any], int]:
    """A paid summary: its result and the amount its ``PAYMENT-RESPONSE`` settled."""
    response = await payer.post("/tools/summarize-content", "{}", content_type="application/json")
    assert response.status_code == 200, response.content
    settled = decode_payment_response_header(response["PAYMENT-RESPONSE"])
    assert settled.success and settled.amount is not None
    return json.loads(response.content)["result"], int(settled.amount)


@db
async def test_summary_settles_by_the_size_of_the_session_below_the_maximum(
    demo_urls: None,
) -> None:
    ledger = get_local_facilitator().ledger
    small, big = PayingClient(), PayingClient()
    await call(small, "put-content", {"key": "greeting", "value": "hello"})
    values = {"a": "x" * 3000, "b": "é" * 1000, "c": "y" * 10}  # "é" is 2 bytes in UTF-8
    for key, value in values.items():
        await call(big, "put-content", {"key": key, "value": value})

    summary, amount = await summarize(big)
    assert summary == {
        "success": True,
        "count": 3,
        "bytes": 5010,
        "keys": ["a", "b", "c"],
        "largest": {"key": "a", "bytes": 3000},
        "complete": True,
        "cost": "$0.0015",  # $0.001 + 5 started KiB x $0.0001
    }
    assert amount == 1500 < 50_000  # USDC atomic units; the payer authorized $0.05
    transfer = ledger.transfers[-1]
    assert (transfer.payer, transfer.amount) == (big.address, 1500)

    small_summary, small_amount = await summarize(small)
    assert (small_summary["count"], small_summary["bytes"]) == (1, 5)
    assert small_summary["keys"] == ["greeting"] and small_summary["cost"] == "$0.0011"
    assert small_amount == 1100 < amount
    empty, empty_amount = await summarize(PayingClient())
    assert (empty["count"], empty["bytes"], empty["keys"], empty_amount) == (0, 0, [], 1000)
    assert "largest" not in empty


@db
async def test_summary_of_a_large_session_settles_the_maximum(demo_urls: None) -> None:
    payer = PayingClient()
    await call(payer, "put-content", {"key": "big", "value": "z" * (600 * 1024)})
    summary, amount = await summarize(payer)
    assert summary["bytes"] == 600 * 1024 and summary["cost"] == "$0.05"
    assert amount == 50_000


@db
async def test_summary_reads_page_by_page_and_stops_at_its_bounds(
    demo_urls: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from demo_project import tools

    payer = PayingClient()
    for i in range(7):
        await call(payer, "put-content", {"key": f"k{i}", "value": "v" * 100})
    monkeypatch.setattr(tools, "_SUMMARY_LIST", 2)
    monkeypatch.setattr(tools, "_SUMMARY_FETCH", 1)
    monkeypatch.setattr(tools, "SUMMARY_PREVIEW", 3)
    whole, _ = await summarize(payer)
    assert (whole["count"], whole["bytes"], whole["complete"]) == (7, 700, True)
    assert whole["keys"] == ["k0", "k1", "k2"]

    monkeypatch.setattr(tools, "SUMMARY_ENTRIES", 5)
    by_entries, _ = await summarize(payer)
    assert (by_entries["count"], by_entries["bytes"], by_entries["complete"]) == (5, 500, False)
    monkeypatch.setattr(tools, "SUMMARY_ENTRIES", 7)  # exactly all of them: complete
    assert (await summarize(payer))[0]["complete"] is True

    monkeypatch.setattr(tools, "SUMMARY_BYTES", 250)
    by_bytes, amount = await summarize(payer)
    assert (by_bytes["count"], by_bytes["bytes"], by_bytes["complete"]) == (3, 300, False)
    assert by_bytes["cost"] == "$0.0011" and amount == 1100


# --- schema, prices, URLs --------------------------------------------------------------


def test_prices_and_schemas(demo_tools: dict[str, Tool]) -> None:
    put, get = demo_tools["put-content"], demo_tools["get-content"]
    keys, summary = demo_tools["list-keys"], demo_tools["summarize-content"]
    assert (put.price, get.price) == ("$0.01", "$0.001")
    assert (keys.price, summary.price) == (None, None)  # not one fixed price
    assert [tool.price_label for tool in (put, get, keys, summary)] == [
        "$0.01",
        "$0.001",
        "$0.001 on eip155:84532 or $0.001 on eip155:8453",
        "up to $0.05",
    ]
    assert summary.upto == "$0.05" and summary.input_schema.get("properties", {}) == {}
    assert "required" not in keys.input_schema
    assert keys.input_schema["properties"]["limit"]["maximum"] == 1000
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
    assert index["tools"]["summarize-content"]["price"] == "up to $0.05"  # not "free"
    assert index["tools"]["list-keys"]["price"] == "$0.001 on eip155:84532 or $0.001 on eip155:8453"
    listing = json.loads((await AsyncClient().get("/tools/")).content)
    assert {tool["name"]: tool["price"] for tool in listing["tools"]} == {
        name: tool["price"] for name, tool in index["tools"].items()
    }
    assert index["endpoints"]["mcp"].endswith("/mcp")
    assert index["store"] == "DatabaseSessionStore"


@db
@pytest.mark.parametrize("name", ["get-content", "list-keys", "summarize-content"])
async def test_paid_tool_url_opened_by_a_browser_is_the_sdk_paywall(
    demo_urls: None, name: str
) -> None:
    """Also for several payment options (list-keys) and a metered price (summarize-content)."""
    response = await AsyncClient().get(f"/tools/{name}", headers=BROWSER)
    assert response.status_code == 402
    assert response["Content-Type"].startswith("text/html")
    assert b"<title>Payment Required</title>" in response.content
    assert "PAYMENT-REQUIRED" in response
    agent = await AsyncClient().get(f"/tools/{name}")
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
        "AIXYZ_DEMO_CHANNELS",
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
    assert s["AIXYZ_X402"]["BATCH_SETTLEMENT"] == {}  # channels on, every default
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
        "BATCH_SETTLEMENT": {},
    }
    assert s["DEBUG"] is False
    off = demo_settings(monkeypatch, AIXYZ_DEMO_CHANNELS="0")
    assert "BATCH_SETTLEMENT" not in off["AIXYZ_X402"]
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
