"""Two worker processes share one payment channel: no lost update, no double charge.

Two demo servers (two uvicorn processes of one deployment) share the channel
storage (the SQLite database of the database store, or the Redis of the cache
store) and one facilitator (``manage.py aixyz_local_facilitator``). One payer's
client, the SDK's batch-settlement scheme, pays alternately through each, and
sends one voucher to both at once: each cumulative amount is charged once, in
whichever process, and the channel's total is every successful call's price.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from x402.http import (
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.http.clients.httpx import x402HttpxClient
from x402.schemas import PaymentPayload, PaymentRequired, SettleResponse

from tests.demo_server import DemoServer, admin_client, demo_server
from tests.services import need_redis
from tests.test_channels_e2e import payer_client
from tests.test_demo_channels import shared_facilitator

PRICE = 1000  # get-content: $0.001
REDIS = "redis://127.0.0.1:6379/11"


@pytest.fixture(params=["database", "redis"])
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[DemoServer]]:
    env: dict[str, str] = {}
    if request.param == "redis":
        need_redis()
        import redis

        redis.Redis.from_url(REDIS).flushdb()
        env = {"AIXYZ_DEMO_STORE": "cache", "REDIS_URL": REDIS}
    with ExitStack() as stack:
        facilitator = stack.enter_context(shared_facilitator(tmp_path))
        env["X402_FACILITATOR_URL"] = facilitator
        servers = [
            stack.enter_context(demo_server(tmp_path, env, name=name)) for name in ("a", "b")
        ]
        yield servers


def _charged(response: httpx.Response) -> int:
    settled = decode_payment_response_header(response.headers["PAYMENT-RESPONSE"])
    assert isinstance(settled, SettleResponse)
    return int((settled.extra or {})["channelState"]["chargedCumulativeAmount"])


async def _both_at_once(servers: list[DemoServer], client: object) -> list[httpx.Response]:
    """One voucher, sent to both workers at the same moment, twice each."""
    async with httpx.AsyncClient(timeout=30) as plain:
        unpaid = await plain.post(f"{servers[0].url}/tools/get-content", json={"key": "k"})
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        payload = await client.create_payment_payload(required)  # type: ignore[attr-defined]
        assert isinstance(payload, PaymentPayload)
        header = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
        return list(
            await asyncio.gather(
                *(
                    plain.post(f"{server.url}/tools/get-content", json={"key": "k"}, headers=header)
                    for server in servers * 2
                )
            )
        )


def test_two_workers_share_one_channel_without_a_lost_update(workers: list[DemoServer]) -> None:
    account = Account.create()
    client = payer_client(account)

    async def pay() -> tuple[int, int, list[int]]:
        paid = 0
        last = 0
        for index in range(12):
            server = workers[index % 2]
            async with x402HttpxClient(client, base_url=server.url, timeout=30) as http:
                response = await http.post("/tools/get-content", json={"key": "k"})
            assert response.status_code == 200, (server.url, response.text)
            paid += 1
            last = _charged(response)
            assert last == paid * PRICE  # each worker sees what the other charged
        raced = await _both_at_once(workers, client)
        statuses = sorted(r.status_code for r in raced)
        return paid, last, statuses

    paid, last, statuses = asyncio.run(pay())
    assert statuses == [200, 402, 402, 402], statuses  # one voucher, one call, in one worker
    paid += 1
    # The server's books after the race: one more charge, not two, and no lost one.
    admin = admin_client(workers[1].url)
    listing = admin.get("/admin/aixyz_sessions/channel/", params={"payer": account.address})
    admin.close()
    row = re.search(r'<tr id="channel-(0x[0-9a-f]{64})">(.*?)</tr>', listing.text, re.S)
    assert row is not None, listing.text[-2000:]
    charged = re.search(r'field-charged field-amount">(\d+)', row.group(2))
    assert charged is not None and int(charged.group(1)) == paid * PRICE == last + PRICE
    claimed = workers[0].manage("aixyz_channels", "--all")
    assert claimed.returncode == 0, claimed.stdout + claimed.stderr
    assert "claimed 1 voucher(s) on eip155:84532" in claimed.stdout, claimed.stdout
    admin = admin_client(workers[0].url)
    detail = admin.get(f"/admin/aixyz_sessions/channel/{row.group(1)}/").text
    admin.close()
    claimed_total = re.search(r"Claimed \(total\):</label><div class=\"readonly\">(\d+)", detail)
    pending = re.search(
        r"Pending \(charged - claimed\):</label><div class=\"readonly\">(\d+)", detail
    )
    assert claimed_total is not None and int(claimed_total.group(1)) == paid * PRICE, detail
    assert pending is not None and int(pending.group(1)) == 0
