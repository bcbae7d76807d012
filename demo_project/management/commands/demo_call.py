"""``python manage.py demo_call``: real paid calls against the running demo, as two payers.

While ``make demo`` serves the demo, this command creates two fresh random
keys (payer A and payer B), pays each tool call with the ``x402`` SDK's
client (the local facilitator verifies the signatures; no money moves), and
prints every step with the tool's result and what it settled: A stores,
reads back, lists, summarizes and deletes; B then lists, summarizes and
reads, and must see none of A's data. Last, A comes back without paying: it
signs in with the same wallet (x402's sign-in-with-x, which ``get-content``
accepts from a recent payer) and reads its greeting; a wallet that never
paid is refused there.

The payments show the demo's three ways to price a call: a fixed price
(``exact``); ``list-keys``, offered on Base Sepolia and Base (A pays on the
first network offered, B prefers Base); and ``summarize-content``, metered
(``upto``): the payer authorizes $0.05 and the call settles what the
session's size costs, which the command checks against the summary.

    python manage.py demo_call                       # over HTTP: POST /tools/<name>
    python manage.py demo_call --transport ws        # over the WebSocket /ws/tools/
    python manage.py demo_call --transport mcp       # over MCP at /mcp
    python manage.py demo_call --transport a2a       # A2A messages to /agent
    python manage.py demo_call --transport a2a-inband  # A2A, paid inside the conversation
    python manage.py demo_call --url http://127.0.0.1:8000
    python manage.py demo_call --scheme batch        # one payer, one payment channel
    python manage.py demo_call --scheme batch --calls 50 --transport ws

``--scheme batch`` pays through a payment channel (x402 ``batch-settlement``)
only: one deposit, then a voucher per call (see ``demo_project/channels_client.py``).

Exits non-zero when the server cannot be reached or a result is not what
the demo promises (isolation above all).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import prefer_network, x402Client
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.upto import UptoEvmClientScheme
from x402.schemas import PaymentRequirements, SettleResponse

DEFAULT_URL = "http://127.0.0.1:8000"
TRANSPORTS = ("http", "ws", "mcp", "a2a", "a2a-inband")
#: ``exact``: each call pays its own price (``exact``, or ``upto`` when metered);
#: ``batch``: every call goes through one payment channel.
SCHEMES = ("exact", "batch")
DEFAULT_CALLS = 20
PUT, GET, KEYS, SUMMARY = "put-content", "get-content", "list-keys", "summarize-content"
TOOLS = (PUT, GET, KEYS, SUMMARY)
#: Where payer B pays when a tool offers it (``list-keys``: Base Sepolia or Base).
B_NETWORK = "eip155:8453"
TIMEOUT = 30.0


class CallFailed(Exception):
    """A tool call did not produce a result (HTTP error, protocol error)."""


@dataclass
class Payer:
    """A fresh random key with the SDK's x402 client (``exact`` and ``upto`` on EVM).

    ``prefer``: the network to pay on when a 402 offers several (else the first
    offered). ``requirements`` is what the client signed its last payment for.
    """

    label: str
    prefer: str | None = None
    account: LocalAccount = field(default_factory=Account.create)
    requirements: PaymentRequirements | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.x402 = x402Client()
        register_exact_evm_client(self.x402, self.account)  # type: ignore[arg-type]
        self.x402.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(self.account)))
        if self.prefer:
            self.x402.register_policy(prefer_network(self.prefer))
        self.x402.on_after_payment_creation(self._signed)

    def _signed(self, context: Any) -> None:
        chosen = context.selected_requirements
        self.requirements = chosen if isinstance(chosen, PaymentRequirements) else None

    @property
    def address(self) -> str:
        return str(self.account.address)


@dataclass(frozen=True)
class Paid:
    """A tool's result and its settlement (``None``: not paid, or the server sent none)."""

    result: dict[str, Any]
    settlement: SettleResponse | None


