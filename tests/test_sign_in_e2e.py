"""Sign-in against real demo servers (uvicorn), as a client would, with the SDK's helpers.

A payer pays ``put-content`` once; ``get-content`` (``sign_in="after_any_payment"``)
then lets the same wallet read with a ``SIGN-IN-WITH-X`` header and no
payment, also on a second worker process (two servers over one database, or
one Redis). The attacks: a wallet that never paid, a replayed sign-in (on the
same and on the other worker), a signature claiming the victim, a sign-in
sent to a tool that takes none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402.extensions.sign_in_with_x import SIGN_IN_WITH_X, create_siwx_payload, encode_siwx_header
from x402.http import decode_payment_required_header

from aixyz_sessions.testing.paying import sign_in_header
from tests.demo_server import DemoServer, demo_server
from tests.services import need_redis

GET, PUT = "/tools/get-content", "/tools/put-content"
#: The one public origin both worker processes serve (as behind a load balancer).
ORIGIN = "http://agent.example"
WORKERS = {"X402_ORIGIN": ORIGIN}


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoServer, DemoServer]]:
    """Two demo processes over one SQLite database (the default database store)."""
    folder = tmp_path_factory.mktemp("sign-in")
    with (
        demo_server(folder, WORKERS, name="first") as first,
        demo_server(folder, WORKERS, name="second") as second,
    ):
        yield first, second


def _offer(server: DemoServer, path: str = GET) -> str:
    asked = httpx.post(f"{server.url}{path}", json={"key": "k"}, timeout=10)
    assert asked.status_code == 402, asked.text
    return asked.headers["PAYMENT-REQUIRED"]


def _sign_in(server: DemoServer, account: LocalAccount, path: str = GET) -> str:
    """A sign-in for the public URL (``ORIGIN``) of ``path``, as a client behind it signs."""
    return asyncio.run(sign_in_header(account, _offer(server, path), f"{ORIGIN}{path}"))


def _read(server: DemoServer, header: str, key: str = "k") -> httpx.Response:
    return httpx.post(
        f"{server.url}{GET}", json={"key": key}, headers={"SIGN-IN-WITH-X": header}, timeout=10
    )


def test_pay_once_then_read_by_signing_in_on_this_and_the_other_worker(
    workers: tuple[DemoServer, DemoServer],
) -> None:
    first, second = workers
    account = Account.create()
    first.paid_put("k", "paid once", account=account)
    for server in (first, second):
        response = _read(server, _sign_in(server, account))
        assert response.status_code == 200, response.text
        assert response.json()["result"] == {"success": True, "key": "k", "value": "paid once"}
        assert "PAYMENT-RESPONSE" not in response.headers


def test_a_sign_in_is_used_once_across_workers(workers: tuple[DemoServer, DemoServer]) -> None:
    first, second = workers
    account = Account.create()
    first.paid_put("k", "v", account=account)
    header = _sign_in(first, account)
    assert _read(first, header).status_code == 200
    for server in (second, first):
        replay = _read(server, header)
        assert replay.status_code == 402
        assert "already used" in replay.json()["message"]


def test_a_wallet_that_never_paid_or_a_forged_signature_gets_nothing(
    workers: tuple[DemoServer, DemoServer],
) -> None:
    first, _ = workers
    victim, thief = Account.create(), Account.create()
    first.paid_put("k", "victim's data", account=victim)
    stranger = _read(first, _sign_in(first, thief))
    assert stranger.status_code == 402 and stranger.json()["error"] == "invalid_sign_in"
    offer = decode_payment_required_header(_offer(first)).extensions[SIGN_IN_WITH_X]
    info = {**offer["info"], "chainId": "eip155:84532", "type": "eip191"}
    forged = asyncio.run(create_siwx_payload(info, thief, f"{ORIGIN}{GET}"))
    forged.address = victim.address  # the victim's name, the thief's signature
    response = _read(first, encode_siwx_header(forged))
    assert response.status_code == 402 and "victim's data" not in response.text


def test_a_tool_that_takes_no_sign_in_still_wants_a_payment(
    workers: tuple[DemoServer, DemoServer],
) -> None:
    first, _ = workers
    account = Account.create()
    first.paid_put("k", "v", account=account)
    header = _sign_in(first, account)
    response = httpx.post(
        f"{first.url}{PUT}",
        json={"key": "k", "value": "free write?"},
        headers={"SIGN-IN-WITH-X": header},
        timeout=10,
    )
    assert response.status_code == 402 and response.json()["error"] == "payment_required"
    offered = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
    assert SIGN_IN_WITH_X not in (offered.extensions or {})
    # The value is untouched.
    assert _read(first, _sign_in(first, account)).json()["result"]["value"] == "v"


@pytest.mark.redis
def test_sign_in_across_workers_sharing_redis(tmp_path: Path) -> None:
    need_redis()
    env = {"AIXYZ_DEMO_STORE": "cache", **WORKERS}
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    with (
        demo_server(tmp_path / "a", env, name="first") as first,
        demo_server(tmp_path / "b", env, name="second") as second,
    ):
        account = Account.create()
        first.paid_put("k", "in redis", account=account)
        response = _read(second, _sign_in(second, account))
        assert response.status_code == 200, response.text
        assert response.json()["result"]["value"] == "in redis"
        header = _sign_in(second, account)
        assert _read(second, header).status_code == 200
        assert _read(first, header).status_code == 402  # the nonce is spent in Redis


def test_a_sign_in_for_another_origin_is_refused(workers: tuple[DemoServer, DemoServer]) -> None:
    """A server that names its public origin refuses messages bound to its raw address."""
    first, _ = workers
    account = Account.create()
    first.paid_put("k", "v", account=account)
    offer = decode_payment_required_header(_offer(first)).extensions[SIGN_IN_WITH_X]
    assert offer["info"]["domain"] == "agent.example"
    raw = first.url.removeprefix("http://")
    info = {
        **offer["info"],
        "domain": raw,
        "uri": f"{first.url}{GET}",
        "chainId": "eip155:84532",
        "type": "eip191",
    }
    elsewhere = asyncio.run(create_siwx_payload(info, account, f"{first.url}{GET}"))
    refused = _read(first, encode_siwx_header(elsewhere))
    assert refused.status_code == 402 and "Domain mismatch" in refused.json()["message"]


def test_a_lost_answer_is_served_again_by_the_real_server(
    workers: tuple[DemoServer, DemoServer],
) -> None:
    """x402's payment-identifier against uvicorn: the retry gets the first answer, settled once."""
    from x402 import x402Client
    from x402.extensions.payment_identifier import (
        PAYMENT_IDENTIFIER,
        append_payment_identifier_to_extensions,
        generate_payment_id,
    )
    from x402.http import encode_payment_signature_header
    from x402.mechanisms.evm.exact import register_exact_evm_client

    first, second = workers
    asked = httpx.post(f"{first.url}{PUT}", json={"key": "k", "value": "once"}, timeout=10)
    required = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"])
    extensions = dict(required.extensions or {})
    assert PAYMENT_IDENTIFIER in extensions  # the demo tools declare it
    append_payment_identifier_to_extensions(extensions, generate_payment_id())
    signer = x402Client()
    register_exact_evm_client(signer, Account.create())
    payload = asyncio.run(signer.create_payment_payload(required, extensions=extensions))
    headers = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
    answers = [
        httpx.post(f"{server.url}{PUT}", json={"key": "k", "value": "once"}, headers=headers)
        for server in (first, first, second)  # the retry may reach another worker
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert len({a.headers["PAYMENT-RESPONSE"] for a in answers}) == 1  # one settlement
    assert len({a.text for a in answers}) == 1
    other = httpx.post(f"{first.url}{PUT}", json={"key": "k", "value": "twice"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"] == "payment_identifier_conflict"
