"""``ToolLoopAgent`` over A2A, with the real ``openai`` client and a scripted model on loopback.

The model calls put then get; the writes land in the paying wallet's session,
another payer sees none, and a model that fails fails the task uncharged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from aixyz_sessions import get_store
from aixyz_sessions.agent.loop import ToolLoopAgent
from aixyz_sessions.payments.local import get_local_facilitator
from tests import mcp_helpers
from tests.agent_app import AGENT, agent_server
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
    MODEL.requests.clear()
    MODEL.fail = False
    with serve(MODEL.app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{model_url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        with agent_server(AIXYZ_AGENT={**AGENT, "AGENT": f"{__name__}.loop_agent"}) as url:
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


async def test_a_model_failure_fails_the_task_uncharged(base: str) -> None:
    MODEL.fail = True
    before = get_local_facilitator().ledger.settled_count
    account = Account.create()
    response = await _say(base, account, "hello")
    assert response.status_code == 422
    task = response.json()["result"]
    assert task["status"]["state"] == "failed"
    assert "the model failed" in json.dumps(task["status"]["message"])
    assert get_local_facilitator().ledger.settled_count == before
    assert uuid  # request ids come from rpc()


def test_max_steps_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_steps"):
        ToolLoopAgent(instructions="x", model="m", max_steps=0)
