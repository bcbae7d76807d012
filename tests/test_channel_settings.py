"""``AIXYZ_X402["BATCH_SETTLEMENT"]``: every way it can be wrong is E113; where channels live."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.test import override_settings

from aixyz_sessions.channels.backends import build_channel_storage
from aixyz_sessions.channels.settings import ChannelSettings, parse_batch_settlement
from aixyz_sessions.channels.storage import DatabaseChannelStorage, RedisChannelStorage
from aixyz_sessions.payments.conf import X402ConfigError, config_errors, parse_config
from aixyz_sessions.payments.runtime import get_runtime, reset_runtime
from tests.payments_helpers import LOCAL
from tests.services import need_redis


def with_channels(value: Any) -> dict[str, Any]:
    return {**LOCAL, "BATCH_SETTLEMENT": value}


def test_absent_or_none_is_off_and_an_empty_dict_is_every_default() -> None:
    assert parse_config(LOCAL).batch_settlement is None
    assert parse_batch_settlement(None) is None
    assert parse_config(with_channels({})).batch_settlement == ChannelSettings()
    assert ChannelSettings().withdraw_delay == 900 and ChannelSettings().storage == "default"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([], "must be a dict"),
        ({"STORAG": "database"}, "unknown keys STORAG"),
        ({"STORAGE": ""}, "STORAGE must be a non-empty str"),
        ({"STORAGE": 3}, "STORAGE must be a non-empty str"),
        ({"STORAGE": "database:nowhere"}, "database 'nowhere'"),
        ({"STORAGE": "memory please"}, "is not 'default'"),
        ({"WITHDRAW_DELAY": 60}, "WITHDRAW_DELAY must be whole seconds from 900"),
        ({"WITHDRAW_DELAY": 900.5}, "WITHDRAW_DELAY must be whole seconds"),
        ({"WITHDRAW_DELAY": True}, "WITHDRAW_DELAY must be whole seconds"),
        ({"WITHDRAW_DELAY": 10**9}, "to 2592000"),
        ({"MIN_DEPOSIT": "1 dollar"}, "MIN_DEPOSIT must be a price"),
        ({"MIN_DEPOSIT": "$-1"}, "price must be positive"),
        ({"MIN_DEPOSIT": 0}, "MIN_DEPOSIT must be a price"),
        ({"MIN_DEPOSIT": "\u0661\u0662\u0663"}, "MIN_DEPOSIT must be a price"),  # Arabic digits
        ({"CLAIM_AFTER": -1}, "CLAIM_AFTER must be whole seconds from 0"),
        ({"CLAIM_AFTER": 600}, "at most half of WITHDRAW_DELAY"),
        ({"SETTLE_EVERY": 0}, "SETTLE_EVERY must be whole seconds from 1"),
        ({"REFUND_AFTER": "1d"}, "REFUND_AFTER must be whole seconds"),
    ],
)
def test_each_mistake_is_e113_with_what_is_wrong(value: Any, words: str) -> None:
    errors = config_errors(with_channels(value))
    assert [e.id for e in errors] == ["aixyz_sessions.E113"], errors
    assert words in errors[0].msg
    assert errors[0].hint and "BATCH_SETTLEMENT is a dict" in errors[0].hint
    with pytest.raises(X402ConfigError) as caught:
        parse_config(with_channels(value))
    assert caught.value.id == "aixyz_sessions.E113"


def test_good_values_are_kept() -> None:
    parsed = parse_batch_settlement(
        {
            "STORAGE": "database:default",
            "WITHDRAW_DELAY": 3600,
            "MIN_DEPOSIT": "$1",
            "CLAIM_AFTER": 30,
            "SETTLE_EVERY": 600,
            "REFUND_AFTER": 0,
        }
    )
    assert parsed == ChannelSettings("database:default", 3600, "$1", 30, 600, 0)
    assert parse_batch_settlement({"MIN_DEPOSIT": 5_000_000}).min_deposit == "5000000"  # type: ignore[union-attr]
    assert parse_batch_settlement({"MIN_DEPOSIT": "007"}).min_deposit == "7"  # type: ignore[union-attr]


def test_manage_py_check_reports_e113() -> None:
    with override_settings(AIXYZ_X402=with_channels({"WITHDRAW_DELAY": 5})):
        with pytest.raises(SystemCheckError) as caught:
            call_command("check", stdout=StringIO(), stderr=StringIO())
    assert "aixyz_sessions.E113" in str(caught.value)


@pytest.mark.django_db
def test_default_storage_follows_the_session_store() -> None:
    with override_settings(AIXYZ_SESSION_STORE="aixyz_sessions.stores.db.DatabaseSessionStore"):
        assert isinstance(build_channel_storage("default"), DatabaseChannelStorage)
    # The in-memory store is per process: channels (money owed) go to the database.
    with override_settings(AIXYZ_SESSION_STORE="aixyz_sessions.stores.memory.InMemorySessionStore"):
        assert isinstance(build_channel_storage("default"), DatabaseChannelStorage)
    assert build_channel_storage("database:default").using == "default"


def test_default_storage_on_a_redis_store_is_that_redis() -> None:
    need_redis()
    store = {
        "BACKEND": "aixyz_sessions.stores.redis.RedisSessionStore",
        "OPTIONS": {"url": "redis://127.0.0.1:6379/12"},
    }
    with override_settings(AIXYZ_SESSION_STORE=store):
        storage = build_channel_storage("default")
    assert isinstance(storage, RedisChannelStorage)
    assert storage.client.connection_pool.connection_kwargs["db"] == 12
    assert storage.get("0x" + "ab" * 32) is None  # it answers
    storage.client.close()


def not_a_storage() -> object:
    return object()


def test_a_dotted_path_that_is_no_storage_is_e113() -> None:
    with pytest.raises(X402ConfigError) as caught:
        build_channel_storage("tests.test_channel_settings.not_a_storage")
    assert caught.value.id == "aixyz_sessions.E113"


def test_the_command_says_when_channels_are_off() -> None:
    with override_settings(AIXYZ_X402=LOCAL):
        reset_runtime()
        with pytest.raises(CommandError, match="payment channels are off"):
            call_command("aixyz_channels")
    reset_runtime()


@pytest.mark.django_db
def test_the_runtime_registers_the_scheme_with_its_settings() -> None:
    with override_settings(AIXYZ_X402=with_channels({"WITHDRAW_DELAY": 1800})):
        reset_runtime()
        scheme = get_runtime().channel_scheme
        assert scheme is not None
        assert scheme.get_withdraw_delay() == 1800
        assert isinstance(scheme.channel_storage, DatabaseChannelStorage)
    reset_runtime()


@pytest.mark.django_db
def test_a_manage_py_process_says_the_in_process_chain_is_elsewhere() -> None:
    """Channels the server opened through its in-process LocalFacilitator: this process's
    facilitator never saw them, and the command says where to claim them instead."""
    from x402.mechanisms.evm.batch_settlement.server.storage import Channel
    from x402.mechanisms.evm.batch_settlement.types import ChannelConfig
    from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id

    config = ChannelConfig(
        payer="0x" + "12" * 20,
        payer_authorizer="0x" + "12" * 20,
        receiver=LOCAL["PAY_TO"],
        receiver_authorizer="0x" + "34" * 20,
        token="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        withdraw_delay=900,
        salt="0x" + "00" * 32,
    )
    channel_id = compute_channel_id(config, "eip155:84532").lower()
    channel = Channel(
        channel_id=channel_id,
        channel_config=config,
        charged_cumulative_amount="20000",
        signed_max_claimable="20000",
        signature="0x" + "ab" * 65,
        balance="100000",
        total_claimed="0",
        withdraw_requested_at=0,
        refund_nonce=0,
        last_request_timestamp=0,
    )
    with override_settings(AIXYZ_X402=with_channels({"STORAGE": "database"})):
        reset_runtime()
        DatabaseChannelStorage().update_channel(channel_id, lambda _current: channel)
        out = StringIO()
        with pytest.raises(CommandError) as caught:
            call_command("aixyz_channels", "--all", stdout=out)
    reset_runtime()
    assert "1 group(s) failed" in str(caught.value)
    said = out.getvalue()
    assert "in-process LocalFacilitator of another process" in said
    assert "Claim and settle now" in said and "aixyz_local_facilitator" in said


def test_the_command_says_when_the_channel_storage_cannot_answer() -> None:
    with override_settings(AIXYZ_X402=with_channels({"STORAGE": "redis://127.0.0.1:1/0"})):
        reset_runtime()
        with pytest.raises(CommandError) as caught:
            call_command("aixyz_channels", stdout=StringIO())
    reset_runtime()
    assert "the channel storage cannot answer" in str(caught.value)
    assert "python manage.py migrate" in str(caught.value)
