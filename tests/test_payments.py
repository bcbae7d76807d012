"""X402Middleware + @paid + LocalFacilitator through Django's test clients."""

from __future__ import annotations

import asyncio
import json
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, Client, override_settings
from x402.http import decode_payment_required_header, decode_payment_response_header

from aixyz_sessions import get_store, payments
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.testing.paying import PayingClient, SyncPayingClient
from tests.payments_helpers import (
    PAY_TO,
    assert_one_requirement,
    decode,
    encode,
    paid_views,
)
from tests.payments_urls import OTHER_PAY_TO

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _payments() -> Iterator[None]:
    with paid_views():
        yield


async def test_unpaid_gets_402_with_sdk_header() -> None:
    response = await PayingClient().get("/paid/", pay=False)
    assert response.status_code == 402
    assert response["Content-Type"] == "application/json"
    required = assert_one_requirement(response["PAYMENT-REQUIRED"], amount="10000")
    body = json.loads(response.content)
    assert body["error"] == "payment_required" and body["price"] == "$0.01"
    assert "$0.01" in body["message"] and "PAYMENT-SIGNATURE" in body["message"]
    assert "10000 atomic units of USDC" in body["message"] and PAY_TO in body["message"]
    assert body["x402Version"] == 2 and body["resource"]["url"].endswith("/paid/")
    assert body["accepts"] == [
        a.model_dump(by_alias=True, exclude_none=True) for a in required.accepts
    ]


async def test_paid_request_runs_view_in_payer_session() -> None:
    client = PayingClient()
    response = await client.get("/paid/")
    assert response.status_code == 200, response.content
    assert json.loads(response.content) == {"payer": client.address, "count": 1}
    settle = decode_payment_response_header(response["PAYMENT-RESPONSE"])
    assert settle.success and settle.payer == client.address
    assert "private" in response["Cache-Control"]
    assert await get_store().get(client.address.lower(), "count") == "1"
    # data persists across requests of the same payer
    again = await client.get("/paid/")
    assert json.loads(again.content)["count"] == 2


async def test_two_payers_are_isolated() -> None:
    a, b = PayingClient(), PayingClient()
    for _ in range(2):
        await a.get("/paid/")
    response = await b.get("/paid/")
    assert json.loads(response.content) == {"payer": b.address, "count": 1}


async def test_checksummed_and_lowercase_payer_share_session() -> None:
    client = PayingClient()
    await client.get("/paid/")
    assert await get_store().get(client.address.lower(), "count") == "1"
    assert client.address != client.address.lower()


async def test_free_view_sees_no_session() -> None:
    response = await PayingClient().get("/free/")
    assert json.loads(response.content) == {"payer": None, "session": False}
    assert "PAYMENT-REQUIRED" not in response


async def test_cbv_get_is_paid_post_is_free() -> None:
    client = PayingClient()
    assert (await client.get("/cbv/", pay=False)).status_code == 402
    response = await client.get("/cbv/")
    assert json.loads(response.content)["payer"] == client.address
    assert json.loads((await client.post("/cbv/", pay=False)).content) == {"payer": None}


async def test_per_view_price_and_recipient() -> None:
    client = PayingClient()
    unpaid = await client.get("/expensive/", pay=False)
    assert_one_requirement(unpaid["PAYMENT-REQUIRED"], amount="50000", pay_to=OTHER_PAY_TO)
    assert (await client.get("/expensive/")).status_code == 200


async def _signed(client: PayingClient, path: str = "/paid/") -> dict[str, object]:
    unpaid = await client.get(path, pay=False)
    headers = await client.payment_headers(unpaid)
    return decode(headers["PAYMENT-SIGNATURE"])


async def _send(payload: dict[str, object], path: str = "/paid/") -> object:
    return await AsyncClient().get(path, headers={"PAYMENT-SIGNATURE": encode(payload)})


async def test_tampered_signature_is_402() -> None:
    payload = await _signed(PayingClient())
    sig = payload["payload"]["signature"]  # type: ignore[index]
    payload["payload"]["signature"] = sig[:-4] + ("00" if sig[-4:-2] != "00" else "11") + sig[-2:]  # type: ignore[index]
    response = await _send(payload)
    assert response.status_code == 402  # type: ignore[attr-defined]
    body = json.loads(response.content)  # type: ignore[attr-defined]
    assert body["error"] == "invalid_payment" and "signature" in body["reason"]


async def test_wrong_amount_is_402() -> None:
    payload = await _signed(PayingClient())
    payload["payload"]["authorization"]["value"] = "1"  # type: ignore[index]
    response = await _send(payload)
    assert response.status_code == 402  # type: ignore[attr-defined]
    assert json.loads(response.content)["error"] == "invalid_payment"  # type: ignore[attr-defined]


