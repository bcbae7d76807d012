"""The demo's payment channels end to end: its 402, ``demo_call --scheme batch``, claims.

The demo offers ``batch-settlement`` by default. Claiming from another process
(``manage.py aixyz_channels``) needs a facilitator that process shares with the
server: the in-process LocalFacilitator keeps its ledger and claim key in the
server's process. So most servers here pay through ``manage.py
aixyz_local_facilitator`` over HTTP (``X402_FACILITATOR_URL``), the way the
demo's output tells a user to run it; one runs the embedded default to check
that the output says so.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from x402.http import decode_payment_required_header

from tests.demo_server import ROOT, DemoServer, admin_client, demo_env, demo_server, running
from tests.payments_helpers import free_port

SEQUENCE_CALLS = 8  # the demo's sequence before the extra cheap calls
SEQUENCE_CHARGE = Decimal("0.0351")  # what those 8 calls charge
DEPOSIT_LINE = re.compile(r"\[deposit \$0\.1 \(tx 0x[0-9a-f]{16}\.\.\.\), charged \$0\.01, ")
CLAIM_HINT = "Claim and settle what was charged: python manage.py aixyz_channels --all"
IN_PROCESS_CAVEAT = "in the admin, Payment channels, 'Claim and settle now'"


@contextmanager
def shared_facilitator(folder: Path) -> Iterator[str]:
    """``manage.py aixyz_local_facilitator`` on a free port; its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = folder / "facilitator.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "aixyz_local_facilitator", "--port", str(port)],
            cwd=ROOT,
            env=demo_env(folder),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    with running(process, f"{url}/supported", log, "the facilitator"):
        yield url


@contextmanager
def shared_demo(folder: Path) -> Iterator[DemoServer]:
    """The demo paying through a facilitator other processes can reach too."""
    with shared_facilitator(folder) as facilitator:
        with demo_server(folder, {"X402_FACILITATOR_URL": facilitator}) as server:
            yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with shared_demo(tmp_path_factory.mktemp("channels")) as running:
        yield running


def batch_call(server: DemoServer, transport: str, calls: int) -> subprocess.CompletedProcess[str]:
    return server.manage(
        "demo_call",
        "--url",
        server.url,
        "--scheme",
        "batch",
        "--transport",
        transport,
        "--calls",
        str(calls),
        timeout=120,
    )


def check_one_channel(output: str, calls: int) -> None:
    """One deposit on the first call, a voucher for each other, totals that agree."""
    total = SEQUENCE_CALLS + calls
    charged = f"${SEQUENCE_CHARGE + Decimal('0.001') * calls:f}"  # each extra read: $0.001
    assert len(DEPOSIT_LINE.findall(output)) == 1, output
    assert output.count("[voucher, charged $") == total - 1, output
    assert "charged $0.0011, channel total $0.0241]" in output  # the metered summary's cost
    assert f"charged $0.001, channel total {charged}]" in output  # the last call
    assert "  deposit:                 $0.1 (1 deposit)\n" in output
    assert f"  charged:                 {charged} over {total} calls " in output
    assert f"  chargedCumulativeAmount: {charged} (the channel's total" in output
    assert f"  on-chain transactions:   1 (1 deposit) for {total} paid calls\n" in output
    assert f"CHANNEL OK: {total} calls charged {charged}" in output
    assert "!!" not in output


def test_the_402_offers_channels_after_each_tools_own_options(server: DemoServer) -> None:
    put = httpx.post(f"{server.url}/tools/put-content", json={}, timeout=10)
    offers = decode_payment_required_header(put.headers["PAYMENT-REQUIRED"]).accepts
    assert [(o.scheme, o.network, o.amount) for o in offers] == [
        ("exact", "eip155:84532", "10000"),
        ("batch-settlement", "eip155:84532", "10000"),
    ]
    channel = offers[1].extra
    assert channel["receiverAuthorizer"].startswith("0x") and channel["withdrawDelay"] == 900
    metered = httpx.post(f"{server.url}/tools/summarize-content", json={}, timeout=10)
    offered = decode_payment_required_header(metered.headers["PAYMENT-REQUIRED"]).accepts
    assert [(o.scheme, o.amount) for o in offered] == [
        ("upto", "50000"),
        ("batch-settlement", "50000"),
    ]


