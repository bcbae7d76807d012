"""x402 payments inside the A2A conversation (the a2a-x402 extension v0.2), on a real server.

The client speaks only the extension: it activates it with the A2A-Extensions
header, reads the requirements from the ``input-required`` task, signs them
with the x402 SDK, and sends the payment on that task. Both JSON-RPC
dialects (0.3 ``message/send``, 1.0 ``SendMessage``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import PaymentRequired

from aixyz_sessions import get_store
from aixyz_sessions.agent.inband import EXTENSION_URI
from aixyz_sessions.payments.local import get_local_facilitator
from tests import mcp_helpers
from tests.agent_app import agent_server
from tests.test_agent_a2a import invoke, rpc, v03_message

pytestmark = pytest.mark.django_db(transaction=True)
PUT, GET, FAIL = mcp_helpers.PUT, mcp_helpers.GET, mcp_helpers.PAID_FAIL
ACTIVATE = {"A2A-Extensions": EXTENSION_URI}


@pytest.fixture
def base() -> Iterator[str]:
    with agent_server() as url:
        yield url


async def send(base: str, body: dict[str, Any], headers: dict[str, str] = ACTIVATE) -> Any:
    async with httpx.AsyncClient(timeout=30) as plain:
        return await plain.post(f"{base}/agent", json=body, headers=headers)


def status_message(task: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = task["status"]["message"]
    return message


async def sign(account: LocalAccount, required: dict[str, Any]) -> dict[str, Any]:
    client = x402Client()
    register_exact_evm_client(client, account)
    payload = await client.create_payment_payload(PaymentRequired.model_validate(required))
    signed: dict[str, Any] = payload.model_dump(mode="json", by_alias=True, exclude_none=True)
    return signed


def submission(task: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    message = {
        "role": "user",
        "messageId": uuid.uuid4().hex,
        "taskId": task["id"],
        "contextId": task["contextId"],
        "parts": [{"kind": "text", "text": "Here is the payment authorization."}],
        "metadata": {"x402.payment.status": "payment-submitted", "x402.payment.payload": payload},
    }
    return rpc("message/send", {"message": message})


async def test_a_tool_call_is_paid_in_band_and_the_receipt_is_in_the_completed_task(
    base: str,
) -> None:
    account = Account.create()
    asked = await send(base, rpc("message/send", v03_message(invoke(PUT, key="k", value="v"))))
    assert asked.status_code == 200, asked.text
    assert asked.headers["A2A-Extensions"] == EXTENSION_URI
    task = asked.json()["result"]
    assert task["kind"] == "task" and task["status"]["state"] == "input-required"
    metadata = status_message(task)["metadata"]
    assert metadata["x402.payment.status"] == "payment-required"
    required = metadata["x402.payment.required"]
    assert required["x402Version"] == 2 and required["accepts"][0]["amount"] == "10000"
    assert await get_store().get(account.address.lower(), "k") is None  # nothing ran

    paid = await send(base, submission(task, await sign(account, required)))
    assert paid.status_code == 200, paid.text
    done = paid.json()["result"]
    assert done["id"] == task["id"] and done["status"]["state"] == "completed", done
    metadata = status_message(done)["metadata"]
    assert metadata["x402.payment.status"] == "payment-completed"
    (receipt,) = metadata["x402.payment.receipts"]
    assert receipt["success"] is True and receipt["payer"] == account.address
    assert receipt["transaction"].startswith("0x") and receipt["network"] == "eip155:84532"
    assert done["artifacts"], done
    assert await get_store().get(account.address.lower(), "k") == "v"
    transfers = [t for t in get_local_facilitator().ledger.transfers if t.payer == account.address]
    assert [t.amount for t in transfers] == [10000]


async def test_without_the_extension_the_http_402_is_unchanged(base: str) -> None:
    asked = await send(base, rpc("message/send", v03_message(invoke(PUT, key="k", value="v"))), {})
    assert asked.status_code == 402
    assert "PAYMENT-REQUIRED" in asked.headers


async def _pending(base: str, *parts: dict[str, Any]) -> dict[str, Any]:
    asked = await send(base, rpc("message/send", v03_message(*parts)))
    assert asked.status_code == 200, asked.text
    task: dict[str, Any] = asked.json()["result"]
    assert task["status"]["state"] == "input-required"
    return task


def required_of(task: dict[str, Any]) -> dict[str, Any]:
    required: dict[str, Any] = status_message(task)["metadata"]["x402.payment.required"]
    return required


def moved(account: LocalAccount) -> list[int]:
    ledger = get_local_facilitator().ledger
    return [t.amount for t in ledger.transfers if t.payer.lower() == account.address.lower()]


async def test_the_card_declares_the_extension(base: str) -> None:
    async with httpx.AsyncClient(timeout=10) as plain:
        card = (await plain.get(f"{base}/.well-known/agent-card.json")).json()
    (extension,) = card["capabilities"]["extensions"]
    assert extension["uri"] == EXTENSION_URI
    assert extension.get("required", False) is False  # HTTP 402 serves the others


async def test_the_one_point_zero_dialect_is_paid_in_band(base: str) -> None:
    account = Account.create()
    message = {
        "role": "ROLE_USER",
        "messageId": uuid.uuid4().hex,
        "parts": [{"data": {"tool": PUT, "arguments": {"key": "one", "value": "1.0"}}}],
    }
    one = {**ACTIVATE, "A2A-Version": "1.0"}
    asked = await send(base, rpc("SendMessage", {"message": message}), one)
    assert asked.status_code == 200, asked.text
    task = asked.json()["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    payload = await sign(account, required_of(task))
    submitted = {
        "role": "ROLE_USER",
        "messageId": uuid.uuid4().hex,
        "taskId": task["id"],
        "contextId": task["contextId"],
        "parts": [{"text": "paid"}],
        "metadata": {"x402.payment.status": "payment-submitted", "x402.payment.payload": payload},
    }
    paid = await send(base, rpc("SendMessage", {"message": submitted}), one)
    assert paid.status_code == 200, paid.text
    done = paid.json()["result"]["task"]
    assert done["status"]["state"] == "TASK_STATE_COMPLETED", json.dumps(done)
    metadata = status_message(done)["metadata"]
    assert metadata["x402.payment.status"] == "payment-completed"
    assert metadata["x402.payment.receipts"][0]["success"] is True
    assert await get_store().get(account.address.lower(), "one") == "1.0"


async def test_what_runs_is_what_was_priced_not_the_submissions_parts(base: str) -> None:
    """The cheap ``get`` is priced; a submission that names ``put`` still runs the ``get``."""
    account = Account.create()
    task = await _pending(base, invoke(GET, key="k"))
    body = submission(task, await sign(account, required_of(task)))
    body["params"]["message"]["parts"] = [invoke(PUT, key="stolen", value="x")]
    paid = await send(base, body)
    assert paid.json()["result"]["status"]["state"] == "completed", paid.text
    assert await get_store().get(account.address.lower(), "stolen") is None
    assert moved(account) == [1000]  # the get's price


async def test_a_task_is_paid_once_and_its_payment_cannot_pay_another(base: str) -> None:
    account = Account.create()
    first = await _pending(base, invoke(PUT, key="a", value="1"))
    payload = await sign(account, required_of(first))
    assert (await send(base, submission(first, payload))).json()["result"]["status"][
        "state"
    ] == "completed"
    again = await send(base, submission(first, payload))
    assert (
        again.status_code == 200 and "no task awaits a payment" in again.json()["error"]["message"]
    )
    # The same signed payment on a new pending task of the same price: a replay.
    second = await _pending(base, invoke(PUT, key="b", value="2"))
    replayed = await send(base, submission(second, payload))
    task = replayed.json()["result"]
    assert task["status"]["state"] == "failed", task
    metadata = status_message(task)["metadata"]
    assert metadata["x402.payment.status"] == "payment-failed"
    assert metadata["x402.payment.error"] == "DUPLICATE_NONCE", metadata
    assert metadata["x402.payment.receipts"][0]["success"] is False
    assert "artifacts" not in task
    assert await get_store().get(account.address.lower(), "b") is None
    assert moved(account) == [10000]


async def test_a_forged_payment_fails_the_task_and_runs_nothing(base: str) -> None:
    account = Account.create()
    task = await _pending(base, invoke(PUT, key="f", value="1"))
    payload = await sign(account, required_of(task))
    payload["payload"]["signature"] = "0x" + "11" * 65
    answer = (await send(base, submission(task, payload))).json()["result"]
    metadata = status_message(answer)["metadata"]
    assert answer["status"]["state"] == "failed"
    assert metadata["x402.payment.error"] == "INVALID_SIGNATURE", metadata
    assert await get_store().get(account.address.lower(), "f") is None and moved(account) == []


async def test_a_failing_tool_fails_the_task_uncharged_and_empty(base: str) -> None:
    account = Account.create()
    task = await _pending(base, invoke(FAIL))
    answer = (await send(base, submission(task, await sign(account, required_of(task))))).json()
    result = answer["result"]
    assert result["status"]["state"] == "failed" and "artifacts" not in result
    metadata = status_message(result)["metadata"]
    assert metadata["x402.payment.status"] == "payment-failed"
    assert metadata["x402.payment.error"] == "TASK_FAILED"
    assert moved(account) == []


async def test_a_client_that_rejects_the_payment_ends_the_task(base: str) -> None:
    task = await _pending(base, invoke(PUT, key="r", value="1"))
    body = submission(task, {})
    body["params"]["message"]["metadata"] = {"x402.payment.status": "payment-rejected"}
    answer = (await send(base, body)).json()["result"]
    assert answer["status"]["state"] == "failed"
    assert status_message(answer)["metadata"]["x402.payment.status"] == "payment-rejected"
    late = await send(base, submission(task, await sign(Account.create(), required_of(task))))
    assert late.json()["error"]["code"] == -32001  # no longer awaiting a payment


async def test_the_paid_task_is_the_payers_alone(base: str) -> None:
    from tests.test_agent_a2a import _signed_rpc

    owner, other = Account.create(), Account.create()
    task = await _pending(base, invoke(PUT, key="mine", value="secret"))
    await send(base, submission(task, await sign(owner, required_of(task))))
    mine = await _signed_rpc(owner, base, rpc("tasks/get", {"id": task["id"]}))
    assert mine.status_code == 200 and mine.json()["result"]["status"]["state"] == "completed"
    # The receipt is kept with the task (the extension's receipts are persistent).
    kept = status_message(mine.json()["result"])["metadata"]
    assert kept["x402.payment.status"] == "payment-completed"
    (receipt,) = kept["x402.payment.receipts"]
    assert receipt["success"] is True and receipt["payer"] == owner.address
    theirs = await _signed_rpc(other, base, rpc("tasks/get", {"id": task["id"]}))
    assert theirs.status_code == 400 and "secret" not in theirs.text


async def test_a_pending_task_is_nobodys_to_read(base: str) -> None:
    from tests.test_agent_a2a import _signed_rpc

    task = await _pending(base, invoke(PUT, key="p", value="1"))
    read = await _signed_rpc(Account.create(), base, rpc("tasks/get", {"id": task["id"]}))
    assert read.status_code == 400


def events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("text/event-stream"), response.text
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


async def test_a_streamed_message_is_paid_in_band_with_its_events(base: str) -> None:
    account = Account.create()
    asked = await send(base, rpc("message/stream", v03_message(invoke(PUT, key="s", value="1"))))
    (first,) = events(asked)
    task = first["result"]
    assert task["status"]["state"] == "input-required"
    body = submission(task, await sign(account, required_of(task)))
    body["method"] = "message/stream"
    streamed = events(await send(base, body))
    assert all(event["id"] == body["id"] for event in streamed)
    last = streamed[-1]["result"]
    assert last["status"]["state"] == "completed", streamed
    metadata = status_message(last)["metadata"]
    assert metadata["x402.payment.status"] == "payment-completed"
    assert metadata["x402.payment.receipts"][0]["success"] is True
    assert any("artifact" in json.dumps(event) for event in streamed)
    assert await get_store().get(account.address.lower(), "s") == "1"
    assert moved(account) == [10000]


async def test_continuing_a_task_is_refused_in_band(base: str) -> None:
    message = v03_message(invoke(PUT, key="s", value="1"))
    message["message"]["taskId"] = uuid.uuid4().hex
    continued = await send(base, rpc("message/send", message))
    assert "new task" in continued.json()["error"]["message"]


async def test_a_required_extension_refuses_messages_without_it() -> None:
    from tests.agent_app import AGENT

    with agent_server(AIXYZ_AGENT={**AGENT, "X402_EXTENSION_REQUIRED": True}) as base:
        async with httpx.AsyncClient(timeout=10) as plain:
            card = (await plain.get(f"{base}/.well-known/agent-card.json")).json()
        refused = await send(base, rpc("message/send", v03_message(invoke(GET, key="k"))), {})
        accepted = await send(base, rpc("message/send", v03_message(invoke(GET, key="k"))))
    assert card["capabilities"]["extensions"][0]["required"] is True
    assert refused.status_code == 400 and EXTENSION_URI in refused.json()["error"]["message"]
    assert accepted.json()["result"]["status"]["state"] == "input-required"


async def test_a_message_too_large_to_keep_unpaid_is_refused(base: str) -> None:
    from aixyz_sessions.agent.inband import MAX_PENDING_BYTES

    big = await send(
        base,
        rpc("message/send", v03_message(invoke(PUT, key="big", value="x" * MAX_PENDING_BYTES))),
    )
    assert big.status_code == 200 and "HTTP 402" in big.json()["error"]["message"]


async def test_a_text_turn_is_paid_in_band(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.agent_app import model_agent_server
    from tests.fake_openai import FakeModel

    model = FakeModel([(PUT, {"key": "city", "value": "Lisbon"})])
    account = Account.create()
    with model_agent_server(model, monkeypatch) as base:
        task = await _pending(base, {"kind": "text", "text": "I live in Lisbon"})
        assert model.requests == []  # the model waits for the payment
        required = required_of(task)
        assert required["accepts"][0]["amount"] == "1000"  # the agent's PRICE, $0.001
        paid = await send(base, submission(task, await sign(account, required)))
    done = paid.json()["result"]
    assert done["status"]["state"] == "completed", paid.text
    assert '\\"stored\\": \\"city\\"' in json.dumps(done["artifacts"])  # the model's answer
    assert status_message(done)["metadata"]["x402.payment.status"] == "payment-completed"
    assert await get_store().get(account.address.lower(), "city") == "Lisbon"
    assert len(model.requests) == 2 and moved(account) == [1000]


@pytest.mark.parametrize("store", ["database", "redis"])
async def test_in_band_payments_and_webhooks_keep_their_state_in_the_shared_store(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiting message, the paid task with its receipt and its webhook live in the
    replay guard's store: the database or Redis, which every worker shares."""
    from a2a.types import TaskState

    from aixyz_sessions.agent.push import DISPATCH_OWNER
    from aixyz_sessions.agent.tasks import PayerTaskStore
    from aixyz_sessions.payments.runtime import get_runtime

    if store == "database":
        backend: Any = "aixyz_sessions.stores.db.DatabaseSessionStore"
    else:
        from tests.services import need_redis

        need_redis()
        prefix = f"inband-{uuid.uuid4().hex}"
        options = {"url": "redis://127.0.0.1:6379/13", "key_prefix": prefix}
        backend = {"BACKEND": "aixyz_sessions.stores.redis.RedisSessionStore", "OPTIONS": options}
    account = Account.create()
    hook = "https://hooks.example/a2a"  # kept; the screening is let through for this name
    allowed = lambda url: _allowed(url, hook)  # noqa: E731
    monkeypatch.setattr("aixyz_sessions.agent.push.validate_push_notification_url", allowed)
    monkeypatch.setattr("aixyz_sessions.agent.server.validate_push_notification_url", allowed)
    with agent_server(AIXYZ_SESSION_STORE=backend) as base:
        message = v03_message(invoke(PUT, key="shared", value="yes"))
        message["configuration"] = {"pushNotificationConfig": {"url": hook, "token": "t"}}
        asked = await send(base, rpc("message/send", message))
        task = asked.json()["result"]
        records = get_runtime().records
        assert await records.recall("a2a-x402-pending", f"a2a-pending:{task['id']}")
        paid = await send(base, submission(task, await sign(account, required_of(task))))
        assert paid.json()["result"]["status"]["state"] == "completed", paid.text
        owner = account.address.lower()
        assert await records.recall("a2a-x402-pending", f"a2a-pending:{task['id']}") is None
        kept = await PayerTaskStore(lambda: records, lambda context: owner).get(
            task["id"],
            None,  # type: ignore[arg-type]
        )
        assert kept is not None and kept.status.state == TaskState.TASK_STATE_COMPLETED
        assert "payment-completed" in str(kept.status.message.metadata)
        webhooks = await records.recall(DISPATCH_OWNER, f"a2a-push:{task['id']}")
        assert webhooks is not None  # where the dispatch path finds the task's webhooks
        assert await _dispatch_urls(task["id"]) == [hook]
        assert await get_store().get(owner, "shared") == "yes"


