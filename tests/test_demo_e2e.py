"""The demo end to end: the real ASGI app under uvicorn, ``manage.py demo_call``, the admin."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.demo_server import DemoServer, admin_client, demo_server
from tests.payments_helpers import free_port

CHANGELIST = "/admin/aixyz_sessions/sessionentry/"
ADDRESS = re.compile(r"payer ([AB]): (0x[0-9a-fA-F]{40})")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("demo")) as running:
        yield running


def payers(output: str) -> dict[str, str]:
    found = dict(ADDRESS.findall(output))
    assert set(found) == {"A", "B"}, output
    return found


def test_index_says_what_to_try(server: DemoServer) -> None:
    index = httpx.get(f"{server.url}/", timeout=10).json()
    assert set(index["tools"]) == {"put-content", "get-content"}
    assert index["tools"]["put-content"]["price"] == "$0.01"
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
    assert re.search(r"^10\. payer A: read the deleted note$", out, re.M), out
    assert '{"success": true, "content": {}, "count": 0}' in out  # B's listing
    assert "no content under key 'greeting'" in out  # B reading A's key
    assert '{"success": true, "key": "note", "deleted": true}' in out
    assert "[paid $0.01, tx 0x" in out and "[paid $0.001, tx 0x" in out
    # A comes back without paying: a sign-in with the same wallet reads the greeting.
    assert re.search(r"^11\. payer A: come back: read the greeting by signing in", out, re.M)
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
    if transport == "a2a":  # each message is paid, at the agent's price
        assert "[paid $0.01, tx 0x" in done.stdout
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


def test_paid_tool_url_in_a_browser_is_the_paywall(server: DemoServer) -> None:
    response = httpx.get(
        f"{server.url}/tools/get-content",
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
