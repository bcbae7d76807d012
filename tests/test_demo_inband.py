"""``demo_call --transport a2a-inband`` against the real demo: x402 paid inside A2A messages.

Each tool call is a ``message/send`` with the a2a-x402 extension activated:
answered with a task awaiting its payment, paid on that task, completed with
the settlement on its status. The output and the isolation are those of the
other transports (``tests/test_demo_e2e.py``); the writes land in the payers'
sessions, which the demo's admin shows. ``--scheme batch`` pays in band too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.demo_server import DemoServer, admin_client, demo_server
from tests.test_demo_channels import batch_call, check_one_channel
from tests.test_demo_e2e import CHANGELIST, check_settlements, payers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("demo-inband")) as running:
        yield running


def test_demo_call_pays_every_tool_inside_the_a2a_conversation(server: DemoServer) -> None:
    done = server.manage("demo_call", "--url", server.url, "--transport", "a2a-inband")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"demo_call: {server.url} over a2a-inband;" in out
    assert "ISOLATION OK: payer B saw none of payer A's data" in out
    assert re.search(r"^14\. payer A: read the deleted note$", out, re.M), out
    assert '{"success": true, "key": "note", "deleted": true}' in out
    # Each call settles what it costs: the exact prices, the metered summaries' own cost,
    # B's list-keys on Base; the totals per payer.
    check_settlements(out)
    assert "sign-in steps of the other transports are skipped" in out
    assert "!!" not in out

    a, b = payers(out).values()
    admin = admin_client(server.url)
    try:
        page_a = admin.get(CHANGELIST, params={"q": a.lower()}).text
        page_b = admin.get(CHANGELIST, params={"q": b.lower()}).text
    finally:
        admin.close()
    assert "hello from A" in page_a and "greeting" in page_a  # A's write landed
    assert "A&#x27;s private note" not in page_a  # and its delete
    assert "hello from B" not in page_a
    assert "hello from B" in page_b and "hello from A" not in page_b


def test_demo_call_batch_pays_in_band_through_one_channel(server: DemoServer) -> None:
    """``--scheme batch``: the deposit, then a voucher per call, each inside the conversation
    (the caller hands each settlement back to the x402 client, as its HTTP client does)."""
    done = batch_call(server, "a2a-inband", 3)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " over a2a-inband;" in done.stdout
    check_one_channel(done.stdout, 3)


def test_the_transport_is_listed_in_the_help(server: DemoServer) -> None:
    done = server.manage("demo_call", "--help")
    assert done.returncode == 0 and "a2a-inband" in done.stdout
