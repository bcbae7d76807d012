"""Metered text turns: ``AIXYZ_AGENT["UPTO"]`` with ``"TOKEN_PRICES"``, against a real server.

The agent runs under uvicorn on loopback; its ``ToolLoopAgent`` talks to a
scripted model (the real ``openai`` client, :mod:`tests.fake_openai`) that
reports token usage. Payers pay the 402 with the SDK's httpx client and its
``upto`` scheme (a Permit2 authorization of the maximum); the local
facilitator's ledger shows what each settlement moved, in atomic units of
USDC (6 decimals: $0.001 is 1000).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from django.test import override_settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from x402 import x402Client
from x402.http import decode_payment_required_header, decode_payment_response_header
from x402.http.clients.httpx import x402HttpxClient
from x402.mechanisms.evm.default_assets import get_default_asset
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.upto import UptoEvmClientScheme
from x402.schemas import PaymentRequirements

from aixyz_sessions import get_store
from aixyz_sessions.agent.checks import check_agent_settings
from aixyz_sessions.agent.conf import AgentConfigError, get_agent_config
from aixyz_sessions.agent.loop import ToolLoopAgent
from aixyz_sessions.payments import charge
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.tools import registry, tool
from tests import mcp_helpers
from tests.agent_app import AGENT, agent_server
from tests.fake_openai import FakeModel
from tests.payments_helpers import NETWORK, serve
from tests.test_agent_a2a import invoke, post, rpc, v03_message

pytestmark = pytest.mark.django_db(transaction=True)
PUT, GET = mcp_helpers.PUT, mcp_helpers.GET
METERED_TOOL = "metered_note"

MAXIMUM = "$0.05"  # 50000 atomic units of USDC
MAXIMUM_UNITS = 50_000
RATES = {"input": "$0.0005", "output": "$0.0015"}  # dollars per 1,000 tokens
#: What one model step reports, and what it costs at RATES:
#: 1000 x $0.0005/1000 + 200 x $0.0015/1000 = $0.0008 = 800 atomic units.
STEP_TOKENS, STEP_UNITS = (1000, 200), 800
PUT_UNITS, GET_UNITS = 10_000, 1_000  # the tools' own prices: a turn adds the ones it called

#: ``AIXYZ_AGENT["AGENT"]`` in these tests.
metered_agent = ToolLoopAgent(
    instructions="You keep the user's notes.",
    model="scripted",
    tools=[PUT, GET, METERED_TOOL],
    max_steps=4,
)
MODEL = FakeModel([])
NO_PRICE = {key: value for key, value in AGENT.items() if key != "PRICE"}
METERED = {
    **NO_PRICE,
    "UPTO": MAXIMUM,
    "TOKEN_PRICES": RATES,
    "AGENT": "tests.test_agent_metered.metered_agent",
}
REMEMBER = [(PUT, {"key": "city", "value": "Lisbon"}), (GET, {"key": "city"})]


async def metered_note(key: str, amount: str) -> dict[str, Any]:
    """Write ``key`` in the payer's session and charge ``amount`` (dollars)."""
    from aixyz_sessions import get_session

    session = get_session()
    assert session is not None
    await session.set(key, amount)
    return {"charged": charge(amount)}


@contextmanager
def _metered_tool() -> Iterator[None]:
    tool(metered_note, name=METERED_TOOL, upto=MAXIMUM)
    try:
        yield
    finally:
        registry.unregister(METERED_TOOL)


@pytest.fixture
def base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The agent with ``METERED`` settings; text turns go to the scripted ``MODEL``."""
    MODEL.reset()
    MODEL.calls = list(REMEMBER)
    MODEL.usage = STEP_TOKENS
    with serve(MODEL.app()) as model_url:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{model_url}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        with _metered_tool(), agent_server(AIXYZ_AGENT=METERED) as url:
            yield url


def _paying(account: LocalAccount, base: str) -> x402HttpxClient:
    """The SDK's httpx client, paying exact and ``upto`` with ``account``."""
    signer = x402Client()
    register_exact_evm_client(signer, account)  # type: ignore[arg-type]
    signer.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(account)))
    return x402HttpxClient(signer, base_url=base, timeout=30)


async def _send(base: str, *parts: dict[str, Any]) -> tuple[httpx.Response, LocalAccount]:
    """A message paid by a fresh wallet; the answer and the wallet."""
    account = Account.create()
    async with _paying(account, base) as http:
        response = await http.post("/agent", json=rpc("message/send", v03_message(*parts)))
    return response, account


async def _say(base: str, text: str) -> tuple[httpx.Response, LocalAccount]:
    return await _send(base, {"kind": "text", "text": text})


