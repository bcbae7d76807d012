"""Red team: x402 payments inside the A2A conversation (a2a-x402 v0.2), on a real server.

Each test is an attack on the in-band flow (``aixyz_sessions.agent.inband``):
paying for one thing and getting another run, running work without paying,
replays and races, reading or continuing another payer's task, storage abuse,
failures and metering. The rule under attack (DESIGN "What a payment buys"):
one authorization buys one turn; failed or aborted turns are uncharged and
deliver nothing; what runs is what was priced; a payer never sees another's
data; the identity acted for is the one verified.
"""

from __future__ import annotations

import asyncio
import base64
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
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.upto import UptoEvmClientScheme
from x402.schemas import PaymentRequired

from aixyz_sessions import get_store
from aixyz_sessions.agent.inband import EXTENSION_URI, MAX_PENDING_BYTES, PENDING_OWNER
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.tools import registry, tool
from tests import mcp_helpers
from tests.agent_app import agent_server
from tests.test_agent_a2a import _signed_rpc, invoke, rpc, v03_message

pytestmark = pytest.mark.django_db(transaction=True)
PUT, GET, FAIL, PAID_FAIL, ECHO = (
    mcp_helpers.PUT,
    mcp_helpers.GET,
    mcp_helpers.FAIL,
    mcp_helpers.PAID_FAIL,
    mcp_helpers.ECHO,
)
ACTIVATE = {"A2A-Extensions": EXTENSION_URI}
SUBMITTED = "payment-submitted"
WRITE_FAIL = "redteam_write_then_fail"
SLOW = "redteam_slow_put"


async def write_then_fail(key: str) -> None:
    """Writes the payer's session, then breaks: the write must not survive."""
    from aixyz_sessions import get_session

    session = get_session()
    assert session is not None
    await session.set(key, "leaked")
    raise RuntimeError("broke after writing")


async def slow_put(key: str, seconds: float) -> dict[str, Any]:
    """Sleeps, then writes the payer's session."""
    from aixyz_sessions import get_session

    await asyncio.sleep(seconds)
    session = get_session()
    assert session is not None
    await session.set(key, "written")
    return {"stored": key}


@pytest.fixture
def base() -> Iterator[str]:
    tool(write_then_fail, name=WRITE_FAIL, price="$0.01")
    tool(slow_put, name=SLOW, price="$0.01")
    try:
        with agent_server() as url:
            yield url
    finally:
        registry.unregister(WRITE_FAIL)
        registry.unregister(SLOW)


async def send(
    base: str, body: Any, headers: dict[str, str] = ACTIVATE, *, read_timeout: float = 30
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=read_timeout) as plain:
        if isinstance(body, bytes | str):
            return await plain.post(
                f"{base}/agent",
                content=body,
                headers={**headers, "content-type": "application/json"},
            )
        return await plain.post(f"{base}/agent", json=body, headers=headers)


