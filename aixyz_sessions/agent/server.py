"""The ``a2a-sdk`` JSON-RPC application behind ``/agent``, and how a Django view calls it.

The SDK's request handler (tasks, events, the 1.0 and 0.3 JSON-RPC methods
on one endpoint) runs unchanged; Django's view hands it the request as ASGI
and returns what it answers. So the payment, the sign-in, CSRF and the
payer binding are :class:`~aixyz_sessions.payments.middleware.X402Middleware`'s
work, as for every other paid view.

Tasks belong to the payer that created them: the task store's owner is the
payer bound while the request runs, so another payer's ``GetTask`` (or
``tasks/get``) finds nothing. They are kept in the replay guard's backend
(:class:`~aixyz_sessions.agent.tasks.PayerTaskStore`): Redis or the database
when the session store is one of those, so they survive the process.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers.default_request_handler_v2 import DefaultRequestHandlerV2
from a2a.server.routes import create_jsonrpc_routes
from django.http import HttpRequest
from django.utils.module_loading import import_string
from starlette.applications import Starlette

from ..context import get_payer
from ..payments.runtime import get_runtime
from .card import build_card
from .conf import AgentConfig, get_agent_config
from .executor import RegistryAgentExecutor
from .push import PaidPushSender, PayerPushConfigStore, validate_push_notification_url
from .tasks import PayerTaskStore

__all__ = [
    "AGENT_PATH",
    "AgentAnswer",
    "agent_application",
    "call_agent",
    "payer_tasks",
    "reset_agent",
]

#: Seconds a webhook gets to answer a push notification.
PUSH_TIMEOUT = 10.0
#: Where the SDK application serves JSON-RPC (the Django URL may be anything).
AGENT_PATH = "/agent"

_apps: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[AgentConfig, Starlette]] = (
    weakref.WeakKeyDictionary()
)


def _owner(context: ServerCallContext) -> str:
    """A task's owner: the payer bound for this request (lower-cased), else nobody."""
    payer = get_payer()
    return payer.lower() if payer else ""


def payer_tasks() -> PayerTaskStore:
    """The task store the SDK application uses, for this app's own writes (in-band payments)."""
    return PayerTaskStore(lambda: get_runtime().records, _owner)


def _build(config: AgentConfig) -> Starlette:
    answer = None if config.agent is None else import_string(config.agent)
    executor = RegistryAgentExecutor(answer=answer)
    card = build_card(config, AGENT_PATH)
    tasks = payer_tasks()
    pushes = PayerPushConfigStore(lambda: get_runtime().records, _owner)
    sender = PaidPushSender(httpx.AsyncClient(timeout=PUSH_TIMEOUT), pushes)
    handler = DefaultRequestHandlerV2(
        executor,
        tasks,
        card,
        push_config_store=pushes,
        push_sender=sender,
        push_url_validator=validate_push_notification_url,
    )
    return Starlette(routes=create_jsonrpc_routes(handler, AGENT_PATH, enable_v0_3_compat=True))


def agent_application() -> Starlette:
    """This event loop's SDK application for the current ``AIXYZ_AGENT``."""
    loop = asyncio.get_running_loop()
    config = get_agent_config()
    built = _apps.get(loop)
    if built is None or built[0] is not config:
        built = _apps[loop] = (config, _build(config))
    return built[1]


def reset_agent() -> None:
    """Forget the built applications (settings changed; tests)."""
    _apps.clear()


@dataclass
class AgentAnswer:
    """What the SDK application answered: status, headers and the whole body."""

    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def call_agent(request: HttpRequest, body: bytes) -> AgentAnswer:
    """Hand ``body`` with the Django request's headers to the SDK application (ASGI).

    Its whole answer; the caller says what the body is (the priced request).
    """
    app = agent_application()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the SDK waits for a disconnect that never comes
        return {"type": "http.disconnect"}  # pragma: no cover

    answer = AgentAnswer()
    chunks: list[bytes] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = int(message["status"])
            answer.headers = {
                k.decode("latin1").lower(): v.decode("latin1") for k, v in message["headers"]
            }
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": request.scheme,
        "path": AGENT_PATH,
        "raw_path": AGENT_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (k.lower().encode("latin1"), v.encode("latin1"))
            for k, v in request.headers.items()
            if k.lower() != "content-length"  # the body is re-encoded
        ]
        + [(b"content-length", str(len(body)).encode())],
        "client": None,
        "server": None,
    }
    await app(scope, receive, send)
    answer.body = b"".join(chunks)
    return answer
