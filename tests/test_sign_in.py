"""Returning payers sign in with the wallet that paid (x402 sign-in-with-x), over HTTP.

Every sign-in here is made with the SDK's own client helpers
(``create_siwx_payload``, ``encode_siwx_header``, through
:func:`aixyz_sessions.testing.paying.sign_in_header`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.test import AsyncClient, override_settings
from eth_account import Account
from x402.extensions.sign_in_with_x import SIGN_IN_WITH_X, create_siwx_payload, encode_siwx_header
from x402.http import decode_payment_required_header

from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.replay import InMemoryReplayGuard, ReplayGuard
from aixyz_sessions.testing.paying import PayingClient, sign_in_header
from tests.payments_helpers import LOCAL, paid_views

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _payments() -> Iterator[None]:
    with paid_views():
        yield


def _settlements() -> int:
    return get_local_facilitator().ledger.settled_count


async def _offer(path: str) -> tuple[str, dict[str, object]]:
    """The 402's PAYMENT-REQUIRED header and its sign-in offer."""
    response = await AsyncClient().get(path)
    assert response.status_code == 402
    header = response["PAYMENT-REQUIRED"]
    offer = decode_payment_required_header(header).extensions[SIGN_IN_WITH_X]
    return header, offer


async def _signed(client: PayingClient, path: str) -> str:
    header, _ = await _offer(path)
    return await sign_in_header(client.account, header, f"http://testserver{path}")


async def _with(path: str, sign_in: str) -> object:
    return await AsyncClient().get(path, headers={"SIGN-IN-WITH-X": sign_in})


async def test_a_402_offers_sign_in_with_a_fresh_nonce_bound_to_this_resource() -> None:
    first_header, first = await _offer("/notes/")
    _, second = await _offer("/notes/")
    info = first["info"]
    assert info["domain"] == "testserver" and info["uri"] == "http://testserver/notes/"
    assert first["supportedChains"] == [{"chainId": "eip155:84532", "type": "eip191"}]
    assert info["nonce"] != second["info"]["nonce"]  # never the cached challenge's
    required = decode_payment_required_header(first_header)
    assert len(required.accepts) == 1  # and the payment is still offered
    body = json.loads((await AsyncClient().get("/notes/")).content)
    assert SIGN_IN_WITH_X in body["extensions"]
    # A plain paid view offers no sign-in.
    plain = decode_payment_required_header((await AsyncClient().get("/paid/"))["PAYMENT-REQUIRED"])
    assert not (plain.extensions or {}).get(SIGN_IN_WITH_X)


async def test_pay_once_then_sign_in_reads_the_same_session_without_paying() -> None:
    client = PayingClient()
    paid = await client.get("/notes/")
    assert paid.status_code == 200 and json.loads(paid.content)["count"] == 1
    settled = _settlements()
    back = await _with("/notes/", await _signed(client, "/notes/"))
    assert back.status_code == 200, back.content
    assert json.loads(back.content) == {"payer": client.address, "count": 2}
    assert "PAYMENT-RESPONSE" not in back and "private" in back["Cache-Control"]
    assert _settlements() == settled  # nothing charged
    # The test kit's one-call form does the same.
    again = await client.sign_in("GET", "/notes/")
    assert json.loads(again.content) == {"payer": client.address, "count": 3}


async def test_no_payment_no_sign_in() -> None:
    stranger = PayingClient()
    refused = await _with("/notes/", await _signed(stranger, "/notes/"))
    assert refused.status_code == 402
    body = json.loads(refused.content)
    assert body["error"] == "invalid_sign_in" and "has not paid" in body["message"]
    assert SIGN_IN_WITH_X in decode_payment_required_header(refused["PAYMENT-REQUIRED"]).extensions


async def test_a_sign_in_is_accepted_once() -> None:
    client = PayingClient()
    await client.get("/notes/")
    header = await _signed(client, "/notes/")
    assert (await _with("/notes/", header)).status_code == 200
    replay = await _with("/notes/", header)
    assert replay.status_code == 402
    assert "already used" in json.loads(replay.content)["message"]