def status_message(task: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = task["status"]["message"]
    return message


def meta(task: dict[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = status_message(task)["metadata"]
    return metadata


def required_of(task: dict[str, Any]) -> dict[str, Any]:
    required: dict[str, Any] = meta(task)["x402.payment.required"]
    return required


async def sign(account: LocalAccount, required: dict[str, Any]) -> dict[str, Any]:
    client = x402Client()
    register_exact_evm_client(client, account)
    client.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(account)))
    payload = await client.create_payment_payload(PaymentRequired.model_validate(required))
    signed: dict[str, Any] = payload.model_dump(mode="json", by_alias=True, exclude_none=True)
    return signed


def submission(
    task_id: Any, payload: Any, *, status: Any = SUBMITTED, parts: list[Any] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"x402.payment.status": status}
    if payload is not None:
        metadata["x402.payment.payload"] = payload
    message = {
        "role": "user",
        "messageId": uuid.uuid4().hex,
        "taskId": task_id,
        "parts": parts or [{"kind": "text", "text": "Here is the payment authorization."}],
        "metadata": metadata,
    }
    return rpc("message/send", {"message": message})


async def pending(base: str, *parts: dict[str, Any], **message: Any) -> dict[str, Any]:
    body = rpc("message/send", v03_message(*parts))
    body["params"]["message"].update(message)
    asked = await send(base, body)
    assert asked.status_code == 200, asked.text
    task: dict[str, Any] = asked.json()["result"]
    assert task["status"]["state"] == "input-required", task
    return task


def moved(account: LocalAccount) -> list[int]:
    ledger = get_local_facilitator().ledger
    return [t.amount for t in ledger.transfers if t.payer.lower() == account.address.lower()]


def transfers() -> int:
    return len(get_local_facilitator().ledger.transfers)


async def stored(account: LocalAccount, key: str) -> Any:
    return await get_store().get(account.address.lower(), key)


def rpc_refused(response: httpx.Response, code: int | None = None) -> bool:
    """An in-band JSON-RPC error (HTTP 200 as the SDK's server sends them, or 400)."""
    body = response.json()
    error = body.get("error") if isinstance(body, dict) else None
    if response.status_code not in (200, 400) or not isinstance(error, dict):
        return False
    return "result" not in body and (code is None or error.get("code") == code)


def state_of(response: httpx.Response) -> str | None:
    result = response.json().get("result")
    return result["status"]["state"] if isinstance(result, dict) else None


# --- Pay for a cheap task, get an expensive one run ------------------------------------------


async def test_a_payment_for_the_cheap_task_does_not_pay_the_expensive_one(base: str) -> None:
    account = Account.create()
    cheap = await pending(base, invoke(GET, key="k"))
    dear = await pending(base, invoke(PUT, key="dear", value="x"))
    payload = await sign(account, required_of(cheap))  # 1000 units
    answer = await send(base, submission(dear["id"], payload))
    assert state_of(answer) == "failed", answer.text
    assert meta(answer.json()["result"])["x402.payment.status"] == "payment-failed"
    assert await stored(account, "dear") is None and moved(account) == []
    # The dear task was consumed by the failed attempt; the cheap one still pays for itself.
    assert rpc_refused(await send(base, submission(dear["id"], payload)))
    ok = await send(base, submission(cheap["id"], payload))
    assert state_of(ok) == "completed" and moved(account) == [1000]


@pytest.mark.parametrize(
    "field,value",
    [
        ("payTo", "0x000000000000000000000000000000000000dEaD"),
        ("network", "eip155:1"),
        ("amount", "1"),
        ("asset", "0x000000000000000000000000000000000000bEEF"),
    ],
)
async def test_a_payment_signed_for_other_requirements_is_refused(
    base: str, field: str, value: str
) -> None:
    account = Account.create()
    task = await pending(base, invoke(PUT, key="other", value="x"))
    required = json.loads(json.dumps(required_of(task)))  # the offered terms stay as they are
    required["accepts"][0][field] = value
    try:
        payload = await sign(account, required)
    except Exception:  # the SDK client will not sign these terms (an unknown token or
        # chain): sign the offered ones, then relabel the payment with them
        payload = await sign(account, required_of(task))
        payload["accepted"][field] = value
    answer = await send(base, submission(task["id"], payload))
    assert state_of(answer) == "failed", answer.text
    assert "artifacts" not in answer.json()["result"]
    assert await stored(account, "other") is None and moved(account) == []


async def test_a_payment_for_another_resource_url_buys_only_its_price(base: str) -> None:
    """The resource a payload names is not what runs: the kept message is, at its price."""
    account = Account.create()
    task = await pending(base, invoke(PUT, key="res", value="x"))
    required = required_of(task)
    required["resource"]["url"] = "https://elsewhere.example/tools/cheap"
    payload = await sign(account, required)
    answer = await send(base, submission(task["id"], payload))
    # The requirements' resource URL is not part of what is verified (as over HTTP): the
    # payment pays the amount to payTo on the network, for the kept message, once.
    assert state_of(answer) == "completed", answer.text
    assert moved(account) == [10000] and await stored(account, "res") == "x"


async def test_the_submission_cannot_swap_in_other_parts_or_another_task(base: str) -> None:
    """camelCase and snake_case taskIds disagree; parts ask for an expensive put."""
    account = Account.create()
    cheap = await pending(base, invoke(GET, key="k"))
    dear = await pending(base, invoke(PUT, key="dear", value="x"))
    body = submission(cheap["id"], await sign(account, required_of(cheap)))
    message = body["params"]["message"]
    message["task_id"] = dear["id"]
    message["context_id"] = dear["contextId"]
    message["parts"] = [invoke(PUT, key="swapped", value="x")]
    body["params"]["configuration"] = {"blocking": False}
    answer = await send(base, body)
    assert state_of(answer) == "completed", answer.text
    assert answer.json()["result"]["id"] == cheap["id"]
    assert await stored(account, "swapped") is None and await stored(account, "dear") is None
    assert moved(account) == [1000]
    # The dear task is still waiting for its own payment (not consumed by the snake_case id).
    other = Account.create()
    paid = await send(base, submission(dear["id"], await sign(other, required_of(dear))))
    assert state_of(paid) == "completed" and moved(other) == [10000]


async def test_a_snake_case_task_id_cannot_graft_the_pending_message_onto_a_paid_task(
    base: str,
) -> None:
    """Step 1 refuses a taskId; ``"taskId": ""`` with ``task_id`` must not continue a task."""
    account = Account.create()
    first = await pending(base, invoke(PUT, key="one", value="1"))
    assert (
        state_of(await send(base, submission(first["id"], await sign(account, required_of(first)))))
        == "completed"
    )
    second = await pending(base, invoke(PUT, key="two", value="2"), taskId="", task_id=first["id"])
    assert second["id"] != first["id"]
    done = await send(base, submission(second["id"], await sign(account, required_of(second))))
    assert state_of(done) == "completed", done.text
    assert done.json()["result"]["id"] == second["id"]
    mine = await _signed_rpc(account, base, rpc("tasks/get", {"id": first["id"]}))
    assert mine.json()["result"]["status"]["state"] == "completed"
    assert moved(account) == [10000, 10000]


# --- Run work without paying -----------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        None,
        {},
        [],
        0,
        True,
        "garbage",
        "!!!not-base64!!!",
        base64.b64encode(b"[1,2,3]").decode(),
        base64.b64encode(b'{"x402Version": 2}').decode(),
        {"x402Version": 2, "payload": {"signature": "0x"}, "accepted": {"network": "x" * 100}},
        {"x402Version": 1, "scheme": "exact", "network": "base-sepolia", "payload": {}},
        {"x402Version": 2, "extensions": {"payment-identifier": {"info": {"id": "short"}}}},
    ],
    ids=lambda value: repr(value)[:30],
)
async def test_a_submission_without_a_real_payment_runs_nothing(base: str, payload: Any) -> None:
    """Nothing runs or is charged. A payload that is no payment at all is refused with a
    JSON-RPC error and the task keeps waiting (the client may send a real one); one that
    looks like a payment but is refused ends the task failed."""
    before = transfers()
    task = await pending(base, invoke(PUT, key="free", value="x"))
    answer = await send(base, submission(task["id"], payload))
    assert answer.status_code < 500, answer.text
    assert transfers() == before
    if "error" in answer.json():
        assert "x402.payment.payload" in answer.json()["error"]["message"]
        account = Account.create()
        paid = await send(base, submission(task["id"], await sign(account, required_of(task))))
        assert state_of(paid) == "completed" and moved(account) == [10000]
    else:
        result = answer.json()["result"]
        assert result["status"]["state"] == "failed" and "artifacts" not in result
        assert meta(result)["x402.payment.status"] == "payment-failed"
        assert meta(result)["x402.payment.receipts"][0]["success"] is False


