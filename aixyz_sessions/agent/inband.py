"""x402 payments inside the A2A conversation: the a2a-x402 extension (v0.2, standalone flow).

A client that activates the extension (its URI in the ``A2A-Extensions``
header, or 0.3's ``X-A2A-Extensions``) is asked to pay in the conversation
instead of with an HTTP 402:

1. its message (``message/send`` or ``SendMessage``) is priced as on the HTTP
   path (:func:`~aixyz_sessions.agent.asks.read_ask`: one tool at its own
   price, or a text turn) and answered, HTTP 200, with a task in state
   ``input-required`` whose status message carries
   ``x402.payment.status: "payment-required"`` and the requirements under
   ``x402.payment.required`` (the same ``PaymentRequired`` a 402 would carry).
   The message is kept, unpaid, for :data:`PENDING_SECONDS`, under the task's
   id; nothing runs;
2. the client sends a message on that task (``taskId``) whose metadata says
   ``x402.payment.status: "payment-submitted"`` and carries the signed
   payment under ``x402.payment.payload``. What runs is the kept message,
   never the new one's parts: what was priced is what runs. The payment goes
   through the one paid-call core (:func:`~aixyz_sessions.payments.messages.call_paid`:
   verify, claim, the work in the payer's staged session, settle, commit),
   with every rule of "What a payment buys";
3. the answer is the task, ``completed``, with its artifacts and
   ``x402.payment.status: "payment-completed"`` and the settlement under
   ``x402.payment.receipts``; the task is the payer's, read back with a
   sign-in like any other. A payment refused, a turn that fails (uncharged, no
   artifacts) or a client that sends ``"payment-rejected"`` ends the task
   ``failed`` with ``"payment-failed"`` (``"payment-rejected"``), an
   ``x402.payment.error`` code and a receipt that says nothing was settled.

Each pending task is paid at most once: the first submission takes it
(the replay guard's ``take``), and it is forgotten when that submission ends,
whatever the outcome. A client that does not activate the extension gets the
HTTP 402 as before. Streaming (``message/stream``, ``SendStreamingMessage``)
is paid in band the same way, answered as events: the payment-required task
as one event; once paid, the turn's events (sent when the turn has ended and
its payment settled, as on the HTTP path) with the receipt on the last status.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.types import Message, Part, Role, SendMessageResponse, Task, TaskState, TaskStatus
from django.http import HttpRequest, HttpResponse, JsonResponse
from google.protobuf.json_format import MessageToDict

from .. import bounded_json
from ..exceptions import SessionStoreError
from ..hosts import public_origin
from ..payments.failures import INVALID_PAYMENT, REPLAYED, PaymentFailure
from ..payments.messages import MessageCall, PaidResult, call_paid, payment_required
from ..payments.middleware import _failure
from ..payments.retries import fingerprint
from ..payments.runtime import get_runtime
from .asks import INVALID_PARAMS, Ask

__all__ = [
    "ACCEPTED_URIS",
    "EXTENSION_URI",
    "activated",
    "answer_in_band",
    "extension_of",
    "in_band_answer",
]

logger = logging.getLogger("aixyz_sessions.agent")

#: The extension this agent declares (a2a-x402 v0.2).
EXTENSION_URI = "https://github.com/google-agentic-commerce/a2a-x402/blob/main/spec/v0.2"
#: Every URI that activates it: v0.2, and the one x402's A2A transport spec names.
ACCEPTED_URIS = (EXTENSION_URI, "https://github.com/google-a2a/a2a-x402/v0.1")
HEADERS = ("A2A-Extensions", "X-A2A-Extensions")

STATUS = "x402.payment.status"
REQUIRED = "x402.payment.required"
PAYLOAD = "x402.payment.payload"
RECEIPTS = "x402.payment.receipts"
ERROR = "x402.payment.error"

#: Seconds an unpaid message waits for its payment.
PENDING_SECONDS = 600.0
#: Largest message kept unpaid, in bytes of its JSON: an unpaid request must not buy storage.
MAX_PENDING_BYTES = 32 * 1024
#: Where pending messages are kept (a name no payer address can take).
PENDING_OWNER = "a2a-x402-pending"
V03_METHODS = frozenset({"message/send", "message/stream"})
STREAMING = frozenset({"message/stream", "SendStreamingMessage"})
TASK_NOT_FOUND = -32001


def activated(request: HttpRequest) -> str | None:
    """The extension URI the request activates (``None``: it asks for HTTP 402)."""
    for header in HEADERS:
        for value in request.headers.get(header, "").split(","):
            if value.strip() in ACCEPTED_URIS:
                return value.strip()
    return None


def in_band_answer(rpc: dict[str, Any]) -> bool:
    """Whether the message speaks of a payment (its metadata has ``x402.payment.status``,
    whatever the value): it answers a pending task, its own parts are not a request, and
    are never priced or run."""
    return STATUS in _metadata(_message(rpc))


def extension_of(required: bool) -> Any:
    """The card's declaration of the extension."""
    from a2a.types import AgentExtension

    return AgentExtension(
        uri=EXTENSION_URI,
        description="Payments with the x402 protocol inside the conversation "
        "(payment-required, payment-submitted, payment-completed); HTTP 402 otherwise.",
        required=required,
    )