async def test_a_sign_in_for_another_resource_does_not_open_this_one() -> None:
    client = PayingClient()
    await client.get("/notes/")
    await client.get("/reader/")
    for_reader = await _signed(client, "/reader/")
    refused = await _with("/notes/", for_reader)
    assert refused.status_code == 402
    assert "not this resource" in json.loads(refused.content)["message"]


async def test_another_wallets_signature_is_refused() -> None:
    payer, thief = PayingClient(), PayingClient()
    await payer.get("/notes/")
    _, offer = await _offer("/notes/")
    info = {**offer["info"], "chainId": "eip155:84532", "type": "eip191"}
    forged = await create_siwx_payload(info, thief.account, "http://testserver/notes/")
    forged.address = payer.address  # claims the payer, signed by the thief
    refused = await _with("/notes/", encode_siwx_header(forged))
    assert refused.status_code == 402
    assert json.loads(refused.content)["error"] == "invalid_sign_in"


async def test_an_old_or_expired_sign_in_is_refused() -> None:
    client = PayingClient()
    await client.get("/notes/")
    _, offer = await _offer("/notes/")
    old = (datetime.now(UTC) - timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    info = {**offer["info"], "issuedAt": old, "chainId": "eip155:84532", "type": "eip191"}
    info.pop("expirationTime")
    stale = await create_siwx_payload(info, client.account, "http://testserver/notes/")
    refused = await _with("/notes/", encode_siwx_header(stale))
    assert refused.status_code == 402 and "too old" in json.loads(refused.content)["message"]
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    info = {**offer["info"], "expirationTime": past, "chainId": "eip155:84532", "type": "eip191"}
    expired = await create_siwx_payload(info, client.account, "http://testserver/notes/")
    refused = await _with("/notes/", encode_siwx_header(expired))
    assert refused.status_code == 402 and "expired" in json.loads(refused.content)["message"]


async def test_wrong_domain_or_chain_is_refused() -> None:
    client = PayingClient()
    await client.get("/notes/")
    _, offer = await _offer("/notes/")
    info = {
        **offer["info"],
        "domain": "evil.example",
        "uri": "http://evil.example/notes/",
        "chainId": "eip155:84532",
        "type": "eip191",
    }
    elsewhere = await create_siwx_payload(info, client.account, "http://evil.example/notes/")
    refused = await _with("/notes/", encode_siwx_header(elsewhere))
    assert (
        refused.status_code == 402 and "Domain mismatch" in json.loads(refused.content)["message"]
    )
    info = {**offer["info"], "chainId": "eip155:1", "type": "eip191"}
    mainnet = await create_siwx_payload(info, client.account, "http://testserver/notes/")
    refused = await _with("/notes/", encode_siwx_header(mainnet))
    assert refused.status_code == 402 and "eip155:84532" in json.loads(refused.content)["message"]


@pytest.mark.parametrize(
    "garbage",
    [
        "not base64 !!",
        base64.b64encode(b"[" * 100_000).decode(),
        base64.b64encode(b'{"domain": 1}').decode(),
        "A" * 20_000,
        "",
    ],
)
async def test_garbage_sign_in_is_a_402_never_a_500(garbage: str) -> None:
    client = PayingClient()
    await client.get("/notes/")
    refused = await _with("/notes/", garbage)
    assert refused.status_code == 402, refused.content
    assert json.loads(refused.content)["error"] == "invalid_sign_in"


async def test_after_any_payment_opens_with_a_payment_for_another_view() -> None:
    client = PayingClient()
    await client.get("/paid/")  # a plain paid view: recorded, since a view reads "any"
    back = await _with("/reader/", await _signed(client, "/reader/"))
    assert back.status_code == 200, back.content
    assert json.loads(back.content) == {"payer": client.address, "count": "1"}
    stranger = await _with("/reader/", await _signed(PayingClient(), "/reader/"))
    assert stranger.status_code == 402


async def test_sign_in_required_needs_no_payment_only_a_proven_payer() -> None:
    anonymous = await AsyncClient().get("/whoami/")
    assert anonymous.status_code == 402
    body = json.loads(anonymous.content)
    assert body["error"] == "sign_in_required" and body["accepts"] == []
    required = decode_payment_required_header(anonymous["PAYMENT-REQUIRED"])
    assert required.accepts == [] and SIGN_IN_WITH_X in required.extensions
    client = PayingClient()  # has never paid
    response = await client.sign_in("GET", "/whoami/")
    assert response.status_code == 200, response.content
    assert json.loads(response.content) == {"payer": client.address, "count": None}
    # A payment is no way in: nothing is offered to pay.
    assert (
        await AsyncClient().get("/whoami/", headers={"PAYMENT-SIGNATURE": "x"})
    ).status_code == 402


async def test_head_on_a_sign_in_resource_charges_nothing() -> None:
    head = await AsyncClient().head("/whoami/")
    assert head.status_code == 200 and "PAYMENT-REQUIRED" in head


def test_bad_policies_are_refused_at_import() -> None:
    from aixyz_sessions.payments import paid
    from aixyz_sessions.payments.conf import X402ConfigError

    with pytest.raises(X402ConfigError, match="sign_in must be one of"):
        paid("$0.01", sign_in="always")  # type: ignore[arg-type]
    with pytest.raises(X402ConfigError, match="sign_in_required"):
        paid("$0.01", sign_in="required")
    assert Account  # the SDK helpers sign with eth_account accounts


class OnlyClaimsGuard(ReplayGuard):
    """A custom guard written before records existed: claims only."""

    def __init__(self) -> None:
        self.inner = InMemoryReplayGuard()

    async def claim(self, payer: str, nonce: str, valid_before: int) -> bool:
        return await self.inner.claim(payer, nonce, valid_before)

    async def release(self, payer: str, nonce: str) -> None:
        await self.inner.release(payer, nonce)


async def test_a_guard_without_records_is_flagged_and_degrades_plainly() -> None:
    from django.core import checks as django_checks
    from x402.extensions.payment_identifier import (
        append_payment_identifier_to_extensions,
        generate_payment_id,
    )
    from x402.http import encode_payment_signature_header

    from aixyz_sessions.payments.checks import check_x402_settings
    from aixyz_sessions.payments.runtime import reset_runtime

    settings = {**LOCAL, "REPLAY_GUARD": "tests.test_sign_in.OnlyClaimsGuard"}
    with override_settings(AIXYZ_X402=settings):
        reset_runtime()
        found = [m for m in check_x402_settings() if m.id == "aixyz_sessions.W104"]
        assert len(found) == 1 and found[0].level == django_checks.WARNING
        # Payment identifiers are ignored: the call runs once, its replay is refused as before.
        client = PayingClient()
        asked = await AsyncClient().get("/paid/")
        required = decode_payment_required_header(asked["PAYMENT-REQUIRED"])
        extensions = dict(required.extensions or {})
        append_payment_identifier_to_extensions(extensions, generate_payment_id())
        payload = await client.signer.create_payment_payload(required, extensions=extensions)
        headers = {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}
        assert (await AsyncClient().get("/paid/", headers=headers)).status_code == 200
        assert (await AsyncClient().get("/paid/", headers=headers)).status_code == 402
        # Sign-in that needs no payment record still works (its nonce is a claim) ...
        assert (await _with("/whoami/", await _signed(client, "/whoami/"))).status_code == 200
        # ... one after a payment cannot be checked: a 500 that says why (W104 said it first).
        await client.get("/notes/")
        refused = await _with("/notes/", await _signed(client, "/notes/"))
        assert refused.status_code == 500
        assert "remember() and recall()" in json.loads(refused.content)["message"]
    reset_runtime()
    assert not [m for m in check_x402_settings() if m.id == "aixyz_sessions.W104"]
