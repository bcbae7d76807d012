"""The agent over A2A: ``GET /.well-known/agent-card.json`` and JSON-RPC ``POST /agent``.

Also ``GET /.well-known/agent-registration.json``, the agent's ERC-8004
registration file (:mod:`~aixyz_sessions.agent.registration`).

``POST /agent`` is priced per request (:func:`price_of_agent_call`) and paid
through :class:`~aixyz_sessions.payments.middleware.X402Middleware`:

* ``SendMessage`` / ``message/send`` (and the streaming forms): what the
  message asks for (:mod:`~aixyz_sessions.agent.asks`): one tool invoked
  directly at that tool's price, or a text turn at ``AIXYZ_AGENT["PRICE"]``;
  a message that cannot run (several tools, an unknown one, arguments
  against its schema, text with no model configured) is a JSON-RPC error
  before any payment;
* the extended card: free;
* every other method (``GetTask``/``tasks/get``, ``CancelTask``,
  ``ListTasks``..., and names the SDK does not know): no charge, but a proven
  payer: a sign-in with the paying wallet (x402 sign-in-with-x, as
  ``@sign_in_required``), since a task belongs to the payer that created it.

The SDK gets the JSON-RPC object that was priced, re-encoded, never the raw
body: no parser difference can turn a priced method into another one. A paid
message is answered when its turn ends (``returnImmediately`` and 0.3's
``blocking: false`` are turned off): its payment settles on the turn's
outcome, not on a task that has only been submitted.

What a payment buys (DESIGN.md): an answer that is a JSON-RPC error is sent
with HTTP 400, and a message whose turn did not complete (as the executor
reports it, never as the answer's text says) with 422, so that neither is
settled, and neither carries the turn's artifacts; a message the SDK refused
before its work started leaves its payment unspent; the turn's task is kept only once
its payment settled (:mod:`~aixyz_sessions.agent.tasks`); a request that ends
early stops its turn (:mod:`~aixyz_sessions.agent.turns`). An internal error
is answered with a generic message and logged, never shown.

Streaming (``SendStreamingMessage``/``message/stream``) answers Server-Sent
Events, paid like a message: the turn runs to its end inside the payer's
session, then the payment settles once and the events go out. An event
stream is not sent before its payment settles (as no paid answer is), and a
turn that fails is not charged; events arrive when the turn ends.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from .. import bounded_json
from ..hosts import public_origin
from ..payments.decorators import (
    PaidSpec,
    priced_per_request,
    refused_before_work,
)
from .asks import INVALID_PARAMS, INVALID_REQUEST, Ask, MessageRefused, read_ask
from .card import build_card, card_json
from .conf import AgentConfig, AgentConfigError, get_agent_config
from .executor import EXACT_JSON
from .inband import EXTENSION_URI, activated, answer_in_band, in_band_answer
from .registration import build_registration
from .server import call_agent
from .turns import turn

__all__ = [
    "agent",
    "agent_card",
    "agent_registration",
    "price_of_agent_call",
    "registration_for",
]

logger = logging.getLogger("aixyz_sessions.agent")

#: Paid per message: the methods that run the agent.
MESSAGE_METHODS = frozenset(
    {"SendMessage", "message/send", "SendStreamingMessage", "message/stream"}
)
#: No payer needed (they show no task): the extended card.
FREE_METHODS = frozenset({"GetExtendedAgentCard", "agent/getAuthenticatedExtendedCard"})
INTERNAL_ERROR = -32603
#: Seconds a client may reuse the registration file: it changes with a deploy, not per request.
REGISTRATION_MAX_AGE = 300


@functools.lru_cache(maxsize=8)
def _task_spec(name: str) -> PaidSpec:
    """The task methods: no price, a proven payer (one spec object per agent name)."""
    return PaidSpec(price="", description=name, sign_in="required", resource="agent")


_RPC_ATTR = "_aixyz_agent_rpc"
_ASK_ATTR = "_aixyz_agent_ask"


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


def _ask(request: HttpRequest, rpc: dict[str, Any]) -> Ask | MessageRefused:
    """What the message asks for, or why it cannot run; read once per request."""
    if not hasattr(request, _ASK_ATTR):
        try:
            found: Ask | MessageRefused = read_ask(rpc, get_agent_config())
        except MessageRefused as refused:
            found = refused
        setattr(request, _ASK_ATTR, found)
    answer: Ask | MessageRefused = getattr(request, _ASK_ATTR)
    return answer


def price_of_agent_call(request: HttpRequest, kwargs: dict[str, Any]) -> PaidSpec | None:
    """What a ``POST /agent`` costs: a message's ask, a proven payer for tasks, or nothing.

    ``None`` also for a request the view refuses before anything runs (not
    one JSON-RPC object, a ``method`` that is not a string, a message that
    cannot run): no payment is asked for what would be refused anyway.
    """
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
    if not isinstance(method, str):
        return None  # an invalid request: the view refuses it
    if method in MESSAGE_METHODS:
        if activated(request) or config.x402_extension_required or in_band_answer(rpc):
            return None  # paid inside the conversation, or refused (the view: agent.inband)
        ask = _ask(request, rpc)
        return ask.spec if isinstance(ask, Ask) else None
    if method in FREE_METHODS:
        return None
    return _task_spec(config.name)  # every other method reads or changes tasks: a payer


def _error(
    status: int, code: int, message: str, rpc_id: Any = None, data: Any = None
) -> JsonResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return JsonResponse({"jsonrpc": "2.0", "id": rpc_id, "error": error}, status=status)


def _id(rpc: dict[str, Any]) -> Any:
    """The request's ``id`` when it is one JSON-RPC allows (a string, a number, null)."""
    value = rpc.get("id")
    return value if isinstance(value, str | int | float) and not isinstance(value, bool) else None


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