@dataclass(frozen=True)
class Receipt:
    """What one paid call settled: atomic units of ``asset`` on ``network``."""

    amount: int
    maximum: int
    scheme: str
    network: str
    asset: str
    transaction: str | None

    @property
    def dollars(self) -> Decimal | None:
        """The amount in dollars when the asset's decimals are known (the SDK's USDC)."""
        decimals = _decimals(self.asset, self.network)
        return None if decimals is None else _dollars(self.amount, decimals)

    def label(self) -> str:
        """``$0.0011 of up to $0.05 on eip155:84532, tx 0x12...``."""
        decimals = _decimals(self.asset, self.network)
        if decimals is None:
            text = f"{self.amount} units of {self.asset}"
            if self.scheme == "upto":
                text += f" of up to {self.maximum}"
        else:
            text = f"${_dollars(self.amount, decimals):f}"
            if self.scheme == "upto":
                text += f" of up to ${_dollars(self.maximum, decimals):f}"
        text += f" on {self.network}"
        return text + (f", tx {self.transaction[:18]}..." if self.transaction else "")


def _decimals(asset: str, network: str) -> int | None:
    from x402.mechanisms.evm.default_assets import find_default_asset

    try:
        found = find_default_asset(asset, network)
    except Exception:  # a network the SDK does not know
        return None
    return None if found is None else int(found["decimals"])


def _dollars(amount: int, decimals: int) -> Decimal:
    return (Decimal(amount) / Decimal(10) ** decimals).normalize()


def receipt(paid: Paid, requirements: PaymentRequirements | None) -> Receipt | None:
    """What a call settled: ``PAYMENT-RESPONSE``'s ``amount`` (``upto``), else the price signed.

    An ``exact`` settlement moves the amount the payer signed for; the
    server's answer names only the transaction (``amount`` is for ``upto``).
    """
    settled = paid.settlement
    if settled is None or requirements is None:
        return None
    amount = settled.amount or requirements.amount
    return Receipt(
        amount=int(amount),
        maximum=int(requirements.amount),
        scheme=requirements.scheme,
        network=settled.network or requirements.network,
        asset=requirements.asset,
        transaction=settled.transaction or None,
    )


Call = Callable[..., Any]  # (name, arguments, *, sign_in=False) -> Paid


def _settlement_from_header(header: str | None) -> SettleResponse | None:
    """The decoded ``PAYMENT-RESPONSE`` (HTTP and A2A header, WebSocket reply field)."""
    if not header:
        return None
    from x402.http import decode_payment_response_header

    try:
        return decode_payment_response_header(header)
    except Exception:
        return None


def _settlement_of(value: Any) -> SettleResponse | None:
    """The settlement an MCP result carries (the SDK gives a ``SettleResponse`` or a dict)."""
    if isinstance(value, SettleResponse) or value is None:
        return value
    try:
        return SettleResponse.model_validate(value)
    except ValueError:
        return None


@asynccontextmanager
async def http_caller(base: str, payer: Payer) -> AsyncIterator[Call]:
    """``POST /tools/<name>`` through the SDK's paying httpx client."""
    from x402.http.clients.httpx import x402HttpxClient

    async with x402HttpxClient(payer.x402, base_url=base, timeout=TIMEOUT) as client:

        async def call(name: str, arguments: dict[str, Any], *, sign_in: bool = False) -> Paid:
            if sign_in:  # no payment: answer the 402's sign-in offer instead
                async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as plain:
                    asked = await plain.post(f"/tools/{name}", json=arguments)
                    header = await _sign_in(payer, asked.headers.get("PAYMENT-REQUIRED"), base)
                    response = await plain.post(
                        f"/tools/{name}", json=arguments, headers={"SIGN-IN-WITH-X": header}
                    )
                if response.status_code != 200:
                    raise CallFailed(f"HTTP {response.status_code}: {response.text[:300]}")
                return Paid(response.json()["result"], None)
            response = await client.post(f"/tools/{name}", json=arguments)
            if response.status_code != 200:
                raise CallFailed(f"HTTP {response.status_code}: {response.text[:300]}")
            result = response.json()["result"]
            header = response.headers.get("PAYMENT-RESPONSE")
            return Paid(result, _settlement_from_header(header))

        yield call


