"""Sessions from a sync view, DRF and django-ninja, paid by the x402 SDK's client over real HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.test import AsyncClient, override_settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client

from aixyz_sessions import get_store
from aixyz_sessions.payments.local import get_local_facilitator
from tests.payments_helpers import LOCAL, assert_one_requirement, serve
from tests.test_payments_http import CSRF_MIDDLEWARE

pytestmark = pytest.mark.django_db

URLS = "tests.frameworks_urls"


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with (
        override_settings(MIDDLEWARE=CSRF_MIDDLEWARE, ROOT_URLCONF=URLS, AIXYZ_X402=LOCAL),
        serve(get_asgi_application()) as url,
    ):
        yield url


@asynccontextmanager
async def paying(base: str, account: LocalAccount) -> AsyncIterator[httpx.AsyncClient]:
    client = x402Client()
    register_exact_evm_client(client, account)
    async with x402HttpxClient(client, base_url=base, timeout=30) as http:
        yield http


async def test_sync_view_uses_the_session_through_async_to_sync(base: str) -> None:
    account: LocalAccount = Account.create()
    async with paying(base, account) as http:
        first = await http.get("/sync-counter/")
        second = await http.get("/sync-counter/")
    assert first.json() == {"payer": account.address, "count": 1}
    assert second.json() == {"payer": account.address, "count": 2}


async def test_drf_api_view_post_is_paid_and_csrf_free(base: str) -> None:
    account: LocalAccount = Account.create()
    async with httpx.AsyncClient(base_url=base) as plain:
        unpaid = await plain.post("/drf/notes/", json={"key": "k", "note": "v"})
    assert unpaid.status_code == 402
    async with paying(base, account) as http:
        paid = await http.post("/drf/notes/", json={"key": "k", "note": "drf"})
    assert paid.status_code == 200, paid.text
    assert paid.json() == {"payer": account.address, "stored": "k"}
    assert await get_store().get(account.address.lower(), "k") == "drf"


async def test_drf_viewset_action_behind_a_router_is_paid(base: str) -> None:
    account: LocalAccount = Account.create()
    await get_store().set(account.address.lower(), "k", "from before")
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    async with httpx.AsyncClient(base_url=base) as plain:
        unpaid = await plain.get("/drf-notes/k/")
    assert unpaid.status_code == 402, unpaid.text
    # The action's own price, $0.02.
    assert_one_requirement(unpaid.headers["PAYMENT-REQUIRED"], amount="20000")
    assert "from before" not in unpaid.text
    async with paying(base, account) as http:
        paid = await http.get("/drf-notes/k/")
    assert paid.status_code == 200, paid.text
    assert paid.json() == {"key": "k", "note": "from before"}
    assert ledger.settled_count == before + 1


async def test_ninja_operations_are_paid_at_their_own_price(base: str) -> None:
    account: LocalAccount = Account.create()
    async with httpx.AsyncClient(base_url=base) as plain:
        unpaid = await plain.post("/ninja/remember", params={"key": "k", "note": "n"})
        free = await plain.get("/ninja/free")
    assert unpaid.status_code == 402, unpaid.text
    assert_one_requirement(unpaid.headers["PAYMENT-REQUIRED"], amount="30000")  # $0.03
    assert free.json() == {"session": False}
    async with paying(base, account) as http:
        stored = await http.post("/ninja/remember", params={"key": "k", "note": "ninja"})
        read = await http.get("/ninja/recall", params={"key": "k"})
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"payer": account.address, "stored": "k"}
    assert read.json() == {"key": "k", "note": "ninja"}
    other: LocalAccount = Account.create()
    async with paying(base, other) as http:
        theirs = await http.get("/ninja/recall", params={"key": "k"})
    assert theirs.json() == {"key": "k", "note": None}


async def test_without_the_middleware_a_hidden_paid_view_is_a_500_naming_it() -> None:
    with override_settings(MIDDLEWARE=[], ROOT_URLCONF=URLS, AIXYZ_X402=LOCAL):
        response = await AsyncClient().post(
            "/ninja/remember?key=k&note=free", content_type="application/json"
        )
    assert response.status_code == 500
    body = json.loads(response.content)
    assert body["error"] == "server_misconfigured" and "X402Middleware" in body["message"]
