"""AIXYZ_X402 system checks, @paid argument checks and the replay guard."""

from __future__ import annotations

import asyncio

import pytest
from django.test import override_settings

from aixyz_sessions.payments import InMemoryReplayGuard, paid
from aixyz_sessions.payments.checks import check_x402_settings
from aixyz_sessions.payments.conf import X402ConfigError
from tests.payments_helpers import LOCAL, MIDDLEWARE, NETWORK, PAY_TO


def ids(value: object, **extra: object) -> list[str]:
    with override_settings(AIXYZ_X402=value, **extra):
        return [m.id for m in check_x402_settings() if m.id]


def test_valid_settings_pass() -> None:
    assert ids({"PAY_TO": PAY_TO, "NETWORK": NETWORK, "FACILITATOR_URL": "https://f.example"}) == []
    assert ids(LOCAL, DEBUG=True) == []


def test_unset_is_fine_unless_middleware_installed() -> None:
    with override_settings(MIDDLEWARE=[]):
        assert check_x402_settings() == []
    with override_settings(MIDDLEWARE=MIDDLEWARE):
        assert [m.id for m in check_x402_settings()] == ["aixyz_sessions.E100"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("nope", ["aixyz_sessions.E100"]),
        ({"NETWORK": NETWORK, "FACILITATOR": "local"}, ["aixyz_sessions.E101"]),
        ({**LOCAL, "PAY_TO": "0x123"}, ["aixyz_sessions.E102"]),
        ({**LOCAL, "PAY_TO": "0x" + "aB" * 20}, ["aixyz_sessions.E102"]),  # bad checksum
        ({**LOCAL, "NETWORK": "base-sepolia"}, ["aixyz_sessions.E103"]),
        ({**LOCAL, "NETWORK": "eip155:999999999"}, ["aixyz_sessions.E103"]),
        ({**LOCAL, "FACILITATOR": "remote"}, ["aixyz_sessions.E104"]),
        ({**LOCAL, "FACILITATOR_URL": "https://f.example"}, ["aixyz_sessions.E104"]),
        (
            {"PAY_TO": PAY_TO, "NETWORK": NETWORK, "FACILITATOR_URL": "ftp://x"},
            ["aixyz_sessions.E104"],
        ),
        ({**LOCAL, "FACILITATOR_TIMEOUT": 0}, ["aixyz_sessions.E104"]),
        ({**LOCAL, "PAYTO": PAY_TO}, ["aixyz_sessions.E105"]),
    ],
)
def test_errors_have_ids_and_hints(value: object, expected: list[str]) -> None:
    assert ids(value, DEBUG=True) == expected
    with override_settings(AIXYZ_X402=value, DEBUG=True):
        assert all(m.hint for m in check_x402_settings())


def test_local_facilitator_without_debug_warns() -> None:
    assert ids(LOCAL, DEBUG=False) == ["aixyz_sessions.W101"]


def test_paid_arguments_checked_at_decoration() -> None:
    with pytest.raises(ValueError, match="dollar"):
        paid("ten dollars")
    with pytest.raises(ValueError, match="positive"):
        paid("$0")
    with pytest.raises(X402ConfigError):
        paid("$1", network="eip155:0")
    with pytest.raises(X402ConfigError):
        paid("$1", pay_to="0xnope")
    assert paid(0.5) is not None


def test_stacked_paid_decorators_are_refused() -> None:
    """The outer one used to win silently: one view has one price."""
    from aixyz_sessions.payments import sign_in_required

    async def view(request: object) -> None:
        return None

    for outer in (paid("$1"), sign_in_required()):
        with pytest.raises(X402ConfigError, match="already marked paid") as refused:
            outer(paid("$0.01")(view))
        assert refused.value.id == "aixyz_sessions.E108"


async def test_replay_guard_claims_once_and_forgets_after_expiry() -> None:
    now = [1000.0]
    guard = InMemoryReplayGuard(grace=10, clock=lambda: now[0])
    results = await asyncio.gather(*(guard.claim("0xAB", "0x01", 1100) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    assert not await guard.claim("0xab", "0x01", 1100)  # case-insensitive
    await guard.release("0xab", "0x01")
    assert await guard.claim("0xab", "0x01", 1100)
    now[0] = 1111.0
    assert await guard.claim("0xcd", "0x02", 2000)
    assert len(guard) == 1  # the expired claim is gone


def test_a_price_with_a_comma_is_refused_with_what_to_write() -> None:
    """"$0,001" once passed every check and then answered 500 on every call."""
    from aixyz_sessions.payments import paid

    for price in ("$0,001", "$1,5", "1,000"):
        with pytest.raises(ValueError, match="has a comma; write dollars with a decimal point"):
            paid(price)


def test_a_price_above_the_ceiling_is_a_warning() -> None:
    """``price="10000"`` is $10,000 a call (the 402 shows "10000" only for $0.01)."""
    from aixyz_sessions.tools import registry, tool

    async def pricey() -> None:
        return None

    tool(pricey, name="pricey_tool", price="10000")
    try:
        with override_settings(AIXYZ_X402=LOCAL, DEBUG=True):
            found = [m for m in check_x402_settings() if m.id == "aixyz_sessions.W106"]
        (warning,) = [m for m in found if "'pricey_tool'" in m.msg]
        assert "$10000 a call" in warning.msg and "10000000000" in warning.msg
        assert "aixyz_sessions.W106" not in ids({**LOCAL, "MAX_PRICE": "$20000"}, DEBUG=True)
        assert ids({**LOCAL, "MAX_PRICE": "lots"}) == ["aixyz_sessions.E109"]
    finally:
        registry.unregister("pricey_tool")


def test_a_list_of_networks_points_to_accepts() -> None:
    with pytest.raises(X402ConfigError, match="takes one network, not list") as refused:
        paid("$0.01", network=["eip155:84532", "eip155:8453"])  # type: ignore[arg-type]
    assert "accepts=[...]" in (refused.value.hint or "")
