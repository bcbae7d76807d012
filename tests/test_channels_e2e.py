"""Payment channels (x402 ``batch-settlement``) against a real server, on the database and Redis.

uvicorn on loopback serves the one ASGI app with ``AIXYZ_X402["BATCH_SETTLEMENT"]``
set; the client is the x402 SDK's own batch-settlement client scheme
(``x402.mechanisms.evm.batch_settlement.client``) with nothing else
registered, so it pays every route through a channel: a deposit on its first
call, a cumulative voucher on each call after it. The LocalFacilitator's ledger
counts on-chain transactions; the channel storage says what was charged.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from django.test import override_settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http import (
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.batch_settlement.client import (
    BatchSettlementEvmScheme as ChannelClientScheme,
)
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmSchemeOptions
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired, PaymentResponseContext, SettleResponse

from aixyz_sessions import get_store
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import get_runtime
from tests import mcp_helpers
from tests.options_app import BASE_SEPOLIA, METERED_TOOL
from tests.options_server import options_server, with_channels
from tests.payments_helpers import MIDDLEWARE
from tests.services import need_redis
from tests.test_payment_options_e2e import _rpc

pytestmark = pytest.mark.django_db(transaction=True)
REDIS_CHANNELS = "redis://127.0.0.1:6379/14"
PRICE = 10000  # $0.01 of USDC


@pytest.fixture(params=["database", "redis"])
def storage(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "redis":
        need_redis()
        import redis

        client = redis.Redis.from_url(REDIS_CHANNELS)
        client.flushdb()
        yield REDIS_CHANNELS
        client.flushdb()
        client.close()
    else:
        yield "database"


@pytest.fixture
def base(storage: str) -> Iterator[str]:
    with options_server(with_channels(storage)) as url:
        yield url


def payer_client(account: LocalAccount, salt: str | None = None) -> x402Client:
    """The SDK's client with the batch-settlement scheme only: it pays through a channel."""
    client = x402Client()
    options = BatchSettlementEvmSchemeOptions(salt=salt)
    client.register("eip155:*", ChannelClientScheme(EthAccountSigner(account), options))
    return client


def stored_channels(payer: str) -> list[Any]:
    """The channels the server stored for ``payer`` (read off the event loop)."""
    scheme = get_runtime().channel_scheme
    assert scheme is not None
    return [
        c for c in scheme.channel_storage.list() if c.channel_config.payer.lower() == payer.lower()
    ]


async def channels_of(payer: str) -> list[Any]:
    return await asyncio.to_thread(stored_channels, payer)


def deposits() -> int:
    return get_local_facilitator().ledger.transaction_count(kind="deposit")


def receipt(header: str) -> SettleResponse:
    settled = decode_payment_response_header(header)
    assert isinstance(settled, SettleResponse)
    return settled


# -- over HTTP ---------------------------------------------------------------------------------


