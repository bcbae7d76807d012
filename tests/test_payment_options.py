"""Payment options and metered prices, declared: every field checked with an id; ``charge()``."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings

from aixyz_sessions.payments import ChargeError, charge, paid
from aixyz_sessions.payments.checks import check_x402_settings
from aixyz_sessions.payments.conf import X402ConfigError, parse_config
from aixyz_sessions.payments.metering import Meter, metering
from aixyz_sessions.payments.options import Destination, PriceOption, parse_accepts, resolve
from aixyz_sessions.tools import registry, tool
from tests.payments_helpers import LOCAL, PAY_TO

USDC_BASE = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
CUSTOM = "0x" + "12" * 20
OTHER = "0x" + "cd" * 20


def refused(accepts: Any) -> X402ConfigError:
    with pytest.raises(X402ConfigError) as caught:
        parse_accepts(accepts, what="paid()")
    return caught.value


@pytest.mark.parametrize(
    ("accepts", "check_id", "words"),
    [
        ({"price": "$0.01"}, "E110", "must be a list"),
        ([], "E110", "1 to 16"),
        ([{"price": "$0.01", "colour": "red"}], "E110", "unknown keys: colour"),
        ([{"price": "$0.01", "amount": "1"}], "E110", "both 'price' and 'amount'"),
        ([{"network": "eip155:8453"}], "E110", "neither"),
        ([{"price": "$0.01", "scheme": "stream"}], "E110", "scheme must be one of"),
        ([{"price": "one cent"}], "E110", "not a dollar amount"),
        ([{"price": "$0.01", "asset": USDC_BASE}], "E110", "paid in the network's USDC"),
        ([{"amount": "10000", "asset": USDC_BASE}], "E110", "needs the 'asset'"),
        ([{"amount": "0.5", "asset": USDC_BASE, "network": "eip155:8453"}], "E110", "whole"),
        ([{"amount": True, "asset": USDC_BASE, "network": "eip155:8453"}], "E110", "atomic"),
        ([{"price": "$0.01", "network": "eip155:999999"}], "E103", "not a known"),
        ([{"price": "$0.01", "pay_to": "0x123"}], "E102", "not a valid EVM address"),
        ([{"amount": "1", "asset": CUSTOM, "network": "eip155:8453"}], "E111", "decimals"),
        (
            [{"amount": "1", "asset": USDC_BASE, "network": "eip155:8453", "decimals": 18}],
            "E111",
            "has 6 decimals",
        ),
        (
            [{"amount": "1", "asset": CUSTOM, "network": "eip155:8453", "decimals": 99}],
            "E111",
            "0 to 36",
        ),
        ([{"price": "$0.01", "extra": {"name": ["x"]}}], "E110", "extra"),
        ([{"price": "$0.01"}, {"price": "$0.01"}], "E112", "repeats accepts[0]"),
    ],
)
def test_every_field_of_an_option_is_checked_with_an_id(
    accepts: Any, check_id: str, words: str
) -> None:
    error = refused(accepts)
    assert error.id == f"aixyz_sessions.{check_id}" and words in error.msg, error


def test_paid_takes_exactly_one_of_price_upto_and_accepts() -> None:
    for arguments in ({"price": "$0.01", "upto": "$0.05"}, {"upto": "$1", "accepts": []}):
        with pytest.raises(X402ConfigError, match="at most one of price, upto and accepts"):
            paid(**arguments)
    with pytest.raises(X402ConfigError, match="exactly one of price, upto and accepts"):
        tool(_nothing, name="opt_none", upto="$1", price="$1")
    with pytest.raises(X402ConfigError, match="inside each of accepts' options"):
        paid(accepts=[{"price": "$0.01"}], network="eip155:8453")


def test_a_known_token_needs_no_decimals_and_a_custom_one_says_them() -> None:
    known, custom = parse_accepts(
        [
            {"amount": 10000, "asset": USDC_BASE, "network": "eip155:8453"},
            {
                "amount": "5",
                "asset": CUSTOM,
                "network": "eip155:8453",
                "decimals": 18,
                "extra": {"name": "Token", "version": "1"},
            },
        ],
        what="paid()",
    )
    assert known.amount == "10000" and known.decimals is None
    assert custom.decimals == 18 and dict(custom.extra) == {"name": "Token", "version": "1"}
    assert custom.label() == f"5 atomic units of {CUSTOM} on eip155:8453"


def test_accepts_setting_gives_the_default_networks_in_order() -> None:
    config = parse_config(
        {
            "PAY_TO": PAY_TO,
            "FACILITATOR": "local",
            "ACCEPTS": [{"network": "eip155:8453"}, {"network": "eip155:84532", "pay_to": OTHER}],
        }
    )
    assert config.network == "eip155:8453"  # NETWORK may be left out: the first entry's
    offers = resolve(
        [PriceOption(price="$0.01"), PriceOption(price="$1", network="eip155:137")],
        config.defaults(),
        config.pay_to,
    )
    assert [(o.network, o.pay_to, o.option.price) for o in offers] == [
        ("eip155:8453", PAY_TO, "$0.01"),
        ("eip155:84532", OTHER, "$0.01"),
        ("eip155:137", PAY_TO, "$1"),
    ]
    with pytest.raises(X402ConfigError) as caught:
        resolve(
            [PriceOption(price="$0.01"), PriceOption(price="$0.01", network="eip155:84532")],
            (Destination("eip155:84532"),),
            PAY_TO,
        )
    assert caught.value.id == "aixyz_sessions.E112"


@pytest.mark.parametrize(
    ("accepts", "check_id"),
    [
        ([{"price": "$0.01"}], "E103"),  # every entry names its network
        ([{"network": "eip155:8453", "scheme": "upto"}], "E110"),  # a scheme without a price
        ([{"network": "eip155:8453"}, {"network": "eip155:8453"}], "E112"),
        ([{"network": "base"}], "E103"),
        ("eip155:8453", "E110"),
    ],
)
def test_the_accepts_setting_is_checked(accepts: Any, check_id: str) -> None:
    with override_settings(AIXYZ_X402={**LOCAL, "ACCEPTS": accepts}):
        ids = [m.id for m in check_x402_settings()]
    assert f"aixyz_sessions.{check_id}" in ids


def test_manage_check_reports_a_route_that_repeats_a_default_network() -> None:
    tool(
        _nothing,
        name="opt_dup",
        accepts=[{"price": "$0.01"}, {"price": "$0.01", "network": "eip155:84532"}],
    )
    try:
        with override_settings(AIXYZ_X402=LOCAL):
            found = [m for m in check_x402_settings() if m.id == "aixyz_sessions.E112"]
        assert found and "the tool 'opt_dup'" in found[0].msg
    finally:
        registry.unregister("opt_dup")


async def _nothing() -> None:
    return None


def test_w106_reads_dollar_prices_of_every_option() -> None:
    tool(_nothing, name="opt_pricey", upto="$500")
    try:
        with override_settings(AIXYZ_X402=LOCAL):
            found = [m for m in check_x402_settings() if m.id == "aixyz_sessions.W106"]
        assert any("up to $500" in m.msg for m in found)
    finally:
        registry.unregister("opt_pricey")


def test_labels_say_what_a_call_costs() -> None:
    @paid(upto="$0.05")
    async def metered(request: Any) -> None: ...

    @tool(name="opt_label", accepts=[{"price": "$0.01", "network": "eip155:8453"}])
    async def labelled() -> None: ...

    try:
        assert metered._aixyz_x402_paid.label == "up to $0.05"  # type: ignore[attr-defined]
        assert registry.get("opt_label").describe()["price"] == "$0.01 on eip155:8453"  # type: ignore[union-attr]
    finally:
        registry.unregister("opt_label")


# -- charge() ------------------------------------------------------------------------------


def upto_meter(maximum: int = 50_000, decimals: int | None = 6) -> Meter:
    return Meter(scheme="upto", maximum=maximum, decimals=decimals, asset=USDC_BASE)


def test_charge_outside_a_paid_call_charges_nothing() -> None:
    assert charge("$0.01") == 0
    with pytest.raises(TypeError):
        charge(["$0.01"])  # type: ignore[arg-type]
    # A wrong amount is wrong outside a paid call too: a unit test of the view catches it.
    with pytest.raises(ValueError, match="give dollars such as"):
        charge("0.01 USD")


def test_charge_converts_dollars_rounding_down_and_the_last_one_counts() -> None:
    meter = upto_meter()
    with metering(meter):
        assert charge("$0.012") == 12_000
        assert charge(Decimal("0.0000019")) == 1  # never more than asked
        assert charge(0.02) == 20_000
        assert charge(7) == 7  # an int is atomic units
    assert meter.settlement_overrides() == {"amount": "7"}


@pytest.mark.parametrize("amount", ["-$0.01", -1, "abc", "NaN", "$Infinity"])
def test_charge_refuses_what_is_not_an_amount(amount: Any) -> None:
    with metering(upto_meter()), pytest.raises(ValueError):
        charge(amount)


def test_charge_above_the_maximum_is_refused_and_the_earlier_charge_stands() -> None:
    meter = upto_meter()
    with metering(meter):
        charge("$0.01")
        with pytest.raises(ChargeError, match="above the 50000"):
            charge(50_001)
        with pytest.raises(ChargeError, match="above what the payer authorized"):
            charge("$1e1000000")  # refused before a million-digit integer is built
    assert meter.settlement_overrides() == {"amount": "10000"}


def test_never_charging_settles_the_maximum_and_exact_ignores_charges() -> None:
    assert upto_meter().settlement_overrides() is None  # the SDK settles the maximum
    exact = Meter(scheme="exact", maximum=10_000, decimals=6)
    with metering(exact):
        assert charge("$0.005") == 5_000
        with pytest.raises(ChargeError):
            charge("$0.02")
    assert exact.settlement_overrides() is None


def test_dollars_need_known_decimals_and_a_settled_call_cannot_charge() -> None:
    with metering(upto_meter(decimals=None)):
        with pytest.raises(ChargeError, match="decimals"):
            charge("$0.01")
        assert charge(5) == 5
    closed = upto_meter()
    closed.closed = True
    with metering(closed), pytest.raises(ChargeError, match="already settled"):
        charge(1)


@pytest.mark.django_db
async def test_a_facilitator_without_upto_is_a_clear_server_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A hosted facilitator that does not list ``upto``: 500 server_misconfigured, logged."""
    import json

    from django.test import AsyncClient

    from aixyz_sessions.payments.local import get_local_facilitator
    from aixyz_sessions.payments.runtime import reset_runtime
    from tests.agent_app import AGENT
    from tests.payments_helpers import MIDDLEWARE

    facilitator = get_local_facilitator()
    supported = facilitator.get_supported

    def exact_only() -> Any:
        answer = supported()
        return answer.model_copy(update={"kinds": [k for k in answer.kinds if k.scheme == "exact"]})

    monkeypatch.setattr(facilitator, "get_supported", exact_only)
    with override_settings(
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="tests.options_app",
        AIXYZ_X402=LOCAL,
        AIXYZ_AGENT=AGENT,
        DEBUG=True,
    ):
        reset_runtime()
        try:
            metered = await AsyncClient().post("/metered/", {}, content_type="application/json")
            fixed = await AsyncClient().get("/two-networks/")
        finally:
            reset_runtime()
    assert metered.status_code == 500
    body = json.loads(metered.content)
    assert body["error"] == "server_misconfigured" and "upto on eip155:84532" in body["message"]
    assert "does the facilitator support" in caplog.text
    assert fixed.status_code == 402  # exact routes are unaffected


