"""``ToolLoopAgent`` over A2A, with the real ``openai`` client and a scripted model on loopback.

The model calls put then get; the writes land in the paying wallet's session,
another payer sees none, and a model that fails fails the task uncharged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account

from aixyz_sessions import get_store
from aixyz_sessions.agent.loop import ToolLoopAgent
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.local import get_local_facilitator
from tests import mcp_helpers
from tests.agent_app import model_agent_server, paid_once
from tests.fake_openai import FakeModel
from tests.payments_helpers import serve
from tests.test_agent_a2a import paying, rpc, v03_message

pytestmark = pytest.mark.django_db(transaction=True)
PUT, GET = mcp_helpers.PUT, mcp_helpers.GET

#: ``AIXYZ_AGENT["AGENT"]`` in these tests.
loop_agent = ToolLoopAgent(
    instructions="You keep the user's notes.", model="scripted", tools=[PUT, GET], max_steps=4
)
MODEL = FakeModel([(PUT, {"key": "city", "value": "Lisbon"}), (GET, {"key": "city"})])


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The agent with the scripted model for text turns (``loop_agent``)."""
    with model_agent_server(MODEL, monkeypatch) as url:
        yield url


async def _say(base: str, account: Any, text: str) -> Any:
    async with paying(account, base) as http:
        return await http.post(
            "/agent", json=rpc("message/send", v03_message({"kind": "text", "text": text}))
        )


async def test_the_model_calls_tools_in_the_payers_session(base: str) -> None:
    account, other = Account.create(), Account.create()
    response = await _say(base, account, "remember that I live in Lisbon")
    assert response.status_code == 200, response.text
    task = response.json()["result"]
    assert task["status"]["state"] == "completed"
    answer = task["artifacts"][0]["parts"][0]["text"]
    assert "Lisbon" in answer
    assert await get_store().get(account.address.lower(), "city") == "Lisbon"
    assert await get_store().get(other.address.lower(), "city") is None
    # The model saw the instructions, the message and the tools with their schemas.
    first = MODEL.requests[0]
    assert first["model"] == "scripted"
    assert first["messages"][0] == {"role": "system", "content": "You keep the user's notes."}
    offered = {f["function"]["name"]: f["function"]["parameters"] for f in first["tools"]}
    assert set(offered) == {PUT, GET}
    assert offered[PUT]["required"] == ["key", "value"]
    assert len(MODEL.requests) == 3  # put, get, answer
    tool_result = json.loads(MODEL.requests[2]["messages"][-1]["content"])
    assert tool_result == {"key": "city", "value": "Lisbon"}


async def _paid_say(base: str, text: str) -> tuple[httpx.Response, dict[str, str]]:
    """A text message paid with one signed payment; the answer and that payment's header."""
    answer, headers = await paid_once(
        base, rpc("message/send", v03_message({"kind": "text", "text": text}))
    )
    return answer, headers


async def _again(base: str, headers: dict[str, str]) -> httpx.Response:
    body = rpc("message/send", v03_message({"kind": "text", "text": "again"}))
    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        return await plain.post("/agent", json=body, headers=headers)


async def test_a_model_that_cannot_answer_fails_the_task_uncharged_and_spends_the_payment(
    base: str,
) -> None:
    MODEL.fail = True
    before = get_local_facilitator().ledger.settled_count
    response, headers = await _paid_say(base, "hello")
    assert response.status_code == 422
    task = response.json()["result"]
    assert task["status"]["state"] == "failed"
    assert "the model failed" in json.dumps(task["status"]["message"])
    assert get_local_facilitator().ledger.settled_count == before
    # The same signed payment cannot make the operator pay for the model again.
    calls = len(MODEL.requests)
    again = await _again(base, headers)
    assert again.status_code == 402 and again.json()["reason"] == REPLAYED
    assert len(MODEL.requests) == calls


async def test_a_turn_that_reaches_max_steps_ends_with_what_it_has_and_is_charged(
    base: str,
) -> None:
    """The model ran (the operator paid for it): the payer pays for the turn, once."""
    MODEL.endless = True
    before = get_local_facilitator().ledger.settled_count
    response, headers = await _paid_say(base, "never finish")
    assert response.status_code == 200, response.text
    task = response.json()["result"]
    assert task["status"]["state"] == "completed"
    answer = task["artifacts"][0]["parts"][0]["text"]
    assert "stopped after 4 model steps" in answer and "working on step 4" in answer
    assert len(MODEL.requests) == loop_agent.max_steps
    assert get_local_facilitator().ledger.settled_count == before + 1
    assert (await _again(base, headers)).status_code == 402
    assert len(MODEL.requests) == loop_agent.max_steps  # no model call on the replay


async def test_a_model_that_fails_after_it_ran_ends_the_turn_charged(base: str) -> None:
    MODEL.fail_from = 1  # the first answer calls put; the second call fails
    before = get_local_facilitator().ledger.settled_count
    response, _ = await _paid_say(base, "remember Lisbon")
    assert response.status_code == 200, response.text
    answer = response.json()["result"]["artifacts"][0]["parts"][0]["text"]
    assert "the model failed after 1 step(s)" in answer
    assert get_local_facilitator().ledger.settled_count == before + 1


async def test_tool_calls_per_turn_are_bounded() -> None:
    """A model asking for 50 tool calls in one step gets max_tool_calls run, the rest refused."""
    bounded = ToolLoopAgent(
        instructions="x", model="scripted", tools=[PUT, GET], max_steps=2, max_tool_calls=3
    )
    mcp_helpers.register_examples()
    MODEL.reset()
    MODEL.endless, MODEL.per_step = True, 50
    with serve(MODEL.app()) as model_url:
        bounded.base_url, bounded.api_key = f"{model_url}/v1", "test-key"
        from aixyz_sessions import payer_context

        try:
            async with payer_context("0x" + "12" * 20):
                answer = await bounded("store it, many times")
        finally:
            mcp_helpers.unregister_examples()
    results = [
        json.loads(m["content"]) for m in MODEL.requests[-1]["messages"] if m["role"] == "tool"
    ]
    assert len(results) == 50  # the first step's calls, answered
    ran = [r for r in results if isinstance(r, dict) and r.get("stored") == "city"]
    limited = [r for r in results if isinstance(r, dict) and r.get("error") == "tool_call_limit"]
    assert (len(ran), len(limited)) == (3, 47) and "stopped after 2 model steps" in answer


def test_max_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        ToolLoopAgent(instructions="x", model="m", max_steps=0)
