"""Faults from outside: Redis restarted, PostgreSQL refusing, the facilitator slow or failing.

Every fault must look the same to a paying client: a JSON error with a clear
status (503 store down, 502 facilitator failing, 504 facilitator too slow),
no settlement for the failed request, and service back by itself once the
fault is gone, without restarting Django.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections
from django.test import override_settings

from aixyz_sessions import get_store
from aixyz_sessions.exceptions import SessionStoreUnavailable
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.testing import PayingClient
from aixyz_sessions.tools.mcp import mcp_asgi_app, reset_mcp_server
from tests import mcp_helpers
from tests.fault_facilitator import FaultyFacilitator
from tests.fault_redis import private_redis
from tests.payments_helpers import LOCAL, MIDDLEWARE, NETWORK, PAY_TO, free_port, serve
from tests.services import PG_HOST, PG_PORT, need_postgres, need_redis
from tests.tools_app import Wallet, example_tools, paid_ws_call, websocket

TIMEOUT_S = 1.0
MARGIN_S = 1.5
IN_MEMORY_GUARD = "aixyz_sessions.replay.InMemoryReplayGuard"


def ledger() -> Any:
    return get_local_facilitator().ledger


def tools_settings(x402: dict[str, Any], **extra: Any) -> Any:
    return override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=x402, **extra
    )


async def put(client: PayingClient, key: str, value: str) -> Any:
    return await client.post(
        "/tools/put", {"key": key, "value": value}, content_type="application/json"
    )


def assert_json_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response.content)
    assert body["error"] == error, body
    assert "Traceback" not in body.get("message", "")
    assert "PAYMENT-RESPONSE" not in response
    return body


# -- Redis killed and restarted under a running Django ---------------------------------------


@pytest.mark.django_db
async def test_redis_restart_gives_503_then_service_resumes() -> None:
    need_redis()
    before = ledger().settled_count
    with private_redis() as redis, example_tools():
        caches = {
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "sessions": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": redis.url,
            },
        }
        store_setting = {
            "BACKEND": "aixyz_sessions.stores.cache.CacheSessionStore",
            "OPTIONS": {"cache_alias": "sessions", "key_prefix": "aixyz:faults"},
        }
        with tools_settings(LOCAL, CACHES=caches, AIXYZ_SESSION_STORE=store_setting):
            store = get_store()
            client = PayingClient()
            payer = client.address.lower()
            assert (await put(client, "k", "before")).status_code == 200
            assert ledger().settled_count == before + 1

            # Mid-run: a stream of writes is going on when Redis dies.
            async def writer(n: int) -> None:
                for i in range(500):
                    await store.set(payer, f"w{n}:{i}", "v")

            writers = [asyncio.ensure_future(writer(n)) for n in range(4)]
            await asyncio.sleep(0.05)
            redis.kill()
            outcomes = await asyncio.gather(*writers, return_exceptions=True)
            assert all(isinstance(o, SessionStoreUnavailable) for o in outcomes), outcomes

            # The replay guard lives in Redis too: the payment is refused with 503 ...
            body = assert_json_error(
                await put(client, "k", "during"), 503, "session_store_unavailable"
            )
            assert body["message"] == "the session store is unavailable; retry in 5 seconds"
            # ... and with the guard in memory the tool itself meets the outage: 503 as well.
            with override_settings(AIXYZ_X402={**LOCAL, "REPLAY_GUARD": IN_MEMORY_GUARD}):
                response = await put(client, "k", "during")
                assert_json_error(response, 503, "session_store_unavailable")
                assert response["Retry-After"]
                async with websocket() as ws:
                    reply = await paid_ws_call(ws, Wallet(), "put", {"key": "k", "value": "v"})
                assert reply["error"]["code"] == "session_store_unavailable", reply
            assert ledger().settled_count == before + 1, "a failed request was settled"
            with pytest.raises(SessionStoreUnavailable):
                await store.get(payer, "k")

            redis.start()  # same port, empty, no cached scripts; Django is not restarted
            assert get_store() is store
            response = await put(client, "k", "after")
            assert response.status_code == 200, response.content
            assert ledger().settled_count == before + 2
            assert await store.get(payer, "k") == "after"
            await store.close()


# -- PostgreSQL that refuses ------------------------------------------------------------------


@contextmanager
def database_alias(alias: str, entry: dict[str, Any]) -> Iterator[str]:
    """Add ``alias`` to DATABASES for a block (Django reads it through ``connections``)."""
    full = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.dummy"}, alias: entry}
    )[alias]
    targets = {id(d): d for d in (django_settings.DATABASES, connections.settings)}.values()
    for databases in targets:
        databases[alias] = full
    try:
        yield alias
    finally:
        for databases in targets:
            databases.pop(alias, None)
        try:
            del connections[alias]
        except AttributeError:
            pass


def refusing_postgres() -> list[tuple[str, dict[str, Any]]]:
    closed = {"HOST": "127.0.0.1", "PORT": free_port(), "NAME": "nowhere"}
    missing = {"HOST": PG_HOST, "PORT": PG_PORT, "NAME": "aixyz_no_such_database"}
    return [("closed_port", closed), ("missing_database", missing)]


@pytest.mark.parametrize("case", ["closed_port", "missing_database"])
async def test_postgres_refusing_gives_503_and_no_settlement(
    case: str, django_db_blocker: Any
) -> None:
    if case == "missing_database":
        need_postgres()
    entry = dict(refusing_postgres())[case]
    alias = f"refusing_{case}"
    django_db_blocker.unblock()  # not a test database: pytest-django would refuse the alias
    try:
        with (
            database_alias(
                alias,
                {
                    "ENGINE": "django.db.backends.postgresql",
                    "USER": "postgres",
                    "OPTIONS": {"connect_timeout": 2},
                    **entry,
                },
            ),
            example_tools(),
        ):
            store_setting = {
                "BACKEND": "aixyz_sessions.stores.db.DatabaseSessionStore",
                "OPTIONS": {"using": alias},
            }
            before = ledger().settled_count
            with tools_settings(LOCAL, AIXYZ_SESSION_STORE=store_setting):
                with pytest.raises(SessionStoreUnavailable, match=f"'{alias}'"):
                    await get_store().set("0xabc", "k", "v")
                client = PayingClient()
                body = assert_json_error(
                    await put(client, "k", "v"), 503, "session_store_unavailable"
                )
                assert f"'{alias}'" not in body["message"]  # in the log only
                with override_settings(AIXYZ_X402={**LOCAL, "REPLAY_GUARD": IN_MEMORY_GUARD}):
                    assert_json_error(await put(client, "k", "v"), 503, "session_store_unavailable")
            assert ledger().settled_count == before
    finally:
        django_db_blocker.restore()


# -- the facilitator, slow or failing ----------------------------------------------------------


@pytest.fixture(scope="module")
def facilitator() -> Iterator[tuple[FaultyFacilitator, str]]:
    app = FaultyFacilitator()
    with serve(app) as url:
        yield app, url


@pytest.fixture
def faulty(facilitator: tuple[FaultyFacilitator, str]) -> Iterator[FaultyFacilitator]:
    app, url = facilitator
    app.reset()
    x402 = {
        "PAY_TO": PAY_TO,
        "NETWORK": NETWORK,
        "FACILITATOR_URL": url,
        "FACILITATOR_TIMEOUT": TIMEOUT_S,
    }
    with example_tools(), tools_settings(x402):
        yield app
    app.reset()


async def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = await call
    return result, time.monotonic() - started


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/supported", "/verify", "/settle"])
async def test_slow_facilitator_is_504_within_the_timeout(
    faulty: FaultyFacilitator, path: str
) -> None:
    client = PayingClient()
    await put(client, "warm", "up")  # the runtime has asked /supported once
    reset_runtime()  # ... forget it, so a slow /supported is met again
    before = ledger().settled_count
    faulty.faults[path] = ("delay", TIMEOUT_S + 2)
    if path == "/supported":
        response, elapsed = await timed(put(client, "k", "v"))
    else:
        unpaid = await client.post(
            "/tools/put", {"key": "k", "value": "v"}, content_type="application/json", pay=False
        )
        headers = await client.payment_headers(unpaid)
        response, elapsed = await timed(
            client.post(
                "/tools/put",
                {"key": "k", "value": "v"},
                content_type="application/json",
                headers=headers,
                pay=False,
            )
        )
    assert_json_error(response, 504, "facilitator_timeout")
    assert elapsed < TIMEOUT_S + MARGIN_S, elapsed
    # the facilitator saw the client give up and dropped the request: nothing settled
    for _ in range(100):
        if faulty.dropped.get(path):
            break
        await asyncio.sleep(0.05)
    assert faulty.dropped.get(path) == 1
    assert ledger().settled_count == before
    if path != "/settle":  # the tool never ran
        assert await get_store().get(client.address.lower(), "k") is None

    faulty.faults.clear()  # the facilitator is back: so is the service
    response = await put(client, "k", "v2")
    assert response.status_code == 200, response.content
    assert ledger().settled_count == before + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "fault"),
    [
        ("/verify", ("status", 500)),
        ("/verify", ("garbage", None)),
        ("/settle", ("status", 500)),
        ("/settle", ("status", 503)),
        ("/settle", ("garbage", None)),
    ],
)
async def test_failing_facilitator_is_502_and_not_settled(
    faulty: FaultyFacilitator, path: str, fault: tuple[str, Any]
) -> None:
    client = PayingClient()
    await put(client, "warm", "up")
    before = ledger().settled_count
    faulty.faults[path] = fault
    response, elapsed = await timed(put(client, "k", "v"))
    body = assert_json_error(response, 502, "facilitator_unavailable")
    assert body["message"]
    assert elapsed < TIMEOUT_S + MARGIN_S
    assert ledger().settled_count == before
    faulty.faults.clear()
    assert (await put(client, "k", "v")).status_code == 200
    assert ledger().settled_count == before + 1


@pytest.mark.django_db
async def test_slow_facilitator_over_websocket_is_facilitator_timeout(
    faulty: FaultyFacilitator,
) -> None:
    before = ledger().settled_count
    wallet = Wallet()
    async with websocket() as ws:
        await ws.send_json_to({"id": 0, "tool": "echo", "arguments": {"text": "x"}})
        await ws.receive_json_from(timeout=10)
        faulty.faults["/verify"] = ("delay", TIMEOUT_S + 2)
        started = time.monotonic()
        reply = await paid_ws_call(ws, wallet, "put", {"key": "k", "value": "v"})
        assert time.monotonic() - started < TIMEOUT_S + MARGIN_S
        assert reply["error"]["code"] == "facilitator_timeout", reply
        faulty.faults["/verify"] = ("status", 500)
        reply = await paid_ws_call(ws, wallet, "put", {"key": "k", "value": "v"})
        assert reply["error"]["code"] == "facilitator_unavailable", reply
        faulty.faults.clear()
        reply = await paid_ws_call(ws, wallet, "put", {"key": "k", "value": "v"})
        assert reply["result"]["key"] == "k", reply
    assert ledger().settled_count == before + 1


@pytest.mark.django_db
async def test_slow_facilitator_over_mcp_is_facilitator_timeout(
    facilitator: tuple[FaultyFacilitator, str], settings: Any
) -> None:
    app, url = facilitator
    app.reset()
    settings.AIXYZ_X402 = {
        "PAY_TO": PAY_TO,
        "NETWORK": NETWORK,
        "FACILITATOR_URL": url,
        "FACILITATOR_TIMEOUT": TIMEOUT_S,
    }
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    mcp_helpers.register_examples()
    reset_runtime()
    reset_mcp_server()
    before = ledger().settled_count
    try:
        with serve(mcp_asgi_app()) as base:
            payer = mcp_helpers.Payer()
            async with mcp_helpers.connect(base) as session:
                arguments = {"key": "k", "value": "v"}
                unpaid = await session.call_tool(mcp_helpers.PUT, arguments)
                required = mcp_helpers.payment_required(unpaid)
                assert required is not None
                app.faults["/verify"] = ("delay", TIMEOUT_S + 2)
                started = time.monotonic()
                result = await session.call_tool(
                    mcp_helpers.PUT, arguments, meta=await payer.pay(required)
                )
                assert time.monotonic() - started < TIMEOUT_S + MARGIN_S
                assert result.isError
                assert result.structuredContent is not None, result
                assert result.structuredContent["error"] == "facilitator_timeout", result
                app.faults["/settle"] = ("status", 500)
                app.faults.pop("/verify")
                result = await session.call_tool(
                    mcp_helpers.PUT, arguments, meta=await payer.pay(required)
                )
                assert result.isError
                assert result.structuredContent is not None, result
                assert result.structuredContent["error"] == "facilitator_unavailable", result
        assert ledger().settled_count == before
    finally:
        app.reset()
        mcp_helpers.unregister_examples()
        reset_runtime()
        reset_mcp_server()
