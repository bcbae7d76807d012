"""Payment options: what a paid route accepts (x402's ``accepts``), checked once.

A route offers one or more :class:`PriceOption`, in order; the payer pays one.
An option is a dollar ``price`` (the network's USDC, as the SDK prices it) or
an ``amount`` in atomic units of a named ``asset``; ``scheme`` is ``"exact"``
(that price) or ``"upto"`` (that price is the most the call can settle; see
:mod:`~aixyz_sessions.payments.metering`). An option that names no network
stands for the project's default networks: each entry of
``AIXYZ_X402["ACCEPTS"]`` in order, else ``AIXYZ_X402["NETWORK"]``
(:func:`resolve`). ``pay_to`` falls back to that entry's, then to ``PAY_TO``.

Every field is checked when the option is made (import time for ``@paid``
and ``@tool``, the system check for settings), with the check ids of
:mod:`~aixyz_sessions.payments.conf`: ``E103`` an unknown network, ``E101``/
``E102`` an address, ``E110`` an option's shape, ``E111`` an asset whose
decimals are not known, ``E112`` the same option twice.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from .conf import X402ConfigError, check_address, check_network

__all__ = [
    "CHANNEL_SCHEME",
    "OPTION_KEYS",
    "SCHEMES",
    "PriceOption",
    "ResolvedOption",
    "decimals_of",
    "describe",
    "parse_accepts",
    "parse_option",
    "resolve",
    "with_channels",
]

SCHEMES = ("exact", "upto")
#: The x402 scheme of payment channels (``AIXYZ_X402["BATCH_SETTLEMENT"]``).
CHANNEL_SCHEME = "batch-settlement"
OPTION_KEYS = frozenset(
    {"price", "amount", "asset", "decimals", "network", "pay_to", "scheme", "extra"}
)
_ATOMIC = re.compile(r"[1-9][0-9]{0,77}")
#: Most options one route offers (each is one entry of every 402 it answers).
MAX_OPTIONS = 16


def _shape_error(msg: str, hint: str) -> X402ConfigError:
    return X402ConfigError(msg, id="aixyz_sessions.E110", hint=hint)


_OPTION_HINT = (
    'An option is {"price": "$0.01"} or {"amount": "10000", "asset": "0x...", '
    '"network": "eip155:8453"}, with optional "network", "pay_to", "scheme" '
    '("exact" or "upto"), "decimals" (for an asset the SDK does not know) and '
    '"extra" (the token\'s EIP-712 "name" and "version").'
)


@dataclass(frozen=True)
class PriceOption:
    """One way to pay for a route, as declared (``None`` fields: the project's defaults)."""

    price: str | None = None
    amount: str | None = None
    asset: str | None = None
    network: str | None = None
    pay_to: str | None = None
    scheme: str = "exact"
    decimals: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def metered(self) -> bool:
        """Whether the call settles what it used, up to this option's amount (``upto``)."""
        return self.scheme == "upto"

    @property
    def dollars(self) -> Decimal | None:
        """The dollar price (an ``upto`` option's maximum); ``None`` for atomic units."""
        return None if self.price is None else Decimal(self.price.removeprefix("$"))

    def label(self) -> str:
        """A short human form: ``$0.01``, ``up to $0.05``, or for a named token
        ``10000 atomic units of 0x… on eip155:1``."""
        if self.price is not None:
            text = self.price
        else:
            text = f"{self.amount} atomic units of {self.asset}"
        if self.network is not None:
            text += f" on {self.network}"
        return f"up to {text}" if self.metered else text


@dataclass(frozen=True)
class ResolvedOption:
    """An option with its network and recipient filled in, as the 402 offers it."""

    option: PriceOption
    network: str
    pay_to: str
    #: Offered as a payment channel (x402 ``batch-settlement``) at the option's price.
    channel: bool = False

    @property
    def scheme(self) -> str:
        """The x402 scheme of this offer: the option's, or ``batch-settlement``."""
        return CHANNEL_SCHEME if self.channel else self.option.scheme

    @property
    def key(self) -> tuple[object, ...]:
        """What makes two offers the same for a payer (duplicates are refused, ``E112``)."""
        o = self.option
        asset = None if o.asset is None else o.asset.lower()
        return (self.scheme, self.network, self.pay_to.lower(), o.price, o.amount, asset)


def with_channels(offers: tuple[ResolvedOption, ...]) -> tuple[ResolvedOption, ...]:
    """``offers``, then each again as a payment channel (one per distinct price and place).

    Channels come last, so a client that pays ``exact`` keeps paying as it did;
    a metered (``upto``) option's channel asks a voucher for its maximum and
    the call's :func:`~aixyz_sessions.payments.metering.charge` settles less.
    """
    channels: dict[tuple[object, ...], ResolvedOption] = {}
    for offer in offers:
        channel = ResolvedOption(offer.option, offer.network, offer.pay_to, channel=True)
        channels.setdefault(channel.key, channel)
    return offers + tuple(channels.values())


def _check_amount(value: object, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _shape_error(
            f"{what}: amount must be atomic units as an int or a str of digits, got {value!r}",
            _OPTION_HINT,
        )
    text = str(value)
    if not _ATOMIC.fullmatch(text) or int(text) >= 2**256:
        raise _shape_error(
            f"{what}: amount must be a positive whole number of atomic units, got {value!r}",
            "Atomic units have no decimal point: 10000 is $0.01 of a 6-decimal token.",
        )
    return text


def _check_decimals(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 36:
        raise X402ConfigError(
            f"{what}: decimals must be an int from 0 to 36, got {value!r}",
            id="aixyz_sessions.E111",
            hint="The token contract's decimals() (6 for USDC, 18 for most others).",
        )
    return value


def _check_extra(value: object, what: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str | int | bool))
        for k, v in value.items()
    ):
        raise _shape_error(
            f"{what}: extra must be a dict of str to str/int/bool, got {value!r}",
            'For a custom token: {"name": "<EIP-712 name>", "version": "<version>"}.',
        )
    return tuple(sorted(value.items()))


@functools.lru_cache(maxsize=1024)
def known_decimals(asset: str, network: str) -> int | None:
    """The decimals of a token the SDK lists as a default asset of ``network``.

    Cached: every paid call asks it (see ``PaidCall.meter_for``), and the
    SDK's lookup costs tens of microseconds; its table does not change.
    """
    from x402.mechanisms.evm.default_assets import find_default_asset

    found = find_default_asset(asset, network)
    return None if found is None else int(found["decimals"])


def parse_option(value: object, *, what: str) -> PriceOption:
    """One option from its dict form; raises :class:`X402ConfigError` (see module)."""
    from .decorators import check_price

    if isinstance(value, PriceOption):
        return value
    if not isinstance(value, Mapping):
        raise _shape_error(f"{what} must be a dict, got {type(value).__name__}", _OPTION_HINT)
    unknown = sorted(str(k) for k in value if k not in OPTION_KEYS)
    if unknown:
        raise _shape_error(f"{what} has unknown keys: {', '.join(unknown)}", _OPTION_HINT)
    scheme = value.get("scheme", "exact")
    if scheme not in SCHEMES:
        raise _shape_error(
            f"{what}: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}", _OPTION_HINT
        )
    has_price, has_amount = value.get("price") is not None, value.get("amount") is not None
    if has_price == has_amount:
        raise _shape_error(
            f"{what} gives {'both' if has_price else 'neither'} 'price' "
            f"{'and' if has_price else 'nor'} 'amount'; give exactly one",
            _OPTION_HINT,
        )
    network = value.get("network")
    if network is not None:
        network = check_network(network, what=f"{what}['network']")
    pay_to = value.get("pay_to")
    if pay_to is not None:
        pay_to = check_address(pay_to, what=f"{what}['pay_to']")
    extra = _check_extra(value.get("extra", {}), what)
    price = amount = asset = None
    decimals = value.get("decimals")
    if has_price:
        try:
            price = check_price(value["price"], what=what)
        except (TypeError, ValueError) as exc:
            raise _shape_error(
                str(exc), "A price is dollars of the network's USDC: '$0.01'."
            ) from None
        if value.get("asset") is not None or decimals is not None:
            raise _shape_error(
                f"{what}: a dollar 'price' is paid in the network's USDC; to name another "
                "token give 'amount' (atomic units) with 'asset'",
                _OPTION_HINT,
            )
    else:
        amount = _check_amount(value["amount"], what)
        asset = value.get("asset")
        if asset is None or network is None:
            raise _shape_error(
                f"{what}: an 'amount' needs the 'asset' it counts and the 'network' the "
                "asset lives on",
                _OPTION_HINT,
            )
        asset = check_address(asset, what=f"{what}['asset']")
        known = known_decimals(asset, network)
        if decimals is not None:
            decimals = _check_decimals(decimals, what)
            if known is not None and known != decimals:
                raise X402ConfigError(
                    f"{what}: {asset} on {network} has {known} decimals, not {decimals}",
                    id="aixyz_sessions.E111",
                    hint="Leave 'decimals' out for a token the SDK knows.",
                )
        elif known is None:
            raise X402ConfigError(
                f"{what}: the SDK does not know the decimals of {asset} on {network}",
                id="aixyz_sessions.E111",
                hint="Add 'decimals' (the token's decimals()) and, for the exact scheme, "
                "'extra': {'name': ..., 'version': ...} (its EIP-712 domain).",
            )
    return PriceOption(
        price=price,
        amount=amount,
        asset=asset,
        network=network,
        pay_to=pay_to,
        scheme=str(scheme),
        decimals=decimals,
        extra=extra,
    )


def parse_accepts(values: object, *, what: str) -> tuple[PriceOption, ...]:
    """A route's ``accepts=[...]``: at least one option, none twice (``E112``)."""
    if isinstance(values, Mapping) or not isinstance(values, list | tuple):
        raise _shape_error(
            f"{what}: accepts must be a list of options, got {type(values).__name__}",
            _OPTION_HINT,
        )
    if not values or len(values) > MAX_OPTIONS:
        raise _shape_error(
            f"{what}: accepts must hold 1 to {MAX_OPTIONS} options, got {len(values)}",
            _OPTION_HINT,
        )
    options = tuple(parse_option(v, what=f"{what}: accepts[{i}]") for i, v in enumerate(values))
    seen: dict[PriceOption, int] = {}
    for i, option in enumerate(options):
        if option in seen:
            raise _duplicate(f"{what}: accepts[{i}] repeats accepts[{seen[option]}]")
        seen[option] = i
    return options


def _duplicate(msg: str) -> X402ConfigError:
    return X402ConfigError(
        msg,
        id="aixyz_sessions.E112",
        hint="Offer each price, network, asset and recipient once; an option without a "
        "network stands for every network of AIXYZ_X402['ACCEPTS'] (or NETWORK).",
    )


@dataclass(frozen=True)
class Destination:
    """An entry of ``AIXYZ_X402["ACCEPTS"]`` (or NETWORK/PAY_TO): where a route is paid.

    ``option`` is the entry's own price when it gives one: what a route that
    declares no price of its own (``@paid()``) offers there.
    """

    network: str
    pay_to: str | None = None
    option: PriceOption | None = None


def parse_destinations(value: object, *, what: str) -> tuple[Destination, ...]:
    """``AIXYZ_X402["ACCEPTS"]``: ``[{"network": ..., "pay_to"?: ..., "price"?: ...}, ...]``.

    Every entry names a network. An entry may also give a price (or an
    amount of an asset, a scheme: any option key): a route declared without
    a price, ``@paid()``, offers those; a route with its own price offers it
    on every entry's network.
    """
    if not isinstance(value, list | tuple) or not value or len(value) > MAX_OPTIONS:
        raise _shape_error(
            f"{what} must be a list of 1 to {MAX_OPTIONS} dicts, got {value!r}",
            'ACCEPTS = [{"network": "eip155:8453"}, {"network": "eip155:84532", '
            '"pay_to": "0x..."}]: where every paid route can be paid; a route gives its '
            'price, or takes the entries\' own ({"price": "$0.01", "network": ...}) '
            "when it declares none (@paid()).",
        )
    found: list[Destination] = []
    for i, entry in enumerate(value):
        here = f"{what}[{i}]"
        if not isinstance(entry, Mapping):
            raise _shape_error(f"{here} must be a dict, got {type(entry).__name__}", _OPTION_HINT)
        network = check_network(entry.get("network"), what=f"{here}['network']")
        priced = entry.get("price") is not None or entry.get("amount") is not None
        option = parse_option(entry, what=here) if priced else None
        unknown = sorted(str(k) for k in entry if k not in OPTION_KEYS)
        if not priced and set(entry) - {"network", "pay_to"}:
            raise _shape_error(
                f"{here} gives {', '.join(sorted(set(entry) - {'network', 'pay_to'}))} "
                "without a price",
                "An entry is where to be paid (network, pay_to), with a price or amount "
                "when routes declared without one (@paid()) should offer it.",
            )
        if unknown:  # pragma: no cover - parse_option refused them already
            raise _shape_error(f"{here} has unknown keys: {', '.join(unknown)}", _OPTION_HINT)
        pay_to = entry.get("pay_to")
        if pay_to is not None:
            pay_to = check_address(pay_to, what=f"{here}['pay_to']")
        destination = Destination(network, pay_to, option)
        if any(d.network == network and d.pay_to == pay_to and d.option == option for d in found):
            raise _duplicate(f"{here} repeats an earlier entry")
        found.append(destination)
    return tuple(found)


def declared_defaults(defaults: tuple[Destination, ...]) -> tuple[PriceOption, ...]:
    """The options of a route that declares no price: the ACCEPTS entries' own prices.

    Raises :class:`X402ConfigError` ``E110`` when an entry has none.
    """
    missing = [i for i, d in enumerate(defaults) if d.option is None]
    if missing:
        raise _shape_error(
            "a route declared without a price (@paid()) offers the prices of "
            f"AIXYZ_X402['ACCEPTS'], and entry {missing[0]} has none",
            'Give every ACCEPTS entry a "price" (or "amount" and "asset"), or give the '
            'route its own: @paid("$0.01").',
        )
    return tuple(d.option for d in defaults if d.option is not None)


def resolve(
    options: Iterable[PriceOption] | None, defaults: tuple[Destination, ...], pay_to: str
) -> tuple[ResolvedOption, ...]:
    """The options as offered: networks and recipients filled in, in order.

    ``None``: the route declared no price, and offers the ACCEPTS entries'
    own (:func:`declared_defaults`). An option without a network becomes one
    offer per default network and recipient.
    Raises :class:`X402ConfigError` ``E112`` when two offers come out the same.
    """
    if options is None:
        options = declared_defaults(defaults)
    resolved: list[ResolvedOption] = []
    seen: set[tuple[object, ...]] = set()
    for option in options:
        if option.network is not None:
            targets = [Destination(option.network, None)]
        else:  # each default network and recipient once (entries may differ in price only)
            targets = list({(d.network, d.pay_to): d for d in reversed(defaults)}.values())[::-1]
        for target in targets:
            offer = ResolvedOption(
                option=option,
                network=target.network,
                pay_to=option.pay_to or target.pay_to or pay_to,
            )
            if offer.key in seen:
                where = "" if option.network else f" on {offer.network}"
                raise _duplicate(f"the option {option.label()}{where} is offered twice")
            seen.add(offer.key)
            resolved.append(offer)
    return tuple(resolved)


def decimals_of(option: PriceOption, network: str, asset: str) -> int | None:
    """The decimals of what ``option`` is paid in (``asset``, as the requirements name it)."""
    if option.decimals is not None:
        return option.decimals
    return known_decimals(asset, network)


def to_atomic(dollars: Decimal, decimals: int) -> int:
    """Whole atomic units of ``dollars`` in a token of ``decimals`` (rounded down)."""
    return int((dollars * (Decimal(10) ** decimals)).to_integral_value(rounding=ROUND_FLOOR))


def describe(options: Iterable[ResolvedOption]) -> str:
    """The offers in words, for 402 messages: ``$0.01 on eip155:8453; or ...``."""
    parts = []
    for offer in options:
        o = offer.option
        what = o.price if o.price is not None else f"{o.amount} atomic units of {o.asset}"
        text = f"{what} on {offer.network}"
        parts.append(f"up to {text}" if o.metered else text)
    return "; or ".join(parts)