def _settled(account: LocalAccount) -> list[int]:
    """The amounts the ledger moved from ``account``, oldest first."""
    ledger = get_local_facilitator().ledger
    return [t.amount for t in ledger.transfers if t.payer.lower() == account.address.lower()]


def _offers(asked: httpx.Response) -> list[PaymentRequirements]:
    """What a 402 offers (x402 v2 requirements)."""
    accepts = decode_payment_required_header(asked.headers["PAYMENT-REQUIRED"]).accepts
    assert all(isinstance(offer, PaymentRequirements) for offer in accepts)
    return [offer for offer in accepts if isinstance(offer, PaymentRequirements)]


def _answer(response: httpx.Response) -> str:
    task = response.json()["result"]
    assert task["status"]["state"] == "completed", task
    text: str = task["artifacts"][0]["parts"][0]["text"]
    return text


async def test_a_text_turn_offers_its_maximum_and_the_card_its_rates(base: str) -> None:
    asked = await post(
        f"{base}/agent", json=rpc("message/send", v03_message({"kind": "text", "text": "hi"}))
    )
    assert asked.status_code == 402
    (offer,) = _offers(asked)
    assert (offer.scheme, offer.network, offer.amount) == ("upto", NETWORK, str(MAXIMUM_UNITS))
    async with httpx.AsyncClient(timeout=10) as plain:
        card = (await plain.get(f"{base}/.well-known/agent-card.json")).json()
    assert "a text message costs up to $0.05" in card["description"]
    assert (
        "$0.0005 per 1,000 input tokens and $0.0015 per 1,000 output tokens"
        in (card["description"])
    )


async def test_a_turn_settles_its_tokens_and_a_longer_turn_more(base: str) -> None:
    """Each turn settles tokens x rate; the PAYMENT-RESPONSE says the amount that moved."""
    MODEL.calls = []  # the model answers at once: one step
    short, short_payer = await _say(base, "hello")
    assert short.status_code == 200, short.text
    assert _answer(short) == "done: nothing to do"
    MODEL.calls = list(REMEMBER)  # put, get, answer: three steps
    long, long_payer = await _say(base, "remember that I live in Lisbon")
    assert long.status_code == 200, long.text
    assert "Lisbon" in _answer(long)
    long_units = 3 * STEP_UNITS + PUT_UNITS + GET_UNITS  # tokens, and the tools it called
    assert _settled(short_payer) == [STEP_UNITS]  # $0.0008
    assert _settled(long_payer) == [long_units]  # $0.0024 + $0.01 + $0.001
    for response, units in ((short, STEP_UNITS), (long, long_units)):
        settled = decode_payment_response_header(response.headers["PAYMENT-RESPONSE"])
        assert settled.success and settled.amount == str(units)
    # The tools the model called ran in the payer's session, paid by the turn.
    assert await get_store().get(long_payer.address.lower(), "city") == "Lisbon"