async def test_a_deeply_nested_payload_is_refused_without_an_error(base: str) -> None:
    task = await pending(base, invoke(PUT, key="deep", value="x"))
    deep: Any = "x"
    for _ in range(60):
        deep = {"a": deep}
    nested = f'{{"x402Version":2,"payload":{"[" * 400}{"]" * 400}}}'
    for payload in (
        {"x402Version": 2, "payload": deep},
        base64.b64encode(nested.encode()).decode(),
    ):
        before = transfers()
        answer = await send(base, submission(task["id"], payload))
        assert answer.status_code < 500, answer.text
        assert transfers() == before
        task = await pending(base, invoke(PUT, key="deep", value="x"))


async def test_a_huge_payload_is_refused_without_an_error(base: str) -> None:
    task = await pending(base, invoke(PUT, key="huge", value="x"))
    answer = await send(base, submission(task["id"], {"x402Version": 2, "pad": "x" * 200_000}))
    assert answer.status_code < 500, answer.text
    assert state_of(answer) in (None, "failed")


async def test_the_payload_in_its_base64_header_form_pays_once(base: str) -> None:
    account = Account.create()
    task = await pending(base, invoke(PUT, key="b64", value="x"))
    payload = await sign(account, required_of(task))
    header = base64.b64encode(json.dumps(payload).encode()).decode()
    answer = await send(base, submission(task["id"], header))
    assert state_of(answer) == "completed", answer.text
    again = await pending(base, invoke(PUT, key="b64-again", value="x"))
    replay = await send(base, submission(again["id"], payload))  # the object form: same payment
    assert state_of(replay) == "failed"
    assert meta(replay.json()["result"])["x402.payment.error"] == "DUPLICATE_NONCE"
    assert moved(account) == [10000] and await stored(account, "b64-again") is None


@pytest.mark.parametrize(
    "status",
    ["PAYMENT-SUBMITTED", " payment-submitted", "payment-submitted ", "payment_submitted", 1],
)
async def test_other_spellings_of_the_status_are_not_a_submission(base: str, status: Any) -> None:
    """Not an in-band answer: it is a new message with a taskId (refused), nothing runs."""
    account = Account.create()
    task = await pending(base, invoke(PUT, key="spell", value="x"))
    payload = await sign(account, required_of(task))
    answer = await send(base, submission(task["id"], payload, status=status))
    assert rpc_refused(answer), answer.text
    assert moved(account) == [] and await stored(account, "spell") is None
    # The task still waits for its payment.
    assert state_of(await send(base, submission(task["id"], payload))) == "completed"


