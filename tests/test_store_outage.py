"""A session store that is down: clear 503s and error replies, never a 500, never a settlement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.testing import PayingClient
from tests.payments_helpers import LOCAL, MIDDLEWARE
from tests.tools_app import Wallet, example_tools, paid_ws_call, websocket

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "dead": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
    },
}
DEAD_STORE = {
    "BACKEND": "aixyz_sessions.stores.cache.CacheSessionStore",
    "OPTIONS": {"cache_alias": "dead"},
}
# The replay guard kept in memory, so the request gets as far as the view.
LOCAL_GUARD = {**LOCAL, "REPLAY_GUARD": "aixyz_sessions.replay.InMemoryReplayGuard"}


@pytest.fixture
def ledger() -> Any:
    return get_local_facilitator().ledger


@pytest.fixture
def dead_store() -> Iterator[None]:
    with override_settings(CACHES=DEAD_REDIS, AIXYZ_SESSION_STORE=DEAD_STORE):
        yield


#: What a client reads when the store is down: where the store lives stays in the log.
DOWN = "the session store is unavailable; retry in 5 seconds"


def assert_503(response: Any) -> None:
    assert response.status_code == 503, response.content
    body = json.loads(response.content)
    assert body["error"] == "session_store_unavailable"
    assert body["message"] == DOWN
    assert response["Retry-After"]
    assert "PAYMENT-RESPONSE" not in response


async def test_replay_guard_down_is_503_and_not_settled(
    dead_store: None, ledger: Any, caplog: pytest.LogCaptureFixture
) -> None:
    before = ledger.settled_count
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
    ):
        assert_503(await PayingClient().get("/paid/"))
    assert ledger.settled_count == before
    assert "'dead'" in caplog.text  # the operator's log names the store; the client's answer not


async def test_with_debug_on_the_503_names_the_store(dead_store: None) -> None:
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL, DEBUG=True
    ):
        response = await PayingClient().get("/paid/")
    assert response.status_code == 503 and "'dead'" in json.loads(response.content)["message"]


async def test_store_down_in_the_view_is_503_and_not_settled(dead_store: None, ledger: Any) -> None:
    before = ledger.settled_count
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL_GUARD
    ):
        client = PayingClient()
        assert_503(await client.get("/paid/"))
    assert ledger.settled_count == before


async def test_paid_tool_over_http_with_store_down(dead_store: None, ledger: Any) -> None:
    before = ledger.settled_count
    with (
        example_tools(),
        override_settings(
            MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=LOCAL_GUARD
        ),
    ):
        response = await PayingClient().post(
            "/tools/put", {"key": "k", "value": "v"}, content_type="application/json"
        )
    assert_503(response)
    assert ledger.settled_count == before


async def test_paid_tool_over_websocket_with_store_down(dead_store: None, ledger: Any) -> None:
    before = ledger.settled_count
    with (
        example_tools(),
        override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=LOCAL),
    ):
        async with websocket() as ws:
            reply = await paid_ws_call(ws, Wallet(), "put", {"key": "k", "value": "v"})
            assert reply["id"] == "paid"
            assert reply["error"]["code"] == "session_store_unavailable"
            assert reply["error"]["message"] == DOWN
            # the connection stays usable
            await ws.send_json_to({"id": 3, "tool": "echo", "arguments": {"text": "x"}})
            assert (await ws.receive_json_from(timeout=5))["result"]["text"] == "x"
    assert ledger.settled_count == before
