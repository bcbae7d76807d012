"""x402 payments in band (a2a-x402 v0.2) with the OFFICIAL a2a-sdk client, on a real server.

The client is the SDK's own (``ClientFactory(ClientConfig(...)).create_from_url``):
it reads the card at ``/.well-known/agent-card.json``, picks the JSON-RPC
interface and protocol version it negotiates from the card (1.0,
``SendMessage``) and speaks protobuf messages. The extension is activated the
way the SDK offers: ``ClientCallContext(service_parameters=...)`` built with
``with_a2a_extensions([URI])``, which the JSON-RPC transport sends as the
``A2A-Extensions`` header. Only the signing is the x402 SDK's.

What the SDK client needs told: ``ClientConfig(streaming=False)``. The card
says the agent streams, so by default the client sends
``SendStreamingMessage``, which this server answers over HTTP 402 only (in
band it is a JSON-RPC error saying so: see the last test).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientCallContext, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError
from a2a.client.service_parameters import ServiceParametersFactory, with_a2a_extensions
from a2a.extensions.common import HTTP_EXTENSION_HEADER
from a2a.helpers import get_data_parts, new_data_part, new_text_part
from a2a.types import Message, Role, SendMessageRequest, Task, TaskState
from a2a.utils.errors import TaskNotFoundError
from eth_account import Account
from eth_account.signers.local import LocalAccount
from google.protobuf.json_format import MessageToDict

from aixyz_sessions import get_store
from aixyz_sessions.agent.inband import EXTENSION_URI
from aixyz_sessions.payments.local import get_local_facilitator
from tests import mcp_helpers
from tests.agent_app import agent_server
from tests.test_agent_inband import sign

pytestmark = pytest.mark.django_db(transaction=True)
PUT, GET = mcp_helpers.PUT, mcp_helpers.GET
STATUS, REQUIRED, PAYLOAD, RECEIPTS = (
    "x402.payment.status",
    "x402.payment.required",
    "x402.payment.payload",
    "x402.payment.receipts",
)


@pytest.fixture
def base() -> Iterator[str]:
    with agent_server() as url:
        yield url


class Recorder:
    """What went over the wire: each request's headers and each answer's (httpx event hooks)."""

    def __init__(self) -> None:
        self.sent: list[httpx.Headers] = []
        self.answered: list[httpx.Headers] = []

    async def request(self, request: httpx.Request) -> None:
        if request.method == "POST":
            self.sent.append(request.headers)

    async def response(self, response: httpx.Response) -> None:
        if response.request.method == "POST":
            self.answered.append(response.headers)


@asynccontextmanager
async def sdk_client(
    base: str, *, streaming: bool = False, recorder: Recorder | None = None
) -> AsyncIterator[Client]:
    """The SDK's client for the agent at ``base``, from its card."""
    hooks = {"request": [recorder.request], "response": [recorder.response]} if recorder else {}
    async with httpx.AsyncClient(timeout=30, event_hooks=hooks) as http:
        card = await A2ACardResolver(http, base).get_agent_card()  # /.well-known/agent-card.json
        client = ClientFactory(ClientConfig(streaming=streaming, httpx_client=http)).create(card)
        try:
            yield client
        finally:
            await client.close()


def activated() -> ClientCallContext:
    """The call context that activates the extension (the SDK's service parameters)."""
    parameters = ServiceParametersFactory.create([with_a2a_extensions([EXTENSION_URI])])
    return ClientCallContext(service_parameters=parameters)


async def send(client: Client, message: Message, context: ClientCallContext) -> Task:
    """One non-streaming ``SendMessage``: the task it answers."""
    answers = [
        answer
        async for answer in client.send_message(
            SendMessageRequest(message=message), context=context
        )
    ]
    assert len(answers) == 1 and answers[0].HasField("task"), answers
    return answers[0].task


def invocation(name: str, **arguments: Any) -> Message:
    """A tool invocation: a data part ``{"tool": name, "arguments": {...}}``."""
    part = new_data_part({"tool": name, "arguments": arguments})
    return Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[part])


def status_metadata(task: Task) -> dict[str, Any]:
    metadata: dict[str, Any] = MessageToDict(task.status.message.metadata)
    return metadata


def submission(task: Task, payload: dict[str, Any]) -> Message:
    """The payment-submitted message on ``task``."""
    message = Message(
        role=Role.ROLE_USER,
        message_id=uuid.uuid4().hex,
        task_id=task.id,
        context_id=task.context_id,
        parts=[new_text_part("Here is the payment authorization.")],
    )
    message.metadata.update({STATUS: "payment-submitted", PAYLOAD: payload})
    return message


def moved(account: LocalAccount) -> list[int]:
    ledger = get_local_facilitator().ledger
    return [t.amount for t in ledger.transfers if t.payer.lower() == account.address.lower()]