async def test_duplicate_keys_in_the_body_are_read_one_way(base: str) -> None:
    """Raw JSON with the status, the taskId and the payload each given twice."""
    account = Account.create()
    cheap = await pending(base, invoke(GET, key="k"))
    dear = await pending(base, invoke(PUT, key="dup", value="x"))
    payload = json.dumps(await sign(account, required_of(cheap)))
    raw = (
        '{"jsonrpc":"2.0","id":"1","method":"message/send","params":{"message":'
        '{"role":"user","messageId":"m1","taskId":"DEAR","taskId":"CHEAP","parts":[],'
        '"metadata":{"x402.payment.status":"payment-rejected",'
        '"x402.payment.status":"payment-submitted",'
        '"x402.payment.payload":{},"x402.payment.payload":PAYLOAD}}}}'
    )
    raw = raw.replace("DEAR", dear["id"]).replace("CHEAP", cheap["id"])
    raw = raw.replace("PAYLOAD", payload)
    answer = await send(base, raw)
    # One parser, the last key wins: the cheap task is paid with its own payment.
    assert state_of(answer) == "completed", answer.text
    assert answer.json()["result"]["id"] == cheap["id"]
    assert await stored(account, "dup") is None and moved(account) == [1000]


async def test_a_submission_over_the_http_402_path_cannot_reach_a_pending_task(base: str) -> None:
    """Not activated: a message with x402.payment metadata is refused (before any payment,
    naming the extension to activate), and the pending task is untouched."""
    account = Account.create()
    task = await pending(base, invoke(PUT, key="http", value="x"))
    body = submission(task["id"], {"x402Version": 2}, parts=[invoke(GET, key="k")])
    async with httpx.AsyncClient(timeout=30) as plain:
        answer = await plain.post(f"{base}/agent", json=body)
    assert answer.status_code == 400 and EXTENSION_URI in answer.json()["error"]["message"]
    assert await stored(account, "http") is None and moved(account) == []
    # The pending task is untouched: it is still paid, once, in band.
    paid = await send(base, submission(task["id"], await sign(account, required_of(task))))
    assert state_of(paid) == "completed" and moved(account) == [10000]


# --- Activation headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers,in_band",
    [
        ({"A2A-Extensions": EXTENSION_URI, "X-A2A-Extensions": EXTENSION_URI}, True),
        ({"A2A-Extensions": f"https://example.com/other, {EXTENSION_URI}"}, True),
        ({"X-A2A-Extensions": f"{EXTENSION_URI} ,"}, True),
        ({"A2A-Extensions": EXTENSION_URI.upper()}, False),
        ({"A2A-Extensions": EXTENSION_URI + "/"}, False),
        ({"A2A-Extensions": EXTENSION_URI + "x"}, False),
        ({"A2A-Extensions": "x" + EXTENSION_URI}, False),
        ({"A2A-Extensions": EXTENSION_URI[:-1]}, False),
        ({"A2A-Extensions": EXTENSION_URI.replace(",", "")}, True),
    ],
)
async def test_activation_header_spellings(
    base: str, headers: dict[str, str], in_band: bool
) -> None:
    answer = await send(
        base, rpc("message/send", v03_message(invoke(PUT, key="h", value="x"))), headers
    )
    if in_band:
        assert answer.status_code == 200 and state_of(answer) == "input-required", answer.text
    else:
        assert answer.status_code == 402, answer.text


async def test_duplicate_activation_headers(base: str) -> None:
    raw = [("A2A-Extensions", "https://example.com/a"), ("A2A-Extensions", EXTENSION_URI)]
    async with httpx.AsyncClient(timeout=30) as plain:
        answer = await plain.post(
            f"{base}/agent",
            json=rpc("message/send", v03_message(invoke(PUT, key="h", value="x"))),
            headers=httpx.Headers(raw),
        )
    assert answer.status_code in (200, 402), answer.text
    if answer.status_code == 200:
        assert state_of(answer) == "input-required"


async def test_activated_with_a_payment_signature_header_charges_at_most_once(base: str) -> None:
    """Step 1 carries a valid HTTP payment too; step 2 pays in band with another."""
    from x402.http import encode_payment_signature_header

    account = Account.create()
    probe = await pending(base, invoke(PUT, key="both", value="x"))
    header_payload = await sign(account, required_of(probe))
    signature = encode_payment_signature_header(_model(header_payload))
    headers = {**ACTIVATE, "PAYMENT-SIGNATURE": signature}
    body = rpc("message/send", v03_message(invoke(PUT, key="both", value="x")))
    first = await send(base, body, headers)
    assert first.status_code == 200, first.text
    assert state_of(first) == "input-required", first.text
    assert moved(account) == [] and await stored(account, "both") is None
    task = first.json()["result"]
    # Step 2: both the in-band payload and the header, two different authorizations.
    second_payload = await sign(account, required_of(task))
    paid = await send(base, submission(task["id"], second_payload), headers)
    assert state_of(paid) == "completed", paid.text
    assert moved(account) == [10000]
    assert await stored(account, "both") == "x"


