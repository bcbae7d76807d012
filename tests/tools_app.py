"""Example tools and a URLconf for the HTTP/WebSocket tool tests.

The tools live in their own registry; :func:`example_tools` puts them into the
global one for a test and restores whatever was there afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from django.urls import include, path
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import PaymentRequired

from aixyz_sessions import get_payer, get_session
from aixyz_sessions.tools import Tool, ToolError, ToolRegistry, registry, tool
from tests.settings import LOOPBACK_HOSTS

PRICE = "$0.01"
EXAMPLES = ToolRegistry()


@tool(registry=EXAMPLES)
async def echo(text: str, times: int = 1) -> dict[str, Any]:
    """Repeat ``text``; reports the payer it sees (always none: the tool is free)."""
    return {"text": text * times, "payer": get_payer(), "session": get_session() is not None}


@tool(price=PRICE, registry=EXAMPLES)
async def put(key: str, value: str) -> dict[str, Any]:
    """Store ``value`` under ``key`` in the payer's session."""
    session = get_session()
    assert session is not None
    await session.set(key, value)
    return {"payer": session.payer, "key": key}


@tool(price=PRICE, registry=EXAMPLES)
async def get(key: str) -> dict[str, Any]:
    """Read ``key`` from the payer's session."""
    session = get_session()
    assert session is not None
    return {"payer": session.payer, "value": await session.get(key)}


@tool(price=PRICE, registry=EXAMPLES)
async def whoami(delay: float = 0.0) -> str | None:
    """The payer, read after ``delay`` seconds (to interleave concurrent calls)."""
    await asyncio.sleep(delay)
    return get_payer()


@tool(registry=EXAMPLES)
async def explode(reason: str) -> None:
    """Always fails with a readable :class:`ToolError`."""
    raise ToolError(f"exploded: {reason}")


@tool(price=PRICE, registry=EXAMPLES)
async def paid_explode(reason: str) -> None:
    """A paid tool that fails: it must not be settled."""
    raise ToolError(f"exploded: {reason}")


@contextmanager
def example_tools() -> Iterator[list[Tool]]:
    """Register the example tools globally for a block; restore the registry after."""
    items = list(EXAMPLES)
    saved = {item.name: registry.get(item.name) for item in items}
    for item in items:
        registry.register(item)
    try:
        yield items
    finally:
        for name, previous in saved.items():
            registry.unregister(name)
            if previous is not None:
                registry.register(previous)


class Wallet:
    """A payer for message transports: signs x402 payloads with the SDK client."""

    def __init__(self) -> None:
        self.account: LocalAccount = Account.create()
        self.client = x402Client()
        register_exact_evm_client(self.client, self.account)  # type: ignore[arg-type]

    @property
    def address(self) -> str:
        """EIP-55 address."""
        return str(self.account.address)

    async def pay(self, payment_required: dict[str, Any]) -> dict[str, Any]:
        """A payment payload (JSON object) for a ``payment_required`` JSON object."""
        required = PaymentRequired.model_validate(payment_required)
        payload = await self.client.create_payment_payload(required)
        data: dict[str, Any] = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
        return data


@contextmanager
def serving(*registered: str) -> Iterator[None]:
    """This URLconf on every transport over the local facilitator; ``registered`` tools
    are taken out of the registry afterwards (the caller registered them)."""
    from django.test import override_settings

    from aixyz_sessions.payments.local import get_local_facilitator
    from aixyz_sessions.payments.runtime import reset_runtime
    from aixyz_sessions.tools.mcp import reset_mcp_server
    from tests.payments_helpers import LOCAL, MIDDLEWARE

    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF=__name__, AIXYZ_X402=LOCAL, ALLOWED_HOSTS=LOOPBACK_HOSTS
    ):
        reset_runtime()
        reset_mcp_server()
        try:
            yield
        finally:
            for name in registered:
                registry.unregister(name)
            get_local_facilitator().ledger.fail_settlements = None
            reset_runtime()
            reset_mcp_server()


@asynccontextmanager
async def websocket() -> AsyncIterator[Any]:
    """A channels test communicator connected to the app's ``/ws/tools/``."""
    from channels.testing import WebsocketCommunicator  # type: ignore[import-untyped]

    from aixyz_sessions.asgi import get_asgi_application

    ws = WebsocketCommunicator(get_asgi_application(), "/ws/tools/")
    accepted, _ = await ws.connect(timeout=10)
    assert accepted
    try:
        yield ws
    finally:
        await ws.disconnect()


async def paid_ws_call(
    ws: Any, wallet: Wallet, tool: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    """Call ``tool`` unpaid, pay the requirements the error names, call again; the reply."""
    await ws.send_json_to({"id": "probe", "tool": tool, "arguments": arguments})
    probe = await ws.receive_json_from(timeout=10)
    payment = await wallet.pay(probe["error"]["payment_required"])
    await ws.send_json_to({"id": "paid", "tool": tool, "arguments": arguments, "payment": payment})
    reply: dict[str, Any] = await ws.receive_json_from(timeout=10)
    return reply


urlpatterns = [path("tools/", include("aixyz_sessions.tools.urls"))]
