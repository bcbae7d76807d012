"""A2A push notifications: the payer's webhooks, called only for paid work that settled.

A real server on loopback and a webhook receiver on loopback. The SDK's URL
screening refuses loopback addresses (as it must in production); these tests
let the one receiver through and keep the screening for every other URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests import mcp_helpers
from tests.agent_app import agent_server
from tests.payments_helpers import serve
from tests.test_agent_a2a import _signed_rpc, invoke, paying, rpc, v03_message

pytestmark = pytest.mark.django_db(transaction=True)
PUT, FAIL = mcp_helpers.PUT, mcp_helpers.PAID_FAIL
TOKEN = "webhook-token-1"


class Receiver:
    """A webhook on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], Any]] = []

    async def hook(self, request: Request) -> JSONResponse:
        self.calls.append((dict(request.headers), await request.json()))
        return JSONResponse({})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Receiver, str]]:
    from aixyz_sessions.agent import push, server

    kept = Receiver()
    with serve(kept.app()) as url:
        hook = f"{url}/hook"
        screen = push.validate_push_notification_url

        async def allow_the_receiver(candidate: str) -> bool:
            return candidate == hook or await screen(candidate)

        monkeypatch.setattr(push, "validate_push_notification_url", allow_the_receiver)
        monkeypatch.setattr(server, "validate_push_notification_url", allow_the_receiver)
        yield kept, hook


@pytest.fixture
def base(receiver: tuple[Receiver, str]) -> Iterator[str]:
    with agent_server() as url:  # built after the screening above is in place
        yield url


def with_push(message: dict[str, Any], url: str) -> dict[str, Any]:
    return {**message, "configuration": {"pushNotificationConfig": {"url": url, "token": TOKEN}}}


async def settle_down(receiver: Receiver, count: int = 1, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if len(receiver.calls) >= count:
            return
        await asyncio.sleep(0.05)


async def test_a_paid_turn_is_pushed_once_it_settled(
    base: str, receiver: tuple[Receiver, str]
) -> None:
    kept, hook = receiver
    account = Account.create()
    message = with_push(v03_message(invoke(PUT, key="k", value="v")), hook)
    async with paying(account, base) as http:
        sent = await http.post("/agent", json=rpc("message/send", message))
    assert sent.status_code == 200, sent.text
    task_id = sent.json()["result"]["id"]
    await settle_down(kept)
    assert kept.calls, "no notification arrived"
    for headers, body in kept.calls:
        assert headers["x-a2a-notification-token"] == TOKEN
        assert task_id in str(body)
    assert "completed" in str(kept.calls[-1][1]).lower()


async def test_a_failed_turn_pushes_nothing(base: str, receiver: tuple[Receiver, str]) -> None:
    kept, hook = receiver
    async with paying(Account.create(), base) as http:
        sent = await http.post(
            "/agent", json=rpc("message/send", with_push(v03_message(invoke(FAIL)), hook))
        )
    assert sent.status_code in (400, 422), sent.text  # not settled (a crashed tool: 400)
    await asyncio.sleep(1.0)
    assert kept.calls == []


async def test_webhooks_are_the_payers_alone(base: str, receiver: tuple[Receiver, str]) -> None:
    _, hook = receiver
    owner, other = Account.create(), Account.create()
    async with paying(owner, base) as http:
        sent = await http.post(
            "/agent", json=rpc("message/send", v03_message(invoke(PUT, key="w", value="1")))
        )
    task_id = sent.json()["result"]["id"]
    config = {"taskId": task_id, "pushNotificationConfig": {"id": "mine", "url": hook}}
    made = await _signed_rpc(owner, base, rpc("tasks/pushNotificationConfig/set", config))
    assert made.status_code == 200, made.text
    listed = await _signed_rpc(
        owner, base, rpc("tasks/pushNotificationConfig/list", {"id": task_id})
    )
    assert hook in listed.text
    theirs = await _signed_rpc(
        other, base, rpc("tasks/pushNotificationConfig/list", {"id": task_id})
    )
    assert theirs.status_code == 400 and hook not in theirs.text
    taken = await _signed_rpc(
        other,
        base,
        rpc(
            "tasks/pushNotificationConfig/set",
            {**config, "pushNotificationConfig": {"id": "x", "url": hook}},
        ),
    )
    assert taken.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/hook",
        "file:///etc/passwd",
        "http://[::1]/hook",
    ],
)
async def test_a_webhook_inside_the_network_is_refused_and_nothing_is_charged(
    base: str, url: str
) -> None:
    from aixyz_sessions.payments.local import get_local_facilitator

    account = Account.create()
    message = with_push(v03_message(invoke(PUT, key="ssrf", value="1")), url)
    async with paying(account, base) as http:
        sent = await http.post("/agent", json=rpc("message/send", message))
    assert sent.status_code == 400 and "push notification URL" in sent.text, sent.text
    ledger = get_local_facilitator().ledger
    assert [t for t in ledger.transfers if t.payer == account.address] == []


async def test_the_card_says_the_agent_pushes(base: str) -> None:
    async with httpx.AsyncClient(timeout=10) as plain:
        card = (await plain.get(f"{base}/.well-known/agent-card.json")).json()
    assert card["capabilities"]["pushNotifications"] is True