def _model(payload: dict[str, Any]) -> Any:
    from x402.schemas import PaymentPayload

    return PaymentPayload.model_validate(payload)


# --- Replays and races -----------------------------------------------------------------------


async def test_two_payers_submitting_for_one_task_at_once_one_runs_one_pays(base: str) -> None:
    task = await pending(base, invoke(SLOW, key="race", seconds=0.5))
    payers = [Account.create() for _ in range(4)]
    payloads = [await sign(payer, required_of(task)) for payer in payers]
    answers = await asyncio.gather(*(send(base, submission(task["id"], p)) for p in payloads))
    done = [a for a in answers if a.status_code == 200 and state_of(a) == "completed"]
    assert len(done) == 1, [a.text for a in answers]
    assert all(rpc_refused(a) for a in answers if a not in done)
    charged = [payer for payer in payers if moved(payer)]
    assert len(charged) == 1 and moved(charged[0]) == [10000]
    writes = [await stored(payer, "race") for payer in payers]
    assert writes.count("written") == 1 and await stored(charged[0], "race") == "written"


async def test_one_payment_on_two_pending_tasks_at_once_runs_once(base: str) -> None:
    account = Account.create()
    tasks = [await pending(base, invoke(SLOW, key=f"twice{i}", seconds=0.3)) for i in range(3)]
    payload = await sign(account, required_of(tasks[0]))
    answers = await asyncio.gather(*(send(base, submission(t["id"], payload)) for t in tasks))
    states = [state_of(a) for a in answers]
    assert states.count("completed") == 1, [a.text for a in answers]
    assert moved(account) == [10000]
    writes = [await stored(account, f"twice{i}") for i in range(3)]
    assert writes.count("written") == 1


async def test_the_same_submission_twice_at_once(base: str) -> None:
    account = Account.create()
    task = await pending(base, invoke(SLOW, key="dup", seconds=0.3))
    body = submission(task["id"], await sign(account, required_of(task)))
    answers = await asyncio.gather(send(base, body), send(base, body), send(base, body))
    assert [state_of(a) for a in answers].count("completed") == 1
    assert moved(account) == [10000]


async def test_a_payment_identifier_retry_on_a_twin_pending_task_runs_nothing_new(
    base: str,
) -> None:
    """Two pending tasks from byte-identical messages; one payment with an id pays both?"""
    from x402.extensions.payment_identifier import append_payment_identifier_to_extensions

    account = Account.create()
    body = rpc("message/send", v03_message(invoke(PUT, key="twin", value="x")))
    first = (await send(base, body)).json()["result"]
    second = (await send(base, body)).json()["result"]
    payload = await sign(account, required_of(first))
    extensions: dict[str, Any] = dict(required_of(first).get("extensions") or {})
    append_payment_identifier_to_extensions(extensions, "redteam-" + uuid.uuid4().hex)
    payload["extensions"] = {"payment-identifier": extensions["payment-identifier"]}
    one = await send(base, submission(first["id"], payload))
    assert state_of(one) == "completed", one.text
    two = await send(base, submission(second["id"], payload))
    assert two.status_code < 500
    # The retry gets the first task's kept answer: no new work, no new charge.
    assert state_of(two) == "completed" and two.json()["result"]["id"] == first["id"]
    assert moved(account) == [10000]  # never a second charge, whatever the answer


