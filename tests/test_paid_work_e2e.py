"""What a payment buys, attacked against the real demo server (uvicorn, its one ASGI app).

The rules (DESIGN.md, "What a payment buys"): one authorization starts one
unit of work, and once started it is spent, settled or not; a call that is
not charged delivers nothing of its work; a tool costs its own price
wherever it is called; a sign-in names an origin this server owns; a kept
answer dies with its authorization. Each test here is an attack that worked
before those rules were kept, run as a client would run it: over loopback,
paying with the x402 SDK, against one demo process or two sharing Redis.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.extensions.sign_in_with_x import create_siwx_payload, encode_siwx_header
from x402.http import decode_payment_required_header, encode_payment_signature_header
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.exact import register_exact_evm_client

from aixyz_sessions.payments.sign_in import declaration
from tests.demo_server import DemoServer, demo_server
from tests.services import need_redis

GET, PUT = "get-content", "put-content"
SECRET = "the victim's own data"
EVIL = "evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("paid-work")) as running:
        yield running


async def _paid_put(base: str, account: LocalAccount, key: str, value: str) -> None:
    signer = x402Client()
    register_exact_evm_client(signer, account)
    async with x402HttpxClient(signer, base_url=base, timeout=30) as http:
        response = await http.post(f"/tools/{PUT}", json={"key": key, "value": value})
    assert response.status_code == 200, response.text


# -- a sign-in names an origin this server owns ----------------------------------------------


async def _phished_sign_in(victim: LocalAccount, host: str = EVIL) -> str:
    """What a site at ``host`` gets the victim to sign: an ordinary sign-in for itself.

    The message is the one that site's own 402 would offer for the same path
    (a fresh nonce, its domain, the chain the demo uses).
    """
    offer = declaration(
        f"/tools/{GET}", origin=f"http://{host}", network="eip155:84532", max_age=300
    )
    info = {**offer["info"], "chainId": "eip155:84532", "type": "eip191"}
    payload = await create_siwx_payload(info, victim, f"http://{host}/tools/{GET}")
    return encode_siwx_header(payload)


@asynccontextmanager
async def _socket_as(base: str, host: str | None = None) -> AsyncIterator[Any]:
    """A WebSocket to ``base``'s server whose ``Host`` header says ``host`` (no ``Origin``).

    ``None``: the server's own ``host:port``.
    """
    port = urlsplit(base).port
    netloc = host or urlsplit(base).netloc
    async with websockets.connect(
        f"ws://{netloc}/ws/tools/", host="127.0.0.1", port=port, max_size=None
    ) as ws:
        yield ws


async def _ask(ws: Any, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    return reply


async def _phishing_reads_nothing(victim_server: DemoServer, attacked: DemoServer) -> None:
    victim = Account.create()
    await _paid_put(victim_server.url, victim, "secret", SECRET)
    header = await _phished_sign_in(victim)
    read = {"id": 1, "tool": GET, "arguments": {}, "sign_in": header}
    # The socket that names the phishing site's host is not let in at all ...
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with _socket_as(attacked.url, EVIL) as ws:
            stolen = await _ask(ws, read)
            pytest.fail(f"a socket for {EVIL} was served: {stolen}")
    assert refused.value.response.status_code == 403
    # ... and on a socket for this server's own name the message is for another site.
    async with _socket_as(attacked.url) as ws:
        reply = await _ask(ws, read)
    assert "result" not in reply and reply["error"]["code"] == "invalid_sign_in", reply
    assert SECRET not in json.dumps(reply)


async def test_a_sign_in_phished_for_another_site_reads_nothing_over_websocket(
    server: DemoServer,
) -> None:
    """evil.example had a payer sign its own sign-in; replayed here with ``Host: evil.example``."""
    await _phishing_reads_nothing(server, server)


@contextmanager
def _two_workers_over_redis(folder: Path) -> Iterator[tuple[DemoServer, DemoServer]]:
    """Two demo processes whose sessions and claims live in one Redis (two workers)."""
    need_redis()
    env = {"AIXYZ_DEMO_STORE": "cache"}
    for name in ("a", "b"):
        (folder / name).mkdir()
    with (
        demo_server(folder / "a", env, name="first") as first,
        demo_server(folder / "b", env, name="second") as second,
    ):
        yield first, second


@pytest.mark.redis
async def test_a_phished_sign_in_reads_nothing_on_two_workers_over_redis(tmp_path: Path) -> None:
    with _two_workers_over_redis(tmp_path) as (first, second):
        await _phishing_reads_nothing(first, second)
        await _phishing_reads_nothing(second, first)


async def test_the_victims_own_sign_in_still_reads_over_websocket(server: DemoServer) -> None:
    """The honest path through the same checks: a sign-in for this server's origin."""
    from aixyz_sessions.testing.paying import sign_in_header

    victim = Account.create()
    await _paid_put(server.url, victim, "secret", SECRET)
    async with _socket_as(server.url) as ws:
        asked = await _ask(ws, {"id": 1, "tool": GET, "arguments": {"key": "secret"}})
        offer = asked["error"]["payment_required"]
        header = await sign_in_header(victim, offer, f"{server.url}/tools/{GET}")
        reply = await _ask(
            ws, {"id": 2, "tool": GET, "arguments": {"key": "secret"}, "sign_in": header}
        )
    assert reply["result"] == {"success": True, "key": "secret", "value": SECRET}


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1:1", "LOCALHOST.:9"])
async def test_a_sign_in_for_another_port_of_an_allowed_name_reads_nothing(
    server: DemoServer, host: str
) -> None:
    """ALLOWED_HOSTS names hosts, not ports: another service on localhost is not this server."""
    from tests.mcp_helpers import connect

    victim = Account.create()
    await _paid_put(server.url, victim, "secret", SECRET)
    header = await _phished_sign_in(victim, host)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as plain:
        over_http = await plain.post(
            f"/tools/{GET}", json={}, headers={"Host": host, "SIGN-IN-WITH-X": header}
        )
    assert over_http.status_code in (400, 402) and SECRET not in over_http.text, over_http.text
    async with _socket_as(server.url, host) as ws:
        over_ws = await _ask(ws, {"id": 1, "tool": GET, "arguments": {}, "sign_in": header})
    assert "result" not in over_ws and SECRET not in json.dumps(over_ws), over_ws
    async with connect(server.url, headers={"Host": host}) as session:
        over_mcp = await session.call_tool(GET, {}, meta={"x402/sign-in": header})
    assert over_mcp.isError and SECRET not in str(over_mcp.content), over_mcp.content


