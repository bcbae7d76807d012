"""Exactly-once paid calls with x402's payment-identifier extension, over HTTP, on every store.

Payments are made with the SDK's own client helpers: the 402's extensions
get an id with ``append_payment_identifier_to_extensions``, and
``x402Client.create_payment_payload`` signs a payment carrying them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import AsyncClient, override_settings
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    generate_payment_id,
)
from x402.http import decode_payment_required_header, encode_payment_signature_header

from aixyz_sessions import get_store
from aixyz_sessions.payments.failures import REPLAYED
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.testing import PayingClient
from tests.payments_helpers import LOCAL, MIDDLEWARE
from tests.test_staged_writes import store  # noqa: F401 - the fixture: memory, Redis, database

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _payments(store: str) -> Iterator[None]:  # noqa: F811 - the imported fixture
    with override_settings(
        MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="tests.payments_urls", AIXYZ_X402=LOCAL
    ):
        reset_runtime()
        yield
        reset_runtime()
    get_local_facilitator().ledger.fail_settlements = None


def _settled() -> int:
    return get_local_facilitator().ledger.settled_count


async def _payment(client: PayingClient, path: str, payment_id: str | None) -> dict[str, str]:
    """A signed PAYMENT-SIGNATURE for ``path``'s 402, carrying ``payment_id`` (SDK helpers)."""
    asked = await AsyncClient().get(path)
    required = decode_payment_required_header(asked["PAYMENT-REQUIRED"])
    extensions: dict[str, Any] = dict(required.extensions or {})
    assert PAYMENT_IDENTIFIER in extensions  # every paid resource declares it
    if payment_id is not None:
        append_payment_identifier_to_extensions(extensions, payment_id)
    signer = client.signer
    payload = await signer.create_payment_payload(required, extensions=extensions)
    return {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}


async def _count(client: PayingClient) -> str | None:
    return await get_store().get(client.address.lower(), "count")


async def test_a_lost_answer_is_answered_again_and_settled_once() -> None:
    client, pid = PayingClient(), generate_payment_id()
    payment = await _payment(client, "/paid/", pid)
    before = _settled()
    first = await AsyncClient().get("/paid/", headers=payment)
    assert first.status_code == 200 and json.loads(first.content)["count"] == 1
    again = await AsyncClient().get("/paid/", headers=payment)  # the client lost `first`
    assert again.status_code == 200
    assert again.content == first.content
    assert again["PAYMENT-RESPONSE"] == first["PAYMENT-RESPONSE"]
    assert _settled() == before + 1  # settled once
    assert await _count(client) == "1"  # ran once


async def test_without_an_id_a_replay_is_still_refused() -> None:
    client = PayingClient()
    payment = await _payment(client, "/paid/", None)
    assert (await AsyncClient().get("/paid/", headers=payment)).status_code == 200
    replay = await AsyncClient().get("/paid/", headers=payment)
    assert replay.status_code == 402 and "already" in json.loads(replay.content)["reason"]


async def test_the_same_id_for_another_request_is_a_conflict() -> None:
    client, pid = PayingClient(), generate_payment_id()
    payment = await _payment(client, "/paid/", pid)
    assert (await AsyncClient().get("/paid/", headers=payment)).status_code == 200
    other = await AsyncClient().get("/paid/?other=1", headers=payment)
    assert other.status_code == 409
    assert json.loads(other.content)["error"] == "payment_identifier_conflict"
    resigned = await _payment(client, "/paid/", pid)  # a new payment reusing the id
    conflict = await AsyncClient().get("/paid/", headers=resigned)
    assert (
        conflict.status_code == 409 and "another payment" in json.loads(conflict.content)["message"]
    )
    assert await _count(client) == "1"


async def test_eight_concurrent_retries_run_the_call_once() -> None:
    client, pid = PayingClient(), generate_payment_id()
    payment = await _payment(client, "/slow/", pid)
    before = _settled()
    answers = await asyncio.gather(
        *(AsyncClient().get("/slow/", headers=payment) for _ in range(8))
    )
    assert [a.status_code for a in answers] == [200] * 8, [a.content for a in answers]
    assert len({a.content for a in answers}) == 1
    assert json.loads(answers[0].content)["count"] == 1
    assert _settled() == before + 1
    assert await _count(client) == "1"


async def test_an_unsettled_call_keeps_nothing_and_its_retry_signs_anew() -> None:
    """Its payment started the call, so it is spent; the id is free for a new payment."""
    client, pid = PayingClient(), generate_payment_id()
    ledger = get_local_facilitator().ledger
    ledger.fail_settlements = "ERC20: transfer amount exceeds balance"
    payment = await _payment(client, "/paid/", pid)
    failed = await AsyncClient().get("/paid/", headers=payment)
    assert failed.status_code == 402  # settlement failed: nothing kept, nothing stored
    ledger.fail_settlements = None
    retried = await AsyncClient().get("/paid/", headers=payment)
    assert retried.status_code == 402 and json.loads(retried.content)["reason"] == REPLAYED
    assert await _count(client) is None
    signed_anew = await AsyncClient().get("/paid/", headers=await _payment(client, "/paid/", pid))
    assert signed_anew.status_code == 200 and json.loads(signed_anew.content)["count"] == 1


async def test_an_invalid_id_is_a_400_and_charges_nothing() -> None:
    client = PayingClient()
    payment = await _payment(client, "/paid/", None)
    from x402.http import decode_payment_signature_header

    payload = decode_payment_signature_header(payment["PAYMENT-SIGNATURE"])
    extensions = dict(payload.extensions or {})
    extensions[PAYMENT_IDENTIFIER] = {"info": {"required": False, "id": "short!"}}
    bad = payload.model_copy(update={"extensions": extensions})
    before = _settled()
    response = await AsyncClient().get(
        "/paid/", headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(bad)}
    )
    assert response.status_code == 400
    assert json.loads(response.content)["error"] == "invalid_payment_identifier"
    assert _settled() == before and await _count(client) is None


async def test_someone_naming_the_payer_with_the_id_gets_nothing() -> None:
    """The kept answer goes to the same payment bytes only, not to whoever names the payer."""
    victim, thief, pid = PayingClient(), PayingClient(), generate_payment_id()
    payment = await _payment(victim, "/paid/", pid)
    assert (await AsyncClient().get("/paid/", headers=payment)).status_code == 200
    forged = await _payment(thief, "/paid/", pid)
    from x402.http import decode_payment_signature_header

    payload = decode_payment_signature_header(forged["PAYMENT-SIGNATURE"])
    inner = json.loads(json.dumps(payload.payload))
    inner["authorization"]["from"] = victim.address  # names the victim, signed by the thief
    tampered = payload.model_copy(update={"payload": inner})
    response = await AsyncClient().get(
        "/paid/", headers={"PAYMENT-SIGNATURE": encode_payment_signature_header(tampered)}
    )
    assert response.status_code == 409  # another payment under the victim's id
    assert victim.address not in response.content.decode()
