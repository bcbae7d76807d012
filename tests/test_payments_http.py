"""The HTTP facilitator path and a real ASGI server, all on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.test import override_settings
from eth_account import Account
from x402 import x402Client
from x402.http import decode_payment_response_header, x402HTTPClient
from x402.mechanisms.evm.exact import register_exact_evm_client

from aixyz_sessions import get_store
from aixyz_sessions.payments.local_server import LocalFacilitatorApp
from aixyz_sessions.testing.paying import PayingClient
from tests.payments_helpers import LOCAL, MIDDLEWARE, NETWORK, PAY_TO, free_port, serve

pytestmark = pytest.mark.django_db


def http_settings(url: str) -> Any:
    return override_settings(
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.payments_urls",
        AIXYZ_X402={
            "PAY_TO": PAY_TO,
            "NETWORK": NETWORK,
            "FACILITATOR_URL": url,
            "FACILITATOR_TIMEOUT": 2,
        },
    )


@pytest.fixture(scope="module")
def facilitator_url() -> Iterator[str]:
    with serve(LocalFacilitatorApp()) as url:
        yield url


async def test_http_facilitator_end_to_end(facilitator_url: str) -> None:
    with http_settings(facilitator_url):
        client = PayingClient()
        response = await client.get("/paid/")
        assert response.status_code == 200, response.content
        assert json.loads(response.content) == {"payer": client.address, "count": 1}
        assert decode_payment_response_header(response["PAYMENT-RESPONSE"]).success
        headers = await client.payment_headers(await client.get("/paid/", pay=False))
        first = await PayingClient().get("/paid/", headers=headers, pay=False)
        second = await PayingClient().get("/paid/", headers=headers, pay=False)
        assert (first.status_code, second.status_code) == (200, 402)


def test_http_facilitator_sync_chain(facilitator_url: str) -> None:
    from aixyz_sessions.testing.paying import SyncPayingClient

    with http_settings(facilitator_url):
        client = SyncPayingClient()
        for _ in range(2):  # a fresh event loop per request under WSGI
            assert client.get("/paid-sync/").json() == {"payer": client.address}


async def test_facilitator_down_is_502_and_view_does_not_run() -> None:
    with http_settings(f"http://127.0.0.1:{free_port()}"):
        client = PayingClient()
        response = await client.get("/paid/")
        assert response.status_code == 502
        assert json.loads(response.content)["error"] == "facilitator_unavailable"
        assert await get_store().get(client.address.lower(), "count") is None


async def _garbage(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/supported":
        body = json.dumps(
            {
                "kinds": [{"x402Version": 2, "scheme": "exact", "network": NETWORK}],
                "extensions": [],
                "signers": {},
            }
        ).encode()
    else:
        body = b"<html>not json</html>"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_facilitator_answering_garbage_is_502() -> None:
    with serve(_garbage) as url, http_settings(url):
        client = PayingClient()
        response = await client.get("/paid/")
        assert response.status_code == 502, response.content
        assert await get_store().get(client.address.lower(), "count") is None


def sdk_payer() -> tuple[Any, x402HTTPClient]:
    """A fresh key and the SDK's HTTP client that pays with it."""
    account = Account.create()
    sdk = x402Client()
    register_exact_evm_client(sdk, account)
    return account, x402HTTPClient(sdk)


async def test_django_under_uvicorn_with_sdk_client() -> None:
    with (
        override_settings(
            MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
        ),
        serve(get_asgi_application()) as base,
    ):
        account, payer = sdk_payer()
        async with httpx.AsyncClient(base_url=base) as http:
            unpaid = await http.get("/paid/")
            assert unpaid.status_code == 402
            headers, _ = await payer.handle_402_response(
                dict(unpaid.headers), unpaid.content, base + "/paid/"
            )
            paid = await http.get("/paid/", headers=headers)
            assert paid.status_code == 200, paid.text
            assert paid.json() == {"payer": account.address, "count": 1}
            assert decode_payment_response_header(paid.headers["PAYMENT-RESPONSE"]).success
            # sync view and streaming body under the real server
            headers, _ = await payer.handle_402_response(
                dict(unpaid.headers), unpaid.content, base + "/stream/"
            )
            stream = await http.get("/stream/", headers=headers)
            assert stream.text.endswith(f"2:{account.address}\n")
            assert (await http.get("/free/")).json() == {"payer": None, "session": False}


CSRF_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "aixyz_sessions.payments.middleware.X402Middleware",
]


@pytest.mark.parametrize("path", ["/paid/", "/cbv-post/"])
async def test_paid_post_passes_csrf_under_a_real_server(path: str) -> None:
    """A client that pays is not also asked for a CSRF cookie (it has none)."""
    with (
        override_settings(
            MIDDLEWARE=CSRF_MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
        ),
        serve(get_asgi_application()) as base,
    ):
        account, payer = sdk_payer()
        async with httpx.AsyncClient(base_url=base) as http:
            unpaid = await http.post(path, json={"echo": "hi"})
            assert unpaid.status_code == 402, unpaid.text
            headers, _ = await payer.handle_402_response(
                dict(unpaid.headers), unpaid.content, base + path
            )
            paid = await http.post(path, json={"echo": "hi"}, headers=headers)
            assert paid.status_code == 200, paid.text
            assert paid.json()["payer"] == account.address
            assert decode_payment_response_header(paid.headers["PAYMENT-RESPONSE"]).success
            # CSRF still guards everything that is not a paid request.
            free = await http.post("/free/", json={})
            assert free.status_code == 403, free.text