def _message(rpc: dict[str, Any]) -> dict[str, Any]:
    params = rpc.get("params")
    message = params.get("message") if isinstance(params, dict) else None
    return message if isinstance(message, dict) else {}


def _metadata(message: dict[str, Any]) -> dict[str, Any]:
    metadata = message.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _field(message: dict[str, Any], camel: str, snake: str) -> Any:
    return message.get(camel, message.get(snake))


def _rpc_error(rpc_id: Any, code: int, text: str, stream: bool = False) -> HttpResponse:
    """The view's JSON-RPC error, but with HTTP 200 as the A2A SDK's own server sends them
    (its client reads an error only from a 2xx body), and as one event to a streaming
    request. Nothing settles on an in-band answer's status: the paid-call core settles."""
    from .views import _error

    answer = _error(200, code, text, rpc_id)
    if stream:
        return HttpResponse(
            b"data: " + answer.content + b"\r\n\r\n", content_type="text/event-stream"
        )
    return answer


def _agent_message(task_id: str, context_id: str, text: str) -> Message:
    return Message(
        message_id=uuid.uuid4().hex,
        role=Role.ROLE_AGENT,
        parts=[Part(text=text)],
        task_id=task_id,
        context_id=context_id,
    )


def _task(task_id: str, context_id: str, state: int, text: str, metadata: dict[str, Any]) -> Task:
    message = _agent_message(task_id, context_id, text)
    message.metadata.update(metadata)
    return Task(
        id=task_id,
        context_id=context_id,
        status=TaskStatus(state=state, message=message),  # type: ignore[arg-type]
    )


def _task_result(task: Task, v03: bool, metadata: dict[str, Any]) -> dict[str, Any]:
    """``task`` as the JSON-RPC result of the client's protocol version; the status
    message's metadata written as given (a protobuf Struct would make its integers floats)."""
    if v03:
        from a2a.compat.v0_3.conversions import to_compat_task

        result: dict[str, Any] = to_compat_task(task).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        result["status"]["message"]["metadata"] = metadata
        return result
    result = MessageToDict(SendMessageResponse(task=task))
    result["task"]["status"]["message"]["metadata"] = metadata
    return result


def _answer(rpc_id: Any, result: dict[str, Any], uri: str, stream: bool) -> HttpResponse:
    """One JSON-RPC result: a JSON body, or (``stream``) an event stream of one event."""
    return _responses([{"jsonrpc": "2.0", "id": rpc_id, "result": result}], uri, stream)


def _responses(responses: list[dict[str, Any]], uri: str, stream: bool) -> HttpResponse:
    if stream:
        events = b"".join(b"data: " + json.dumps(r).encode() + b"\r\n\r\n" for r in responses)
        response: HttpResponse = HttpResponse(events, content_type="text/event-stream")
        response["X-Accel-Buffering"] = "no"
    else:
        response = JsonResponse(responses[-1])
    response["A2A-Extensions"] = uri
    response["Cache-Control"] = "no-store"
    return response


def _call(request: HttpRequest, ask: Ask) -> MessageCall:
    from django.urls import reverse

    assert ask.spec is not None
    path = reverse("aixyz_agent:agent")
    return MessageCall(
        spec=ask.spec,
        path=path,
        resource=public_origin(request) + path,
        where="A2A in-band payment",
    )


async def answer_in_band(
    request: HttpRequest, rpc: dict[str, Any], ask: Ask | None, rpc_id: Any, uri: str
) -> HttpResponse:
    """The answer to a message of a client that activated the extension (see the module)."""
    method = str(rpc.get("method"))
    stream = method in STREAMING
    message = _message(rpc)
    status = _metadata(message).get(STATUS)
    if status in ("payment-submitted", "payment-rejected"):
        return await _settle_pending(request, rpc, rpc_id, uri, status, stream)
    if STATUS in _metadata(message):
        return _rpc_error(
            rpc_id,
            INVALID_PARAMS,
            f"{STATUS} is {str(status)[:40]!r}: a message on a waiting task says "
            '"payment-submitted" (with x402.payment.payload) or "payment-rejected"',
            stream,
        )
    assert ask is not None
    if _field(message, "taskId", "task_id"):
        return _rpc_error(
            rpc_id,
            INVALID_PARAMS,
            "an in-band payment starts a new task: send the message without taskId "
            "(or pay it over HTTP 402)",
            stream,
        )
    return await _ask_for_payment(request, rpc, ask, rpc_id, uri, method in V03_METHODS, stream)