@asynccontextmanager
async def ws_caller(base: str, payer: Payer) -> AsyncIterator[Call]:
    """One JSON message per call on ``/ws/tools/``; a ``payment_required`` reply is paid."""
    from websockets.asyncio.client import connect
    from x402.schemas import PaymentRequired

    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    async with connect(f"{scheme}://{parts.netloc}/ws/tools/", open_timeout=TIMEOUT) as ws:

        async def ask(message: dict[str, Any]) -> dict[str, Any]:
            await ws.send(json.dumps(message))
            while True:
                reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                if reply.get("id") == message["id"]:
                    return reply

        async def call(name: str, arguments: dict[str, Any], *, sign_in: bool = False) -> Paid:
            message: dict[str, Any] = {"id": uuid.uuid4().hex, "tool": name, "arguments": arguments}
            reply = await ask(message)
            error = reply.get("error") or {}
            if sign_in and "payment_required" in error:
                header = await _sign_in(payer, error["payment_required"], base)
                reply = await ask({**message, "id": uuid.uuid4().hex, "sign_in": header})
            elif error.get("code") == "payment_required" and "payment_required" in error:
                required = PaymentRequired.model_validate(error["payment_required"])
                payload = await payer.x402.create_payment_payload(required)
                payment = json.loads(payload.model_dump_json(by_alias=True, exclude_none=True))
                reply = await ask({**message, "id": uuid.uuid4().hex, "payment": payment})
            if "error" in reply:
                raise CallFailed(f"{reply['error'].get('code')}: {reply['error'].get('message')}")
            return Paid(reply["result"], _settlement_from_header(reply.get("payment_response")))

        yield call


@asynccontextmanager
async def mcp_caller(base: str, payer: Payer) -> AsyncIterator[Call]:
    """MCP ``tools/call`` at ``/mcp`` through the SDK's paying MCP session."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.types import TextContent
    from x402.mcp import x402MCPSession

    from aixyz_sessions.tools.mcp import SIGN_IN_META

    async with streamable_http_client(f"{base}/mcp") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            paying = x402MCPSession(session, payer.x402, auto_payment=True)

            async def call(name: str, arguments: dict[str, Any], *, sign_in: bool = False) -> Paid:
                if sign_in:  # no payment: answer the payment-required result's sign-in offer
                    asked = await session.call_tool(name, arguments)
                    header = await _sign_in(payer, asked.structuredContent, base)
                    signed = await session.call_tool(name, arguments, meta={SIGN_IN_META: header})
                    texts = [b.text for b in signed.content if isinstance(b, TextContent)]
                    if signed.isError:
                        raise CallFailed(f"MCP error: {' '.join(texts)[:300]}")
                    return Paid(json.loads(texts[0]), None)
                outcome = await paying.call_tool(name, arguments)
                texts = [b.text for b in outcome.content if isinstance(b, TextContent)]
                if outcome.is_error:
                    raise CallFailed(f"MCP error: {' '.join(texts)[:300]}")
                return Paid(json.loads(texts[0]), _settlement_of(outcome.payment_response))

            yield call


async def _sign_in(payer: Payer, payment_required: Any, base: str) -> str:
    """The ``SIGN-IN-WITH-X`` value answering a 402's sign-in offer (SDK helpers)."""
    from aixyz_sessions.testing.paying import sign_in_header

    if isinstance(payment_required, dict) and "payment_required" in payment_required:
        payment_required = payment_required["payment_required"]  # an error's details
    if not payment_required:
        raise CallFailed("the server offered no sign-in (no PaymentRequired)")
    try:
        return await sign_in_header(payer.account, payment_required, base)
    except ValueError as exc:
        raise CallFailed(f"cannot sign in: {exc}") from None


@asynccontextmanager
async def a2a_caller(base: str, payer: Payer) -> AsyncIterator[Call]:
    """One paid A2A ``message/send`` per call, invoking the tool with a data part."""
    from x402.http.clients.httpx import x402HttpxClient

    async with x402HttpxClient(payer.x402, base_url=base, timeout=TIMEOUT) as client:

        async def call(name: str, arguments: dict[str, Any], *, sign_in: bool = False) -> Paid:
            message = {
                "role": "user",
                "messageId": uuid.uuid4().hex,
                "parts": [{"kind": "data", "data": {"tool": name, "arguments": arguments}}],
            }
            request = {
                "jsonrpc": "2.0",
                "id": uuid.uuid4().hex,
                "method": "message/send",
                "params": {"message": message},
            }
            response = await client.post("/agent", json=request)
            if response.status_code != 200:
                raise CallFailed(f"HTTP {response.status_code}: {response.text[:300]}")
            task = response.json()["result"]
            data = task["artifacts"][0]["parts"][0]["data"]
            header = response.headers.get("PAYMENT-RESPONSE")
            return Paid(data, _settlement_from_header(header))

        yield call


