"""What a payment buys, over A2A, against a real server (uvicorn on loopback).

Tasks are kept only for turns that were paid for, and bounded; ``ListTasks``
reads one bounded page; a paid message is answered when its turn ends; a
turn whose request goes away stops; malformed requests are refused with
JSON-RPC errors that name nothing internal. The attacks against the demo
process itself are in ``test_paid_work_e2e``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from aixyz_sessions import get_store
from aixyz_sessions.agent.tasks import MAX_PAGE, MAX_TASK_BYTES
from aixyz_sessions.payments.local import get_local_facilitator
from tests import mcp_helpers
from tests.agent_app import model_agent_server, paid_once
from tests.fake_openai import FakeModel
from tests.test_agent_a2a import V1, _signed_rpc, invoke, paying, post, rpc, v03_message

pytestmark = pytest.mark.django_db(transaction=True)
PUT, GET, FAIL = mcp_helpers.PUT, mcp_helpers.GET, mcp_helpers.FAIL
MODEL = FakeModel([(PUT, {"key": "k", "value": "from the model"})])


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The agent with the scripted model for text turns (``loop_agent``)."""
    with model_agent_server(MODEL, monkeypatch) as url:
        yield url


async def _tasks(account: LocalAccount, base: str, **params: Any) -> list[dict[str, Any]]:
    listed = await _signed_rpc(account, base, rpc("ListTasks", params), **V1)
    assert listed.status_code == 200, listed.text
    tasks: list[dict[str, Any]] = listed.json()["result"].get("tasks", [])
    return tasks


async def test_a_turn_whose_settlement_fails_keeps_no_task(base: str) -> None:
    account = Account.create()
    ledger = get_local_facilitator().ledger
    ledger.fail_settlements = "ERC20: transfer amount exceeds balance"
    try:
        async with paying(account, base) as http:
            response = await http.post(
                "/agent", json=rpc("message/send", v03_message(invoke(GET, key="k")))
            )
    finally:
        ledger.fail_settlements = None
    assert response.status_code == 402 and "artifact" not in response.text
    assert await _tasks(account, base) == []


async def test_a_failed_turn_with_a_huge_message_keeps_nothing(base: str) -> None:
    """A 2.4 MB message to a model that fails: uncharged, so nothing is kept for 7 days."""
    MODEL.fail = True
    account = Account.create()
    text = {"kind": "text", "text": "hello"}
    bulk = {"kind": "data", "data": {"attachment": "x" * 2_400_000}}
    async with paying(account, base) as http:
        response = await http.post("/agent", json=rpc("message/send", v03_message(text, bulk)))
    assert response.status_code == 422, response.text[:300]
    task_id = response.json()["result"]["id"]
    assert await _tasks(account, base) == []
    found = await _signed_rpc(account, base, rpc("tasks/get", {"id": task_id}))
    assert found.status_code == 400 and "not found" in found.text.lower()


async def test_a_kept_task_is_bounded(base: str) -> None:
    """A paid task larger than MAX_TASK_BYTES is kept without history and artifact contents."""
    account = Account.create()
    big = "v" * (MAX_TASK_BYTES + 1000)
    async with paying(account, base) as http:
        stored = await http.post(
            "/agent", json=rpc("message/send", v03_message(invoke(PUT, key="big", value=big)))
        )
    assert stored.status_code == 200, stored.text[:300]
    task_id = stored.json()["result"]["id"]
    kept = await _signed_rpc(account, base, rpc("tasks/get", {"id": task_id}))
    assert kept.status_code == 200 and len(kept.content) < MAX_TASK_BYTES
    assert kept.json()["result"]["status"]["state"] == "completed"
    assert await get_store().get(account.address.lower(), "big") == big  # the work itself


async def test_list_tasks_reads_one_bounded_page(base: str) -> None:
    account = Account.create()
    async with paying(account, base) as http:
        for i in range(MAX_PAGE + 3):
            sent = await http.post(
                "/agent", json=rpc("message/send", v03_message(invoke(GET, key=str(i))))
            )
            assert sent.status_code == 200, sent.text
    listed = await _signed_rpc(account, base, rpc("ListTasks", {"pageSize": 100}), **V1)
    page = listed.json()["result"]
    assert len(page["tasks"]) == MAX_PAGE and page["nextPageToken"]
    assert page["totalSize"] == MAX_PAGE + 3
    rest = await _tasks(account, base, pageSize=100, pageToken=page["nextPageToken"])
    ids = {t["id"] for t in page["tasks"]} | {t["id"] for t in rest}
    assert len(rest) == 3 and len(ids) == MAX_PAGE + 3
    assert all("artifacts" not in t for t in page["tasks"])  # unless asked for


async def test_return_immediately_is_answered_when_the_turn_ends(base: str) -> None:
    """Settling on a SUBMITTED answer once charged for a turn that then failed."""
    before = get_local_facilitator().ledger.settled_count
    for configuration in ({"returnImmediately": True}, {"blocking": False}):
        params = {**v03_message(invoke(FAIL, reason="later")), "configuration": configuration}
        async with paying(Account.create(), base) as http:
            response = await http.post("/agent", json=rpc("message/send", params))
        assert response.status_code == 422, (configuration, response.text)
        assert response.json()["result"]["status"]["state"] == "failed"
    assert get_local_facilitator().ledger.settled_count == before