async def test_wrong_amount_in_accepted_does_not_match() -> None:
    payload = await _signed(PayingClient())
    payload["accepted"]["amount"] = "1"  # type: ignore[index]
    response = await _send(payload)
    assert response.status_code == 402  # type: ignore[attr-defined]
    assert "matching" in json.loads(response.content)["reason"]  # type: ignore[attr-defined]


async def test_wrong_recipient_is_402() -> None:
    payload = await _signed(PayingClient())
    payload["payload"]["authorization"]["to"] = OTHER_PAY_TO  # type: ignore[index]
    response = await _send(payload)
    assert response.status_code == 402  # type: ignore[attr-defined]
    assert "recipient" in json.loads(response.content)["reason"]  # type: ignore[attr-defined]


async def test_payment_for_another_view_price_is_refused() -> None:
    payload = await _signed(PayingClient(), "/paid/")
    response = await _send(payload, "/expensive/")
    assert response.status_code == 402  # type: ignore[attr-defined]


async def test_expired_authorization_is_402() -> None:
    client = PayingClient()
    unpaid = await client.get("/paid/", pay=False)
    # Sign with a clock in the past: the SDK signs validBefore = now + maxTimeoutSeconds.
    import time
    from unittest import mock

    with mock.patch("time.time", return_value=time.time() - 3600):
        headers = await client.payment_headers(unpaid)
    response = await AsyncClient().get("/paid/", headers=headers)
    assert response.status_code == 402
    assert "valid_before" in json.loads(response.content)["reason"]


@pytest.mark.parametrize(
    "header",
    [
        "",
        "%%%",
        "bm90IGpzb24=",
        encode({"x402Version": 2}),
        encode([1, 2]),
        encode({"payload": 1}),
        encode({"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": {}}),
    ],
)
async def test_malformed_header_is_402_with_reason(header: str) -> None:
    response = await AsyncClient().get("/paid/", headers={"PAYMENT-SIGNATURE": header})
    assert response.status_code == 402
    if header:
        assert json.loads(response.content)["error"] == "invalid_payment"
        assert "PAYMENT-REQUIRED" in response


async def test_x_payment_header_is_accepted() -> None:
    client = PayingClient()
    headers = await client.payment_headers(await client.get("/paid/", pay=False))
    response = await AsyncClient().get(
        "/paid/", headers={"X-PAYMENT": headers["PAYMENT-SIGNATURE"]}
    )
    assert response.status_code == 200


async def test_replay_sequential_is_402() -> None:
    client = PayingClient()
    headers = await client.payment_headers(await client.get("/paid/", pay=False))
    first = await AsyncClient().get("/paid/", headers=headers)
    second = await AsyncClient().get("/paid/", headers=headers)
    assert (first.status_code, second.status_code) == (200, 402)