async def _ask_for_payment(
    request: HttpRequest,
    rpc: dict[str, Any],
    ask: Ask,
    rpc_id: Any,
    uri: str,
    v03: bool,
    stream: bool,
) -> HttpResponse:
    """Step 1: keep the message, answer ``input-required`` with the requirements."""
    message = _message(rpc)
    task_id = uuid.uuid4().hex
    context_id = _field(message, "contextId", "context_id") or uuid.uuid4().hex
    # The cap is on what is stored (the message is not escaped a second time).
    record = json.dumps({"rpc": rpc, "context": context_id}, separators=(",", ":"))
    if len(record.encode()) > MAX_PENDING_BYTES:
        return _rpc_error(
            rpc_id,
            INVALID_PARAMS,
            f"a message paid in band is at most {MAX_PENDING_BYTES} bytes: "
            "pay a larger one over HTTP 402",
            stream,
        )
    try:
        required = await payment_required(_call(request, ask))
    except PaymentFailure as failure:
        return _failure(failure)
    try:
        await get_runtime().records.remember(
            PENDING_OWNER, _pending_key(task_id), record, time.time() + PENDING_SECONDS
        )
    except SessionStoreError as exc:  # the store is down: as any paid call would say
        return _failure(PaymentFailure.store(exc, "the A2A in-band payment"))
    required_json = required.model_dump(mode="json", by_alias=True, exclude_none=True)
    metadata = {STATUS: "payment-required", REQUIRED: required_json}
    text = f"Payment is required: {ask.spec.label if ask.spec else ''} (x402)."
    task = _task(task_id, context_id, TaskState.TASK_STATE_INPUT_REQUIRED, text, metadata)
    return _answer(rpc_id, _task_result(task, v03, metadata), uri, stream)


def _pending_key(task_id: str) -> str:
    return f"a2a-pending:{task_id}"


async def _settle_pending(
    request: HttpRequest, rpc: dict[str, Any], rpc_id: Any, uri: str, status: str, stream: bool
) -> HttpResponse:
    """Steps 2 and 3: the payment for a pending task (or the client's refusal to pay)."""
    message = _message(rpc)
    task_id = _field(message, "taskId", "task_id")
    records = get_runtime().records
    pending = None
    if isinstance(task_id, str) and 0 < len(task_id) <= 64:
        try:
            pending = await records.recall(PENDING_OWNER, _pending_key(task_id))
        except SessionStoreError as exc:
            return _failure(PaymentFailure.store(exc, "the A2A in-band payment"))
    if pending is None or not isinstance(task_id, str):
        text = (
            "no task awaits a payment under this taskId (unknown, already paid or ended, "
            f"or waiting longer than {int(PENDING_SECONDS // 60)} minutes)"
            if task_id
            else "a payment is sent on its task: give the message the taskId of the "
            "input-required task"
        )
        return _rpc_error(rpc_id, TASK_NOT_FOUND, text, stream)
    if status == "payment-submitted":
        problem = _unusable_payload(_metadata(message).get(PAYLOAD))
        if problem is not None:  # the task keeps waiting: the client may send it right
            return _rpc_error(rpc_id, INVALID_PARAMS, problem, stream)
    state = bounded_json.loads(pending)
    original = state["rpc"]
    if isinstance(original, str):  # kept by the first version: the message as a string
        original = bounded_json.loads(original)
    context_id = str(state["context"])
    v03 = str(original.get("method")) in V03_METHODS
    # The first submission takes the pending task; a second one at the same time is refused.
    token = secrets.token_hex(16)
    try:
        taken = await records.take(
            PENDING_OWNER, f"a2a-paying:{task_id}", token, time.time() + PENDING_SECONDS
        )
    except SessionStoreError as exc:
        return _failure(PaymentFailure.store(exc, "the A2A in-band payment"))
    if taken is not None:
        return _rpc_error(
            rpc_id, TASK_NOT_FOUND, "this task's payment is already being handled", stream
        )
    try:
        if status == "payment-rejected":
            metadata = {STATUS: "payment-rejected", RECEIPTS: []}
            task = _task(
                task_id, context_id, TaskState.TASK_STATE_FAILED, "Payment rejected.", metadata
            )
            return _answer(rpc_id, _task_result(task, v03, metadata), uri, stream)
        reply = Reply(rpc_id, uri, task_id, context_id, v03, stream)
        return await _pay(request, original, rpc, reply)
    finally:
        await records.forget_quietly(PENDING_OWNER, _pending_key(task_id))