@pytest.mark.parametrize("transport", ["http", "ws", "mcp", "a2a"])
def test_demo_call_batch_pays_every_call_through_one_channel(
    server: DemoServer, transport: str
) -> None:
    done = batch_call(server, transport, 5)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"over {transport}; every call below is paid through one payment channel" in (
        done.stdout
    )
    check_one_channel(done.stdout, 5)
    assert "read the greeting again (5 of 5 cheap calls)" in done.stdout
    assert CLAIM_HINT in done.stdout and IN_PROCESS_CAVEAT not in done.stdout


def test_aixyz_channels_claims_and_settles_what_demo_call_charged(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with shared_demo(tmp_path_factory.mktemp("claims")) as fresh:
        done = batch_call(fresh, "http", 20)
        assert done.returncode == 0, done.stdout + done.stderr
        check_one_channel(done.stdout, 20)
        claimed = fresh.manage("aixyz_channels", "--all")
        again = fresh.manage("aixyz_channels", "--all")
    assert claimed.returncode == 0, claimed.stdout + claimed.stderr
    group = (
        "on eip155:84532 to 0x000000000000000000000000000000000000dEaD "
        "in 0x036CbD53842c5426634e7929541eC2318f3dCF7e: tx 0x"
    )
    lines = claimed.stdout.splitlines()
    assert [line.split(group)[0] for line in lines] == [
        "claimed 1 voucher(s) ",
        "settled claimed funds ",
    ], claimed.stdout
    assert again.returncode == 0 and "Nothing to claim, settle or refund." in again.stdout


def test_with_the_in_process_facilitator_the_output_says_how_to_claim(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """... and following it works: the admin's button claims in the server's process,
    while manage.py, in another process, says why it cannot."""
    with demo_server(tmp_path_factory.mktemp("embedded")) as embedded:
        done = batch_call(embedded, "http", 0)
        elsewhere = embedded.manage("aixyz_channels", "--all")
        admin = admin_client(embedded.url)
        listing = admin.get("/admin/aixyz_sessions/channel/")
        token = admin.cookies.get("csrftoken")
        claimed = admin.post(
            "/admin/aixyz_sessions/channel/claim/",
            data={"csrfmiddlewaretoken": token},
            headers={"Referer": f"{embedded.url}/admin/aixyz_sessions/channel/"},
        )
        admin.close()
    assert done.returncode == 0, done.stdout + done.stderr
    check_one_channel(done.stdout, 0)
    assert CLAIM_HINT not in done.stdout
    assert IN_PROCESS_CAVEAT in done.stdout
    assert f"{embedded.url}/admin/aixyz_sessions/channel/" in done.stdout
    assert "X402_FACILITATOR_URL=http://127.0.0.1:4020" in done.stdout
    assert elsewhere.returncode != 0
    assert "in-process LocalFacilitator of another process" in elsewhere.stdout
    assert "Claim and settle now" in listing.text
    assert claimed.status_code == 200, claimed.text[:500]
    page = claimed.text.lower()
    assert "claimed 1 voucher(s) on eip155:84532" in page and "settled claimed funds" in page


def test_channels_off_the_402_has_no_channel_and_batch_says_so(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("off")
    with demo_server(folder, {"AIXYZ_DEMO_CHANNELS": "0"}) as off:
        put = httpx.post(f"{off.url}/tools/put-content", json={}, timeout=10)
        offers = decode_payment_required_header(put.headers["PAYMENT-REQUIRED"]).accepts
        done = batch_call(off, "http", 1)
    assert [(o.scheme, o.network) for o in offers] == [("exact", "eip155:84532")]
    assert done.returncode != 0
    assert "offers no payment channels (batch-settlement)" in done.stderr
    assert "AIXYZ_DEMO_CHANNELS=0" in done.stderr and "Traceback" not in done.stderr


def test_calls_must_not_be_negative(server: DemoServer) -> None:
    done = batch_call(server, "http", -1)
    assert done.returncode != 0 and "--calls must be 0 or more" in done.stderr
