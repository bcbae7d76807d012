"""docs/channels.md, run as a user would paste it: the settings, then the client paying a tool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from django.urls import include, path
from eth_account import Account

from aixyz_sessions import get_store
from aixyz_sessions.payments.conf import parse_config
from aixyz_sessions.payments.local import get_local_facilitator
from aixyz_sessions.payments.runtime import get_runtime, reset_runtime
from aixyz_sessions.tools import registry
from aixyz_sessions.tools.mcp import reset_mcp_server
from tests.docs_examples import block
from tests.payments_helpers import MIDDLEWARE, serve
from tests.settings import LOOPBACK_HOSTS
from tests.test_readme import run, urlconf

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def settings_block() -> dict[str, Any]:
    configured: dict[str, Any] = run(block("docs/channels.md", "# settings.py: payment channels"))
    return configured["AIXYZ_X402"]


def test_the_settings_example_turns_channels_on(settings_block: dict[str, Any]) -> None:
    config = parse_config(settings_block)
    assert config.batch_settlement is not None
    assert config.batch_settlement.storage == "default"
    assert config.batch_settlement.withdraw_delay == 900
    assert config.batch_settlement.claim_after == 60


@pytest.fixture
def served(settings_block: dict[str, Any]) -> Iterator[str]:
    from aixyz_sessions.asgi import get_asgi_application

    run(block("docs/channels.md", "# myapp/tools.py: the tool the client below pays"))
    patterns = [path("tools/", include("aixyz_sessions.tools.urls"))]
    try:
        for urls in urlconf("docs_channels", patterns):
            with override_settings(
                MIDDLEWARE=MIDDLEWARE,
                ROOT_URLCONF=urls,
                AIXYZ_X402=settings_block,
                ALLOWED_HOSTS=LOOPBACK_HOSTS,
            ):
                reset_runtime()
                with serve(get_asgi_application()) as base:
                    yield base
    finally:
        registry.unregister("remember")
        reset_mcp_server()
        reset_runtime()


def test_the_client_example_pays_twenty_calls_with_two_deposits(served: str) -> None:
    """The default first deposit covers ten calls; the client tops up once."""
    call_many = run(block("docs/channels.md", "# pay_with_channel.py"))["call_many"]
    ledger = get_local_facilitator().ledger
    deposits = ledger.transaction_count("deposit")
    account = Account.create()
    answers = asyncio.run(call_many(account, served, 20))
    assert answers == [{"result": {"stored": f"k{n}"}} for n in range(20)]
    assert ledger.transaction_count("deposit") - deposits == 2
    scheme = get_runtime().channel_scheme
    assert scheme is not None
    (channel,) = [
        c
        for c in scheme.channel_storage.list()
        if c.channel_config.payer.lower() == account.address.lower()
    ]
    assert int(channel.charged_cumulative_amount) == 20 * 1000
    assert asyncio.run(get_store().get(account.address.lower(), "k19")) == "v"