async def test_the_402_offers_a_channel_after_each_option(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
    required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
    assert [(a.scheme, a.network) for a in required.accepts] == [
        ("exact", BASE_SEPOLIA),
        ("exact", "eip155:8453"),
        ("batch-settlement", BASE_SEPOLIA),
        ("batch-settlement", "eip155:8453"),
    ]
    channel = required.accepts[2]
    assert channel.amount == str(PRICE)
    assert channel.extra["receiverAuthorizer"].startswith("0x")
    assert channel.extra["withdrawDelay"] == 900


async def test_one_deposit_then_vouchers_pay_many_calls_in_one_session(base: str) -> None:
    account = Account.create()
    before = deposits()
    async with x402HttpxClient(payer_client(account), base_url=base, timeout=30) as http:
        for index in range(6):
            response = await http.get("/two-networks/", params={"key": f"k{index}", "read": "k0"})
            assert response.status_code == 200, response.text
            assert response.json() == {"payer": account.address, "value": "1"}
            settled = receipt(response.headers["PAYMENT-RESPONSE"])
            assert settled.payer is not None and settled.payer.lower() == account.address.lower()
            state = (settled.extra or {})["channelState"]
            assert state["chargedCumulativeAmount"] == str(PRICE * (index + 1))
    assert deposits() - before == 1  # one on-chain transaction for six calls
    (channel,) = await channels_of(account.address)
    assert int(channel.charged_cumulative_amount) == 6 * PRICE
    assert channel.pending_request is None
    for index in range(6):
        assert await get_store().get(account.address.lower(), f"k{index}") == "1"


async def test_a_voucher_is_spent_once(base: str) -> None:
    """The same voucher sent again: the cumulative amount is stale, the work does not run."""
    account = Account.create()
    client = payer_client(account)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        first = await http.get("/two-networks/", params={"key": "a"})
        assert first.status_code == 200, first.text
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        voucher = encode_payment_signature_header(await client.create_payment_payload(required))
        second = await plain.get(
            "/two-networks/", params={"key": "b"}, headers={"PAYMENT-SIGNATURE": voucher}
        )
        assert second.status_code == 200, second.text
        replay = await plain.get(
            "/two-networks/", params={"key": "c"}, headers={"PAYMENT-SIGNATURE": voucher}
        )
    assert replay.status_code == 402, replay.text
    corrective = decode_payment_required_header(replay.headers["PAYMENT-REQUIRED"])
    assert corrective.error is not None and "cumulative" in corrective.error
    channel_states = [a.extra.get("channelState") for a in corrective.accepts if a.extra]
    assert {"chargedCumulativeAmount": str(2 * PRICE)}.items() <= next(
        s for s in channel_states if s
    ).items()
    assert await get_store().get(account.address.lower(), "c") is None
    (channel,) = await channels_of(account.address)
    assert int(channel.charged_cumulative_amount) == 2 * PRICE
    # The correction was for that payer only: the next client's 402 says nothing of it.
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        fresh = await plain.get("/two-networks/")
    for offer in decode_payment_required_header(fresh.headers["PAYMENT-REQUIRED"]).accepts:
        assert "channelState" not in (offer.extra or {}) and "voucherState" not in (
            offer.extra or {}
        )


async def test_a_failed_call_does_not_advance_the_charge(base: str) -> None:
    account = Account.create()
    async with x402HttpxClient(payer_client(account), base_url=base, timeout=30) as http:
        ok = await http.post("/metered/", json={"key": "one", "charge": "$0.001"})
        assert ok.status_code == 200, ok.text
        failed = await http.post("/metered/", json={"key": "two", "fail": True})
        assert failed.status_code == 500 and "PAYMENT-RESPONSE" not in failed.headers
        (channel,) = await channels_of(account.address)
        assert int(channel.charged_cumulative_amount) == 1000
        assert channel.pending_request is None  # released at once, not after a timeout
        again = await http.post("/metered/", json={"key": "three", "charge": "$0.002"})
        assert again.status_code == 200, again.text
    (channel,) = await channels_of(account.address)
    assert int(channel.charged_cumulative_amount) == 3000
    assert await get_store().get(account.address.lower(), "two") is None
    assert await get_store().get(account.address.lower(), "three") == "written"


async def test_a_channel_serves_one_call_at_a_time(base: str) -> None:
    """Two requests with one voucher at once: one runs and is charged, the other is refused."""
    account = Account.create()
    client = payer_client(account)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        first = await http.get("/two-networks/", params={"key": "open"})
        assert first.status_code == 200, first.text
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        payload = await client.create_payment_payload(required)
        header = encode_payment_signature_header(payload)
        answers = await asyncio.gather(
            *(
                plain.get(
                    "/two-networks/",
                    params={"key": f"race{i}"},
                    headers={"PAYMENT-SIGNATURE": header},
                )
                for i in range(4)
            )
        )
    assert sorted(a.status_code for a in answers) == [200, 402, 402, 402], [a.text for a in answers]
    (channel,) = await channels_of(account.address)
    assert int(channel.charged_cumulative_amount) == 2 * PRICE


# -- every transport ---------------------------------------------------------------------------


async def _feed(client: x402Client, payload: PaymentPayload, settled: SettleResponse) -> None:
    """What the SDK's HTTP client does with a PAYMENT-RESPONSE, for transports without one."""
    await client.handle_payment_response(
        PaymentResponseContext(
            payment_payload=payload, requirements=payload.accepted, settle_response=settled
        )
    )


async def _over_http(base: str, client: x402Client, arguments: dict[str, Any]) -> str:
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        response = await http.post(f"/tools/{METERED_TOOL}", json=arguments)
    assert response.status_code == 200, response.text
    return str(receipt(response.headers["PAYMENT-RESPONSE"]).extra["chargedAmount"])


async def _over_websocket(base: str, client: x402Client, arguments: dict[str, Any]) -> str:
    async with websockets.connect(base.replace("http", "ws") + "/ws/tools/") as ws:

        async def ask(message: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps(message))
            reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
            return reply

        probe = await ask({"id": 1, "tool": METERED_TOOL, "arguments": arguments})
        required = PaymentRequired.model_validate(probe["error"]["payment_required"])
        payload = await client.create_payment_payload(required)
        assert isinstance(payload, PaymentPayload)
        payment = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
        reply = await ask(
            {"id": 2, "tool": METERED_TOOL, "arguments": arguments, "payment": payment}
        )
    assert "result" in reply, reply
    settled = receipt(reply["payment_response"])
    await _feed(client, payload, settled)
    return str((settled.extra or {})["chargedAmount"])


async def _over_mcp(base: str, client: x402Client, arguments: dict[str, Any]) -> str:
    from x402.mcp import x402MCPSession

    payloads: list[PaymentPayload] = []

    async def keep(context: Any) -> None:
        payloads.append(context.payment_payload)

    client.on_after_payment_creation(keep)
    async with mcp_helpers.connect(base) as session:
        paying = x402MCPSession(session, client, auto_payment=True)
        result = await paying.call_tool(METERED_TOOL, arguments)
    assert result.payment_made and not result.is_error, result.content
    settled = result.payment_response
    assert isinstance(settled, SettleResponse)
    await _feed(client, payloads[-1], settled)
    return str((settled.extra or {})["chargedAmount"])


async def _over_a2a(base: str, client: x402Client, arguments: dict[str, Any]) -> str:
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        response = await http.post("/agent", json=_rpc(METERED_TOOL, arguments))
    assert response.status_code == 200, response.text
    assert response.json()["result"]["status"]["state"] == "completed", response.text
    return str(receipt(response.headers["PAYMENT-RESPONSE"]).extra["chargedAmount"])


TRANSPORTS = {
    "http": _over_http,
    "websocket": _over_websocket,
    "mcp": _over_mcp,
    "a2a": _over_a2a,
}


@pytest.mark.parametrize("transport", list(TRANSPORTS))
async def test_each_transport_pays_through_the_channel(base: str, transport: str) -> None:
    """The metered tool: $0.0123 charged, then its maximum; one deposit for both calls."""
    account = Account.create()
    client = payer_client(account)
    call = TRANSPORTS[transport]
    before = deposits()
    assert await call(base, client, {"key": transport, "amount": "$0.0123"}) == "12300"
    assert await call(base, client, {"key": f"{transport}-max"}) == "50000"
    assert await call(base, client, {"key": f"{transport}-3", "amount": "$0.001"}) == "1000"
    assert deposits() - before == 1
    (channel,) = await channels_of(account.address)
    assert int(channel.charged_cumulative_amount) == 12300 + 50000 + 1000
    assert await get_store().get(account.address.lower(), transport) == "by tool"


# -- claims, settlement and refunds (manage.py aixyz_channels) ---------------------------------


def _command(*args: str) -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("aixyz_channels", *args, stdout=out)
    return out.getvalue()


async def test_many_calls_are_claimed_and_settled_in_two_transactions(base: str) -> None:
    ledger = get_local_facilitator().ledger
    payers = [Account.create() for _ in range(3)]
    for account in payers:
        async with x402HttpxClient(payer_client(account), base_url=base, timeout=30) as http:
            for index in range(4):
                response = await http.get("/two-networks/", params={"key": f"k{index}"})
                assert response.status_code == 200, response.text
    claims, settles = ledger.transaction_count("claim"), ledger.transaction_count("settle")
    quiet = await asyncio.to_thread(_command)  # nothing idle for CLAIM_AFTER (60 s) yet
    assert ledger.transaction_count("claim") == claims
    assert "Nothing to claim" in quiet or "claimed" not in quiet
    assert "3 channel(s) have charged vouchers idle less than CLAIM_AFTER (60 s)" in quiet
    said = await asyncio.to_thread(_command, "--all", "--no-refund")
    assert ledger.transaction_count("claim") - claims == 1, said  # 3 channels, one batch
    assert ledger.transaction_count("settle") - settles == 1, said
    assert "claimed 3 voucher(s) on eip155:84532" in said and "settled claimed funds" in said
    for account in payers:
        (channel,) = await channels_of(account.address)
        assert int(channel.total_claimed) == int(channel.charged_cumulative_amount) == 4 * PRICE
        chain = ledger.channel(channel.channel_id, chain_id=84532)
        assert chain is not None and chain.total_claimed == 4 * PRICE
    again = await asyncio.to_thread(_command, "--all", "--no-refund")
    assert "Nothing to claim" in again
    assert ledger.transaction_count("claim") - claims == 1


async def test_an_idle_channel_is_refunded_what_was_not_charged(base: str) -> None:
    from aixyz_sessions.payments.conf import reset_config

    ledger = get_local_facilitator().ledger
    account = Account.create()
    async with x402HttpxClient(payer_client(account), base_url=base, timeout=30) as http:
        for index in range(2):
            response = await http.get("/two-networks/", params={"key": f"k{index}"})
            assert response.status_code == 200, response.text
    (channel,) = await channels_of(account.address)
    deposit = int(channel.balance)
    assert deposit > 2 * PRICE
    settings = get_runtime().config.batch_settlement
    assert settings is not None
    from dataclasses import replace

    from aixyz_sessions.channels.operations import run_pass

    scheme = get_runtime().channel_scheme
    assert scheme is not None
    lines: list[str] = []
    idle = replace(settings, refund_after=0)
    done = await asyncio.to_thread(
        run_pass, scheme.channel_storage, idle, everything=True, say=lines.append
    )
    assert not done.failures, lines
    assert [r[1] for r in done.refunds] == [channel.channel_id], lines
    chain = ledger.channel(channel.channel_id, chain_id=84532)
    assert chain is not None and chain.balance == chain.total_claimed == 2 * PRICE
    back = [t for t in ledger.transfers if t.pay_to.lower() == account.address.lower()]
    assert sum(t.amount for t in back) == deposit - 2 * PRICE
    reset_config()


async def test_a_superuser_claims_and_settles_from_the_admin_in_the_servers_process(
    base: str,
) -> None:
    """The admin's button runs the pass where the in-process facilitator's chain is;
    a manage.py process would not see that chain, and says so."""
    from django.contrib.auth.models import Permission, User
    from django.test import Client

    ledger = get_local_facilitator().ledger
    account = Account.create()
    async with x402HttpxClient(payer_client(account), base_url=base, timeout=30) as http:
        for index in range(3):
            response = await http.get("/two-networks/", params={"key": f"k{index}"})
            assert response.status_code == 200, response.text
    claims = ledger.transaction_count("claim")

    def as_staff(superuser: bool) -> Client:
        user = User.objects.create_user(
            f"u{uuid.uuid4().hex[:8]}", password="pw", is_staff=True, is_superuser=superuser
        )
        user.user_permissions.add(Permission.objects.get(codename="view_channel"))
        client = Client()
        client.force_login(user)
        return client

    def visit() -> tuple[int, int, int, str]:
        staff, boss = as_staff(False), as_staff(True)
        url = "/admin/aixyz_sessions/channel/claim/"
        refused = staff.post(url).status_code
        wrong_method = boss.get(url).status_code
        listing = boss.get("/admin/aixyz_sessions/channel/").content.decode()
        assert "Claim and settle now" in listing
        assert (
            "Claim and settle now"
            not in staff.get("/admin/aixyz_sessions/channel/").content.decode()
        )
        done = boss.post(url, follow=True)
        return refused, wrong_method, done.status_code, done.content.decode()

    from tests import settings as test_settings

    with override_settings(MIDDLEWARE=[*test_settings.MIDDLEWARE, *MIDDLEWARE]):
        refused, wrong_method, status, page = await asyncio.to_thread(visit)
    assert (refused, wrong_method, status) == (403, 405, 200)
    said = page.lower()
    assert "claimed 1 voucher(s) on eip155:84532" in said and "settled claimed funds" in said
    assert ledger.transaction_count("claim") - claims == 1
    (channel,) = await channels_of(account.address)
    assert int(channel.total_claimed) == 3 * PRICE


@pytest.fixture
def down() -> Iterator[str]:
    """A server whose channel storage is a Redis nobody answers at (port 1)."""
    with options_server(with_channels("redis://127.0.0.1:1/0")) as url:
        yield url


async def test_a_channel_storage_that_is_down_is_the_servers_outage(down: str) -> None:
    """503 with Retry-After (the store's outage), not a 402 the client cannot act on."""
    account = Account.create()
    client = payer_client(account)
    async with httpx.AsyncClient(base_url=down, timeout=30) as plain:
        unpaid = await plain.get("/two-networks/")
        required = decode_payment_required_header(unpaid.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        payload = await client.create_payment_payload(required)
        answer = await plain.get(
            "/two-networks/",
            params={"key": "k"},
            headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)},
        )
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "session_store_unavailable"
    assert answer.headers["Retry-After"]
    # An exact payment does not need the channel storage: it still works.
    from x402.mechanisms.evm.exact import register_exact_evm_client

    exact = x402Client()
    register_exact_evm_client(exact, account)
    async with x402HttpxClient(exact, base_url=down, timeout=30) as http:
        paid = await http.get("/two-networks/", params={"key": "k"})
    assert paid.status_code == 200, paid.text


@pytest.fixture
def quick_claims() -> Iterator[str]:
    """Channels claimed once idle for one second (CLAIM_AFTER), on the database."""
    channels = with_channels()
    channels["BATCH_SETTLEMENT"]["CLAIM_AFTER"] = 1
    with options_server(channels) as url:
        yield url


async def test_watch_claims_on_the_sdk_timers_and_flushes_on_stop(quick_claims: str) -> None:
    ledger = get_local_facilitator().ledger
    account = Account.create()
    async with x402HttpxClient(payer_client(account), base_url=quick_claims, timeout=30) as http:
        for index in range(3):
            response = await http.get("/two-networks/", params={"key": f"w{index}"})
            assert response.status_code == 200, response.text
    claims = ledger.transaction_count("claim")
    said = await asyncio.to_thread(_command, "--watch", "--for", "3")
    assert "watching channels on eip155:84532" in said, said
    assert "claimed 1 voucher(s) on eip155:84532" in said, said
    assert ledger.transaction_count("claim") - claims >= 1
    (channel,) = await channels_of(account.address)
    assert int(channel.total_claimed) == int(channel.charged_cumulative_amount) == 3 * PRICE