async def test_replay_concurrent_only_one_wins() -> None:
    client = PayingClient()
    headers = await client.payment_headers(await client.get("/paid/", pay=False))
    responses = await asyncio.gather(
        *(AsyncClient().get("/paid/", headers=headers) for _ in range(8))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [402] * 7
    assert await get_store().get(client.address.lower(), "count") == "1"


async def test_settlement_failure_withholds_body() -> None:
    get_local_facilitator().ledger.fail_settlements = "ERC20: transfer amount exceeds balance"
    response = await PayingClient().get("/paid/")
    assert response.status_code == 402
    body = json.loads(response.content)
    assert body["error"] == "settlement_failed" and "count" not in body
    assert decode_payment_response_header(response["PAYMENT-RESPONSE"]).success is False


async def test_view_exception_is_not_settled() -> None:
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    client = PayingClient(raise_request_exception=False)
    response = await client.get("/boom/")
    assert response.status_code == 500
    assert "PAYMENT-RESPONSE" not in response
    assert ledger.settled_count == before


async def test_non_2xx_is_not_settled_and_spends_the_authorization() -> None:
    """The view ran: its answer was not charged, and the same payment cannot start it again."""
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    client = PayingClient()
    headers = await client.payment_headers(await client.get("/missing/", pay=False))
    response = await AsyncClient().get("/missing/", headers=headers)
    assert response.status_code == 404 and "PAYMENT-RESPONSE" not in response
    assert ledger.settled_count == before
    again = await AsyncClient().get("/missing/", headers=headers)
    assert again.status_code == 402
    assert json.loads(again.content)["reason"] == REPLAYED
    assert ledger.settled_count == before


async def test_a_refusal_before_work_leaves_the_authorization_usable() -> None:
    """``refused_before_work``: the view did nothing, so the same payment can pay once more."""
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    client = PayingClient()
    headers = await client.payment_headers(await client.get("/refusing/", pay=False))
    refused = await AsyncClient().get("/refusing/", headers=headers)
    assert refused.status_code == 400 and "PAYMENT-RESPONSE" not in refused
    assert ledger.settled_count == before
    served = await AsyncClient().get("/refusing/?ok=1", headers=headers)
    assert served.status_code == 200 and "PAYMENT-RESPONSE" in served
    assert ledger.settled_count == before + 1
    spent = await AsyncClient().get("/refusing/?ok=1", headers=headers)
    assert spent.status_code == 402


async def test_sync_view_sees_session() -> None:
    client = PayingClient()
    response = await client.get("/paid-sync/")
    assert json.loads(response.content) == {"payer": client.address}


@pytest.mark.parametrize("path", ["/stream/", "/astream/"])
async def test_streaming_response_sees_session_while_streaming(path: str) -> None:
    client = PayingClient()
    response = await client.get(path)
    assert response.status_code == 200 and "PAYMENT-RESPONSE" in response
    content = response.streaming_content  # type: ignore[attr-defined]
    if response.is_async:  # type: ignore[attr-defined]
        chunks = [chunk async for chunk in content]
    else:  # consumed off the event loop, as an ASGI server does
        chunks = await asyncio.to_thread(list, content)
    body = b"".join(chunks).decode()
    assert body == "".join(f"{i}:{client.address}\n" for i in range(3))


async def test_nested_unpaid_request_sees_no_session() -> None:
    client = PayingClient()
    response = await client.get("/nested/")
    assert json.loads(response.content) == {
        "outer": client.address,
        "inner": {"payer": None, "session": False},
    }


async def test_browser_gets_paywall_html() -> None:
    response = await AsyncClient().get(
        "/paid/", headers={"Accept": "text/html", "User-Agent": "Mozilla/5.0"}
    )
    assert response.status_code == 402
    assert response["Content-Type"].startswith("text/html")
    assert b"<html" in response.content.lower() and "PAYMENT-REQUIRED" in response


def test_sync_client_under_wsgi_chain() -> None:
    client = SyncPayingClient()
    assert client.get("/paid-sync/", pay=False).status_code == 402
    response = client.get("/paid-sync/")
    assert response.status_code == 200, response.content
    assert response.json() == {"payer": client.address}
    streamed = client.get("/stream/")
    assert b"".join(streamed.streaming_content).decode().endswith(f"2:{client.address}\n")  # type: ignore[attr-defined]
    assert Client().get("/free-sync/").json() == {"payer": None}


def test_given_key_gives_stable_address() -> None:
    key = "0x" + "11" * 32
    assert PayingClient(account=key).address == SyncPayingClient(account=key).address


def test_paid_view_without_middleware_refuses() -> None:
    with override_settings(MIDDLEWARE=[]):
        client = Client(raise_request_exception=False)
        assert client.get("/paid-sync/").status_code == 500


@pytest.mark.parametrize("path", ["/paid/", "/cbv/", "/stream/"])
async def test_head_on_a_paid_url_answers_gets_headers_without_charging(path: str) -> None:
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    client = PayingClient()
    head = await client.head(path, pay=False)
    assert head.status_code == 200 and head.content == b""
    assert head["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
    assert_one_requirement(head["PAYMENT-REQUIRED"], amount="10000")
    # A payment sent with a HEAD is neither spent nor runs the view.
    get = await client.get(path, pay=False)
    headers = await client.payment_headers(get)
    paid_head = await AsyncClient().head(path, headers=headers)
    assert paid_head.status_code == 200 and "PAYMENT-RESPONSE" not in paid_head
    assert ledger.settled_count == before
    assert await get_store().get(client.address.lower(), "count") is None
    paid_get = await AsyncClient().get(path, headers=headers)
    assert paid_get.status_code == 200, paid_get.content


async def test_paywall_page_allows_wallet_popups() -> None:
    browser = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "Mozilla/5.0 (X11)"}
    response = await AsyncClient().get("/paid/", headers=browser)
    assert response.status_code == 402 and response["Content-Type"].startswith("text/html")
    assert response["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
    head = await AsyncClient().head("/paid/", headers=browser)
    assert head.status_code == 200 and head["Content-Type"].startswith("text/html")


def test_each_payments_module_imports_alone_and_conf_stays_out_of_the_runtime() -> None:
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.startswith('aixyz_sessions')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module('aixyz_sessions.payments.' + name)\n"
        "    if name == 'conf':\n"
        "        assert 'aixyz_sessions.payments.runtime' not in sys.modules\n"
    )
    modules = [m.name for m in pkgutil.iter_modules(payments.__path__)]
    assert "conf" in modules and "runtime" in modules
    subprocess.run([sys.executable, "-c", script, *modules], check=True, timeout=60)


async def test_unpaid_challenges_are_built_once_per_resource_and_client_kind() -> None:
    from aixyz_sessions.payments.runtime import get_runtime

    browser = {"Accept": "text/html,application/xhtml+xml", "User-Agent": "Mozilla/5.0 (X11)"}
    first = await AsyncClient().get("/paid/")
    page = await AsyncClient().get("/paid/", headers=browser)
    again = await AsyncClient().get("/paid/")
    other = await AsyncClient().get("/paid/?q=1")
    assert first.status_code == again.status_code == page.status_code == 402
    assert first["PAYMENT-REQUIRED"] == again["PAYMENT-REQUIRED"]
    assert first.content == again.content and first["Content-Type"] == "application/json"
    assert page["Content-Type"].startswith("text/html")  # never served from the cache
    resource = decode_payment_required_header(other["PAYMENT-REQUIRED"]).resource
    assert resource is not None and resource.url.endswith("/paid/?q=1")
    # JSON 402s only: the 2+ MB paywall page is not kept for client-chosen keys.
    assert len(get_runtime().challenges) == 2
    assert not any(c.is_html for c in get_runtime().challenges.values())
    # A paid request still goes the whole way (the cache holds unpaid answers only).
    assert (await PayingClient().get("/paid/")).status_code == 200


async def test_client_chosen_urls_cannot_grow_the_challenge_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aixyz_sessions.payments import runtime

    monkeypatch.setattr(runtime, "MAX_CHALLENGES", 5)
    browser = {"Accept": "text/html", "User-Agent": "Mozilla/5.0"}
    for i in range(40):
        assert (await AsyncClient().get(f"/paid/?n={i}")).status_code == 402
        page = await AsyncClient().get(f"/paid/?n={i}", headers=browser)
        assert page.status_code == 402 and page["Content-Type"].startswith("text/html")
        assert len(runtime.get_runtime().challenges) <= 5


async def test_payment_requirements_are_built_once_per_price_and_recipient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from x402 import x402ResourceServer

    builds: list[str] = []
    build = x402ResourceServer.build_payment_requirements

    def counted(self: x402ResourceServer, config: object) -> object:
        builds.append(str(getattr(config, "price", "")))
        return build(self, config)  # type: ignore[arg-type]

    monkeypatch.setattr(x402ResourceServer, "build_payment_requirements", counted)
    client = PayingClient()
    for _ in range(3):
        assert (await client.get("/paid/")).status_code == 200
        assert (await client.get("/expensive/")).status_code == 200
    # One build per spec (the first 402 of each), none per paid request after it.
    assert sorted(builds) == ["$0.01", "$0.05"], builds
    # Each spec keeps its own price and recipient.
    unpaid = await client.get("/expensive/?fresh=1", pay=False)
    assert_one_requirement(unpaid["PAYMENT-REQUIRED"], amount="50000", pay_to=OTHER_PAY_TO)
    unpaid = await client.get("/paid/?fresh=1", pay=False)
    assert_one_requirement(unpaid["PAYMENT-REQUIRED"], amount="10000")


def _cache_bytes(challenges: dict[tuple[object, ...], Any]) -> int:
    """About what the unpaid-answer cache holds: its keys' text and its answers' JSON."""
    held = 0
    for key, answer in challenges.items():
        held += sum(len(part) for part in key if isinstance(part, str))
        held += len(json.dumps(answer.body)) + sum(len(v) for v in answer.headers.values())
    return held


def test_long_urls_and_user_agents_cannot_fill_the_challenge_cache() -> None:
    """Under uvicorn: 300 unpaid requests with 60 KB URLs and User-Agents once kept ~100 MB."""
    import httpx
    from django.core.asgi import get_asgi_application

    from aixyz_sessions.payments.runtime import MAX_CHALLENGE_KEY_CHARS, get_runtime
    from tests.payments_helpers import serve

    with serve(get_asgi_application()) as base, httpx.Client(base_url=base, timeout=30) as http:
        for i in range(300):
            long = f"{i}-" + "x" * 30_000
            response = http.get(f"/paid/?q={long}", headers={"User-Agent": long})
            assert response.status_code == 402
        short = http.get("/paid/?q=short")
        assert short.status_code == 402
        held = _cache_bytes(get_runtime().challenges)
    assert len(get_runtime().challenges) >= 1  # short keys are still answered from the cache
    assert held < 20 * MAX_CHALLENGE_KEY_CHARS, held


async def test_the_402_that_starts_a_paid_call_is_not_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every paid call starts with one: logged at INFO; a refused payment stays a WARNING."""
    with caplog.at_level("INFO", logger="django.request"):
        asked = await AsyncClient().get("/paid/")
        refused = await AsyncClient().get("/paid/", headers={"PAYMENT-SIGNATURE": "bm9wZQ=="})
    assert asked.status_code == refused.status_code == 402
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "django.request"]
    assert ("INFO", "Payment Required: /paid/") in records
    assert [level for level, _ in records].count("WARNING") == 1  # the refused one only
