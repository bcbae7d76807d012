"""Metrics under several worker processes: prometheus-client's multiprocess mode.

Two demo servers (two uvicorn processes of one deployment, as ``--workers 2``
would run, but each on its own port so the test chooses which one serves a
call) share ``PROMETHEUS_MULTIPROC_DIR``, the database and one facilitator.
Calls alternate between them; either one's ``/metrics`` counts all of them.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path

import httpx
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families
from x402.http.clients.httpx import x402HttpxClient

from tests.demo_server import demo_server
from tests.test_demo_channels import shared_facilitator
from tests.test_payment_options_e2e import signer

TOKEN = "workers-metrics-token-0123456789"
PRICE = 1000  # get-content: $0.001
CALLS = 6


def _settled(url: str) -> tuple[float, float]:
    """``(settled calls, revenue)`` of get-content as ``url``'s ``/metrics`` says."""
    response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    calls = revenue = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.labels.get("resource") != "tool:get-content":
                continue
            if sample.name == "aixyz_paid_calls_total" and sample.labels["outcome"] == "settled":
                calls += sample.value
            if sample.name == "aixyz_revenue_atomic_units_total":
                revenue += sample.value
    return calls, revenue


def test_every_worker_answers_for_all_of_them(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "AIXYZ_METRICS_TOKEN": TOKEN,
        "AIXYZ_DEMO_CHANNELS": "0",  # the SDK's exact client: one payment per call
    }
    with ExitStack() as stack:
        env["X402_FACILITATOR_URL"] = stack.enter_context(shared_facilitator(tmp_path))
        servers = [
            stack.enter_context(demo_server(tmp_path, env, name=name)) for name in ("a", "b")
        ]
        client = signer(Account.create())

        async def pay() -> None:
            for index in range(CALLS):
                url = servers[index % 2].url
                async with x402HttpxClient(client, base_url=url, timeout=30) as http:
                    response = await http.post("/tools/get-content", json={"key": "k"})
                assert response.status_code == 200, (url, response.text)

        asyncio.run(pay())
        seen = [_settled(server.url) for server in servers]
    assert seen == [(CALLS, CALLS * PRICE)] * 2, seen
    # Each process kept its own files: the sum is over both.
    assert len({path.name.rsplit("_", 1)[-1] for path in metrics_dir.glob("counter_*.db")}) >= 2
