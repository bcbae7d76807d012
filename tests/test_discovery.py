"""AIXYZ_X402["DISCOVERY"]: the x402 bazaar declaration in paid routes' 402s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, override_settings
from x402 import x402ResourceServer
from x402.extensions.bazaar import (
    BAZAAR,
    extract_discovery_info,
    validate_discovery_extension,
)
from x402.http import decode_payment_required_header
from x402.schemas import PaymentPayload, PaymentRequired

from aixyz_sessions.payments.conf import X402ConfigError, config_errors, parse_config
from aixyz_sessions.payments.discovery import declare, example_of
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.tools.registry import Tool
from tests.docs_examples import block
from tests.payments_helpers import LOCAL, MIDDLEWARE
from tests.tools_app import example_tools

pytestmark = pytest.mark.django_db

ON = {**LOCAL, "DISCOVERY": True}


@pytest.fixture(autouse=True)
def _tools() -> Iterator[None]:
    with example_tools():
        reset_runtime()
        yield
    reset_runtime()


def _settings(x402: dict[str, Any], urls: str = "tests.tools_app") -> Any:
    return override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF=urls, AIXYZ_X402=x402)


def _required(response: Any) -> PaymentRequired:
    assert response.status_code == 402, response.content
    required = decode_payment_required_header(response["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return required


def _as_facilitator(required: PaymentRequired) -> Any:
    """Validate and extract the declaration as a facilitator does, from the client's payload."""
    declaration = (required.extensions or {})[BAZAAR.key]
    result = validate_discovery_extension(declaration)
    assert result.valid, result.errors
    payload = PaymentPayload.model_validate(
        {
            "x402Version": 2,
            "resource": required.resource.model_dump(by_alias=True) if required.resource else None,
            "accepted": required.accepts[0].model_dump(by_alias=True),
            "payload": {},
            "extensions": required.extensions,
        }
    )
    info = extract_discovery_info(payload, required.accepts[0])
    assert info is not None
    return info


async def _tool_402(x402: dict[str, Any], name: str = "put") -> Any:
    with _settings(x402):
        reset_runtime()
        return await AsyncClient().post(
            f"/tools/{name}", json.dumps({}), content_type="application/json"
        )


async def test_paid_tool_declares_post_with_its_input_schema() -> None:
    from aixyz_sessions.tools.registry import registry

    response = await _tool_402(ON)
    required = _required(response)
    declaration = (required.extensions or {})[BAZAAR.key]
    put = registry.get("put")
    assert put is not None
    assert declaration["info"]["input"] == {
        "type": "http",
        "method": "POST",
        "bodyType": "json",
        "body": {"key": "", "value": ""},
    }
    body_schema = declaration["schema"]["properties"]["input"]["properties"]["body"]
    assert body_schema["properties"] == put.input_schema["properties"]
    assert body_schema["required"] == ["key", "value"]
    assert "routeTemplate" not in declaration
    info = _as_facilitator(required)
    assert info.method == "POST" and info.resource_url.endswith("/tools/put")
    assert info.discovery_info.input.body_type == "json"
    assert json.loads(response.content)["accepts"]  # the readable body is intact


async def test_paid_view_declares_its_get() -> None:
    with _settings(ON, "tests.payments_urls"):
        reset_runtime()
        response = await AsyncClient().get("/paid/")
    required = _required(response)
    declaration = (required.extensions or {})[BAZAAR.key]
    assert declaration["info"]["input"] == {"type": "http", "method": "GET"}
    info = _as_facilitator(required)
    assert info.method == "GET" and info.resource_url.endswith("/paid/")


async def test_a_view_with_path_parameters_declares_its_url_pattern_as_the_template() -> None:
    with _settings(ON, "tests.payments_urls"):
        reset_runtime()
        response = await AsyncClient().get("/reports/7/")
    required = _required(response)
    declaration = (required.extensions or {})[BAZAAR.key]
    assert declaration["routeTemplate"] == "/reports/:pk/"
    assert declaration["info"]["input"]["pathParams"] == {"pk": "7"}
    info = _as_facilitator(required)
    # The facilitator files it under the template, not under one report's URL.
    assert info.resource_url.endswith("/reports/:pk/") and info.route_template == "/reports/:pk/"


@pytest.mark.parametrize(
    ("route", "template"),
    [
        ("reports/<int:pk>/", "/reports/:pk/"),
        ("<slug:owner>/files/<path:rest>", "/:owner/files/:rest"),
        ("a/<name>/", "/a/:name/"),
        ("paid/", None),
        ("^legacy/(?P<pk>[0-9]+)/$", None),
        (None, None),
    ],
)
def test_a_django_route_becomes_a_bazaar_route_template(
    route: str | None, template: str | None
) -> None:
    from aixyz_sessions.payments.adapter import route_template

    assert route_template(route) == template