async def test_an_aborted_stream_stops_the_model_and_keeps_nothing(base: str) -> None:
    MODEL.endless, MODEL.delay = True, 0.4
    account = Account.create()
    before = get_local_facilitator().ledger.settled_count
    body = rpc("message/stream", v03_message({"kind": "text", "text": "take your time"}))
    async with paying(account, base) as http:
        call = asyncio.create_task(http.post("/agent", json=body))
        while len(MODEL.requests) < 1:  # noqa: ASYNC110 - the model runs in another thread
            await asyncio.sleep(0.05)
        call.cancel()  # the client goes away mid-turn
        with pytest.raises(asyncio.CancelledError):
            await call
    await asyncio.sleep(1.5)  # time for a background turn to go on, were it left running
    seen = len(MODEL.requests)
    await asyncio.sleep(1.5)
    assert len(MODEL.requests) == seen <= 2, "the model is still being called"
    assert await _tasks(account, base) == []
    assert await get_store().get(account.address.lower(), "k") is None
    assert get_local_facilitator().ledger.settled_count == before


@pytest.mark.parametrize("method", [["message/send"], {"a": 1}, 7, None, True])
async def test_a_method_that_is_not_a_string_is_an_invalid_request(base: str, method: Any) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": v03_message()}
    response = await post(f"{base}/agent", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == -32600


def _message_with_metadata(metadata: str) -> str:
    """A paid-for message invoking GET whose ``metadata`` is raw JSON text."""
    return (
        (
            '{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": '
            '{"role": "user", "messageId": "m", "parts": [{"kind": "data", "data": '
            '{"tool": "TOOL", "arguments": {"key": "k"}}}], "metadata": METADATA}}}'
        )
        .replace("TOOL", GET)
        .replace("METADATA", metadata)
    )


@pytest.mark.parametrize("metadata", ['{"n": 1e400}', '{"s": "\\ud800"}'])
async def test_internal_errors_name_nothing_internal(base: str, metadata: str) -> None:
    raw = _message_with_metadata(metadata)
    async with paying(Account.create(), base) as http:
        response = await http.post(
            "/agent", content=raw, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {"code": -32603, "message": "internal error"}


async def test_a_refusal_before_payment_is_quick_even_for_many_parts(base: str) -> None:
    """800 tool parts once ran 800 tools for one message's price, in O(N^2) time."""
    parts = [invoke(PUT, key=f"k{i}", value="v") for i in range(800)]
    async with httpx.AsyncClient(timeout=10) as plain:
        response = await plain.post(f"{base}/agent", json=rpc("message/send", v03_message(*parts)))
    assert response.status_code == 400 and "at most one tool" in response.text


POISON = {"status": {"state": "failed"}, "kind": "task"}


@pytest.mark.parametrize("where", ["data part", "metadata"])
async def test_a_message_that_echoes_a_failed_state_is_still_charged(base: str, where: str) -> None:
    """What the answer says is the client's own words: the turn's outcome decides the charge."""
    before = get_local_facilitator().ledger.settled_count
    text = {"kind": "text", "text": "hello"}
    params = v03_message(text, {"kind": "data", "data": {"echo": POISON}})
    if where == "metadata":
        params = v03_message(text)
        params["message"]["metadata"] = {"x": POISON, "status": {"state": "TASK_STATE_FAILED"}}
    response, _ = await paid_once(base, rpc("message/send", params))
    assert response.status_code == 200, response.text
    assert response.json()["result"]["status"]["state"] == "completed"
    assert "PAYMENT-RESPONSE" in response.headers
    assert get_local_facilitator().ledger.settled_count == before + 1
    tool = v03_message(invoke(GET, key="k"))
    tool["message"]["metadata"] = {"status": {"state": "failed"}}
    invoked, _ = await paid_once(base, rpc("message/stream", tool))
    assert invoked.status_code == 200 and "PAYMENT-RESPONSE" in invoked.headers


@pytest.mark.parametrize("field", ["contextId", "messageId", "taskId"])
async def test_long_ids_are_refused_before_payment(base: str, field: str) -> None:
    """A 2 MB contextId was once kept whole in the task and in the payer's index."""
    params = v03_message(invoke(GET, key="k"))
    params["message"][field] = "c" * 2_000_000
    response = await post(f"{base}/agent", json=rpc("message/send", params))
    assert response.status_code == 400 and field in response.json()["error"]["message"]


async def test_a_message_the_sdk_refuses_before_work_leaves_the_payment_usable(base: str) -> None:
    """A taskId that does not exist: nothing ran, so the same payment still buys the call."""
    params = v03_message(invoke(GET, key="k"))
    params["message"]["taskId"] = "no-such-task"
    refused, headers = await paid_once(base, rpc("message/send", params))
    assert refused.status_code == 400, refused.text
    good = rpc("message/send", v03_message(invoke(GET, key="k")))
    assert (await post(f"{base}/agent", json=good, headers=headers)).status_code == 200


async def test_a_huge_page_token_is_an_invalid_param(base: str) -> None:
    """Page tokens are parsed as JSON by the SDK: a long one is refused before that."""
    account = Account.create()
    listed = await _signed_rpc(account, base, rpc("ListTasks", {"pageToken": "[" * 100_000}), **V1)
    assert listed.status_code == 400 and listed.json()["error"]["code"] == -32602


async def test_a_text_turn_is_bounded(base: str) -> None:
    text = {"kind": "text", "text": "x" * 100_001}
    response = await post(f"{base}/agent", json=rpc("message/send", v03_message(text)))
    assert response.status_code == 400 and "at most 100000 characters" in response.text