async def test_a_submission_after_the_pending_task_expired(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aixyz_sessions.agent.inband.PENDING_SECONDS", 1.0)
    account = Account.create()
    task = await pending(base, invoke(PUT, key="late", value="x"))
    payload = await sign(account, required_of(task))
    await asyncio.sleep(2.2)
    answer = await send(base, submission(task["id"], payload))
    assert rpc_refused(answer) and "no task" in answer.json()["error"]["message"]
    assert moved(account) == [] and await stored(account, "late") is None


async def test_a_rejected_task_cannot_be_paid_by_anyone(base: str) -> None:
    task = await pending(base, invoke(PUT, key="rej", value="x"))
    rejected = await send(base, submission(task["id"], None, status="payment-rejected"))
    assert state_of(rejected) == "failed"
    account = Account.create()
    late = await send(base, submission(task["id"], await sign(account, required_of(task))))
    assert rpc_refused(late) and moved(account) == []


# --- Reading and continuing ------------------------------------------------------------------


async def test_nobody_lists_or_reads_a_pending_message(base: str) -> None:
    task = await pending(base, invoke(PUT, key="secret-key", value="secret-value"))
    reader = Account.create()
    for body in (
        rpc("tasks/get", {"id": task["id"]}),
        rpc("GetTask", {"id": task["id"]}),
        rpc("ListTasks", {}),
        rpc("tasks/cancel", {"id": task["id"]}),
    ):
        answer = await _signed_rpc(reader, base, body)
        assert "secret-value" not in answer.text, answer.text
    # Still payable after the probing.
    payer = Account.create()
    paid = await send(base, submission(task["id"], await sign(payer, required_of(task))))
    assert state_of(paid) == "completed"


async def test_another_payer_cannot_read_continue_or_cancel_a_paid_task(base: str) -> None:
    from tests.agent_app import paid_once

    owner, other = Account.create(), Account.create()
    task = await pending(base, invoke(PUT, key="mine", value="secret"))
    await send(base, submission(task["id"], await sign(owner, required_of(task))))
    for body in (
        rpc("tasks/get", {"id": task["id"]}),
        rpc("tasks/cancel", {"id": task["id"]}),
        rpc("ListTasks", {"contextId": task["contextId"]}),
    ):
        answer = await _signed_rpc(other, base, body)
        assert "secret" not in answer.text, answer.text
    message = v03_message(invoke(GET, key="mine"))
    message["message"]["taskId"] = task["id"]
    message["message"]["contextId"] = task["contextId"]
    continued, _ = await paid_once(base, rpc("message/send", message))
    assert "secret" not in continued.text
    mine = await _signed_rpc(owner, base, rpc("tasks/get", {"id": task["id"]}))
    assert mine.json()["result"]["status"]["state"] == "completed"


async def test_the_stored_task_keeps_no_payment_signature(base: str) -> None:
    owner = Account.create()
    task = await pending(base, invoke(PUT, key="sig", value="x"))
    payload = await sign(owner, required_of(task))
    await send(base, submission(task["id"], payload))
    mine = await _signed_rpc(
        owner, base, rpc("tasks/get", {"id": task["id"], "historyLength": 100})
    )
    assert mine.status_code == 200, mine.text
    assert payload["payload"]["signature"] not in mine.text
    assert "x402.payment.payload" not in mine.text


async def test_the_owner_can_continue_their_paid_task_only_by_paying(base: str) -> None:
    owner = Account.create()
    task = await pending(base, invoke(PUT, key="cont", value="1"))
    await send(base, submission(task["id"], await sign(owner, required_of(task))))
    message = v03_message(invoke(PUT, key="cont2", value="2"))
    message["message"]["taskId"] = task["id"]
    # In band: a continuation is refused (pay it over HTTP 402).
    refused = await send(base, rpc("message/send", message))
    assert rpc_refused(refused)
    # Submitting again on the paid (completed) task is not a way in either.
    again = await send(base, submission(task["id"], await sign(owner, required_of(task))))
    assert rpc_refused(again)
    assert moved(owner) == [10000] and await stored(owner, "cont2") is None


# --- Storage abuse ---------------------------------------------------------------------------


async def test_the_stored_pending_record_is_within_the_cap(base: str) -> None:
    from aixyz_sessions.payments.runtime import get_runtime

    task = await pending(base, invoke(PUT, key="q", value='"' * 16_000))
    record = await get_runtime().records.recall(PENDING_OWNER, f"a2a-pending:{task['id']}")
    assert record is not None
    assert len(record.encode()) <= MAX_PENDING_BYTES + 256, len(record.encode())


async def test_a_message_just_over_the_cap_once_escaped_is_refused(base: str) -> None:
    """Non-ASCII text is counted as stored (``\\uXXXX``), not as its UTF-8 bytes."""
    text = "\u00e9" * (MAX_PENDING_BYTES // 6 + 10)  # ~11 KB of UTF-8, ~32 KB escaped
    answer = await send(base, rpc("message/send", v03_message(invoke(PUT, key="u", value=text))))
    assert rpc_refused(answer), answer.text[:300]


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        "x" * 65,
        "*",
        "a2a-pending:*",
        "../" * 10,
        "\x00",
        "\u202e" + "a" * 10,
        "a\r\nSET x y",
        12345,
        ["a"],
        {"$ne": None},
        None,
    ],
    ids=lambda value: repr(value)[:20],
)
async def test_odd_task_ids_find_nothing_and_break_nothing(base: str, task_id: Any) -> None:
    answer = await send(base, submission(task_id, {"x402Version": 2}))
    assert rpc_refused(answer), answer.text
    assert rpc_refused(answer, -32001), answer.text