class TurnFailed(Exception):
    """The paid turn did not complete: nothing settles; its answer goes out without work."""

    def __init__(self, body: bytes) -> None:
        super().__init__("the task did not complete")
        self.body = body


@dataclass(frozen=True)
class Reply:
    """How the submission is answered: its id, the activated URI, its task, its dialect
    (0.3 or 1.0) and whether it streams."""

    rpc_id: Any
    uri: str
    task_id: str
    context_id: str
    v03: bool
    stream: bool


async def _pay(
    request: HttpRequest, original: dict[str, Any], submission: dict[str, Any], reply: Reply
) -> HttpResponse:
    from .asks import MessageRefused, read_ask
    from .conf import get_agent_config

    try:
        ask = read_ask(original, get_agent_config())  # the tools may have changed since
    except MessageRefused as refused:
        return _rpc_error(reply.rpc_id, refused.code, refused.message, reply.stream)
    payment = _metadata(_message(submission)).get(PAYLOAD)
    continued = _continuing(original, reply)

    async def work() -> list[dict[str, Any]]:
        return await _run(request, continued, ask, reply.task_id, reply.context_id)

    async def keep_receipt(value: object, settlement: Any) -> None:
        await _keep_receipt(reply.task_id, settlement.settle_response)

    try:
        paid = await call_paid(
            _call(request, ask),
            work,
            payment=payment,
            request_fingerprint=lambda: fingerprint("a2a-in-band", original),
            settled=keep_receipt,
        )
    except PaymentFailure as failure:
        return _failed(reply, failure.code, failure.message, _network(payment))
    except TurnFailed as failed:
        logger.info("A2A in-band payment: the task did not complete: %s", failed.body[:2000])
        text = "the task failed: nothing was charged"
        return _failed(reply, "TASK_FAILED", text, _network(payment))
    return _completed(reply, paid)


def _continuing(original: dict[str, Any], reply: Reply) -> dict[str, Any]:
    """The kept message, now on its task (so the SDK continues that task), sent with the
    method the submission streams or not with, in the kept message's dialect."""
    from .views import _blocking

    message = {**_message(original), "taskId": reply.task_id, "contextId": reply.context_id}
    for snake in ("task_id", "context_id"):
        message.pop(snake, None)
    params = {**original.get("params", {}), "message": message}
    if str(original.get("method")) in V03_METHODS:
        method = "message/stream" if reply.stream else "message/send"
    else:
        method = "SendStreamingMessage" if reply.stream else "SendMessage"
    # The SDK is given an id of its own choosing (a client's null, float or object id
    # would fail the paid turn); the client's id goes back in the answer.
    return _blocking({**original, "method": method, "id": uuid.uuid4().hex, "params": params})


async def _run(
    request: HttpRequest, rpc: dict[str, Any], ask: Ask, task_id: str, context_id: str
) -> list[dict[str, Any]]:
    """The paid work: the pending task joins the payer's tasks, then the SDK continues it."""
    from .server import call_agent, payer_tasks
    from .turns import turn
    from .views import _answer as shaped
    from .views import _responses as read_responses

    waiting = _task(task_id, context_id, TaskState.TASK_STATE_INPUT_REQUIRED, "Paid.", {})
    await payer_tasks().save(waiting, ServerCallContext())
    async with turn(ask) as current:
        answer = await call_agent(request, json.dumps(rpc).encode())
    content_type = answer.headers.get("content-type", "application/json")
    status, body = shaped(answer.status, answer.body, content_type, current.completed)
    if status != 200:
        raise TurnFailed(body)
    return [r for r in read_responses(body, content_type) if isinstance(r, dict)]


def _unusable_payload(payload: object) -> str | None:
    """Why ``x402.payment.payload`` cannot be a payment (``None``: it can be tried)."""
    from ..payments.authorization import PaymentHeaderError
    from ..payments.messages import screened_payment

    if payload is None:
        return f"{PAYLOAD} is missing: send the signed PaymentPayload (a JSON object)"
    try:
        screened_payment(payload)
    except PaymentHeaderError as exc:
        return (
            f"{PAYLOAD} is not a payment: send the signed PaymentPayload as a JSON object ({exc})"
        )
    return None