async def _allowed(url: str, hook: str) -> bool:
    return url == hook


async def _dispatch_urls(task_id: str) -> list[str]:
    from aixyz_sessions.agent.push import PayerPushConfigStore
    from aixyz_sessions.payments.runtime import get_runtime

    store = PayerPushConfigStore(lambda: get_runtime().records, lambda context: "")
    return [config.url for config in await store.get_info_for_dispatch(task_id)]


async def test_the_usual_mistakes_are_told_apart_and_leave_the_task_waiting(base: str) -> None:
    """A typo in the status, a missing or malformed payload, a forgotten taskId: each is a
    JSON-RPC error that says what to send, and the task can still be paid."""
    account = Account.create()
    task = await _pending(base, invoke(PUT, key="m", value="1"))
    payload = await sign(account, required_of(task))
    typo = submission(task, payload)
    typo["params"]["message"]["metadata"]["x402.payment.status"] = "payment-submited"
    missing = submission(task, payload)
    del missing["params"]["message"]["metadata"]["x402.payment.payload"]
    as_text = submission(task, json.dumps(payload))  # type: ignore[arg-type]
    no_task = submission(task, payload)
    del no_task["params"]["message"]["taskId"]
    said = {}
    for name, body in (("typo", typo), ("missing", missing), ("text", as_text), ("task", no_task)):
        answer = await send(base, body)
        assert answer.status_code == 200, answer.text
        said[name] = answer.json()["error"]["message"]
    assert "'payment-submited'" in said["typo"] and '"payment-submitted"' in said["typo"]
    assert "x402.payment.payload is missing" in said["missing"]
    assert "a JSON object" in said["text"]
    assert "give the message the taskId" in said["task"]
    paid = await send(base, submission(task, payload))
    assert paid.json()["result"]["status"]["state"] == "completed" and moved(account) == [10000]


async def test_the_docs_client_pays_in_band(base: str) -> None:
    from tests.docs_examples import block

    scope: dict[str, Any] = {}
    exec(block("docs/agent.md", "import uuid", "pay_in_band"), scope)
    account = Account.create()
    task = await scope["pay_in_band"](base, account, PUT, {"key": "docs", "value": "ok"})
    assert task["status"]["state"] == "completed", task
    receipts = status_message(task)["metadata"]["x402.payment.receipts"]
    assert receipts[0]["success"] is True and receipts[0]["payer"] == account.address
    assert await get_store().get(account.address.lower(), "docs") == "ok"
