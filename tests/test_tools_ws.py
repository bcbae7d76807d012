"""The tools over WebSocket (channels), the payment gate, and the one ASGI app under uvicorn."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets
from channels.testing import WebsocketCommunicator  # type: ignore[import-untyped]
from django.test import override_settings
from x402.http import decode_payment_response_header, x402HTTPClient
from x402.schemas import PaymentRequired

from aixyz_sessions import get_payer, get_store
from aixyz_sessions.asgi import McpRouter, get_asgi_application
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.tools import ToolPaymentError, call_tool, registry
from tests.payments_helpers import (
    LOCAL,
    MIDDLEWARE,
    NETWORK,
    PAY_TO,
    assert_one_requirement,
    free_port,
    serve,
)
from tests.tools_app import Wallet, example_tools

pytestmark = pytest.mark.django_db

TIMEOUT = 5


@pytest.fixture(autouse=True)
def _tools() -> Iterator[None]:
    with (
        example_tools(),
        override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.tools_app", AIXYZ_X402=LOCAL),
    ):
        yield
    get_local_facilitator().ledger.fail_settlements = None


@pytest.fixture(scope="module")
def app() -> Any:
    # Django builds its middleware chain now; the app refuses settings that cannot work.
    with override_settings(MIDDLEWARE=MIDDLEWARE, AIXYZ_X402=LOCAL):
        return get_asgi_application()


@asynccontextmanager
async def connected(app: Any) -> AsyncIterator[WebsocketCommunicator]:
    communicator = WebsocketCommunicator(app, "/ws/tools/")
    accepted, _ = await communicator.connect(timeout=TIMEOUT)
    assert accepted
    try:
        yield communicator
    finally:
        await communicator.disconnect()


async def ask(ws: WebsocketCommunicator, message: Any) -> dict[str, Any]:
    if isinstance(message, str):
        await ws.send_to(text_data=message)
    else:
        await ws.send_json_to(message)
    reply: dict[str, Any] = await ws.receive_json_from(timeout=TIMEOUT)
    return reply


async def payment_for(ws: WebsocketCommunicator, wallet: Wallet, tool: str = "put") -> Any:
    """Ask without paying, then sign the requirements the error carries."""
    arguments = {} if tool == "whoami" else {"key": "k", "value": "v"}
    reply = await ask(ws, {"id": "probe", "tool": tool, "arguments": arguments})
    return await wallet.pay(reply["error"]["payment_required"])


async def test_free_call(app: Any) -> None:
    async with connected(app) as ws:
        reply = await ask(ws, {"id": 1, "tool": "echo", "arguments": {"text": "hi", "times": 2}})
        assert reply == {"id": 1, "result": {"text": "hihi", "payer": None, "session": False}}


async def test_paid_call_without_payment_carries_requirements(app: Any) -> None:
    async with connected(app) as ws:
        reply = await ask(ws, {"id": "a", "tool": "put", "arguments": {"key": "k", "value": "v"}})
    assert reply["id"] == "a" and "result" not in reply
    error = reply["error"]
    assert error["code"] == "payment_required" and "$0.01" in error["message"]
    required = assert_one_requirement(error["payment_required"], amount="10000")
    assert required.resource is not None and required.resource.url.endswith("/ws/tools/#put")


async def test_paid_call_with_payment_runs_in_payer_session_and_settles(app: Any) -> None:
    wallet = Wallet()
    async with connected(app) as ws:
        payment = await payment_for(ws, wallet)
        reply = await ask(
            ws,
            {
                "id": 2,
                "tool": "put",
                "arguments": {"key": "color", "value": "red"},
                "payment": payment,
            },
        )
        assert reply["result"] == {"payer": wallet.address, "key": "color"}, reply
        settle = decode_payment_response_header(reply["payment_response"])
        assert settle.success and settle.payer == wallet.address
        assert await get_store().get(wallet.address.lower(), "color") == "red"
        # the same connection, a free message right after: no payer leaks into it
        free = await ask(ws, {"id": 3, "tool": "echo", "arguments": {"text": "x"}})
        assert free["result"]["payer"] is None

        replay = await ask(
            ws,
            {
                "id": 4,
                "tool": "put",
                "arguments": {"key": "color", "value": "x"},
                "payment": payment,
            },
        )
        assert replay["error"]["code"] == "invalid_payment"
        assert "already" in replay["error"]["message"]  # the facilitator: nonce used
    assert await get_store().get(wallet.address.lower(), "color") == "red"


async def test_payment_header_string_is_accepted(app: Any) -> None:
    from x402.http import encode_payment_signature_header
    from x402.schemas import PaymentPayload

    wallet = Wallet()
    async with connected(app) as ws:
        payment = await payment_for(ws, wallet, "whoami")
        header = encode_payment_signature_header(PaymentPayload.model_validate(payment))
        reply = await ask(ws, {"id": 1, "tool": "whoami", "payment": header})
    assert reply["result"] == wallet.address


async def test_bad_arguments_never_spend_the_payment_but_a_failing_tool_does(app: Any) -> None:
    """Arguments are refused before the call starts; a tool that ran and failed spent it."""
    ledger = get_local_facilitator().ledger
    before = ledger.settled_count
    wallet = Wallet()
    async with connected(app) as ws:
        payment = await payment_for(ws, wallet)
        bad = await ask(ws, {"id": 1, "tool": "put", "arguments": {"key": 1}, "payment": payment})
        assert bad["error"]["code"] == "invalid_arguments"
        assert sorted(e["field"] for e in bad["error"]["errors"]) == ["key", "value"]
        # not started: the same authorization still pays once
        failed = await ask(
            ws, {"id": 2, "tool": "paid_explode", "arguments": {"reason": "r"}, "payment": payment}
        )
        assert failed["error"] == {"code": "tool_error", "message": "exploded: r"}
        assert ledger.settled_count == before
        # the tool ran and failed: uncharged, and that payment cannot start another call
        again = await ask(ws, {"id": 3, "tool": "whoami", "payment": payment})
        assert again["error"]["code"] == "invalid_payment"
        assert again["error"]["message"] == REPLAYED
    assert ledger.settled_count == before


async def test_invalid_payment_gives_reason_and_requirements(app: Any) -> None:
    wallet = Wallet()
    async with connected(app) as ws:
        payment = await payment_for(ws, wallet)
        payment["payload"]["authorization"]["value"] = "1"
        reply = await ask(ws, {"id": 1, "tool": "whoami", "payment": payment})
    error = reply["error"]
    assert error["code"] == "invalid_payment" and error["message"]
    assert PaymentRequired.model_validate(error["payment_required"]).accepts


async def test_settlement_failure_withholds_result(app: Any) -> None:
    wallet = Wallet()
    async with connected(app) as ws:
        payment = await payment_for(ws, wallet)
        get_local_facilitator().ledger.fail_settlements = "transfer amount exceeds balance"
        reply = await ask(
            ws,
            {"id": 1, "tool": "put", "arguments": {"key": "k", "value": "v"}, "payment": payment},
        )
    assert "result" not in reply and reply["error"]["code"] == "settlement_failed"
    assert decode_payment_response_header(reply["error"]["payment_response"]).success is False


@pytest.mark.parametrize(
    ("message", "reply_id", "code"),
    [
        ("{not json", None, "invalid_message"),
        ("[1, 2]", None, "invalid_message"),
        ({"tool": "echo"}, None, "invalid_message"),
        ({"id": True, "tool": "echo"}, None, "invalid_message"),
        ({"id": 1.5, "tool": "echo"}, None, "invalid_message"),
        ({"id": "", "tool": "echo"}, None, "invalid_message"),
        ({"id": 1}, 1, "invalid_message"),
        ({"id": 1, "tool": 7}, 1, "invalid_message"),
        ({"id": 1, "tool": "nope"}, 1, "unknown_tool"),
        ({"id": 1, "tool": "echo", "arguments": [1]}, 1, "invalid_arguments"),
        ({"id": 1, "tool": "echo", "arguments": {"text": 3}}, 1, "invalid_arguments"),
        ({"id": 1, "tool": "explode", "arguments": {"reason": "x"}}, 1, "tool_error"),
        ({"id": 1, "tool": "whoami", "payment": 5}, 1, "invalid_payment"),
        ({"id": 1, "tool": "whoami", "payment": "%%%"}, 1, "invalid_payment"),
        ({"id": 1, "tool": "whoami", "payment": {"x402Version": 2}}, 1, "invalid_payment"),
        ({"id": 1, "tool": "whoami", "payment": {"x402Version": 1}}, 1, "invalid_payment"),
    ],
)
async def test_malformed_messages_get_errors_and_connection_stays_usable(
    app: Any, message: Any, reply_id: Any, code: str
) -> None:
    async with connected(app) as ws:
        reply = await ask(ws, message)
        assert reply["id"] == reply_id and reply["error"]["code"] == code, reply
        assert reply["error"]["message"]
        await ws.send_to(bytes_data=b"\x00binary")
        binary = await ws.receive_json_from(timeout=TIMEOUT)
        assert binary["error"]["code"] == "invalid_message"
        ok = await ask(ws, {"id": "after", "tool": "echo", "arguments": {"text": "ok"}})
        assert ok["result"]["text"] == "ok"


async def test_concurrent_connections_and_messages_do_not_leak_payer(app: Any) -> None:
    wallets = [Wallet() for _ in range(3)]
    async with connected(app) as w0, connected(app) as w1, connected(app) as w2:
        sockets = [w0, w1, w2]
        payments = [
            [await payment_for(ws, wallet, "whoami") for _ in range(2)]
            for ws, wallet in zip(sockets, wallets, strict=True)
        ]
        for round_ in range(2):
            for i, ws in enumerate(sockets):
                await ws.send_json_to(
                    {
                        "id": f"{i}-{round_}",
                        "tool": "whoami",
                        "arguments": {"delay": 0.05 * (3 - i)},
                        "payment": payments[i][round_],
                    }
                )
                await ws.send_json_to(
                    {"id": f"free-{i}-{round_}", "tool": "echo", "arguments": {"text": "x"}}
                )
        for i, ws in enumerate(sockets):
            replies = {}
            for _ in range(4):
                reply = await ws.receive_json_from(timeout=TIMEOUT)
                replies[reply["id"]] = reply
            for round_ in range(2):
                assert replies[f"{i}-{round_}"]["result"] == wallets[i].address
                assert replies[f"free-{i}-{round_}"]["result"]["payer"] is None
    assert get_payer() is None


async def test_gate_directly() -> None:
    put = registry.get("put")
    assert put is not None
    with pytest.raises(ToolPaymentError) as info:
        await call_tool(put, {"key": "k", "value": "v"})
    assert info.value.code == "payment_required"
    assert info.value.payment_required is not None
    wallet = Wallet()
    payment = await wallet.pay(info.value.to_dict()["payment_required"])
    outcome = await call_tool(put, {"key": "k", "value": "v"}, payment)
    assert outcome.payer == wallet.address and outcome.settlement is not None
    assert outcome.settlement.success and outcome.payment_response
    echo = registry.get("echo")
    assert echo is not None
    free = await call_tool(echo, {"text": "t"}, payment)  # a payment for a free tool is ignored
    assert free.payment_response is None and free.result["payer"] is None


async def test_concurrent_replay_only_one_wins() -> None:
    whoami = registry.get("whoami")
    assert whoami is not None
    wallet = Wallet()
    with pytest.raises(ToolPaymentError) as info:
        await call_tool(whoami, {})
    payment = await wallet.pay(info.value.to_dict()["payment_required"])
    outcomes = await asyncio.gather(
        *(call_tool(whoami, {"delay": 0.05}, payment) for _ in range(4)), return_exceptions=True
    )
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    losses = [o for o in outcomes if isinstance(o, ToolPaymentError)]
    assert [w.result for w in wins] == [wallet.address]
    assert [loss.message for loss in losses] == [REPLAYED] * 3


async def test_facilitator_down_is_unavailable(app: Any) -> None:
    wallet = Wallet()
    async with connected(app) as ws:
        payment = await payment_for(ws, wallet, "whoami")
        down = {
            "PAY_TO": PAY_TO,
            "NETWORK": NETWORK,
            "FACILITATOR_URL": f"http://127.0.0.1:{free_port()}",
        }
        with override_settings(AIXYZ_X402={**down, "FACILITATOR_TIMEOUT": 2}):
            reply = await ask(ws, {"id": 1, "tool": "whoami", "payment": payment})
            unpaid = await ask(ws, {"id": 2, "tool": "whoami"})
    assert reply["error"]["code"] == "facilitator_unavailable"
    assert unpaid["error"]["code"] == "facilitator_unavailable"


# --- the ASGI app: routing, lifespan, a real server -------------------------------------


async def _http(app: Any, path: str) -> tuple[int, bytes]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get(path)
        return response.status_code, response.content


async def test_mcp_prefix_routing_with_a_stand_in_app() -> None:
    seen: list[str] = []

    async def mcp(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"mcp"})

    async def django(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"django"})

    router = McpRouter(django, loader=lambda: mcp)
    for path, expected in [
        ("/mcp", b"mcp"),
        ("/mcp/", b"mcp"),
        ("/mcp/x", b"mcp"),
        ("/mcpx", b"django"),
        ("/tools/", b"django"),
    ]:
        assert await _http(router, path) == (200, expected)
    assert seen == ["/mcp", "/mcp/", "/mcp/x"]


async def test_lifespan_is_acknowledged(app: Any) -> None:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message)

    await inbox.put({"type": "lifespan.startup"})
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send), TIMEOUT
    )
    assert [m["type"] for m in outbox] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [(None, True), (b"http://testserver", True), (b"http://evil.example", False)],
)
async def test_browser_origins_must_be_allowed_hosts(origin: bytes | None, accepted: bool) -> None:
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        app = get_asgi_application()
    headers = [] if origin is None else [(b"origin", origin)]
    communicator = WebsocketCommunicator(app, "/ws/tools/", headers=headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected is accepted
    await communicator.disconnect()


def test_module_application_is_built_once() -> None:
    from aixyz_sessions import asgi

    assert asgi.application is asgi.application
    with pytest.raises(AttributeError):
        _ = asgi.nothing_here


async def test_django_through_the_asgi_app(app: Any) -> None:
    status, content = await _http(app, "/tools/")
    assert status == 200 and "tools" in json.loads(content)


@pytest.fixture(scope="module")
def server(app: Any) -> Iterator[str]:
    with serve(app, lifespan="on") as base:
        address = base.removeprefix("http://")
        yield address


async def ws_ask(ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return reply


async def test_real_server_http_and_websocket_share_the_payer_session(server: str) -> None:
    alice, bob = Wallet(), Wallet()
    base = f"http://{server}"
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        listing = await http.get("/tools/")
        assert "put" in {t["name"] for t in listing.json()["tools"]}
        arguments = {"key": "note", "value": "from http"}
        unpaid = await http.post("/tools/put", json=arguments)
        assert unpaid.status_code == 402
        headers, _ = await x402HTTPClient(alice.client).handle_402_response(
            dict(unpaid.headers), unpaid.content, base + "/tools/put"
        )
        paid = await http.post("/tools/put", json=arguments, headers=headers)
        assert paid.status_code == 200, paid.text
        assert paid.json() == {"result": {"payer": alice.address, "key": "note"}}

    async with websockets.connect(f"ws://{server}/ws/tools/") as ws:
        free = await ws_ask(ws, {"id": 1, "tool": "echo", "arguments": {"text": "x"}})
        assert free["result"]["payer"] is None
        for wallet, expected in [(alice, "from http"), (bob, None)]:
            probe = await ws_ask(ws, {"id": 2, "tool": "get", "arguments": {"key": "note"}})
            payment = await wallet.pay(probe["error"]["payment_required"])
            reply = await ws_ask(
                ws, {"id": 3, "tool": "get", "arguments": {"key": "note"}, "payment": payment}
            )
            assert reply["result"] == {"payer": wallet.address, "value": expected}, reply
            assert decode_payment_response_header(reply["payment_response"]).success
        # the connection survives a malformed message
        await ws.send("not json")
        assert json.loads(await ws.recv())["error"]["code"] == "invalid_message"
        assert (await ws_ask(ws, {"id": 4, "tool": "echo", "arguments": {"text": "y"}}))["result"]


MCP_PRESENT = importlib.util.find_spec("aixyz_sessions.tools.mcp") is not None


@pytest.mark.skipif(not MCP_PRESENT, reason="mcp module not present")
async def test_real_server_routes_mcp_to_the_mcp_app(server: str) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-03-26",
            "capabilities": {},
            "clientInfo": {"name": "tests", "version": "1"},
        },
    }
    async with httpx.AsyncClient(base_url=f"http://{server}", timeout=TIMEOUT) as http:
        response = await http.post(
            "/mcp",
            json=initialize,
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert response.status_code == 200, response.text
    assert "serverInfo" in response.text
