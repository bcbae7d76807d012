"""A tool's result keeps its JSON types through A2A: integers, big integers and floats.

A data part travels as a protobuf ``Struct``, whose numbers are doubles; the
executor sends the result's own JSON beside it, and the answer (and a later
``tasks/get``) gives that back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from aixyz_sessions.tools.registry import registry, tool
from tests.agent_app import agent_server
from tests.test_agent_a2a import _signed_rpc, invoke, paying, rpc, v03_message

pytestmark = pytest.mark.django_db(transaction=True)
NUMBERS = "numbers-exact"
RESULT = {"count": 2, "ratio": 3.0, "big": 2**60 + 1, "half": -0.5, "nested": [1, 2.0, {"n": 7}]}


async def numbers() -> dict[str, Any]:
    """Numbers of every JSON kind."""
    return RESULT


@pytest.fixture
def base() -> Iterator[str]:
    tool(numbers, name=NUMBERS, price="$0.001")
    try:
        with agent_server() as url:
            yield url
    finally:
        registry.unregister(NUMBERS)


def _typed(value: Any) -> Any:
    """``value`` with each number's type beside it (``2 == 2.0`` in Python)."""
    if isinstance(value, dict):
        return {key: _typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_typed(item) for item in value]
    return (type(value).__name__, value)


async def test_a_tool_result_comes_back_with_its_own_json_types(base: str) -> None:
    account = Account.create()
    async with paying(account, base) as http:
        sent = await http.post("/agent", json=rpc("message/send", v03_message(invoke(NUMBERS))))
    assert sent.status_code == 200, sent.text
    task = sent.json()["result"]
    (artifact,) = task["artifacts"]
    data = artifact["parts"][0]["data"]
    assert _typed(data) == _typed(RESULT)
    assert "aixyz.json" not in json.dumps(artifact)  # the copy is not shown
    kept = await _signed_rpc(account, base, rpc("tasks/get", {"id": task["id"]}))
    (artifact,) = kept.json()["result"]["artifacts"]
    assert _typed(artifact["parts"][0]["data"]) == _typed(RESULT)