def test_a_host_outside_allowed_hosts_gets_no_http_answer_either(server: DemoServer) -> None:
    """The same rule as Django's for HTTP (so the transports agree)."""
    response = httpx.get(f"{server.url}/tools/", headers={"Host": EVIL}, timeout=10)
    assert response.status_code == 400


# -- A2A: one message, one tool at its price; a failed turn is empty and spent ---------------


def _message(*parts: dict[str, Any], method: str = "message/send") -> dict[str, Any]:
    message = {"role": "user", "messageId": uuid.uuid4().hex, "parts": list(parts)}
    return {
        "jsonrpc": "2.0",
        "id": uuid.uuid4().hex,
        "method": method,
        "params": {"message": message},
    }


def _invoke(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"kind": "data", "data": {"tool": tool, "arguments": arguments}}


async def _payment_for(base: str, body: dict[str, Any], account: LocalAccount) -> dict[str, str]:
    """The PAYMENT-SIGNATURE header for ``body``'s 402, signed by ``account`` (SDK client)."""
    async with httpx.AsyncClient(timeout=30) as plain:
        asked = await plain.post(f"{base}/agent", json=body)
    assert asked.status_code == 402, asked.text
    signer = x402Client()
    register_exact_evm_client(signer, account)
    required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
    payload = await signer.create_payment_payload(required)
    return {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}