#: The x402 payment fields of an A2A message's metadata (the a2a-x402 extension).
X402_STATUS, X402_REQUIRED, X402_PAYLOAD, X402_RECEIPTS, X402_ERROR = (
    "x402.payment.status",
    "x402.payment.required",
    "x402.payment.payload",
    "x402.payment.receipts",
    "x402.payment.error",
)


@asynccontextmanager
async def a2a_inband_caller(base: str, payer: Payer) -> AsyncIterator[Call]:
    """A2A ``message/send`` paid inside the conversation (the a2a-x402 extension, v0.2).

    Plain JSON-RPC: the extension the card declares is activated with the
    ``A2A-Extensions`` header; the message is answered with a task
    ``input-required`` carrying the requirements, which the payer signs and
    sends back on that task (``payment-submitted``); the completed task holds
    the tool's result and, on its status message, the settlement.
    """
    from x402.schemas import PaymentRequired, PaymentResponseContext

    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as client:
        card = (await client.get("/.well-known/agent-card.json")).json()
        declared = (card.get("capabilities") or {}).get("extensions") or []
        uris = [e.get("uri", "") for e in declared if "a2a-x402" in str(e.get("uri", ""))]

        async def send(message: dict[str, Any]) -> dict[str, Any]:
            request = {
                "jsonrpc": "2.0",
                "id": uuid.uuid4().hex,
                "method": "message/send",
                "params": {"message": message},
            }
            response = await client.post(
                "/agent", json=request, headers={"A2A-Extensions": uris[0]}
            )
            if response.status_code != 200:
                raise CallFailed(f"HTTP {response.status_code}: {response.text[:300]}")
            answer = response.json()
            if "error" in answer or not isinstance(answer.get("result"), dict):
                raise CallFailed(f"JSON-RPC error: {json.dumps(answer.get('error'))[:300]}")
            task: dict[str, Any] = answer["result"]
            return task

        def metadata_of(task: dict[str, Any]) -> dict[str, Any]:
            message = (task.get("status") or {}).get("message") or {}
            return message.get("metadata") or {}

        async def call(name: str, arguments: dict[str, Any], *, sign_in: bool = False) -> Paid:
            if not uris:
                raise CallFailed("the agent's card declares no a2a-x402 extension")
            task = await send(
                {
                    "role": "user",
                    "messageId": uuid.uuid4().hex,
                    "parts": [{"kind": "data", "data": {"tool": name, "arguments": arguments}}],
                }
            )
            asked = metadata_of(task)
            state = (task.get("status") or {}).get("state")
            if state != "input-required" or asked.get(X402_STATUS) != "payment-required":
                raise CallFailed(f"expected a payment-required task, got {state}")
            required = PaymentRequired.model_validate(asked[X402_REQUIRED])
            payload = await payer.x402.create_payment_payload(required)
            done = await send(
                {
                    "role": "user",
                    "messageId": uuid.uuid4().hex,
                    "taskId": task["id"],
                    "contextId": task["contextId"],
                    "parts": [{"kind": "text", "text": "Here is the payment authorization."}],
                    "metadata": {
                        X402_STATUS: "payment-submitted",
                        X402_PAYLOAD: payload.model_dump(
                            mode="json", by_alias=True, exclude_none=True
                        ),
                    },
                }
            )
            paid = metadata_of(done)
            state = (done.get("status") or {}).get("state")
            if state != "completed" or paid.get(X402_STATUS) != "payment-completed":
                raise CallFailed(
                    f"the task is {state} ({paid.get(X402_STATUS)}, {paid.get(X402_ERROR)})"
                )
            receipts = paid.get(X402_RECEIPTS) or [None]
            settlement = _settlement_of(receipts[0])
            if settlement is not None:  # as the SDK's HTTP client does after a settle response
                await payer.x402.handle_payment_response(
                    PaymentResponseContext(
                        payment_payload=payload,
                        requirements=payload.accepted,
                        settle_response=settlement,
                        payment_required=required,
                    )
                )
            data = done["artifacts"][0]["parts"][0]["data"]
            return Paid(data, settlement)

        yield call


