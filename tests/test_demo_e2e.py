"""The demo end to end: the real ASGI app under uvicorn, ``manage.py demo_call``, the admin."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from x402.http import decode_payment_required_header

from tests.demo_server import DemoServer, admin_client, demo_server
from tests.payments_helpers import free_port

CHANGELIST = "/admin/aixyz_sessions/sessionentry/"
ADDRESS = re.compile(r"payer ([AB]): (0x[0-9a-fA-F]{40})")
#: A step's result and what it settled, as demo_call prints them.
SETTLED = re.compile(r"-> (\{.*\})  \[paid (\$[0-9.]+)( of up to \$0\.05)? on (eip155:\d+), tx 0x")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("demo")) as running:
        yield running


def payers(output: str) -> dict[str, str]:
    found = dict(ADDRESS.findall(output))
    assert set(found) == {"A", "B"}, output
    return found


def settled(output: str) -> list[tuple[dict[str, Any], str, bool, str]]:
    """Each paid step's result, amount settled, whether it was metered, and network."""
    return [
        (json.loads(result), amount, bool(upto), network)
        for result, amount, upto, network in SETTLED.findall(output)
    ]


def check_settlements(output: str) -> None:
    """Every paid step of a demo_call run reports what it settled, as the demo prices it.

    14 paid steps: 9 of A, 5 of B. A's summary (2 small entries: 1 KiB started)
    settles $0.0011 and B's (empty session) $0.001, each the summary's own
    cost, below the $0.05 the payer authorized; B pays list-keys on Base.
    """
    paid = settled(output)
    assert len(paid) == 14, output
    metered = [(result, amount) for result, amount, upto, _ in paid if upto]
    assert [amount for _, amount in metered] == ["$0.0011", "$0.001"], output
    assert [(r["count"], r["bytes"], r["cost"]) for r, _ in metered] == [
        (2, 28, "$0.0011"),
        (0, 0, "$0.001"),
    ]
    keys = [network for result, _, _, network in paid if "keys" in result and "bytes" not in result]
    assert keys == ["eip155:84532", "eip155:8453"]  # A pays on the first offered, B on Base
    assert [network for _, _, _, network in paid].count("eip155:84532") == 13
    assert {amount for _, amount, upto, _ in paid if not upto} == {"$0.01", "$0.001"}
    assert "Payer A settled $0.0361 in 9 payments" in output
    assert "Payer B settled $0.014 (eip155:84532 $0.013, eip155:8453 $0.001) in 5" in output


def test_index_says_what_to_try(server: DemoServer) -> None:
    index = httpx.get(f"{server.url}/", timeout=10).json()
    assert set(index["tools"]) == {"put-content", "get-content", "list-keys", "summarize-content"}
    assert index["tools"]["put-content"]["price"] == "$0.01"
    assert index["tools"]["summarize-content"]["price"] == "up to $0.05"
    assert index["store"] == "DatabaseSessionStore"
    assert any("demo_call" in line for line in index["try"])


def test_demo_call_over_http_shows_isolation_and_the_admin_shows_the_entries(
    server: DemoServer,
) -> None:
    done = server.manage("demo_call", "--url", server.url)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    a, b = payers(out).values()
    assert "ISOLATION OK: payer B saw none of payer A's data" in out
    assert re.search(r"^14\. payer A: read the deleted note$", out, re.M), out
    assert '{"success": true, "content": {}, "count": 0}' in out  # B's listing
    assert '{"success": true, "keys": [], "count": 0}' in out  # B's keys
    assert "no content under key 'greeting'" in out  # B reading A's key
    assert '{"success": true, "key": "note", "deleted": true}' in out
    check_settlements(out)
    # A comes back without paying: a sign-in with the same wallet reads the greeting.
    assert re.search(r"^15\. payer A: come back: read the greeting by signing in", out, re.M)
    assert '{"success": true, "key": "greeting", "value": "hello from A"}  [signed in' in out
    assert "refused, as it must be" in out and "has not paid" in out  # C never paid
    assert f"/admin/aixyz_sessions/storedsession/{a.lower()}/" in out

    admin = admin_client(server.url)
    try:
        page_a = admin.get(CHANGELIST, params={"q": a.lower()}).text
        page_b = admin.get(CHANGELIST, params={"q": b.lower()}).text
        everything = admin.get(CHANGELIST).text
    finally:
        admin.close()
    assert a.lower() in page_a and "hello from A" in page_a and "greeting" in page_a
    assert b.lower() not in page_a and "hello from B" not in page_a
    assert "A&#x27;s private note" not in page_a  # deleted by the demo
    assert b.lower() in page_b and "hello from B" in page_b and "hello from A" not in page_b
    assert a.lower() in everything and b.lower() in everything


@pytest.mark.parametrize("transport", ["ws", "mcp", "a2a"])
def test_demo_call_over_other_transports(server: DemoServer, transport: str) -> None:
    done = server.manage("demo_call", "--url", server.url, "--transport", transport)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"over {transport}" in done.stdout
    assert "ISOLATION OK" in done.stdout
    check_settlements(done.stdout)  # each call settles what it costs on every transport
    if transport == "a2a":  # each message is paid, at the tool's own price
        assert "sign-in steps of the other transports are skipped" in done.stdout
    else:
        assert "[signed in: no payment]" in done.stdout
        assert "refused, as it must be" in done.stdout
    payers(done.stdout)


def test_demo_call_without_a_server_says_to_run_make_demo(server: DemoServer) -> None:
    done = server.manage("demo_call", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode != 0
    assert "is `make demo` running?" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_setup_keeps_the_existing_admin(server: DemoServer) -> None:
    again = server.manage("demo_setup")
    assert again.returncode == 0, again.stderr
    assert "exists" in again.stdout and "password:" not in again.stdout


def test_list_keys_is_offered_on_base_sepolia_then_base(server: DemoServer) -> None:
    response = httpx.post(f"{server.url}/tools/list-keys", json={}, timeout=10)
    assert response.status_code == 402
    offers = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"]).accepts
    assert [(o.network, o.scheme, o.amount) for o in offers] == [
        ("eip155:84532", "exact", "1000"),
        ("eip155:8453", "exact", "1000"),
        # the demo offers payment channels too, after the tool's own options
        ("eip155:84532", "batch-settlement", "1000"),
        ("eip155:8453", "batch-settlement", "1000"),
    ]
    metered = httpx.post(f"{server.url}/tools/summarize-content", json={}, timeout=10)
    offer = decode_payment_required_header(metered.headers["PAYMENT-REQUIRED"]).accepts
    assert [(o.network, o.scheme, o.amount) for o in offer] == [
        ("eip155:84532", "upto", "50000"),
        ("eip155:84532", "batch-settlement", "50000"),
    ]


@pytest.mark.parametrize("name", ["get-content", "list-keys", "summarize-content"])
def test_paid_tool_url_in_a_browser_is_the_paywall(server: DemoServer, name: str) -> None:
    response = httpx.get(
        f"{server.url}/tools/{name}",
        headers={"Accept": "text/html,*/*", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"},
        timeout=10,
    )
    assert response.status_code == 402
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>Payment Required</title>" in response.text
    assert "PAYMENT-REQUIRED" in response.headers


def test_static_files_for_the_admin_are_served(server: DemoServer) -> None:
    css = httpx.get(f"{server.url}/static/admin/css/base.css", timeout=10)
    assert css.status_code == 200 and "body" in css.text