def _hide_internal(response: Any) -> Any:
    """A JSON-RPC internal error says "internal error"; what went wrong goes to the log."""
    error = response.get("error") if isinstance(response, dict) else None
    if not isinstance(error, dict) or error.get("code") != INTERNAL_ERROR:
        return response
    logger.warning("A2A internal error answered to a client: %r", error.get("message"))
    return {**response, "error": {"code": INTERNAL_ERROR, "message": "internal error"}}


def _without_work(value: Any) -> Any:
    """An answer with every artifact taken out (what an uncharged turn may still say)."""
    if isinstance(value, list):
        return [_without_work(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: _without_work(item)
        for key, item in value.items()
        if key not in ("artifacts", "artifact", "artifactUpdate")
    }


def _whole_numbers(value: Any, *, inside_data: bool = False) -> Any:
    """Data parts with their whole numbers written as integers again.

    A data part travels as a protobuf ``Struct``, whose numbers are doubles:
    a tool's ``{"count": 2}`` would reach the client as ``{"count": 2.0}``.
    """
    if isinstance(value, list):
        return [_whole_numbers(item, inside_data=inside_data) for item in value]
    if isinstance(value, dict):
        return {
            key: _whole_numbers(item, inside_data=inside_data or key == "data")
            for key, item in value.items()
        }
    if inside_data and isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def exact_json(value: Any) -> Any:
    """An answer whose tool results are their own JSON again (integers, big integers and
    floats as the tool returned them), from the copy the executor put beside each one
    (:data:`~.executor.EXACT_JSON`); the copy itself is not shown."""
    if isinstance(value, list):
        return [exact_json(item) for item in value]
    if not isinstance(value, dict):
        return value
    value = {key: exact_json(item) for key, item in value.items()}
    metadata = value.get("metadata")
    parts = value.get("parts")
    if isinstance(metadata, dict) and EXACT_JSON in metadata and isinstance(parts, list):
        text = metadata[EXACT_JSON]
        rest = {key: item for key, item in metadata.items() if key != EXACT_JSON}
        data = [part for part in parts if isinstance(part, dict) and "data" in part]
        if isinstance(text, str) and len(data) == 1:
            try:
                data[0]["data"] = bounded_json.loads(text)
            except ValueError:  # pragma: no cover - the executor wrote it
                pass
        if rest:
            value["metadata"] = rest
        else:
            del value["metadata"]
    return value


def _blocking(rpc: dict[str, Any]) -> dict[str, Any]:
    """``rpc`` with the message answered when its turn ends (1.0 and 0.3 spellings)."""
    params = rpc.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("configuration"), dict):
        return rpc
    immediate = ("returnImmediately", "return_immediately")
    configuration = {k: v for k, v in params["configuration"].items() if k not in immediate}
    if "blocking" in configuration:
        configuration["blocking"] = True
    return {**rpc, "params": {**params, "configuration": configuration}}


