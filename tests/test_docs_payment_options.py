"""docs/payment-options.md and README's metered tool, run as a user would paste them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from django.urls import include, path
from eth_account import Account
from x402 import x402Client
from x402.http import decode_payment_response_header
from x402.mechanisms.evm.exact import register_exact_evm_client

from aixyz_sessions import get_store
from aixyz_sessions.payments.conf import parse_config
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import reset_runtime
from aixyz_sessions.testing import PayingClient
from aixyz_sessions.tools import registry
from aixyz_sessions.tools.mcp import reset_mcp_server
from tests.docs_examples import block
from tests.payments_helpers import LOCAL, MIDDLEWARE
from tests.test_readme import run, served, urlconf

pytestmark = pytest.mark.django_db

BASE, BASE_SEPOLIA, CELO = "eip155:8453", "eip155:84532", "eip155:42220"


@pytest.fixture
def new_tools() -> Iterator[None]:
    """Tools a block registers are unregistered afterwards."""
    before = {t.name for t in registry}
    try:
        yield
    finally:
        for item in list(registry):
            if item.name not in before:
                registry.unregister(item.name)
        reset_mcp_server()
        reset_runtime()


def _paying_on(account: Any, network: str) -> x402Client:
    client = x402Client(
        payment_requirements_selector=lambda _v, options: next(
            o for o in options if o.network == network
        )
    )
    register_exact_evm_client(client, account)
    return client


async def test_several_networks_and_tokens_example() -> None:
    """Three options listed in order; paid on Base, then in USDT on Celo: one session."""
    from x402.http import x402HTTPClient

    report = run(block("docs/payment-options.md", "# views.py: one view, three ways"))["report"]
    for name in urlconf("docs_options_views", [path("report/", report)]):
        with override_settings(MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF=name, AIXYZ_X402=LOCAL):
            reset_runtime()
            client = PayingClient()
            unpaid = await client.get("/report/", pay=False)
            assert unpaid.status_code == 402
            offered = [(a["network"], a["amount"]) for a in unpaid.json()["accepts"]]
            assert offered == [(BASE, "10000"), (BASE_SEPOLIA, "10000"), (CELO, "10000")]
            first = await client.get("/report/")  # the first option: USDC on Base
            assert first.json() == {"payer": client.address, "reports": 1}
            client.x402 = x402HTTPClient(_paying_on(client.account, CELO))
            second = await client.get("/report/")
            assert second.status_code == 200, second.content
            assert decode_payment_response_header(second["PAYMENT-RESPONSE"]).network == CELO
            assert second.json() == {"payer": client.address, "reports": 2}
    reset_runtime()


async def test_own_token_tool_under_the_accepts_setting(new_tools: None) -> None:
    """The tool's token first, then USDC on each ACCEPTS network (each with its recipient)."""
    configured = run(block("docs/payment-options.md", "# settings.py: every paid route"))
    config = parse_config(configured["AIXYZ_X402"])
    assert config.is_local and config.network == BASE
    run(block("docs/payment-options.md", "# myapp/tools.py: a tool paid in your own token"))
    patterns = [path("tools/", include("aixyz_sessions.tools.urls"))]
    for name in urlconf("docs_options_tools", patterns):
        with override_settings(
            MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF=name, AIXYZ_X402=configured["AIXYZ_X402"]
        ):
            reset_runtime()
            client = PayingClient()
            word = {"word": "a"}
            unpaid = await client.post("/tools/lookup", word, "application/json", pay=False)
            offered = [
                (a["network"], a["amount"], a["payTo"][-4:].lower())
                for a in unpaid.json()["accepts"]
            ]
            assert offered == [
                (BASE, "5000000000000000", "dead"),
                (BASE, "5000", "dead"),
                (BASE_SEPOLIA, "5000", "beef"),
            ]
            assert unpaid.json()["accepts"][0]["extra"] == {"name": "My Token", "version": "1"}
            # The SDK's client skips a token it does not list: it pays USDC on Base.
            paid = await client.post("/tools/lookup", word, "application/json")
            assert paid.status_code == 200, paid.content
            assert decode_payment_response_header(paid["PAYMENT-RESPONSE"]).network == BASE


def test_metered_tool_and_client_examples(new_tools: None) -> None:
    """The page's metered tool charges what the text used; its client reads the receipt."""
    run(block("docs/payment-options.md", "# myapp/tools.py: a metered tool"))
    summarize_text = run(block("docs/payment-options.md", "# pay_metered.py"))["summarize_text"]
    patterns = [path("tools/", include("aixyz_sessions.tools.urls"))]
    account = Account.create()
    with served("docs_options_metered", patterns) as base:
        ledger = get_local_facilitator().ledger
        answer, amount = asyncio.run(summarize_text(account, "x" * 12_345, base=base))
        assert answer == {"result": {"summary": "x" * 200}}
        assert amount == "12345"  # $0.012345 of USDC, not the $0.05 authorized
        assert ledger.settled_amount(payer=account.address) == 12_345
        stored = asyncio.run(get_store().get(account.address.lower(), "last_summary"))
        assert stored == "x" * 200


def test_readme_metered_tool(new_tools: None) -> None:
    run(block("README.md", "# a metered tool"))
    summarize_text = run(block("docs/payment-options.md", "# pay_metered.py"))["summarize_text"]
    patterns = [path("tools/", include("aixyz_sessions.tools.urls"))]
    with served("docs_readme_metered", patterns) as base:
        answer, amount = asyncio.run(summarize_text(Account.create(), "y" * 2_000, base=base))
    assert answer == {"result": {"summary": "y" * 100}}
    assert amount == "2000"


def test_metered_agent_settings_example() -> None:
    from aixyz_sessions.agent.conf import agent_config_errors

    namespace = run(block("docs/agent.md", "# settings.py: a metered agent"))
    assert agent_config_errors(namespace["AIXYZ_AGENT"]) == []
    assert namespace["AIXYZ_AGENT"]["UPTO"] == "$0.05"