async def _keep_receipt(task_id: str, settlement: Any) -> None:
    """The receipt joins the payer's task (staged: it lands with the task, once settled),
    so a later ``tasks/get`` shows it as the completed answer did."""
    from .server import payer_tasks

    store, context = payer_tasks(), ServerCallContext()
    task = await store.get(task_id, context)
    if task is None:  # pragma: no cover - the paid turn saved it
        return
    receipt = settlement.model_dump(mode="json", by_alias=True, exclude_none=True)
    if not task.status.HasField("message"):
        task.status.message.CopyFrom(_agent_message(task_id, task.context_id, "Payment completed."))
    task.status.message.metadata.update({STATUS: "payment-completed", RECEIPTS: [receipt]})
    await store.save(task, context)


def _network(payment: object) -> str:
    """The network the payment was signed for (what its receipt names), if it says."""
    accepted = payment.get("accepted") if isinstance(payment, dict) else None
    network = accepted.get("network") if isinstance(accepted, dict) else None
    return network if isinstance(network, str) and len(network) <= 64 else ""


#: What the extension's error codes are, from the words of a refusal.
_ERROR_WORDS = (
    ("insufficient", "INSUFFICIENT_FUNDS"),
    ("signature", "INVALID_SIGNATURE"),
    ("valid_before", "EXPIRED_PAYMENT"),
    ("expired", "EXPIRED_PAYMENT"),
    ("nonce", "DUPLICATE_NONCE"),
    ("already used", "DUPLICATE_NONCE"),
    ("network", "NETWORK_MISMATCH"),
    ("amount", "INVALID_AMOUNT"),
    ("value", "INVALID_AMOUNT"),
)


def error_code(code: str, text: str) -> str:
    """The extension's ``x402.payment.error`` for a failure with ``code`` and ``text``."""
    if code == "settlement_failed":
        return "SETTLEMENT_FAILED"
    if code == "TASK_FAILED":
        return code
    if code == INVALID_PAYMENT and text == REPLAYED:
        return "DUPLICATE_NONCE"
    lowered = text.lower()
    for words, name in _ERROR_WORDS:
        if words in lowered:
            return name
    return code.upper()


def _failed(reply: Reply, code: str, text: str, network: str) -> HttpResponse:
    """The task ``failed``: the payment refused, or the turn failed (nothing settled)."""
    receipt = {"success": False, "errorReason": text, "transaction": "", "network": network}
    metadata = {STATUS: "payment-failed", ERROR: error_code(code, text), RECEIPTS: [receipt]}
    task = _task(reply.task_id, reply.context_id, TaskState.TASK_STATE_FAILED, text, metadata)
    return _answer(reply.rpc_id, _task_result(task, reply.v03, metadata), reply.uri, reply.stream)


def _final_status(result: object) -> dict[str, Any] | None:
    """The status a response (or a streamed event) carries: a task's or a status update's,
    in either dialect."""
    if not isinstance(result, dict):
        return None
    for key in ("task", "statusUpdate"):
        inner = result.get(key)
        if isinstance(inner, dict) and isinstance(inner.get("status"), dict):
            status: dict[str, Any] = inner["status"]
            return status
    if result.get("kind") in ("task", "status-update") and isinstance(result.get("status"), dict):
        found: dict[str, Any] = result["status"]
        return found
    return None


def _completed(reply: Reply, paid: PaidResult) -> HttpResponse:
    """The SDK's answer (the completed task, or its events), with the payment's receipt on
    its last status."""
    responses: list[dict[str, Any]] = [dict(r) for r in paid.result]
    receipt = (
        paid.settlement.model_dump(mode="json", by_alias=True, exclude_none=True)
        if paid.settlement is not None
        else {}
    )
    metadata = {STATUS: "payment-completed", RECEIPTS: [receipt]}
    status = next(
        (found for r in reversed(responses) if (found := _final_status(r.get("result")))),
        None,
    )
    if status is not None:
        message = status.get("message")
        if not isinstance(message, dict):
            message = {"messageId": uuid.uuid4().hex, "parts": []}
            if reply.v03:
                message.update(kind="message", role="agent")
                message["parts"] = [{"kind": "text", "text": "Payment completed."}]
            else:
                message.update(role="ROLE_AGENT", parts=[{"text": "Payment completed."}])
            status["message"] = message
        message["metadata"] = {**(message.get("metadata") or {}), **metadata}
    return _responses([{**r, "id": reply.rpc_id} for r in responses], reply.uri, reply.stream)