def _answer(status: int, body: bytes, content_type: str, charged: bool | None) -> tuple[int, bytes]:
    """The HTTP status and body the client gets for the SDK's answer.

    HTTP 400 for a JSON-RPC error; for a message (``charged`` not ``None``),
    422 for a turn that did not complete: neither is settled, and then
    neither carries the turn's artifacts. Internal errors say nothing more.
    """
    responses = _responses(body, content_type)
    if status == 200:
        if any(isinstance(r, dict) and "error" in r for r in responses):
            status = 400
        elif charged is False:
            status = 422
    cleaned = [exact_json(_whole_numbers(_hide_internal(r))) for r in responses]
    if status != 200:
        cleaned = [_without_work(r) for r in cleaned]
    if json.dumps(cleaned) == json.dumps(responses):  # (2.0 == 2: compare as written)
        return status, body
    if content_type.startswith("text/event-stream"):
        return status, b"".join(b"data: " + json.dumps(r).encode() + b"\r\n\r\n" for r in cleaned)
    return status, json.dumps(cleaned[0]).encode() if cleaned else body


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
    rpc = _rpc(request)
    if rpc is None:
        return refused_before_work(
            _error(400, -32700, "the body must be one JSON-RPC request object")
        )
    method = rpc.get("method")
    if not isinstance(method, str):
        return refused_before_work(
            _error(400, INVALID_REQUEST, "'method' must be a string", _id(rpc))
        )
    ask: Ask | None = None
    if method in MESSAGE_METHODS:
        uri = activated(request)
        if uri is None and get_agent_config().x402_extension_required:
            refused = _error(
                400,
                INVALID_REQUEST,
                f"this agent takes payments inside the conversation: activate {EXTENSION_URI} "
                "(A2A-Extensions header)",
                _id(rpc),
            )
            return refused_before_work(refused)
        if in_band_answer(rpc):
            if uri is None:  # a payment in band, without the extension that carries it
                refused = _error(
                    400,
                    INVALID_PARAMS,
                    f"the message carries x402.payment metadata: activate {EXTENSION_URI} "
                    "(A2A-Extensions header) to pay inside the conversation",
                    _id(rpc),
                )
                return refused_before_work(refused)
            return await answer_in_band(request, rpc, None, _id(rpc), uri)
        found = _ask(request, rpc)
        if isinstance(found, MessageRefused):
            refused = _error(400, found.code, found.message, _id(rpc), found.data)
            return refused_before_work(refused)
        if uri is not None and found.spec is not None and found.spec.charges:
            return await answer_in_band(request, rpc, found, _id(rpc), uri)
        ask, rpc = found, _blocking(rpc)
    async with turn(ask) as current:
        answer = await call_agent(request, json.dumps(rpc).encode())
    content_type = answer.headers.get("content-type", "application/json")
    charged = None if ask is None else current.completed
    status, body = _answer(answer.status, answer.body, content_type, charged)
    response = HttpResponse(body, status=status, content_type=content_type)
    if content_type.startswith("text/event-stream"):
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"
    if ask is not None and not current.started:  # the SDK refused it before any work
        refused_before_work(response)
    return response


async def agent_card(request: HttpRequest) -> JsonResponse:
    """``GET``: the agent card, naming this server's ``/agent`` URL."""
    try:
        config = get_agent_config()
    except AgentConfigError as exc:
        return JsonResponse({"error": "server_misconfigured", "message": exc.msg}, status=500)
    card = build_card(config, public_origin(request) + reverse("aixyz_agent:agent"))
    return JsonResponse(card_json(card))


@require_safe
@cache_control(public=True, max_age=REGISTRATION_MAX_AGE)
async def agent_registration(request: HttpRequest) -> JsonResponse:
    """``GET``: the ERC-8004 registration file, naming this server's card (and ``/mcp``)."""
    try:
        config = get_agent_config()
    except AgentConfigError as exc:
        return JsonResponse({"error": "server_misconfigured", "message": exc.msg}, status=500)
    return JsonResponse(registration_for(config, public_origin(request)))


def registration_for(config: AgentConfig, origin: str) -> dict[str, Any]:
    """The registration file served at ``origin``: the view's and the command's, one build."""
    from django.conf import settings

    from ..asgi.routing import MCP_PREFIX
    from ..checks.served import mcp_served

    return build_registration(
        config,
        origin=origin,
        card_url=origin + reverse("aixyz_agent:card"),
        mcp_url=origin + MCP_PREFIX if mcp_served() else None,
        x402=getattr(settings, "AIXYZ_X402", None) is not None,
    )