async def test_the_sdk_client_pays_a_tool_call_in_band(base: str) -> None:
    account = Account.create()
    recorder = Recorder()
    async with sdk_client(base, recorder=recorder) as client:
        card = client._card  # type: ignore[attr-defined]  # what the factory read
        assert [e.uri for e in card.capabilities.extensions] == [EXTENSION_URI]
        context = activated()

        # (a), (b): the invocation, answered with the task awaiting its payment.
        task = await send(client, invocation(PUT, key="sdk", value="in band"), context)
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED, task
        metadata = status_metadata(task)
        assert metadata[STATUS] == "payment-required"
        required = metadata[REQUIRED]  # a Struct: its integers come back as floats
        assert required["x402Version"] == 2 and required["accepts"][0]["amount"] == "10000"
        assert await get_store().get(account.address.lower(), "sdk") is None  # nothing ran

        # (c), (d): signed with the x402 SDK, submitted on that task.
        paid = await send(client, submission(task, await sign(account, required)), context)

    # (e): the task completed, with its receipt and artifact; the write landed.
    assert paid.id == task.id and paid.context_id == task.context_id
    assert paid.status.state == TaskState.TASK_STATE_COMPLETED, paid
    metadata = status_metadata(paid)
    assert metadata[STATUS] == "payment-completed"
    (receipt,) = metadata[RECEIPTS]
    assert receipt["success"] is True and receipt["payer"] == account.address
    assert receipt["transaction"].startswith("0x") and receipt["network"] == "eip155:84532"
    (artifact,) = paid.artifacts
    assert get_data_parts(artifact.parts) == [{"stored": "sdk", "payer": account.address}]
    assert await get_store().get(account.address.lower(), "sdk") == "in band"
    assert moved(account) == [10000]
    # On the wire: the 1.0 dialect, the extension activated, and the server acknowledging it.
    assert [h.get("A2A-Version") for h in recorder.sent] == ["1.0", "1.0"]
    assert [h.get(HTTP_EXTENSION_HEADER) for h in recorder.sent] == [EXTENSION_URI] * 2
    assert [h.get(HTTP_EXTENSION_HEADER) for h in recorder.answered] == [EXTENSION_URI] * 2


async def test_what_runs_is_what_was_priced(base: str) -> None:
    """The cheap ``get`` is priced; a submission whose parts name ``put`` still runs the get."""
    account = Account.create()
    async with sdk_client(base) as client:
        task = await send(client, invocation(GET, key="k"), activated())
        message = submission(task, await sign(account, status_metadata(task)[REQUIRED]))
        del message.parts[:]
        message.parts.append(new_data_part({"tool": PUT, "arguments": {"key": "x", "value": "y"}}))
        paid = await send(client, message, activated())
    assert paid.status.state == TaskState.TASK_STATE_COMPLETED, paid
    assert get_data_parts(paid.artifacts[0].parts) == [{"key": "k", "value": None}]
    assert await get_store().get(account.address.lower(), "x") is None
    assert moved(account) == [1000]


async def test_a_rejected_payment_fails_the_task(base: str) -> None:
    async with sdk_client(base) as client:
        task = await send(client, invocation(PUT, key="r", value="1"), activated())
        rejection = submission(task, {})
        rejection.metadata.Clear()
        rejection.metadata.update({STATUS: "payment-rejected"})
        answer = await send(client, rejection, activated())
    assert answer.status.state == TaskState.TASK_STATE_FAILED
    assert status_metadata(answer)[STATUS] == "payment-rejected"


async def test_without_the_extension_the_sdk_client_meets_the_http_402(base: str) -> None:
    """Not activated: the HTTP 402, which the SDK client reports as an error."""
    async with sdk_client(base) as client:
        with pytest.raises(A2AClientError, match="402"):
            await send(client, invocation(PUT, key="n", value="1"), ClientCallContext())


async def test_the_sdk_clients_default_streaming_pays_in_band(base: str) -> None:
    """The card says the agent streams, so the default client streams: in band it is paid
    the same way, and the last streamed status carries the receipt."""
    account = Account.create()
    async with sdk_client(base, streaming=True) as client:
        asked = [
            answer
            async for answer in client.send_message(
                SendMessageRequest(message=invocation(PUT, key="stream", value="1")),
                context=activated(),
            )
        ]
        task = asked[-1].task
        assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        payload = await sign(account, status_metadata(task)[REQUIRED])
        paid = [
            answer
            async for answer in client.send_message(
                SendMessageRequest(message=submission(task, payload)), context=activated()
            )
        ]
    finals = [a for a in paid if a.HasField("task") or a.HasField("status_update")]
    last = finals[-1].task if finals[-1].HasField("task") else finals[-1].status_update
    assert last.status.state == TaskState.TASK_STATE_COMPLETED
    assert MessageToDict(last.status.message.metadata)["x402.payment.status"] == "payment-completed"
    assert await get_store().get(account.address.lower(), "stream") == "1"


async def test_the_sdk_client_reads_an_in_band_error(base: str) -> None:
    """A task already paid is awaiting no payment: the client should be told so."""
    account = Account.create()
    async with sdk_client(base) as client:
        task = await send(client, invocation(GET, key="k"), activated())
        payload = await sign(account, status_metadata(task)[REQUIRED])
        paid = await send(client, submission(task, payload), activated())
        assert paid.status.state == TaskState.TASK_STATE_COMPLETED
        with pytest.raises(TaskNotFoundError, match="no task awaits a payment"):
            await send(client, submission(task, payload), activated())
