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
from django.core.asgi import get_asgi_application
from django.test import override_settings
from eth_account import Account

from aixyz_sessions import get_store
from aixyz_sessions.agent.loop import ToolLoopAgent
from aixyz_sessions.agent.server import reset_agent
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from tests import mcp_helpers
from tests.agent_app import AGENT
from tests.fake_openai import FakeModel
from tests.payments_helpers import LOCAL, MIDDLEWARE, serve
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
    mcp_helpers.register_examples()
    MODEL.requests.clear()
    MODEL.fail = False
    agent = {**AGENT, "AGENT": f"{__name__}.loop_agent"}
    with (
        serve(MODEL.app()) as model_url,
        override_settings(
            MIDDLEWARE=MIDDLEWARE,
            ROOT_URLCONF="tests.agent_app",
            AIXYZ_X402=LOCAL,
            AIXYZ_AGENT=agent,
            ALLOWED_HOSTS=["*"],
        ),
    ):
        monkeypatch.setenv("OPENAI_BASE_URL", f"{model_url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        reset_runtime()
        reset_agent()
        try:
            with serve(get_asgi_application()) as url:
                yield url
        finally:
            mcp_helpers.unregister_examples()
            reset_agent()
            reset_runtime()


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
