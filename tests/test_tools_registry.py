"""The tool registry: schemas from type hints or JSON schema, validation, checks."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from aixyz_sessions.payments.decorators import PaidSpec
from aixyz_sessions.tools import Tool, ToolArgumentsError, ToolError, ToolRegistry, tool
from aixyz_sessions.tools import checks as tool_checks


class Point(BaseModel):
    x: int
    y: int = 0


@pytest.fixture
def reg() -> ToolRegistry:
    return ToolRegistry()


def get(reg: ToolRegistry, name: str) -> Tool:
    found = reg.get(name)
    assert found is not None
    return found


async def test_annotated_field_constraints_are_schema_and_validation(reg: ToolRegistry) -> None:
    @tool(registry=reg)
    async def page(limit: Annotated[int, Field(ge=1, le=100, description="entries")] = 20) -> int:
        return limit

    item = get(reg, "page")
    assert item.input_schema["properties"]["limit"] == {
        "default": 20,
        "description": "entries",
        "maximum": 100,
        "minimum": 1,
        "title": "Limit",
        "type": "integer",
    }
    assert await item.call({"limit": 100}) == 100
    for bad in (0, 101):
        with pytest.raises(ToolArgumentsError, match="limit"):
            await item.call({"limit": bad})


async def test_schema_from_type_hints(reg: ToolRegistry) -> None:
    @tool(name="put-content", price="$0.01", registry=reg)
    async def put(key: str, value: str | None = None, point: Point | None = None) -> dict[str, Any]:
        """Store content."""
        return {"key": key, "value": value, "point": point.model_dump() if point else None}

    item = get(reg, "put-content")
    assert item.describe()["description"] == "Store content."
    assert item.price == "$0.01" and item.paid
    schema = item.input_schema
    assert schema["required"] == ["key"]
    assert set(schema["properties"]) == {"key", "value", "point"}
    result = await item.call({"key": "a", "point": {"x": 1}})
    assert result == {"key": "a", "value": None, "point": {"x": 1, "y": 0}}


@pytest.mark.parametrize(
    ("arguments", "fields"),
    [
        ({}, ["key"]),
        ({"key": 5}, ["key"]),
        ({"key": "a", "extra": 1}, ["extra"]),
        ({"key": "a", "point": {"x": "no"}}, ["point.x"]),
        ([1, 2], [""]),
        ("text", [""]),
    ],
)
async def test_invalid_arguments_name_the_field(
    reg: ToolRegistry, arguments: object, fields: list[str]
) -> None:
    ran = []

    @tool(name="t", registry=reg)
    async def t(key: str, point: Point | None = None) -> str:
        ran.append(key)
        return key

    with pytest.raises(ToolArgumentsError) as info:
        await get(reg, "t").call(arguments)
    assert [e["field"] for e in info.value.errors] == fields
    assert "'t'" in str(info.value)
    assert ran == []


async def test_explicit_json_schema(reg: ToolRegistry) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1}},
        "required": ["n"],
        "additionalProperties": False,
    }

    @tool(name="double", input_schema=schema, registry=reg)
    async def double(n: int) -> int:
        return n * 2

    item = get(reg, "double")
    assert item.input_schema == schema
    assert await item.call({"n": 4}) == 8
    with pytest.raises(ToolArgumentsError) as info:
        await item.call({"n": 0})
    assert info.value.errors[0]["field"] == "n"
    with pytest.raises(ToolArgumentsError):
        await item.call({})


async def test_none_arguments_mean_empty(reg: ToolRegistry) -> None:
    @tool(registry=reg)
    async def ping() -> str:
        return "pong"

    assert await get(reg, "ping").call(None) == "pong"


async def test_result_must_be_json(reg: ToolRegistry) -> None:
    @tool(name="bad", registry=reg)
    async def bad() -> object:
        return {"x": object()}

    with pytest.raises(ToolError, match="non-JSON"):
        await get(reg, "bad").call({})


def test_definition_errors(reg: ToolRegistry) -> None:
    with pytest.raises(TypeError, match="async"):

        @tool(registry=reg)
        def sync_tool() -> None:  # type: ignore[arg-type]
            return None

    with pytest.raises(ValueError, match="name"):

        @tool(name="has space", registry=reg)
        async def spaced() -> None:
            return None

    with pytest.raises(TypeError, match=r"\*\*kwargs"):

        @tool(registry=reg)
        async def loose(**kwargs: Any) -> None:
            return None


def test_duplicate_names_are_a_check_error(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = ToolRegistry()
    monkeypatch.setattr(tool_checks, "registry", reg)

    @tool(name="same", registry=reg)
    async def first() -> int:
        return 1

    assert tool_checks.check_tool_names() == []

    @tool(name="same", registry=reg)
    async def second() -> int:
        return 2

    messages = tool_checks.check_tool_names()
    assert [m.id for m in messages] == ["aixyz_sessions.E030"]
    assert "same" in messages[0].msg


def test_listing_is_sorted(reg: ToolRegistry) -> None:
    for tool_name in ("b", "a", "c"):

        async def fn() -> str:
            return "x"

        tool(fn, name=tool_name, registry=reg)
    assert [t.name for t in reg] == ["a", "b", "c"]
    assert len(reg) == 3


@pytest.mark.parametrize("price", ["free", "$-1", "$0", True, ["$1"], "$0,001", "$1,500"])
def test_bad_price_is_refused_at_definition(reg: ToolRegistry, price: object) -> None:
    with pytest.raises((TypeError, ValueError), match="@tool 'p'"):

        @tool(name="p", price=price, registry=reg)  # type: ignore[arg-type]
        async def p() -> int:
            return 1

    assert reg.get("p") is None


def test_price_is_normalised(reg: ToolRegistry) -> None:
    @tool(name="p", price="0.5", registry=reg)
    async def p() -> int:
        return 1

    assert get(reg, "p").price == "$0.5"


def test_paid_spec_is_built_with_the_tool(reg: ToolRegistry) -> None:
    @tool(name="p", price="0.5", description="Half a dollar.", registry=reg)
    async def p() -> int:
        return 1

    @tool(name="f", registry=reg)
    async def f() -> int:
        return 1

    paid = get(reg, "p")
    assert paid.paid_spec == PaidSpec(price="$0.5", description="Half a dollar.", resource="tool:p")
    assert paid.paid_spec is get(reg, "p").paid_spec  # data on the tool, not rebuilt per call
    assert get(reg, "f").paid_spec is None and not get(reg, "f").paid


@pytest.mark.parametrize("price", ["$1<i>", "$0", True])
def test_a_tool_made_directly_refuses_a_bad_price(price: object) -> None:
    async def noop() -> None:
        return None

    with pytest.raises((TypeError, ValueError), match="tool 'x'"):
        Tool(name="x", description="", func=noop, price=price)  # type: ignore[arg-type]


def test_tool_urls_routed_without_any_tool_are_a_warning() -> None:
    """A new user's tools.py in an app not in INSTALLED_APPS: every call was a silent 404."""
    from django.test import override_settings

    from aixyz_sessions.tools import registry as served
    from aixyz_sessions.tools.checks import check_tools_routed_without_tools

    names = [item.name for item in served]
    hidden = [served.get(name) for name in names]
    for name in names:
        served.unregister(name)
    try:
        with override_settings(ROOT_URLCONF="tests.tools_app"):
            found = check_tools_routed_without_tools()
        with override_settings(ROOT_URLCONF="tests.agent_only_urls"):
            not_routed = check_tools_routed_without_tools()
    finally:
        for item in hidden:
            if item is not None:
                served.register(item)
    assert [m.id for m in found] == ["aixyz_sessions.W031"]
    assert "INSTALLED_APPS" in (found[0].hint or "")
    assert not_routed == []