async def test_pending_ids_are_not_guessable(base: str) -> None:
    ids = {(await pending(base, invoke(GET, key="k")))["id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


async def test_the_pending_store_name_is_no_payers(base: str) -> None:
    """No payer can be bound to the pending owner's name (an address, lower-cased)."""
    assert not PENDING_OWNER.startswith("0x") and "-" in PENDING_OWNER


# --- Failures, aborts and metering -----------------------------------------------------------


async def test_a_tool_that_writes_then_breaks_leaves_nothing(base: str) -> None:
    account = Account.create()
    task = await pending(base, invoke(WRITE_FAIL, key="leak"))
    answer = await send(base, submission(task["id"], await sign(account, required_of(task))))
    result = answer.json()["result"]
    assert result["status"]["state"] == "failed" and "artifacts" not in result
    assert meta(result)["x402.payment.error"] == "TASK_FAILED"
    assert "broke after writing" not in answer.text
    assert moved(account) == [] and await stored(account, "leak") is None
    read = await _signed_rpc(account, base, rpc("tasks/get", {"id": task["id"]}))
    assert read.status_code == 400  # no task was kept for the failed turn


async def test_a_client_that_disconnects_mid_turn_is_not_charged(base: str) -> None:
    account = Account.create()
    task = await pending(base, invoke(SLOW, key="gone", seconds=2.0))
    body = submission(task["id"], await sign(account, required_of(task)))
    with pytest.raises(httpx.ReadTimeout):
        await send(base, body, read_timeout=0.5)
    await asyncio.sleep(3.0)
    charged = moved(account)
    written = await stored(account, "gone")
    # The turn was stopped: nothing charged, nothing written.
    assert (charged, written) == ([], None)
    read = await _signed_rpc(account, base, rpc("tasks/get", {"id": task["id"]}))
    assert read.status_code == 400  # and no task kept
    # The pending task is gone either way: the abandoned submission took it.
    again = await send(base, submission(task["id"], await sign(account, required_of(task))))
    assert rpc_refused(again)


async def test_a_non_blocking_original_is_still_answered_when_its_turn_ended(base: str) -> None:
    account = Account.create()
    body = rpc("message/send", v03_message(invoke(SLOW, key="nb", seconds=0.3)))
    body["params"]["configuration"] = {"blocking": False}
    asked = await send(base, body)
    task = asked.json()["result"]
    paid = await send(base, submission(task["id"], await sign(account, required_of(task))))
    assert state_of(paid) == "completed", paid.text
    assert await stored(account, "nb") == "written" and moved(account) == [10000]


@pytest.mark.parametrize("rpc_id", [7, "same", None, 1.5, True, ["x"], {"a": 1}, "missing"])
async def test_json_rpc_ids_of_every_kind(base: str, rpc_id: Any) -> None:
    """Was a finding: an id the SDK refuses (null, a float, a bool, a list...) failed the paid
    turn (uncharged, but the pending task and the payment were used up). The SDK now gets an
    id of the server's choosing: every kind is paid once and answered, echoing the id as
    JSON-RPC allows it (a string or a number; anything else as null)."""
    account = Account.create()
    body = rpc("message/send", v03_message(invoke(GET, key="k")))
    sub_id = rpc_id
    if rpc_id == "missing":
        del body["id"]
        sub_id = None
    else:
        body["id"] = rpc_id
    asked = await send(base, body)
    assert asked.status_code == 200, asked.text
    task = asked.json()["result"]
    sub = submission(task["id"], await sign(account, required_of(task)))
    if rpc_id == "missing":
        del sub["id"]
    else:
        sub["id"] = rpc_id
    paid = await send(base, sub)
    assert state_of(paid) == "completed", paid.text
    assert moved(account) == [1000]
    echoed = (
        sub_id if isinstance(sub_id, str | int | float) and not isinstance(sub_id, bool) else None
    )
    assert paid.json()["id"] == echoed


async def test_a_submission_id_unlike_the_originals_runs_the_original(base: str) -> None:
    """The kept message's id was a string; the submission's integer id is the one answered."""
    account = Account.create()
    task = await pending(base, invoke(GET, key="k"))
    sub = submission(task["id"], await sign(account, required_of(task)))
    sub["id"] = 42
    paid = await send(base, sub)
    assert state_of(paid) == "completed" and paid.json()["id"] == 42
    assert moved(account) == [1000]


async def test_a_metered_text_turn_in_band_settles_what_it_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests import test_agent_metered as metered

    metered.MODEL.reset()
    metered.MODEL.calls = list(metered.REMEMBER)
    metered.MODEL.usage = metered.STEP_TOKENS
    from tests.payments_helpers import serve

    with serve(metered.MODEL.app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{model_url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        with metered._metered_tool(), agent_server(AIXYZ_AGENT=metered.METERED) as url:
            account = Account.create()
            task = await pending(url, {"kind": "text", "text": "remember Lisbon"})
            required = required_of(task)
            assert required["accepts"][0]["scheme"] == "upto"
            assert required["accepts"][0]["amount"] == str(metered.MAXIMUM_UNITS)
            paid = await send(url, submission(task["id"], await sign(account, required)))
    assert state_of(paid) == "completed", paid.text
    used = 3 * metered.STEP_UNITS + metered.PUT_UNITS + metered.GET_UNITS
    assert moved(account) == [used]
    (receipt,) = meta(paid.json()["result"])["x402.payment.receipts"]
    assert receipt["success"] is True and receipt.get("amount") == str(used), receipt


async def test_a_metered_turn_whose_model_fails_in_band_settles_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests import test_agent_metered as metered
    from tests.payments_helpers import serve

    metered.MODEL.reset()
    metered.MODEL.fail = True
    with serve(metered.MODEL.app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{model_url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        with metered._metered_tool(), agent_server(AIXYZ_AGENT=metered.METERED) as url:
            account = Account.create()
            task = await pending(url, {"kind": "text", "text": "hello"})
            paid = await send(url, submission(task["id"], await sign(account, required_of(task))))
    result = paid.json()["result"]
    assert result["status"]["state"] == "failed" and "artifacts" not in result
    assert meta(result)["x402.payment.error"] == "TASK_FAILED"
    assert moved(account) == []


async def test_a_price_raised_after_step_one_is_not_paid_at_the_old_price(base: str) -> None:
    """What runs is what is priced now: a payment signed at the old price is refused."""
    name = "redteam_repriced"
    tool(slow_put, name=name, price="$0.001")
    try:
        account = Account.create()
        task = await pending(base, invoke(name, key="rp", seconds=0))
        payload = await sign(account, required_of(task))
        tool(slow_put, name=name, price="$0.05")
        answer = await send(base, submission(task["id"], payload))
        assert state_of(answer) == "failed", answer.text
        assert moved(account) == [] and await stored(account, "rp") is None
        # Removed since: a refusal, nothing charged.
        gone = await pending(base, invoke(name, key="rp2", seconds=0))
        registry.unregister(name)
        removed = await send(base, submission(gone["id"], await sign(account, required_of(gone))))
        assert rpc_refused(removed), removed.text
        assert moved(account) == [] and await stored(account, "rp2") is None
    finally:
        if registry.get(name) is not None:
            registry.unregister(name)


async def test_a_streamed_submission_pays_once_and_the_task_is_then_paid(base: str) -> None:
    """Streaming is paid in band too (was refused): the submission streams the turn's
    events, is charged once, and the same payment cannot pay the task again, either way."""
    account = Account.create()
    task = await pending(base, invoke(PUT, key="st", value="x"))
    payload = await sign(account, required_of(task))
    body = submission(task["id"], payload)
    body["method"] = "message/stream"
    streamed = await send(base, body)
    assert streamed.headers["content-type"].startswith("text/event-stream"), streamed.text
    assert "payment-completed" in streamed.text and moved(account) == [10000]
    assert await stored(account, "st") == "x"
    body["method"] = "message/send"
    assert rpc_refused(await send(base, body)) and moved(account) == [10000]


async def test_a_pending_task_made_by_one_client_runs_as_whoever_pays_it(base: str) -> None:
    """By design (as a PAYMENT-SIGNATURE on any request of that price): the payer is the
    identity acted for, and the task is the payer's, not the creator's."""
    payer = Account.create()
    task = await pending(base, invoke(PUT, key="made-by-other", value="x"))
    paid = await send(base, submission(task["id"], await sign(payer, required_of(task))))
    assert state_of(paid) == "completed"
    (receipt,) = meta(paid.json()["result"])["x402.payment.receipts"]
    assert receipt["payer"] == payer.address
    assert await stored(payer, "made-by-other") == "x"


async def test_a_settlement_that_fails_in_band_delivers_nothing_and_keeps_nothing(
    base: str,
) -> None:
    account = Account.create()
    task = await pending(base, invoke(PUT, key="unsettled", value="x"))
    payload = await sign(account, required_of(task))
    ledger = get_local_facilitator().ledger
    ledger.fail_settlements = "ERC20: transfer amount exceeds balance"
    try:
        answer = await send(base, submission(task["id"], payload))
    finally:
        ledger.fail_settlements = None
    result = answer.json()["result"]
    assert result["status"]["state"] == "failed" and "artifacts" not in result, answer.text
    assert meta(result)["x402.payment.status"] == "payment-failed"
    assert meta(result)["x402.payment.receipts"][0]["success"] is False
    assert "stored" not in answer.text
    assert moved(account) == [] and await stored(account, "unsettled") is None
    read = await _signed_rpc(account, base, rpc("tasks/get", {"id": task["id"]}))
    assert read.status_code == 400