CALLERS: dict[str, Callable[[str, Payer], AbstractAsyncContextManager[Call]]] = {
    "http": http_caller,
    "ws": ws_caller,
    "mcp": mcp_caller,
    "a2a": a2a_caller,
    "a2a-inband": a2a_inband_caller,
}


class Command(BaseCommand):
    help = "Make real paid calls to the running demo as two fresh payers and show isolation."
    requires_system_checks: list[str] = []  # a client: no database, no store needed

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=DEFAULT_URL, help=f"the demo (default {DEFAULT_URL})")
        parser.add_argument(
            "--transport",
            choices=TRANSPORTS,
            default="http",
            help="http (default), ws, mcp, a2a or a2a-inband (x402 inside the A2A conversation)",
        )
        parser.add_argument(
            "--scheme",
            choices=SCHEMES,
            default="exact",
            help="exact (default): each call pays its price, as two payers; "
            "batch: one payer pays every call through one payment channel",
        )
        parser.add_argument(
            "--calls",
            type=int,
            default=DEFAULT_CALLS,
            help=f"with --scheme batch: cheap calls after the demo's sequence ({DEFAULT_CALLS})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base = str(options["url"]).rstrip("/")
        transport = str(options["transport"])
        if urlsplit(base).scheme not in ("http", "https"):
            raise CommandError(f"--url must be an http(s) URL, got {base!r}")
        if options["calls"] < 0:
            raise CommandError("--calls must be 0 or more")
        self._prices = self._check_server(base)
        self._store = self._store_of(base)
        if options["scheme"] == "batch":
            failures = self._run_channel(base, transport, int(options["calls"]))
        else:
            failures = asyncio.run(self._run(base, transport))
        if failures:
            raise CommandError(
                "the demo did not behave as promised:\n  - " + "\n  - ".join(failures)
            )

    def _run_channel(self, base: str, transport: str, calls: int) -> list[str]:
        # Imported here: the channel client builds on this module's callers.
        from demo_project.channels_client import ChannelRun, offers_channels

        if not offers_channels(base):
            raise CommandError(
                f"{base} offers no payment channels (batch-settlement): "
                "is the demo running with AIXYZ_DEMO_CHANNELS=0?"
            )
        return asyncio.run(ChannelRun(self, base, transport, calls).run())

    def _check_server(self, base: str) -> dict[str, str]:
        try:
            response = httpx.get(f"{base}/tools/", timeout=10)
        except httpx.HTTPError as exc:
            raise CommandError(
                f"cannot reach the demo server at {base} ({type(exc).__name__}): "
                "is `make demo` running?"
            ) from None
        try:
            tools = {t["name"]: t.get("price") for t in response.json()["tools"]}
        except (ValueError, KeyError, TypeError):
            raise CommandError(
                f"{base}/tools/ answered HTTP {response.status_code} without a tool list: "
                "is this the demo server? (is `make demo` running?)"
            ) from None
        missing = [name for name in TOOLS if name not in tools]
        if missing:
            raise CommandError(f"{base} does not serve the demo tools {missing}: is it the demo?")
        return {name: str(tools[name]) for name in TOOLS}

    @staticmethod
    def _store_of(base: str) -> str:
        """The session store the demo reports on its index page ('' if it does not say)."""
        try:
            return str(httpx.get(f"{base}/", timeout=10).json().get("store", ""))
        except (httpx.HTTPError, ValueError, AttributeError):
            return ""

    async def _run(self, base: str, transport: str) -> list[str]:
        a, b = Payer("A"), Payer("B", prefer=B_NETWORK)
        out = self.stdout
        out.write(f"demo_call: {base} over {transport}; every call below is a paid x402 call")
        width = max(len(name) for name in TOOLS)
        for i, name in enumerate(TOOLS):
            out.write(f"  {'prices:' if i == 0 else '':<8}{name:<{width}}  {self._prices[name]}")
        out.write(f"  payer A: {a.address}  (fresh random key)")
        out.write(
            f"  payer B: {b.address}  (fresh random key; pays on {B_NETWORK} where offered)\n"
        )
        failures: list[str] = []
        receipts: dict[str, list[Receipt]] = {"A": [], "B": []}
        last: Receipt | None = None  # what the latest paid call settled
        step = 0

        async with AsyncExitStack() as stack:
            callers = {
                payer.label: await stack.enter_async_context(CALLERS[transport](base, payer))
                for payer in (a, b)
            }

            async def do(
                payer: Payer,
                name: str,
                arguments: dict[str, Any],
                title: str,
                *,
                sign_in: bool = False,
                refused: bool = False,
            ) -> Any:
                nonlocal step, last
                step += 1
                last = None
                shown = json.dumps(arguments, ensure_ascii=False)
                out.write(self.style.MIGRATE_HEADING(f"{step:>2}. payer {payer.label}: {title}"))
                out.write(f"    {name} {shown}" + ("  (signed in, no payment)" if sign_in else ""))
                payer.requirements = None
                try:
                    paid = await callers[payer.label](name, arguments, sign_in=sign_in)
                except CallFailed as exc:
                    if refused:
                        out.write(f"    -> refused, as it must be: {exc}")
                        return exc
                    out.write(self.style.ERROR(f"    !! {exc}"))
                    failures.append(f"step {step} ({name} as {payer.label}) failed: {exc}")
                    return None
                if sign_in:
                    shown_receipt = "  [signed in: no payment]"
                else:
                    last = receipt(paid, payer.requirements)
                    if last is None:
                        shown_receipt = f"  [paid {self._prices[name]}: no settlement reported]"
                        failures.append(f"step {step} ({name}): no settlement reported")
                    else:
                        receipts[payer.label].append(last)
                        shown_receipt = f"  [paid {last.label()}]"
                out.write(f"    -> {json.dumps(paid.result, ensure_ascii=False)}{shown_receipt}")
                return paid.result

            def expect(ok: bool, what: str) -> None:
                if not ok:
                    out.write(self.style.ERROR(f"    !! expected {what}"))
                    failures.append(f"step {step}: expected {what}")

            def expect_metered(result: Any) -> Receipt | None:
                """The summary's cost is what settled, below the authorized maximum."""
                settled = last
                cost = result.get("cost") if isinstance(result, dict) else None
                expect(
                    settled is not None
                    and settled.scheme == "upto"
                    and settled.dollars is not None
                    and f"${settled.dollars:f}" == cost
                    and settled.amount < settled.maximum,
                    f"the summary's cost {cost} settled, below the maximum (upto)",
                )
                return settled

            greeting, note = "hello from A", "A's private note"
            r = await do(a, PUT, {"key": "greeting", "value": greeting}, "store a greeting")
            expect(r == {"success": True, "key": "greeting", "value": greeting}, "it stored")
            r = await do(a, PUT, {"key": "note", "value": note}, "store a note")
            expect(r == {"success": True, "key": "note", "value": note}, "it stored")
            r = await do(a, GET, {"key": "greeting"}, "read the greeting back")
            expect(r == {"success": True, "key": "greeting", "value": greeting}, "A's greeting")
            r = await do(a, GET, {}, "list all of A's content")
            expect(
                r == {"success": True, "content": {"greeting": greeting, "note": note}, "count": 2},
                "both entries",
            )
            title = "list A's keys (offered on two networks: A pays on the first)"
            r = await do(a, KEYS, {}, title)
            expect(r == {"success": True, "keys": ["greeting", "note"], "count": 2}, "both keys")
            expect(last is not None and last.network != B_NETWORK, "A to pay on the first network")
            r = await do(a, SUMMARY, {}, "summarize A's session (metered: priced by its size)")
            size = len(greeting.encode()) + len(note.encode())
            expect(
                isinstance(r, dict) and (r.get("count"), r.get("bytes")) == (2, size),
                f"2 entries of {size} bytes",
            )
            a_summary = expect_metered(r)
            r = await do(b, GET, {}, "list all of B's content (B is a different payer)")
            b_listing_empty = r == {"success": True, "content": {}, "count": 0}
            expect(b_listing_empty, "B's session to be empty")
            r = await do(b, KEYS, {}, f"list B's keys, paying on {B_NETWORK}")
            b_keys_empty = r == {"success": True, "keys": [], "count": 0}
            expect(b_keys_empty, "no keys for B")
            expect(last is not None and last.network == B_NETWORK, f"B to pay on {B_NETWORK}")
            r = await do(b, SUMMARY, {}, "summarize B's session (empty: the smallest charge)")
            b_summary_empty = isinstance(r, dict) and (r.get("count"), r.get("bytes")) == (0, 0)
            expect(b_summary_empty, "B's summary to count nothing")
            b_summary = expect_metered(r)
            expect(
                a_summary is None or b_summary is None or b_summary.amount < a_summary.amount,
                "B's empty session to cost less to summarize than A's",
            )
            r = await do(b, GET, {"key": "greeting"}, "try to read A's key 'greeting'")
            b_read_refused = isinstance(r, dict) and r.get("success") is False
            expect(b_read_refused, "no content for B under 'greeting'")
            r = await do(b, PUT, {"key": "greeting", "value": "hello from B"}, "write the same key")
            expect(isinstance(r, dict) and r.get("success") is True, "B's own write to succeed")
            r = await do(a, GET, {"key": "greeting"}, "read the greeting again")
            a_untouched = r == {"success": True, "key": "greeting", "value": greeting}
            expect(a_untouched, "A's greeting to be unchanged by B's write")
            r = await do(a, PUT, {"key": "note", "value": None}, "delete the note (value null)")
            expect(r == {"success": True, "key": "note", "deleted": True}, "deleted: true")
            r = await do(a, GET, {"key": "note"}, "read the deleted note")
            expect(isinstance(r, dict) and r.get("success") is False, "no content under 'note'")
            if transport in ("a2a", "a2a-inband"):  # a message is always paid; sign-ins read tasks
                out.write(
                    "    (over A2A a message is always paid: the sign-in steps of the other "
                    "transports are skipped)"
                )
            else:
                title = "come back: read the greeting by signing in with the same wallet"
                r = await do(a, GET, {"key": "greeting"}, title, sign_in=True)
                expect(r == {"success": True, "key": "greeting", "value": greeting}, "A's greeting")
                stranger = Payer("C")
                async with CALLERS[transport](base, stranger) as callers["C"]:
                    title = "a wallet that never paid signs in"
                    r = await do(
                        stranger, GET, {"key": "greeting"}, title, sign_in=True, refused=True
                    )
                expect(isinstance(r, CallFailed), "the sign-in of a wallet that never paid refused")

        out.write("")
        for label, paid in receipts.items():
            out.write(f"Payer {label} settled {_total(paid)} in {len(paid)} payments")
        # The admin's Sessions pages work on every store (memory: this server's process).
        keys = f"{base}/admin/aixyz_sessions/storedsession/{quote(a.address.lower())}/"
        out.write(f"Payer A's entries in the admin: {keys}")
        if b_listing_empty and b_keys_empty and b_summary_empty and b_read_refused and a_untouched:
            out.write(
                self.style.SUCCESS(
                    "ISOLATION OK: payer B saw none of payer A's data, "
                    "and B's write did not touch A's session."
                )
            )
        else:
            out.write(self.style.ERROR("ISOLATION FAILED: payer B saw payer A's data."))
            failures.append("isolation between payer A and payer B failed")
        return failures


def _total(paid: list[Receipt]) -> str:
    """The payments' total in dollars, by network: ``$0.0331 (eip155:84532 $0.0321, ...)``."""
    by_network: dict[str, Decimal] = {}
    units = 0
    for item in paid:
        dollars = item.dollars
        if dollars is None:
            units += item.amount
        else:
            by_network[item.network] = by_network.get(item.network, Decimal(0)) + dollars
    text = f"${sum(by_network.values(), Decimal(0)).normalize():f}"
    if len(by_network) > 1:
        text += " (" + ", ".join(f"{n} ${v.normalize():f}" for n, v in by_network.items()) + ")"
    return text + (f" and {units} units of other tokens" if units else "")