async def _signed_in_tasks(base: str, account: LocalAccount) -> list[dict[str, Any]]:
    from aixyz_sessions.testing.paying import sign_in_header

    body = {"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}
    headers = {"A2A-Version": "1.0"}
    async with httpx.AsyncClient(timeout=30) as plain:
        asked = await plain.post(f"{base}/agent", json=body, headers=headers)
        header = await sign_in_header(account, asked.headers["PAYMENT-REQUIRED"], f"{base}/agent")
        listed = await plain.post(
            f"{base}/agent", json=body, headers={**headers, "SIGN-IN-WITH-X": header}
        )
    assert listed.status_code == 200, listed.text
    tasks: list[dict[str, Any]] = listed.json()["result"].get("tasks", [])
    return tasks


async def test_one_a2a_message_cannot_run_a_tool_beside_one_that_fails(server: DemoServer) -> None:
    """[get-content, no-such-tool] once answered 422 carrying get-content's result, 5 times over."""
    victim = Account.create()
    await _paid_put(server.url, victim, "secret", SECRET)
    body = _message(_invoke(GET, key="secret"), _invoke("no-such-tool"))
    async with httpx.AsyncClient(timeout=30) as plain:
        unpaid = await plain.post(f"{server.url}/agent", json=body)
        assert unpaid.status_code == 400 and "at most one tool" in unpaid.text
        # With the victim's own payment for a proper message: still nothing runs.
        headers = await _payment_for(server.url, _message(_invoke(GET, key="secret")), victim)
        for _ in range(5):
            replay = await plain.post(f"{server.url}/agent", json=body, headers=headers)
            assert replay.status_code == 400, replay.text
            assert SECRET not in replay.text and "PAYMENT-RESPONSE" not in replay.headers
    assert await _signed_in_tasks(server.url, victim) == []


async def _failed_turn_is_spent(paid_on: DemoServer, replayed_on: DemoServer) -> None:
    payer = Account.create()
    body = _message(_invoke(PUT, key="k" * 600, value="too long a key for the store"))
    headers = await _payment_for(paid_on.url, body, payer)
    async with httpx.AsyncClient(timeout=30) as plain:
        failed = await plain.post(f"{paid_on.url}/agent", json=body, headers=headers)
        assert failed.status_code == 422, failed.text
        task = failed.json()["result"]
        assert task["status"]["state"] == "failed" and "artifacts" not in task
        assert "PAYMENT-RESPONSE" not in failed.headers
        for server in (paid_on, replayed_on):
            again = await plain.post(f"{server.url}/agent", json=body, headers=headers)
            assert again.status_code == 402, again.text
            assert "already used" in again.json()["reason"]
    for server in (paid_on, replayed_on):
        assert await _signed_in_tasks(server.url, payer) == []


async def test_a_failed_a2a_turn_is_empty_and_its_payment_spent(server: DemoServer) -> None:
    await _failed_turn_is_spent(server, server)


@pytest.mark.redis
async def test_a_failed_a2a_turn_is_spent_on_two_workers_over_redis(tmp_path: Path) -> None:
    with _two_workers_over_redis(tmp_path) as (first, second):
        await _failed_turn_is_spent(first, second)
        await _failed_turn_is_spent(second, first)


async def test_a_tool_over_a2a_costs_its_own_price(server: DemoServer) -> None:
    """put-content is $0.01 over HTTP, WebSocket and MCP: a message invoking it is too."""
    async with httpx.AsyncClient(timeout=30) as plain:
        for tool, arguments, amount in (
            (PUT, {"key": "k", "value": "v"}, "10000"),
            (GET, {"key": "k"}, "1000"),
        ):
            asked = await plain.post(
                f"{server.url}/agent", json=_message(_invoke(tool, **arguments))
            )
            required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
            # The tool's price, and the same through a payment channel (the demo's default).
            assert [(a.scheme, a.amount) for a in required.accepts] == [
                ("exact", amount),
                ("batch-settlement", amount),
            ]


@pytest.mark.parametrize("method", [["message/send"], {"m": "message/send"}, 1, None])
def test_a_json_rpc_method_that_is_not_a_string_is_refused(server: DemoServer, method: Any) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}
    response = httpx.post(f"{server.url}/agent", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == -32600


# -- kept answers: the same in every tool transport's shape, and no longer than validBefore --


def _with_payment_id(required: Any, account: LocalAccount, *, valid_for: int | None = None) -> Any:
    """A payment for ``required`` carrying a fresh payment identifier (x402 payment-identifier).

    ``valid_for``: seconds until its ``validBefore`` (default: the requirements' own).
    """
    from x402.extensions.payment_identifier import (
        append_payment_identifier_to_extensions,
        generate_payment_id,
    )
    from x402.mechanisms.evm.exact.client import ExactEvmScheme
    from x402.mechanisms.evm.signers import EthAccountSigner
    from x402.schemas import PaymentPayload

    extensions = dict(required.extensions or {})
    append_payment_identifier_to_extensions(extensions, generate_payment_id())
    accepted = required.accepts[0]
    signing = accepted
    if valid_for is not None:
        signing = accepted.model_copy(update={"max_timeout_seconds": valid_for})
    inner = ExactEvmScheme(EthAccountSigner(account)).create_payment_payload(signing)
    return PaymentPayload(
        x402_version=2,
        payload=inner,
        accepted=accepted,
        resource=required.resource,
        extensions={k: v for k, v in extensions.items() if k == "payment-identifier"},
    )


async def test_a_call_paid_over_websocket_and_retried_over_mcp_gets_its_answer(
    server: DemoServer,
) -> None:
    from x402.schemas import PaymentRequired

    from tests.mcp_helpers import connect

    account = Account.create()
    args = {"key": "k", "value": "once, over ws"}
    async with _socket_as(server.url) as ws:
        asked = await _ask(ws, {"id": 1, "tool": PUT, "arguments": args})
        required = PaymentRequired.model_validate(asked["error"]["payment_required"])
        payment = _with_payment_id(required, account).model_dump(by_alias=True, exclude_none=True)
        first = await _ask(ws, {"id": 2, "tool": PUT, "arguments": args, "payment": payment})
    assert first["result"] == {"success": True, "key": "k", "value": "once, over ws"}, first
    async with connect(server.url) as session:
        retried = await session.call_tool(PUT, args, meta={"x402/payment": payment})
    assert not retried.isError, retried.content
    assert json.loads(retried.content[0].text) == first["result"]  # type: ignore[union-attr]
    settlement = (retried.meta or {})["x402/payment-response"]
    assert settlement["success"] is True and settlement["payer"] == account.address


async def test_a_call_paid_over_mcp_and_retried_over_websocket_gets_its_answer(
    server: DemoServer,
) -> None:
    from tests.mcp_helpers import connect, payment_required

    account = Account.create()
    args = {"key": "k", "value": "once, over mcp"}
    async with connect(server.url) as session:
        required = payment_required(await session.call_tool(PUT, args))
        assert required is not None
        payment = _with_payment_id(required, account).model_dump(by_alias=True, exclude_none=True)
        first = await session.call_tool(PUT, args, meta={"x402/payment": payment})
    assert not first.isError, first.content
    async with _socket_as(server.url) as ws:
        retried = await _ask(ws, {"id": 1, "tool": PUT, "arguments": args, "payment": payment})
    assert retried["result"] == json.loads(first.content[0].text)  # type: ignore[union-attr]
    assert retried["result"] == {"success": True, "key": "k", "value": "once, over mcp"}
    assert retried["payment_response"]


async def _http_payment_with_id(base: str, args: dict[str, Any], account: LocalAccount) -> Any:
    """A payment (with a payment identifier) for ``PUT`` as the HTTP tool endpoint asks."""
    from x402.schemas import PaymentRequired

    async with httpx.AsyncClient(base_url=base, timeout=30) as plain:
        asked = await plain.post(f"/tools/{PUT}", json=args)
    required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
    assert isinstance(required, PaymentRequired)
    return _with_payment_id(required, account)


async def test_a_tool_call_paid_over_http_is_one_call_on_every_transport(
    server: DemoServer,
) -> None:
    """Paid over HTTP, retried with the same payment over WebSocket, MCP and HTTP: the kept
    answer each time, in that transport's shape; with other arguments, a 409."""
    from x402.http import decode_payment_response_header

    from tests.mcp_helpers import connect

    account = Account.create()
    args = {"key": "k", "value": "once, over http"}
    payment = await _http_payment_with_id(server.url, args, account)
    header = encode_payment_signature_header(payment)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as plain:
        first = await plain.post(f"/tools/{PUT}", json=args, headers={"PAYMENT-SIGNATURE": header})
        assert first.status_code == 200, first.text
        again = await plain.post(f"/tools/{PUT}", json=args, headers={"PAYMENT-SIGNATURE": header})
        other = await plain.post(
            f"/tools/{PUT}",
            json={**args, "value": "twice?"},
            headers={"PAYMENT-SIGNATURE": header},
        )
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["PAYMENT-RESPONSE"] == first.headers["PAYMENT-RESPONSE"]
    assert other.status_code == 409 and other.json()["error"] == "payment_identifier_conflict"
    receipt = decode_payment_response_header(first.headers["PAYMENT-RESPONSE"])
    wire = payment.model_dump(by_alias=True, exclude_none=True)
    async with _socket_as(server.url) as ws:
        over_ws = await _ask(ws, {"id": 1, "tool": PUT, "arguments": args, "payment": wire})
    assert over_ws["result"] == first.json()["result"], over_ws
    assert over_ws["payment_response"] == first.headers["PAYMENT-RESPONSE"]
    async with connect(server.url) as session:
        over_mcp = await session.call_tool(PUT, args, meta={"x402/payment": wire})
    assert not over_mcp.isError, over_mcp.content
    assert json.loads(over_mcp.content[0].text) == first.json()["result"]  # type: ignore[union-attr]
    settled = (over_mcp.meta or {})["x402/payment-response"]
    assert settled["transaction"] == receipt.transaction and settled["payer"] == account.address


async def test_a_tool_call_paid_over_websocket_is_answered_again_over_http(
    server: DemoServer,
) -> None:
    from x402.schemas import PaymentRequired

    account = Account.create()
    args = {"key": "k", "value": "once, over ws, then http"}
    async with _socket_as(server.url) as ws:
        asked = await _ask(ws, {"id": 1, "tool": PUT, "arguments": args})
        required = PaymentRequired.model_validate(asked["error"]["payment_required"])
        payment = _with_payment_id(required, account)
        wire = payment.model_dump(by_alias=True, exclude_none=True)
        first = await _ask(ws, {"id": 2, "tool": PUT, "arguments": args, "payment": wire})
    assert "result" in first, first
    header = encode_payment_signature_header(payment)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as plain:
        over_http = await plain.post(
            f"/tools/{PUT}", json=args, headers={"PAYMENT-SIGNATURE": header}
        )
    assert over_http.status_code == 200, over_http.text
    assert over_http.json() == {"result": first["result"]}
    assert over_http.headers["PAYMENT-RESPONSE"] == first["payment_response"]


async def test_an_a2a_message_and_a_tool_call_are_different_calls(server: DemoServer) -> None:
    """An agent message's payment identifier retried as a tool call is a 409, not its answer;
    retried as the same message it gets the message's kept answer."""
    from x402.schemas import PaymentRequired

    account = Account.create()
    args = {"key": "k", "value": "over a2a"}
    body = _message(_invoke(PUT, **args))
    async with httpx.AsyncClient(timeout=30) as plain:
        asked = await plain.post(f"{server.url}/agent", json=body)
        required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        payment = _with_payment_id(required, account)
        headers = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payment)}
        first = await plain.post(f"{server.url}/agent", json=body, headers=headers)
        again = await plain.post(f"{server.url}/agent", json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert again.status_code == 200 and again.content == first.content
    assert again.headers["PAYMENT-RESPONSE"] == first.headers["PAYMENT-RESPONSE"]
    wire = payment.model_dump(by_alias=True, exclude_none=True)
    async with _socket_as(server.url) as ws:
        as_tool = await _ask(ws, {"id": 1, "tool": PUT, "arguments": args, "payment": wire})
    assert as_tool["error"]["code"] == "payment_identifier_conflict", as_tool


async def test_a_kept_answer_dies_with_its_authorization(server: DemoServer) -> None:
    """A header seen by someone else buys nothing once its validBefore has passed."""
    account = Account.create()
    args = {"key": "secret", "value": SECRET}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as plain:
        asked = await plain.post(f"/tools/{PUT}", json=args)
        required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
        payment = _with_payment_id(required, account, valid_for=8)
        headers = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payment)}
        first = await plain.post(f"/tools/{PUT}", json=args, headers=headers)
        assert first.status_code == 200, first.text
        kept = await plain.post(f"/tools/{PUT}", json=args, headers=headers)
        assert kept.status_code == 200 and kept.text == first.text  # a retry, in time
        valid_before = int(payment.payload["authorization"]["validBefore"])
        await asyncio.sleep(max(0.0, valid_before - time.time()) + 1.5)
        late = await plain.post(f"/tools/{PUT}", json=args, headers=headers)
    assert late.status_code == 402, late.text
    assert SECRET not in late.text


async def test_a_payment_given_to_mcp_as_deep_json_text_is_refused(server: DemoServer) -> None:
    """The x402 MCP transport takes the payment as JSON text too; the SDK's wrapper parses it
    unbounded (fatal under py_ecc's recursion limit), so it is bounded first."""
    from tests.mcp_helpers import connect

    async with connect(server.url) as session:
        for payment in ("[" * 200_000, "[" * 10_000 + "]" * 10_000, "x" * 20_000):
            result = await session.call_tool(GET, {"key": "k"}, meta={"x402/payment": payment})
            assert result.isError, result.content
            assert (result.structuredContent or {}).get("error") == "invalid_payment"
    async with httpx.AsyncClient(timeout=10) as plain:
        assert (await plain.get(f"{server.url}/tools/")).status_code == 200
