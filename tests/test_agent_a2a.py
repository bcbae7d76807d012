"""The agent over A2A against a real server (uvicorn on loopback): card, paid messages, tasks.

Clients are the official ones: the ``a2a-sdk`` 1.0 client over the x402
SDK's paying httpx client, and raw A2A 0.3 JSON-RPC requests, paid the same
way. Tasks are read back with a sign-in from the paying wallet.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import new_data_part
from a2a.types import Message, Role, SendMessageRequest
from django.test import override_settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http import decode_payment_required_header, encode_payment_signature_header
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client

from aixyz_sessions import get_store
from aixyz_sessions.agent.server import reset_agent
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.testing.paying import sign_in_header
from tests import mcp_helpers
from tests.agent_app import AGENT, agent_server
from tests.payments_helpers import LOCAL, MIDDLEWARE, serve
from tests.settings import LOOPBACK_HOSTS

pytestmark = pytest.mark.django_db(transaction=True)
PUT, GET = mcp_helpers.PUT, mcp_helpers.GET
V1 = {"A2A-Version": "1.0"}  # a raw 1.0 method names its protocol version


@pytest.fixture
def base() -> Iterator[str]:
    with agent_server() as url:
        yield url


def paying(account: LocalAccount, base: str) -> x402HttpxClient:
    signer = x402Client()
    register_exact_evm_client(signer, account)
    return x402HttpxClient(signer, base_url=base, timeout=30)


async def post(url: str, **kwargs: Any) -> httpx.Response:
    """A plain (unpaid) POST."""
    async with httpx.AsyncClient(timeout=30) as plain:
        return await plain.post(url, **kwargs)


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": method, "params": params}


def v03_message(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"message": {"role": "user", "messageId": uuid.uuid4().hex, "parts": list(parts)}}


def invoke(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"kind": "data", "data": {"tool": tool, "arguments": arguments}}


async def test_the_card_names_the_agent_its_url_and_the_tools(base: str) -> None:
    async with httpx.AsyncClient(timeout=10) as plain:
        card = (await plain.get(f"{base}/.well-known/agent-card.json")).json()
    assert card["name"] == "Test Agent" and card["version"] == "2.0.0"
    assert "at that tool's price" in card["description"]  # no model: no text turns
    skills = {skill["id"]: skill for skill in card["skills"]}
    assert skills[PUT]["description"].endswith("($0.01 a call, x402)")
    assert card["url"] == f"{base}/agent" and card["protocolVersion"] == "0.3"  # 0.3 clients
    versions = {i["protocolVersion"] for i in card["supportedInterfaces"]}
    assert versions == {"1.0", "0.3"}
    assert {PUT, GET} <= {skill["id"] for skill in card["skills"]}
    assert card["capabilities"]["streaming"] is True


async def test_an_unpaid_message_asks_for_the_price_of_the_tool_it_invokes(base: str) -> None:
    for tool, arguments, amount in (
        (PUT, {"key": "k", "value": "v"}, "10000"),
        (GET, {"key": "k"}, "1000"),
    ):
        response = await post(
            f"{base}/agent", json=rpc("message/send", v03_message(invoke(tool, **arguments)))
        )
        assert response.status_code == 402
        required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
        assert required.accepts[0].amount == amount  # the tool's own price (USDC, 6 decimals)
    free_tool = await post(
        f"{base}/agent", json=rpc("message/send", v03_message(invoke(mcp_helpers.ECHO, text="a")))
    )
    required = decode_payment_required_header(free_tool.headers["PAYMENT-REQUIRED"])
    assert required.accepts[0].amount == "1000"  # no price of its own: the agent's $0.001


async def test_a_paid_v03_message_invokes_the_tool_in_the_payers_session(base: str) -> None:
    account = Account.create()
    before = get_local_facilitator().ledger.settled_count
    async with paying(account, base) as http:
        response = await http.post(
            "/agent", json=rpc("message/send", v03_message(invoke(PUT, key="k", value="a2a")))
        )
    assert response.status_code == 200, response.text
    assert "PAYMENT-RESPONSE" in response.headers
    task = response.json()["result"]
    assert task["status"]["state"] == "completed"
    (artifact,) = task["artifacts"]
    data = artifact["parts"][0]["data"]
    assert data == {"stored": "k", "payer": account.address}  # the tool's result itself
    assert artifact["name"] == PUT
    assert get_local_facilitator().ledger.settled_count == before + 1
    assert await get_store().get(account.address.lower(), "k") == "a2a"


async def official_put(base: str, account: LocalAccount, key: str, *, streaming: bool) -> Any:
    """Store ``key`` = "1.0" with the a2a-sdk 1.0 client, paying with the x402 httpx client."""
    async with paying(account, base) as http:
        client = await create_client(base, ClientConfig(httpx_client=http, streaming=streaming))
        message = Message(
            role=Role.ROLE_USER,
            message_id=uuid.uuid4().hex,
            parts=[new_data_part({"tool": PUT, "arguments": {"key": key, "value": "1.0"}})],
        )
        return [event async for event in client.send_message(SendMessageRequest(message=message))]


async def test_the_official_client_sends_a_paid_message(base: str) -> None:
    account = Account.create()
    events = await official_put(base, account, "n", streaming=False)
    task = events[-1].task
    assert task.status.state == 3  # TASK_STATE_COMPLETED
    assert await get_store().get(account.address.lower(), "n") == "1.0"


@pytest.mark.parametrize(
    ("parts", "why"),
    [
        ([invoke("nope")], "no tool named 'nope'"),
        ([invoke(PUT)], "invalid arguments"),
        ([invoke(GET, key="a"), invoke(GET, key="b")], "at most one tool"),
        ([{"kind": "text", "text": "hello"}], "No model is configured"),
    ],
)
async def test_a_message_that_cannot_run_is_refused_before_payment(
    base: str, parts: list[dict[str, Any]], why: str
) -> None:
    """Refused without a 402 (nothing to pay for), and a payment sent along is not spent."""
    before = get_local_facilitator().ledger.settled_count
    body = rpc("message/send", v03_message(*parts))
    unpaid = await post(f"{base}/agent", json=body)
    assert unpaid.status_code == 400, unpaid.text
    assert why in unpaid.json()["error"]["message"]
    signer = x402Client()
    register_exact_evm_client(signer, Account.create())
    asked = await post(
        f"{base}/agent", json=rpc("message/send", v03_message(invoke(PUT, key="k", value="v")))
    )
    required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
    headers = {
        "PAYMENT-SIGNATURE": encode_payment_signature_header(
            await signer.create_payment_payload(required)
        )
    }
    paid = await post(f"{base}/agent", json=body, headers=headers)
    assert paid.status_code == 400 and "PAYMENT-RESPONSE" not in paid.headers
    assert get_local_facilitator().ledger.settled_count == before
    # The payment was not spent: it still buys the call it was signed for.
    good = rpc("message/send", v03_message(invoke(PUT, key="k", value="v")))
    assert (await post(f"{base}/agent", json=good, headers=headers)).status_code == 200


async def test_a_tool_that_fails_is_not_charged_shows_nothing_and_spends_the_payment(
    base: str,
) -> None:
    before = get_local_facilitator().ledger.settled_count
    signer = x402Client()
    register_exact_evm_client(signer, Account.create())
    body = rpc("message/send", v03_message(invoke(mcp_helpers.FAIL, reason="broken")))
    asked = await post(f"{base}/agent", json=body)
    required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
    payload = await signer.create_payment_payload(required)
    headers = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
    failed = await post(f"{base}/agent", json=body, headers=headers)
    assert failed.status_code == 422, failed.text
    task = failed.json()["result"]
    assert task["status"]["state"] == "failed" and "artifacts" not in task
    assert "refused: broken" in json.dumps(task["status"]["message"])
    again = await post(f"{base}/agent", json=body, headers=headers)
    assert again.status_code == 402 and again.json()["reason"] == REPLAYED
    assert get_local_facilitator().ledger.settled_count == before


async def test_a_replayed_payment_is_refused(base: str) -> None:
    signer = x402Client()
    register_exact_evm_client(signer, Account.create())
    body = rpc("message/send", v03_message(invoke(PUT, key="k", value="v")))
    asked = await post(f"{base}/agent", json=body)
    required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
    payload = await signer.create_payment_payload(required)
    headers = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
    assert (await post(f"{base}/agent", json=body, headers=headers)).status_code == 200
    replay = await post(f"{base}/agent", json=body, headers=headers)
    assert replay.status_code == 402


async def _signed_rpc(
    account: LocalAccount, base: str, body: dict[str, Any], **headers: str
) -> httpx.Response:
    asked = await post(f"{base}/agent", json=body, headers=headers)
    assert asked.status_code == 402 and asked.json()["error"] == "sign_in_required"
    header = await sign_in_header(account, asked.headers["PAYMENT-REQUIRED"], f"{base}/agent")
    return await post(f"{base}/agent", json=body, headers={**headers, "SIGN-IN-WITH-X": header})


async def test_a_task_belongs_to_its_payer(base: str) -> None:
    owner, other = Account.create(), Account.create()
    async with paying(owner, base) as http:
        sent = await http.post(
            "/agent", json=rpc("message/send", v03_message(invoke(PUT, key="t", value="1")))
        )
    task_id = sent.json()["result"]["id"]
    mine = await _signed_rpc(owner, base, rpc("tasks/get", {"id": task_id}))
    assert mine.status_code == 200 and mine.json()["result"]["id"] == task_id
    theirs = await _signed_rpc(other, base, rpc("tasks/get", {"id": task_id}))
    assert theirs.status_code == 400  # a JSON-RPC error: not charged, nothing shown
    assert "not found" in theirs.json()["error"]["message"].lower()
    assert "1" not in json.dumps(theirs.json()["error"].get("data", ""))
    for method in ("tasks/cancel", "tasks/resubscribe"):
        other_call = await _signed_rpc(other, base, rpc(method, {"id": task_id}))
        assert other_call.status_code == 400, (method, other_call.text)
        assert "not found" in other_call.text.lower()
    listed = await _signed_rpc(other, base, rpc("ListTasks", {}), **V1)
    assert listed.status_code == 200 and listed.json()["result"].get("tasks", []) == []


async def test_one_payer_one_session_over_a2a_and_http_tools(base: str) -> None:
    account = Account.create()
    async with paying(account, base) as http:
        await http.post(
            "/agent", json=rpc("message/send", v03_message(invoke(PUT, key="shared", value="x")))
        )
        read = await http.post(f"/tools/{GET}", json={"key": "shared"})
    assert read.json()["result"] == {"key": "shared", "value": "x"}


async def test_a_v03_stream_is_paid_once_and_carries_the_events(base: str) -> None:
    account = Account.create()
    before = get_local_facilitator().ledger.settled_count
    async with paying(account, base) as http:
        response = await http.post(
            "/agent", json=rpc("message/stream", v03_message(invoke(PUT, key="s", value="sse")))
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "PAYMENT-RESPONSE" in response.headers
    events = [
        json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")
    ]
    kinds = [event["result"]["kind"] for event in events]
    assert kinds[0] == "task" and "artifact-update" in kinds and kinds[-1] == "status-update"
    assert events[-1]["result"]["status"]["state"] == "completed"
    assert get_local_facilitator().ledger.settled_count == before + 1
    assert await get_store().get(account.address.lower(), "s") == "sse"


async def test_the_official_client_streams_a_paid_message(base: str) -> None:
    account = Account.create()
    events = await official_put(base, account, "st", streaming=True)
    assert len(events) >= 2  # the task, then its updates
    assert await get_store().get(account.address.lower(), "st") == "1.0"


async def test_a_failing_stream_is_not_charged(base: str) -> None:
    before = get_local_facilitator().ledger.settled_count
    async with paying(Account.create(), base) as http:
        response = await http.post(
            "/agent", json=rpc("message/stream", v03_message(invoke(mcp_helpers.FAIL, reason="x")))
        )
    assert response.status_code == 422
    assert "refused: x" in response.text and "artifact" not in response.text
    assert get_local_facilitator().ledger.settled_count == before


@pytest.mark.parametrize("store_backend", ["database", "redis"])
async def test_tasks_outlive_the_process_with_a_shared_store(base: str, store_backend: str) -> None:
    """With the database or Redis store, a task is found after the agent is rebuilt."""
    from tests.test_replay_guard import (
        ALIAS,
        CACHE_STORE,
        DB_STORE,
        drop_keys,
        redis_caches,
        unique_prefix,
    )

    prefix = unique_prefix()
    if store_backend == "database":
        store = override_settings(AIXYZ_SESSION_STORE=DB_STORE)
    else:
        from tests.services import need_redis

        need_redis()
        options = {"cache_alias": ALIAS, "key_prefix": prefix}
        store = override_settings(
            CACHES=redis_caches(), AIXYZ_SESSION_STORE={"BACKEND": CACHE_STORE, "OPTIONS": options}
        )
    owner = Account.create()
    with store:
        reset_runtime()
        reset_agent()
        try:
            async with paying(owner, base) as http:
                sent = await http.post(
                    "/agent", json=rpc("message/send", v03_message(invoke(PUT, key="p", value="1")))
                )
            task_id = sent.json()["result"]["id"]
            reset_runtime()  # a new process: new guard object, new SDK application
            reset_agent()
            found = await _signed_rpc(owner, base, rpc("tasks/get", {"id": task_id}))
            assert found.status_code == 200, found.text
            assert found.json()["result"]["status"]["state"] == "completed"
            listed = await _signed_rpc(owner, base, rpc("ListTasks", {}), **V1)
            assert listed.status_code == 200, listed.text
            assert [t["id"] for t in listed.json()["result"]["tasks"]] == [task_id]
        finally:
            reset_runtime()
            reset_agent()
            if store_backend == "redis":
                await drop_keys(prefix)


async def test_one_payer_one_session_over_a2a_http_mcp_and_websocket() -> None:
    """The paying wallet writes over A2A and reads the same value on the three tool transports."""
    import websockets
    from x402.mcp import x402MCPSession
    from x402.schemas import PaymentRequired

    from aixyz_sessions.asgi import get_asgi_application as full_application
    from aixyz_sessions.tools.mcp import reset_mcp_server

    mcp_helpers.register_examples()
    account = Account.create()
    signer = x402Client()
    register_exact_evm_client(signer, account)
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.agent_app",
        AIXYZ_X402=LOCAL,
        AIXYZ_AGENT=AGENT,
        ALLOWED_HOSTS=LOOPBACK_HOSTS,
    ):
        reset_runtime()
        reset_agent()
        reset_mcp_server()
        try:
            with serve(full_application()) as url:
                async with paying(account, url) as http:
                    sent = await http.post(
                        "/agent",
                        json=rpc("message/send", v03_message(invoke(PUT, key="one", value="1"))),
                    )
                    assert sent.status_code == 200, sent.text
                    over_http = (await http.post(f"/tools/{GET}", json={"key": "one"})).json()
                async with mcp_helpers.connect(url) as session:
                    paid = x402MCPSession(session, signer, auto_payment=True)
                    over_mcp = await paid.call_tool(GET, {"key": "one"})
                ws_url = url.replace("http", "ws", 1) + "/ws/tools/"
                async with websockets.connect(ws_url) as ws:
                    ask = {"id": 1, "tool": GET, "arguments": {"key": "one"}}
                    await ws.send(json.dumps(ask))
                    probe = json.loads(await ws.recv())
                    required = PaymentRequired.model_validate(probe["error"]["payment_required"])
                    payload = await signer.create_payment_payload(required)
                    payment = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
                    await ws.send(json.dumps({**ask, "id": 2, "payment": payment}))
                    over_ws = json.loads(await ws.recv())
        finally:
            mcp_helpers.unregister_examples()
            reset_mcp_server()
            reset_agent()
            reset_runtime()
    expected = {"key": "one", "value": "1"}
    assert over_http["result"] == expected
    assert json.loads(mcp_helpers.text(over_mcp.raw_result)) == expected
    assert over_ws["result"] == expected


async def test_a_doubled_method_key_cannot_run_a_message_for_free(base: str) -> None:
    """Priced by the last "method"; the SDK gets that same parsed object, not the raw bytes."""
    stranger = Account.create()  # never paid: a sign-in is all it can show
    params = json.dumps(v03_message(invoke(PUT, key="free", value="ride")))
    raw = (
        '{"jsonrpc": "2.0", "id": 1, "method": "message/send", '
        f'"params": {params}, "method": "tasks/get"}}'
    )
    asked = await post(f"{base}/agent", content=raw, headers={"Content-Type": "application/json"})
    assert asked.status_code == 402 and asked.json()["error"] == "sign_in_required"
    header = await sign_in_header(stranger, asked.headers["PAYMENT-REQUIRED"], f"{base}/agent")
    signed = await post(
        f"{base}/agent",
        content=raw,
        headers={"Content-Type": "application/json", "SIGN-IN-WITH-X": header},
    )
    assert signed.status_code == 400, signed.text  # tasks/get with a message: invalid, uncharged
    assert await get_store().get(stranger.address.lower(), "free") is None


async def test_a_method_the_table_does_not_know_needs_a_payer(base: str) -> None:
    for method in ("message/Send", "SendMessage2", "tasks/anything"):
        body = rpc(method, v03_message(invoke(PUT, key="k", value="v")))
        response = await post(f"{base}/agent", json=body)
        assert response.status_code == 402, (method, response.text)
    free = await post(f"{base}/agent", json=rpc("agent/getAuthenticatedExtendedCard", {}))
    assert free.status_code == 400  # answered by the SDK (no extended card), nothing paid


def _tool_data(text: str) -> Any:
    """The data of the (last) artifact in a JSON-RPC answer or an event stream of them."""
    lines = [line[5:] for line in text.splitlines() if line.startswith("data:")] or [text]
    found = None
    for line in lines:
        result = json.loads(line)["result"]
        for artifact in [*result.get("artifacts", []), result.get("artifact") or {}]:
            for part in artifact.get("parts", []):
                found = part.get("data", found)
    return found


async def test_tool_results_keep_their_integers(base: str) -> None:
    """A data part is a protobuf Struct (doubles): 2 once came back as 2.0."""
    from aixyz_sessions.tools import registry, tool

    async def counts() -> dict[str, Any]:
        return {"count": 2, "ratio": 0.5, "big": 2**40, "nested": [{"n": 3}], "flag": True}

    tool(counts, name="a2a_counts", price="$0.001")
    try:
        async with paying(Account.create(), base) as http:
            for method in ("message/send", "message/stream"):
                response = await http.post(
                    "/agent", json=rpc(method, v03_message(invoke("a2a_counts")))
                )
                assert response.status_code == 200, response.text
                data = _tool_data(response.text)
                assert data == {
                    "count": 2,
                    "ratio": 0.5,
                    "big": 2**40,
                    "nested": [{"n": 3}],
                    "flag": True,
                }
                assert type(data["count"]) is int and type(data["big"]) is int
                assert type(data["nested"][0]["n"]) is int
                assert '"count": 2.0' not in response.text
    finally:
        registry.unregister("a2a_counts")