async def test_a_streamed_turn_settles_its_tokens_too(base: str) -> None:
    account = Account.create()
    body = rpc("message/stream", v03_message({"kind": "text", "text": "remember Lisbon"}))
    async with _paying(account, base) as http:
        response = await http.post("/agent", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "Lisbon" in response.text
    assert _settled(account) == [3 * STEP_UNITS + PUT_UNITS + GET_UNITS]
    settled = decode_payment_response_header(response.headers["PAYMENT-RESPONSE"])
    assert settled.amount == str(3 * STEP_UNITS + PUT_UNITS + GET_UNITS)


async def test_the_cost_is_capped_at_upto(base: str) -> None:
    MODEL.usage = (1_000_000, 1_000_000)  # $2 a step, far above the $0.05 maximum
    response, payer = await _say(base, "remember Lisbon, at length")
    assert response.status_code == 200, response.text
    assert "Lisbon" in _answer(response)  # capped, never refused
    assert _settled(payer) == [MAXIMUM_UNITS]
    settled = decode_payment_response_header(response.headers["PAYMENT-RESPONSE"])
    assert settled.amount == str(MAXIMUM_UNITS)


async def test_a_turn_that_reaches_max_steps_pays_for_what_it_used(base: str) -> None:
    MODEL.endless = True
    response, payer = await _say(base, "never finish")
    assert response.status_code == 200, response.text
    assert "stopped after 4 model steps" in _answer(response)
    assert len(MODEL.requests) == metered_agent.max_steps
    steps = metered_agent.max_steps
    # Every step called put ($0.01) before the loop stopped: tokens and tools, not 0 nor 50000.
    assert _settled(payer) == [steps * STEP_UNITS + steps * PUT_UNITS]


async def test_a_model_error_settles_nothing(base: str) -> None:
    MODEL.fail = True
    transfers = len(get_local_facilitator().ledger.transfers)
    response, payer = await _say(base, "hello")
    assert response.status_code == 422
    assert response.json()["result"]["status"]["state"] == "failed"
    assert "PAYMENT-RESPONSE" not in response.headers
    assert _settled(payer) == []
    assert get_local_facilitator().ledger.settled_amount(payer=payer.address) == 0
    assert len(get_local_facilitator().ledger.transfers) == transfers


async def test_a_model_that_fails_after_it_ran_pays_for_the_steps_that_ran(base: str) -> None:
    MODEL.fail_from = 1  # the first answer calls put; the second model call fails
    response, payer = await _say(base, "remember Lisbon")
    assert response.status_code == 200, response.text
    assert "the model failed after 1 step(s)" in _answer(response)
    assert _settled(payer) == [STEP_UNITS + PUT_UNITS]  # the step that ran and its put


async def test_a_model_that_reports_no_usage_settles_the_maximum(base: str) -> None:
    """Unmeasured tokens are not free tokens: the turn settles what the payer authorized."""
    MODEL.usage = None
    response, payer = await _say(base, "remember Lisbon")
    assert response.status_code == 200, response.text
    assert _settled(payer) == [MAXIMUM_UNITS]


async def test_a_metered_tool_the_model_calls_adds_what_it_charged(base: str) -> None:
    """Inside a turn an upto tool's charge() adds to the turn: a tool costs its own price."""
    MODEL.calls = [(METERED_TOOL, {"key": "note", "amount": "$0.004"})]
    response, payer = await _say(base, "note it")
    assert response.status_code == 200, response.text
    assert '"charged": 4000' in _answer(response)
    assert _settled(payer) == [2 * STEP_UNITS + 4_000]  # two model steps and the tool's $0.004
    MODEL.calls = [(METERED_TOOL, {"key": "note", "amount": "$0.049"})]
    capped, capped_payer = await _say(base, "note it")
    assert capped.status_code == 200, capped.text
    assert _settled(capped_payer) == [MAXIMUM_UNITS]  # $0.0016 + $0.049, capped at UPTO
    assert await get_store().get(payer.address.lower(), "note") == "$0.004"


async def test_a_direct_invocation_of_an_upto_tool_settles_what_the_tool_charged(
    base: str,
) -> None:
    part = invoke(METERED_TOOL, key="direct", amount="$0.012")
    asked = await post(f"{base}/agent", json=rpc("message/send", v03_message(part)))
    (offer,) = _offers(asked)
    assert (offer.scheme, offer.amount) == ("upto", str(MAXIMUM_UNITS))  # the tool's own
    response, payer = await _send(base, part)
    assert response.status_code == 200, response.text
    task = response.json()["result"]
    assert task["artifacts"][0]["parts"][0]["data"] == {"charged": 12_000}
    assert _settled(payer) == [12_000]  # what the tool charged, not a text turn's tokens
    assert len(MODEL.requests) == 0  # no model ran
    settled = decode_payment_response_header(response.headers["PAYMENT-RESPONSE"])
    assert settled.amount == "12000"


# -- the setting ---------------------------------------------------------------------------


def ids(value: Any) -> list[str]:
    with override_settings(AIXYZ_AGENT=value):
        return [message.id or "" for message in check_agent_settings()]


USDC = get_default_asset(NETWORK)["asset"]
UPTO_OPTION = {"price": MAXIMUM, "scheme": "upto"}


def test_metered_settings_parse() -> None:
    with override_settings(AIXYZ_AGENT={**NO_PRICE, "UPTO": "0.05", "TOKEN_PRICES": RATES}):
        config = get_agent_config()
    assert config.price == "up to $0.05" and config.spec.metered
    assert config.spec.resource == "agent" and config.spec.description == "Test Agent"
    assert config.token_prices is not None
    assert config.token_prices.cost(*STEP_TOKENS) * 10**6 == STEP_UNITS
    accepts = [{"price": "$0.001", "network": NETWORK}, UPTO_OPTION]
    assert ids({**NO_PRICE, "ACCEPTS": accepts, "TOKEN_PRICES": RATES}) == []
    assert ids({**NO_PRICE, "UPTO": MAXIMUM}) == []  # metered, settles its maximum


@pytest.mark.parametrize(
    ("value", "expected", "words"),
    [
        ({**AGENT, "UPTO": MAXIMUM}, "aixyz_sessions.E203", "exactly one of"),
        ({**NO_PRICE, "UPTO": MAXIMUM, "ACCEPTS": [UPTO_OPTION]}, "aixyz_sessions.E203", "UPTO"),
        (NO_PRICE, "aixyz_sessions.E203", "got none"),
        ({**NO_PRICE, "UPTO": "$0"}, "aixyz_sessions.E203", "positive"),
        ({**NO_PRICE, "ACCEPTS": []}, "aixyz_sessions.E203", "1 to 16 options"),
        (
            {**NO_PRICE, "ACCEPTS": [{"price": "$1", "colour": "red"}]},
            "aixyz_sessions.E203",
            "colour",
        ),
        ({**AGENT, "TOKEN_PRICES": RATES}, "aixyz_sessions.E208", "metered price"),
        (
            {**NO_PRICE, "ACCEPTS": [{"price": "$0.001"}], "TOKEN_PRICES": RATES},
            "aixyz_sessions.E208",
            "metered price",
        ),
        (
            {**METERED, "TOKEN_PRICES": {"input": "cheap", "output": "$1"}},
            "aixyz_sessions.E208",
            "cheap",
        ),
        (
            {**METERED, "TOKEN_PRICES": {"input": "-$1", "output": "$1"}},
            "aixyz_sessions.E208",
            "zero or more",
        ),
        (
            {**METERED, "TOKEN_PRICES": {"input": "$0,5", "output": "$1"}},
            "aixyz_sessions.E208",
            "$0,5",
        ),
        ({**METERED, "TOKEN_PRICES": {"input": "$0.001"}}, "aixyz_sessions.E208", "input"),
        ({**METERED, "TOKEN_PRICES": {"input": 0, "output": "$0"}}, "aixyz_sessions.E208", "free"),
        ({**METERED, "TOKEN_PRICES": "$0.001"}, "aixyz_sessions.E208", "dict"),
    ],
)
def test_each_metering_mistake_has_its_id(value: Any, expected: str, words: str) -> None:
    with override_settings(AIXYZ_AGENT=value):
        found = [m for m in check_agent_settings() if m.id == expected]
        assert found and words in found[0].msg, [m.msg for m in check_agent_settings()]
        with pytest.raises(AgentConfigError):
            get_agent_config()


def test_w207_compares_the_tools_with_a_metered_turns_maximum() -> None:
    """UPTO/ACCEPTS replace PRICE: the turn's most in dollars is what W207 compares."""
    mcp_helpers.register_examples()
    loop = "tests.test_agent_loop.loop_agent"  # put ($0.01) and get, 20 tool calls a turn
    found: dict[str, list[Any]] = {}
    settings = {
        "upto": {**NO_PRICE, "AGENT": loop, "UPTO": MAXIMUM},
        "enough": {**NO_PRICE, "AGENT": loop, "UPTO": "$0.2"},
        "accepts": {
            **NO_PRICE,
            "AGENT": loop,
            "ACCEPTS": [{"price": "$0.001"}, {"price": "$0.1", "scheme": "upto"}],
        },
        "atomic": {  # no dollar price to compare: not checked
            **NO_PRICE,
            "AGENT": loop,
            "ACCEPTS": [{"amount": "1000", "asset": USDC, "network": NETWORK}],
        },
    }
    try:
        for name, value in settings.items():
            with override_settings(AIXYZ_AGENT=value):
                found[name] = [m for m in check_agent_settings() if m.id == "aixyz_sessions.W207"]
    finally:
        mcp_helpers.unregister_examples()
    (upto,) = found["upto"]
    assert "AIXYZ_AGENT['UPTO'] charges at most $0.05 per text turn" in upto.msg
    assert f"{PUT} ($0.01 a call) up to 20 times" in upto.msg
    assert "Raise UPTO to at least $0.20" in (upto.hint or "")
    (accepts,) = found["accepts"]
    assert "AIXYZ_AGENT['ACCEPTS'] charges at most $0.1" in accepts.msg
    assert found["enough"] == [] and found["atomic"] == []


async def test_a_finished_turn_says_its_usage_once(base: str) -> None:
    """``agent_turn_finished``: the tokens the model reported, the tools it called."""
    from decimal import Decimal

    from aixyz_sessions.signals import agent_turn_finished

    heard: list[dict[str, Any]] = []

    def receive(sender: Any, **arguments: Any) -> None:
        arguments.pop("signal")
        heard.append(arguments)

    agent_turn_finished.connect(receive, weak=False)
    try:
        MODEL.calls = list(REMEMBER)  # put, get, answer: three steps
        response, payer = await _say(base, "remember that I live in Lisbon")
    finally:
        agent_turn_finished.disconnect(receive)
    assert response.status_code == 200, response.text
    assert len(heard) == 1
    (turn,) = heard
    assert turn["payer"] == payer.address
    assert turn["measured"] is True
    assert turn["input_tokens"] == 3 * MODEL.usage[0]
    assert turn["output_tokens"] == 3 * MODEL.usage[1]
    assert turn["tools"] == Decimal("0.011")  # put-like $0.01 + get-like $0.001
