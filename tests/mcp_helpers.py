"""Example tools and client helpers for the MCP endpoint tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent
from x402 import x402Client
from x402.mcp import MCP_PAYMENT_META_KEY, x402MCPSession
from x402.mcp.utils import convert_mcp_result, extract_payment_required_from_result
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.schemas import PaymentPayload, PaymentRequired

from aixyz_sessions import get_payer, get_session
from aixyz_sessions.tools import ToolError, registry, tool

ECHO, PUT, GET, FAIL, PAID_FAIL = (
    "mcp_test_echo",
    "mcp_test_put",
    "mcp_test_get",
    "mcp_test_fail",
    "mcp_test_paid_fail",
)
NAMES = (ECHO, PUT, GET, FAIL, PAID_FAIL)


async def echo(text: str, times: int = 1) -> dict[str, Any]:
    """Say it back (free)."""
    return {"echo": text * times, "payer": get_payer()}


async def put(key: str, value: str) -> dict[str, Any]:
    """Store a value in the payer's session."""
    session = get_session()
    assert session is not None
    await session.set(key, value)
    return {"stored": key, "payer": session.payer}


async def get(key: str) -> dict[str, Any]:
    """Read a value from the payer's session."""
    session = get_session()
    assert session is not None
    return {"key": key, "value": await session.get(key)}


async def fail(reason: str) -> None:
    """Always refuses."""
    raise ToolError(f"refused: {reason}")


async def paid_fail() -> None:
    """Takes the payment, then breaks."""
    raise RuntimeError("backend down")


def register_examples() -> None:
    """Put the example tools in the global registry."""
    tool(echo, name=ECHO)
    tool(put, name=PUT, price="$0.01")
    tool(get, name=GET, price="$0.001")
    tool(fail, name=FAIL)
    tool(paid_fail, name=PAID_FAIL, price="$0.01")


def unregister_examples() -> None:
    """Take them out again."""
    for name in NAMES:
        registry.unregister(name)


class Payer:
    """A random key with the SDK's async x402 client for exact EVM."""

    def __init__(self) -> None:
        self.account: LocalAccount = Account.create()
        self.client = x402Client()
        register_exact_evm_client(self.client, self.account)

    @property
    def address(self) -> str:
        """The payer address, EIP-55."""
        return str(self.account.address)

    def session(self, session: ClientSession, *, auto_payment: bool = True) -> x402MCPSession:
        """``session`` wrapped by the SDK's paying MCP session."""
        return x402MCPSession(session, self.client, auto_payment=auto_payment)

    async def pay(self, required: PaymentRequired) -> dict[str, Any]:
        """A signed payment for ``required``, as the request ``_meta``."""
        payload = await self.client.create_payment_payload(required)
        assert isinstance(payload, PaymentPayload)
        return {MCP_PAYMENT_META_KEY: payload.model_dump(by_alias=True, exclude_none=True)}


@asynccontextmanager
async def connect(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[ClientSession]:
    """An initialized official MCP client session on ``url``/mcp (``headers`` on every request)."""
    import httpx

    async with (
        httpx.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text(result: CallToolResult) -> str:
    """The first text block of a result."""
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def payload(result: CallToolResult) -> Any:
    """The first text block, parsed as JSON."""
    return json.loads(text(result))


def payment_required(result: CallToolResult) -> PaymentRequired | None:
    """What an x402 MCP client reads from a result (``None``: not a payment request)."""
    required = extract_payment_required_from_result(convert_mcp_result(result))
    assert required is None or isinstance(required, PaymentRequired)
    return required
