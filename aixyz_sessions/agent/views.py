"""The agent over A2A: ``GET /.well-known/agent-card.json`` and JSON-RPC ``POST /agent``.

``POST /agent`` is priced per request (:func:`price_of_agent_call`) and paid
through :class:`~aixyz_sessions.payments.middleware.X402Middleware`:

* ``SendMessage`` / ``message/send``: ``AIXYZ_AGENT["PRICE"]`` per message
  (402 challenge, verification, the replay guard, settlement after success;
  payment identifiers and staged session writes as for every paid view);
* the extended card: free;
* every other method (``GetTask``/``tasks/get``, ``CancelTask``,
  ``ListTasks``..., and names the SDK does not know): no charge, but a proven
  payer: a sign-in with the paying wallet (x402 sign-in-with-x, as
  ``@sign_in_required``), since a task belongs to the payer that created it.

The SDK gets the JSON-RPC object that was priced, re-encoded, never the raw
body: no parser difference can turn a priced method into another one.

An answer that is a JSON-RPC error is sent with HTTP 400, and a task that
failed with 422, so that neither is settled: a client pays for work done.

Streaming (``SendStreamingMessage``/``message/stream``) answers Server-Sent
Events, paid like a message: the turn runs to its end inside the payer's
session, then the payment settles once and the events go out. An event
stream is not sent before its payment settles (as no paid answer is), and a
turn that fails is not charged; events arrive when the turn ends.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from .. import bounded_json
from ..payments.decorators import VERIFIED_ATTR, PaidSpec, PaymentNeeded, priced_per_request
from .card import build_card, card_json
from .conf import AgentConfigError, get_agent_config
from .server import call_agent

__all__ = ["agent", "agent_card", "price_of_agent_call"]

#: Paid per message: the methods that run the agent.
MESSAGE_METHODS = frozenset(
    {"SendMessage", "message/send", "SendStreamingMessage", "message/stream"}
)
#: No payer needed (they show no task): the extended card.
FREE_METHODS = frozenset({"GetExtendedAgentCard", "agent/getAuthenticatedExtendedCard"})
FAILED_STATES = frozenset({"failed", "rejected", "TASK_STATE_FAILED", "TASK_STATE_REJECTED"})


@functools.lru_cache(maxsize=8)
def _specs(price: str, name: str) -> tuple[PaidSpec, PaidSpec]:
    """(per message, task methods): one spec object each per price and agent name."""
    message = PaidSpec(price=price, description=name, resource="agent")
    tasks = PaidSpec(price="", description=name, sign_in="required", resource="agent")
    return message, tasks


_RPC_ATTR = "_aixyz_agent_rpc"


def _rpc(request: HttpRequest) -> dict[str, Any] | None:
    """The JSON-RPC request object, if the body is one (bounded depth); parsed once.

    The middleware prices the request from this object and the view hands the
    SDK this same object, re-encoded: what was priced is what runs, whatever
    the raw bytes (duplicate keys, say) would mean to another parser.
    """
    if hasattr(request, _RPC_ATTR):
        parsed: dict[str, Any] | None = getattr(request, _RPC_ATTR)
        return parsed
    try:
        data = bounded_json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RequestDataTooBig):
        data = None
    parsed = data if isinstance(data, dict) else None
    setattr(request, _RPC_ATTR, parsed)
    return parsed


def price_of_agent_call(request: HttpRequest, kwargs: dict[str, Any]) -> PaidSpec | None:
    """What a ``POST /agent`` costs: a message, a proven payer for tasks, or nothing."""
    if request.method != "POST":
        return None
    try:
        config = get_agent_config()
    except AgentConfigError:
        return None  # the view answers 500 server_misconfigured
    rpc = _rpc(request)
    if rpc is None:
        return None  # not one JSON-RPC object: the view refuses it, nothing runs
    method = rpc.get("method")
    message, tasks = _specs(config.price, config.name)
    if method in MESSAGE_METHODS:
        return message
    if method in FREE_METHODS:
        return None
    return tasks  # every other method reads or changes tasks (unknown ones too): a payer


def _error(status: int, code: int, message: str, rpc_id: Any = None) -> JsonResponse:
    body = {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}
    return JsonResponse(body, status=status)


def _responses(body: bytes, content_type: str) -> list[Any]:
    """The JSON-RPC responses of an answer: the body, or each event of an event stream."""
    texts = [body]
    if content_type.startswith("text/event-stream"):
        texts = [
            line[5:].strip()
            for line in body.splitlines()
            if line.startswith(b"data:") and line[5:].strip()
        ]
    responses = []
    for text in texts:
        try:
            responses.append(json.loads(text))
        except ValueError:
            continue
    return responses


def _states(value: Any) -> list[str]:
    """Every task ``status.state`` in a JSON-RPC result (1.0 or 0.3 shapes, events too)."""
    if isinstance(value, list):
        return [state for item in value for state in _states(item)]
    if not isinstance(value, dict):
        return []
    found = []
    status = value.get("status")
    if isinstance(status, dict) and isinstance(status.get("state"), str):
        found.append(status["state"])
    for key, item in value.items():
        if key != "status" and isinstance(item, dict | list):
            found.extend(_states(item))
    return found


def _status_of(status: int, body: bytes, content_type: str) -> int:
    """HTTP 400 for a JSON-RPC error, 422 for a failed task: neither is settled."""
    if status != 200:
        return status
    for response in _responses(body, content_type):
        if not isinstance(response, dict):
            continue
        if "error" in response:
            return 400
        if FAILED_STATES.intersection(_states(response.get("result"))):
            return 422
    return status


@priced_per_request(price_of_agent_call)
@csrf_exempt
async def agent(request: HttpRequest) -> HttpResponse:
    """``POST``: one A2A JSON-RPC request, answered by the SDK inside the payer's session."""
    if request.method != "POST":
        refused = _error(405, -32600, "A2A JSON-RPC takes POST")
        refused["Allow"] = "POST"
        return refused
    try:
        get_agent_config()
    except AgentConfigError as exc:
        return JsonResponse({"error": "server_misconfigured", "message": exc.msg}, status=500)
    spec = price_of_agent_call(request, {})
    if spec is not None and not getattr(request, VERIFIED_ATTR, False):
        return PaymentNeeded(spec)  # X402Middleware missing: a JSON 500 that says so
    rpc = _rpc(request)
    if rpc is None:
        return _error(400, -32700, "the body must be one JSON-RPC request object")
    answer = await call_agent(request, json.dumps(rpc).encode())
    content_type = answer.headers.get("content-type", "application/json")
    status = _status_of(answer.status, answer.body, content_type)
    response = HttpResponse(answer.body, status=status, content_type=content_type)
    if content_type.startswith("text/event-stream"):
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"
    return response


async def agent_card(request: HttpRequest) -> JsonResponse:
    """``GET``: the agent card, naming this server's ``/agent`` URL."""
    try:
        config = get_agent_config()
    except AgentConfigError as exc:
        return JsonResponse({"error": "server_misconfigured", "message": exc.msg}, status=500)
    from ..payments.conf import get_config

    origin = get_config().origin or f"{request.scheme}://{request.get_host()}"
    card = build_card(config, origin + reverse("aixyz_agent:agent"))
    return JsonResponse(card_json(card))
