"""``GET /tools/`` as Markdown: the document, its negotiation, and what tools cannot inject."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, override_settings

from aixyz_sessions.checks import served
from aixyz_sessions.payments.options import parse_accepts
from aixyz_sessions.tools import Tool, registry
from aixyz_sessions.tools.markdown import code, one_line
from tests.payments_helpers import LOCAL, MIDDLEWARE

pytestmark = pytest.mark.django_db

MARKDOWN = "text/markdown; charset=utf-8"


async def _noop(**kwargs: Any) -> None:
    return None


def _tools() -> list[Tool]:
    return [
        Tool(
            name="echo",
            description="Repeat a text.",
            func=_noop,
            input_schema={
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "What to repeat."},
                    "times": {"type": "integer", "minimum": 1, "default": 1},
                },
                "required": ["text"],
            },
        ),
        Tool(
            name="put",
            description="Store a value.",
            func=_noop,
            price="$0.01",
            sign_in="after_payment",
            input_schema={
                "type": "object",
                "properties": {"key": {"type": "string"}, "value": {"type": ["string", "null"]}},
                "required": ["key", "value"],
            },
        ),
        Tool(name="summarize", description="Summarize, metered.", func=_noop, upto="$0.05"),
        Tool(
            name="list-keys",
            description="List keys, on either network.",
            func=_noop,
            accepts=parse_accepts(
                [
                    {"price": "$0.001", "network": "eip155:84532"},
                    {"price": "$0.001", "network": "eip155:8453"},
                ],
                what="list-keys",
            ),
        ),
    ]


@pytest.fixture(autouse=True)
def tools() -> Iterator[None]:
    items = _tools()
    saved = list(registry)
    for item in saved:
        registry.unregister(item.name)
    for item in items:
        registry.register(item)
    try:
        with override_settings(
            MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=LOCAL
        ):
            yield
    finally:
        for item in list(registry):
            registry.unregister(item.name)
        for item in saved:
            registry.register(item)


async def get_list(accept: str | None) -> Any:
    headers = {} if accept is None else {"Accept": accept}
    return await AsyncClient().get("/tools/", headers=headers)


def vary(response: Any) -> set[str]:
    return {part.strip().lower() for part in response.get("Vary", "").split(",")}


def section(document: str, name: str) -> str:
    """The lines of one tool's section: from its heading to the next."""
    return document.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]


# --- the document ---------------------------------------------------------------------


async def test_one_section_per_tool_with_price_call_and_arguments() -> None:
    response = await get_list("text/markdown")
    assert response.status_code == 200
    assert response["Content-Type"] == MARKDOWN
    document = response.content.decode()
    assert document.startswith("# Tools\n")
    assert re.findall(r"^## (.*)$", document, re.M) == ["echo", "list-keys", "put", "summarize"]
    assert re.findall(r"^# ", document, re.M) == ["# "]  # one title, nothing else at level 1

    echo = section(document, "echo")
    assert "Repeat a text." in echo and "- Price: free" in echo
    assert "- Call: `POST /tools/echo` with a JSON object of arguments" in echo
    assert "- `text` (`string`, required): What to repeat." in echo
    assert "- `times` (`integer`, optional): min 1; default 1." in echo
    assert "Sign-in" not in echo

    put = section(document, "put")
    assert "- Price: $0.01" in put and "- Sign-in: `after_payment`" in put
    assert "- `value` (`string | null`, required)" in put
    assert "- Price: up to $0.05" in section(document, "summarize")
    assert "- Arguments: none" in section(document, "summarize")
    keys = section(document, "list-keys")
    assert "- Price: $0.001 on eip155:84532 or $0.001 on eip155:8453" in keys


async def test_the_prices_are_the_json_lists() -> None:
    listed = json.loads((await get_list(None)).content)["tools"]
    document = (await get_list("text/markdown")).content.decode()
    for tool in listed:
        assert f"- Price: {tool['price'] or 'free'}" in section(document, tool["name"])


async def test_how_to_pay_and_the_other_transports_when_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(served, "_ours_built", False)
    monkeypatch.setattr(served, "_asgi_source_uses_ours", lambda: None)
    head = (await get_list("text/markdown")).content.decode().split("\n## ", 1)[0]
    assert "402" in head and "`PAYMENT-REQUIRED`" in head and "PAYMENT-SIGNATURE" in head
    assert "/mcp" not in head and "ws://" not in head  # runserver or WSGI: not served

    monkeypatch.setattr(served, "_ours_built", True)
    head = (await get_list("text/markdown")).content.decode().split("\n## ", 1)[0]
    assert "`http://testserver/mcp`" in head and "`ws://testserver/ws/tools/`" in head


async def test_no_tools() -> None:
    for item in list(registry):
        registry.unregister(item.name)
    document = (await get_list("text/markdown")).content.decode()
    assert "No tools are registered." in document and "\n## " not in document


# --- what a tool declares cannot change the structure ---------------------------------


async def test_a_description_cannot_inject_a_heading() -> None:
    hostile = Tool(
        name="evil\n# name\r\n## more #",
        description="Fine.\n# injected\n\n## also\n```\n- item",
        func=_noop,
        input_schema={
            "type": "object",
            "properties": {"a`b\n# x": {"type": "string", "description": "one\n# two"}},
        },
    )
    registry.register(hostile)
    document = (await get_list("text/markdown")).content.decode()
    headings = re.findall(r"^#+ .*$", document, re.M)
    assert headings == [
        "# Tools",
        "## echo",
        "## evil # name ## more \\#",  # sorted by name, on one line, its "#" kept
        "## list-keys",
        "## put",
        "## summarize",
    ]
    assert "Fine. # injected ## also ``` - item" in document
    assert "```" not in document.replace("Fine. # injected ## also ``` - item", "")
    assert "- ``a`b # x`` (`string`, optional): one # two" in document
    assert "`POST /tools/evil%0A%23%20name%0D%0A%23%23%20more%20%23`" in document


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("# title", "\\# title"),
        ("> quote", "\\> quote"),
        ("- item", "\\- item"),
        ("1. first", "1\\. first"),
        ("```py", "\\```py"),
        ("<!-- x", "\\<!-- x"),
        ("a\u2028# b", "a # b"),
        ("  plain  text ", "plain text"),
    ],
)
def test_one_line(text: str, line: str) -> None:
    assert one_line(text) == line


def test_code_spans_hold_backticks() -> None:
    assert code("x") == "`x`"
    assert code("a`b") == "``a`b``"
    assert code("`x`") == "`` `x` ``"


# --- negotiation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        "text/markdown",
        "text/x-markdown",
        "text/html;q=0.5, text/markdown",
        "application/json;q=0.5, text/markdown",
        "text/markdown, */*;q=0.1",
    ],
)
async def test_markdown_when_preferred(accept: str) -> None:
    response = await get_list(accept)
    assert response.status_code == 200
    assert response["Content-Type"] == MARKDOWN
    assert "accept" in vary(response)


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "application/json",
        "application/json, text/markdown",  # a tie goes to JSON
        "text/markdown;q=0.5, application/json",
        "text/html",  # neither: JSON rather than a 406, as before
        "text/plain",
    ],
)
async def test_json_otherwise(accept: str | None) -> None:
    response = await get_list(accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "accept" in vary(response)
    assert [t["name"] for t in json.loads(response.content)["tools"]] == [
        "echo",
        "list-keys",
        "put",
        "summarize",
    ]


async def test_other_methods_are_still_405() -> None:
    response = await AsyncClient().post("/tools/", headers={"Accept": "text/markdown"})
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