def test_a_sign_in_names_the_first_network_a_route_is_paid_on() -> None:
    from aixyz_sessions.payments.decorators import priced_spec
    from aixyz_sessions.payments.runtime import PaymentRuntime

    runtime = PaymentRuntime(parse_config(LOCAL))
    on_base = priced_spec("t", accepts=[{"price": "$0.01", "network": "eip155:8453"}])
    assert runtime.sign_in_network(on_base) == "eip155:8453"
    assert runtime.sign_in_network(priced_spec("t", upto="$1")) == LOCAL["NETWORK"]
    named = priced_spec("t", price="$0.01", network="eip155:137")
    assert runtime.sign_in_network(named) == "eip155:137"


@pytest.mark.django_db
async def test_a_metered_402_declares_the_gas_sponsoring_the_facilitator_offers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upto payer needs a Permit2 allowance: declared sponsoring lets the client sign one."""
    from django.test import AsyncClient
    from x402.http import decode_payment_required_header

    from aixyz_sessions.payments.local import get_local_facilitator
    from aixyz_sessions.payments.runtime import reset_runtime
    from tests.agent_app import AGENT
    from tests.payments_helpers import MIDDLEWARE

    facilitator = get_local_facilitator()
    supported = facilitator.get_supported

    def sponsoring() -> Any:
        return supported().model_copy(update={"extensions": ["eip2612GasSponsoring"]})

    async def extensions_of(path: str, method: str = "post") -> set[str]:
        response = await getattr(AsyncClient(), method)(path)
        required = decode_payment_required_header(response["PAYMENT-REQUIRED"])
        return set(required.extensions or {})

    settings = {
        "MIDDLEWARE": MIDDLEWARE,
        "ROOT_URLCONF": "tests.options_app",
        "AIXYZ_X402": LOCAL,
        "AIXYZ_AGENT": AGENT,
    }
    with override_settings(**settings):
        reset_runtime()
        try:
            assert await extensions_of("/metered/") == {"payment-identifier"}
            monkeypatch.setattr(facilitator, "get_supported", sponsoring)
            reset_runtime()
            assert await extensions_of("/metered/") == {
                "payment-identifier",
                "eip2612GasSponsoring",
            }
            assert await extensions_of("/two-networks/", "get") == {"payment-identifier"}
        finally:
            reset_runtime()


@pytest.mark.django_db
async def test_a_route_without_a_price_offers_the_prices_of_accepts() -> None:
    """``@paid()``: the ACCEPTS entries' own prices, in order; a route's price wins."""
    from django.test import AsyncClient
    from x402.http import decode_payment_required_header

    from aixyz_sessions.payments.runtime import reset_runtime
    from tests.agent_app import AGENT
    from tests.payments_helpers import MIDDLEWARE

    async def offers(path: str) -> list[tuple[str, str, str]]:
        response = await AsyncClient().get(path)
        assert response.status_code == 402, response.content
        required = decode_payment_required_header(response["PAYMENT-REQUIRED"])
        return [(a.network, a.amount, a.pay_to) for a in required.accepts]

    accepts = [
        {"network": "eip155:8453", "price": "$0.02"},
        {"network": "eip155:84532", "price": "$0.01", "pay_to": OTHER},
    ]
    base = {
        "MIDDLEWARE": MIDDLEWARE,
        "ROOT_URLCONF": "tests.options_defaults_urls",
        "AIXYZ_AGENT": AGENT,
    }
    with override_settings(**base, AIXYZ_X402={**LOCAL, "ACCEPTS": accepts}):
        reset_runtime()
        try:
            assert [m for m in check_x402_settings() if m.is_serious()] == []
            assert await offers("/default-priced/") == [
                ("eip155:8453", "20000", PAY_TO),
                ("eip155:84532", "10000", OTHER),
            ]
            # A route with its own price offers it on every entry's network and recipient.
            assert await offers("/metered-header/") != []
            two = await offers("/two-networks/")
            assert [n for n, _, _ in two] == ["eip155:84532", "eip155:8453"]
        finally:
            reset_runtime()
    with override_settings(**base, AIXYZ_X402=LOCAL, DEBUG=True):
        reset_runtime()
        try:
            found = [m for m in check_x402_settings() if m.id == "aixyz_sessions.E110"]
            assert found and "default_priced" in found[0].msg
            response = await AsyncClient().get("/default-priced/")
            assert response.status_code == 500
            assert b"server_misconfigured" in response.content
        finally:
            reset_runtime()