async def test_paid_view_reached_with_a_body_method_declares_nothing() -> None:
    with _settings(ON, "tests.payments_urls"):
        reset_runtime()
        get = await AsyncClient().get("/paid/")
        post = await AsyncClient().post("/paid/", "{}", content_type="application/json")
    assert BAZAAR.key in (_required(get).extensions or {})
    assert BAZAAR.key not in (_required(post).extensions or {})
    assert BAZAAR.key not in json.loads(post.content).get("extensions", {})


@pytest.mark.parametrize("x402", [LOCAL, {**LOCAL, "DISCOVERY": False}])
async def test_off_the_402_is_unchanged(x402: dict[str, Any]) -> None:
    off = await _tool_402(x402)
    on = await _tool_402(ON)
    assert BAZAAR.key not in (_required(off).extensions or {})
    baseline = await _tool_402(LOCAL)
    assert off["PAYMENT-REQUIRED"] == baseline["PAYMENT-REQUIRED"]
    assert off.content == baseline.content
    # Only the bazaar key differs when on.
    with_bazaar = _required(on).model_dump(by_alias=True)
    with_bazaar["extensions"].pop(BAZAAR.key)
    assert with_bazaar == _required(off).model_dump(by_alias=True)


def test_off_declares_no_bazaar_in_the_route() -> None:
    from aixyz_sessions.payments.conf import parse_config as parse
    from aixyz_sessions.payments.runtime import PaymentRuntime
    from aixyz_sessions.tools.registry import registry

    put = registry.get("put")
    assert put is not None and put.paid_spec is not None
    runtime = PaymentRuntime(parse(LOCAL))
    route = runtime.http_server(put.paid_spec)._compiled_routes[0].config
    assert set(route.extensions or {}) == {"payment-identifier"}
    assert BAZAAR.key not in {ext.key for ext in runtime.server.get_extensions()}
    assert type(runtime.server) is x402ResourceServer  # the SDK's own, as before


@pytest.mark.parametrize("value", ["yes", 1, None, "True"])
def test_discovery_must_be_a_bool(value: object) -> None:
    errors = config_errors({**LOCAL, "DISCOVERY": value})
    assert [e.id for e in errors] == ["aixyz_sessions.E114"]
    assert "DISCOVERY" in errors[0].msg
    with pytest.raises(X402ConfigError):
        parse_config({**LOCAL, "DISCOVERY": value})
    assert isinstance(errors[0], ImproperlyConfigured) or errors[0].hint


def test_discovery_parses() -> None:
    assert parse_config(ON).discovery is True
    assert parse_config(LOCAL).discovery is False


def test_docs_example_is_a_valid_setting() -> None:
    namespace: dict[str, Any] = {}
    exec(block("docs/payments.md", "AIXYZ_X402 = {", "DISCOVERY"), namespace)
    assert parse_config(namespace["AIXYZ_X402"]).discovery is True


def _tool(schema: dict[str, Any]) -> Tool:
    async def run(**kwargs: Any) -> None:
        return None

    return Tool(name="t", description="d", func=run, price="$0.01", input_schema=schema)


def test_a_tool_whose_schema_takes_no_made_up_example_declares_nothing() -> None:
    from aixyz_sessions.tools.registry import registry

    tool = _tool(
        {
            "type": "object",
            "properties": {"code": {"type": "string", "minLength": 3}},
            "required": ["code"],
        }
    )
    registry.register(tool)
    try:
        assert tool.paid_spec is not None
        assert declare(tool.paid_spec) == {}
    finally:
        registry.unregister("t")


def test_defs_are_hoisted_so_references_resolve() -> None:
    from aixyz_sessions.tools.registry import registry

    schema = {
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "integer"}}}},
        "type": "object",
        "properties": {"at": {"$ref": "#/$defs/Point"}, "n": {"type": "integer", "default": 3}},
        "required": ["at", "n"],
    }
    assert example_of(schema, schema) == {"at": {}, "n": 3}
    tool = _tool(schema)
    registry.register(tool)
    try:
        assert tool.paid_spec is not None
        declaration = declare(tool.paid_spec)[BAZAAR.key]
        assert declaration["schema"]["$defs"] == schema["$defs"]
        assert validate_discovery_extension(declaration).valid
    finally:
        registry.unregister("t")
