"""The tools over HTTP: listing, free and paid calls through X402Middleware, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import HttpRequest
from django.test import AsyncClient, Client, override_settings
from x402.http import decode_payment_response_header

from aixyz_sessions import get_store
from aixyz_sessions.payments.decorators import PaidSpec, paid_spec_of, priced_per_request
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.testing.paying import PayingClient
from tests.payments_helpers import LOCAL, MIDDLEWARE, assert_one_requirement
from tests.tools_app import example_tools

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _tools() -> Iterator[None]:
    with (
        example_tools(),
        override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=LOCAL),
    ):
        yield


def body(response: Any) -> Any:
    return json.loads(response.content)


async def post(client: AsyncClient, name: str, arguments: Any, **kwargs: Any) -> Any:
    data = arguments if isinstance(arguments, str | bytes) else json.dumps(arguments)
    return await client.post(f"/tools/{name}", data, content_type="application/json", **kwargs)


async def test_list_describes_every_tool() -> None:
    response = await AsyncClient().get("/tools/")
    assert response.status_code == 200
    tools = {t["name"]: t for t in body(response)["tools"]}
    assert {"echo", "put", "get", "explode"} <= set(tools)
    assert tools["put"]["price"] == "$0.01" and tools["echo"]["price"] is None
    assert tools["put"]["input_schema"]["required"] == ["key", "value"]
    assert tools["echo"]["description"].startswith("Repeat")
    assert set(tools["echo"]) == {"name", "description", "input_schema", "price"}


async def test_free_call_runs_without_session() -> None:
    response = await post(AsyncClient(), "echo", {"text": "ab", "times": 2})
    assert response.status_code == 200
    assert body(response) == {"result": {"text": "abab", "payer": None, "session": False}}
    assert "PAYMENT-REQUIRED" not in response


async def test_empty_body_means_no_arguments_and_trailing_slash_works() -> None:
    response = await AsyncClient().post("/tools/explode/", "", content_type="application/json")
    assert response.status_code == 400  # empty body = no arguments: 'reason' missing
    assert [e["field"] for e in body(response)["errors"]] == ["reason"]


async def test_paid_call_without_payment_is_402_with_sdk_requirements() -> None:
    response = await post(PayingClient(), "put", {"key": "k", "value": "v"}, pay=False)
    assert response.status_code == 402
    required = assert_one_requirement(response["PAYMENT-REQUIRED"], amount="10000")
    assert required.resource is not None and required.resource.url.endswith("/tools/put")


async def test_paid_call_stores_under_the_payer() -> None:
    client = PayingClient()
    response = await post(client, "put", {"key": "color", "value": "blue"})
    assert response.status_code == 200, response.content
    assert body(response) == {"result": {"payer": client.address, "key": "color"}}
    settle = decode_payment_response_header(response["PAYMENT-RESPONSE"])
    assert settle.success and settle.payer == client.address
    assert await get_store().get(client.address.lower(), "color") == "blue"
    again = await post(client, "get", {"key": "color"})
    assert body(again) == {"result": {"payer": client.address, "value": "blue"}}


async def test_two_payers_are_isolated() -> None:
    a, b = PayingClient(), PayingClient()
    assert (await post(a, "put", {"key": "secret", "value": "a's"})).status_code == 200
    response = await post(b, "get", {"key": "secret"})
    assert body(response) == {"result": {"payer": b.address, "value": None}}


@pytest.mark.parametrize(
    ("arguments", "fields"),
    [
        ({}, ["text"]),
        ({"text": 5}, ["text"]),
        ({"text": "a", "times": "many"}, ["times"]),
        ({"text": "a", "extra": 1}, ["extra"]),
        ([1, 2], [""]),
        ("null", []),
    ],
)
async def test_schema_errors_are_400_naming_the_field(arguments: Any, fields: list[str]) -> None:
    response = await post(AsyncClient(), "echo", arguments)
    assert response.status_code == 400
    data = body(response)
    assert data["error"] == "invalid_arguments" and data["message"]
    if fields:
        assert [e["field"] for e in data["errors"]] == fields
        assert all(e["message"] for e in data["errors"])


async def test_paid_call_with_bad_arguments_is_400_and_not_settled() -> None:
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    client = PayingClient()
    response = await post(client, "put", {"key": "k"})
    assert response.status_code == 400
    assert [e["field"] for e in body(response)["errors"]] == ["value"]
    assert "PAYMENT-RESPONSE" not in response and ledger.settled_count == before


async def test_refusals_before_the_tool_runs_leave_the_payment_usable() -> None:
    """Bad JSON or arguments: nothing ran, so the same signed payment pays the fixed call."""
    client = PayingClient()
    headers = await client.payment_headers(await post(client, "put", {}, pay=False))
    for wrong in ('{"key": ', {"key": "k"}, {"key": 1, "value": "v"}):
        refused = await post(AsyncClient(), "put", wrong, headers=headers)
        assert refused.status_code == 400, refused.content
    fixed = await post(AsyncClient(), "put", {"key": "k", "value": "v"}, headers=headers)
    assert fixed.status_code == 200 and "PAYMENT-RESPONSE" in fixed
    assert await get_store().get(client.address.lower(), "k") == "v"


async def test_a_paid_tool_that_failed_cannot_run_again_on_the_same_payment() -> None:
    """It ran (and was not charged): its authorization is spent, not handed back."""
    client = PayingClient()
    headers = await client.payment_headers(await post(client, "paid_explode", {}, pay=False))
    first = await post(AsyncClient(), "paid_explode", {"reason": "costly"}, headers=headers)
    assert first.status_code == 422 and "PAYMENT-RESPONSE" not in first
    again = await post(AsyncClient(), "paid_explode", {"reason": "costly"}, headers=headers)
    assert again.status_code == 402 and body(again)["reason"] == REPLAYED
    other = await post(AsyncClient(), "put", {"key": "k", "value": "v"}, headers=headers)
    assert other.status_code == 402 and body(other)["reason"] == REPLAYED
    assert await get_store().get(client.address.lower(), "k") is None


@pytest.mark.parametrize("raw", ["{not json", '{"text": "a"', b"\xff\xfe"])
async def test_bad_json_is_400(raw: str | bytes) -> None:
    response = await post(AsyncClient(), "echo", raw)
    assert response.status_code == 400
    data = body(response)
    assert data["error"] == "invalid_arguments" and "JSON" in data["message"]


async def test_unknown_tool_is_404() -> None:
    response = await post(PayingClient(), "nope", {})
    assert response.status_code == 404
    assert body(response) == {"error": "unknown_tool", "message": "no tool named 'nope'"}


async def test_tool_error_is_422_and_paid_tool_error_is_not_settled() -> None:
    response = await post(AsyncClient(), "explode", {"reason": "boom"})
    assert response.status_code == 422
    assert body(response) == {"error": "tool_error", "message": "exploded: boom"}
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    paid = await post(PayingClient(), "paid_explode", {"reason": "boom"})
    assert paid.status_code == 422 and "PAYMENT-RESPONSE" not in paid
    assert ledger.settled_count == before


async def test_other_methods_are_405() -> None:
    response = await AsyncClient().get("/tools/echo")
    assert response.status_code == 405 and response["Allow"] == "POST"
    listing = await AsyncClient().post("/tools/")
    assert listing.status_code == 405


def test_works_under_wsgi_and_with_csrf_checks() -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/tools/echo", {"text": "x"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["result"]["text"] == "x"


def test_paid_tool_without_middleware_refuses() -> None:
    with override_settings(MIDDLEWARE=[]):
        client = Client(raise_request_exception=False)
        response = client.post("/tools/put", {"key": "k", "value": "v"}, "application/json")
        assert response.status_code == 500
        assert client.post("/tools/echo", {"text": "x"}, "application/json").status_code == 200


def test_paid_spec_of_honours_per_request_price() -> None:
    spec = PaidSpec(price="$0.02")
    seen: list[dict[str, Any]] = []

    def price_of(request: HttpRequest, kwargs: dict[str, Any]) -> PaidSpec | None:
        seen.append(kwargs)
        return spec if kwargs.get("name") == "dear" else None

    @priced_per_request(price_of)
    def view(request: HttpRequest, name: str) -> None:
        """A view priced by its URL argument."""

    request = HttpRequest()
    assert paid_spec_of(view, "POST", request, {"name": "dear"}) is spec
    assert paid_spec_of(view, "POST", request, {"name": "cheap"}) is None
    assert paid_spec_of(view, "POST") is None  # no request: nothing to ask
    assert seen == [{"name": "dear"}, {"name": "cheap"}]
