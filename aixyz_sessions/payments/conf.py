"""Reading ``AIXYZ_X402``: who gets paid, on which network, through which facilitator.

::

    AIXYZ_X402 = {
        "PAY_TO": "0x...",                  # the address that receives payments
        "NETWORK": "eip155:84532",          # CAIP-2 id (Base Sepolia here)
        "FACILITATOR_URL": "https://...",   # an x402 facilitator (HTTP API)
        "FACILITATOR_TIMEOUT": 10,          # seconds, optional
        # Returning payers (all optional):
        "ORIGIN": "https://api.example.com", # what sign-in messages must name
        "SIGN_IN_WINDOW": 86400,            # seconds a payment opens sign-in
        "SIGN_IN_MAX_AGE": 300,             # seconds a sign-in message stays good
        "PAYMENT_ID_TTL": 3600,             # seconds a paid answer is kept for retries
        "MAX_PRICE": "$10",                 # check warns (W106) about prices above it
        # Where every paid route can be paid, in the order the 402 offers them
        # (NETWORK may then be left out: it is the first entry's):
        "ACCEPTS": [{"network": "eip155:8453"}, {"network": "eip155:137", "pay_to": "0x..."}],
        # Payment channels (x402 batch-settlement) beside every option; see
        # aixyz_sessions.channels.settings for its keys:
        "BATCH_SETTLEMENT": {},
        # Every paid route's 402 declares the x402 "bazaar" discovery extension
        # (see aixyz_sessions.payments.discovery):
        "DISCOVERY": False,
    }
    # or "FACILITATOR": "local" for the in-process LocalFacilitator (dev/tests only)

A value that cannot work raises :class:`X402ConfigError`, which the system check
reports with an id (``aixyz_sessions.E1xx``) and a hint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings

from ..conf import SettingError
from ..lazy import Lazy, lazy_setting

if TYPE_CHECKING:
    from ..channels.settings import ChannelSettings
    from .options import Destination

SETTING = "AIXYZ_X402"
DEFAULT_FACILITATOR_URL = "https://x402.org/facilitator"
DEFAULT_FACILITATOR_TIMEOUT = 10.0
LOCAL = "local"
DEFAULT_SIGN_IN_WINDOW = 24 * 3600.0
DEFAULT_SIGN_IN_MAX_AGE = 300.0
DEFAULT_PAYMENT_ID_TTL = 3600.0
KNOWN_KEYS = frozenset(
    {
        "PAY_TO",
        "NETWORK",
        "FACILITATOR",
        "FACILITATOR_URL",
        "FACILITATOR_TIMEOUT",
        "REPLAY_GUARD",
        "ORIGIN",
        "SIGN_IN_WINDOW",
        "SIGN_IN_MAX_AGE",
        "PAYMENT_ID_TTL",
        "MAX_PRICE",
        "ACCEPTS",
        "BATCH_SETTLEMENT",
        "DISCOVERY",
    }
)
DEFAULT_MAX_PRICE = "$10"
_DURATIONS = {
    "SIGN_IN_WINDOW": DEFAULT_SIGN_IN_WINDOW,
    "SIGN_IN_MAX_AGE": DEFAULT_SIGN_IN_MAX_AGE,
    "PAYMENT_ID_TTL": DEFAULT_PAYMENT_ID_TTL,
}

__all__ = [
    "SETTING",
    "X402Config",
    "X402ConfigError",
    "check_address",
    "check_network",
    "get_config",
    "parse_config",
]

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_NETWORK = re.compile(r"eip155:[1-9][0-9]*")


class X402ConfigError(SettingError):
    """``AIXYZ_X402`` (or a ``@paid`` argument) cannot work."""


def known_networks() -> list[str]:
    """CAIP-2 EVM networks for which the SDK knows a default asset (USDC and kin)."""
    from x402.mechanisms.evm.default_assets import DEFAULT_ASSETS

    return sorted(n for n in DEFAULT_ASSETS if n.startswith("eip155:"))


def check_address(value: object, *, what: str = f"{SETTING}['PAY_TO']") -> str:
    """Return ``value`` if it is an EVM address (checksum verified when mixed case)."""
    from eth_utils.address import is_address, is_checksum_address

    if not isinstance(value, str) or not value:
        raise X402ConfigError(
            f"{what} is missing" if not value else f"{what} must be a str, got {value!r}",
            id="aixyz_sessions.E101",
            hint="Set it to the 0x-prefixed EVM address that receives the payments.",
        )
    mixed = value[2:] != value[2:].lower() and value[2:] != value[2:].upper()
    if (
        not _ADDRESS.fullmatch(value)
        or not is_address(value)
        or (mixed and not is_checksum_address(value))
    ):
        raise X402ConfigError(
            f"{what} is not a valid EVM address: {value!r}",
            id="aixyz_sessions.E102",
            hint="Write 0x followed by 40 hex digits; a mixed-case address must carry a "
            "correct EIP-55 checksum (or write it all lower-case).",
        )
    return value


def check_network(value: object, *, what: str = f"{SETTING}['NETWORK']") -> str:
    """Return ``value`` if it is a CAIP-2 EVM network the SDK can price in USDC."""
    if isinstance(value, list | tuple | set):
        raise X402ConfigError(
            f"{what} takes one network, not {type(value).__name__} {list(value)!r}",
            id="aixyz_sessions.E103",
            hint="NETWORK is one CAIP-2 id such as 'eip155:84532'; to take payments on "
            "several networks list them in ACCEPTS (or a route's accepts=[...]).",
        )
    networks = known_networks()
    if not isinstance(value, str) or not _NETWORK.fullmatch(value) or value not in networks:
        raise X402ConfigError(
            f"{what} is not a known x402 EVM network: {value!r}",
            id="aixyz_sessions.E103",
            hint="Use a CAIP-2 id such as 'eip155:84532' (Base Sepolia) or 'eip155:8453' "
            f"(Base); known: {', '.join(networks)}.",
        )
    return value


@dataclass(frozen=True)
class X402Config:
    """The parsed ``AIXYZ_X402`` setting."""

    pay_to: str
    network: str
    facilitator: str  # "local" or "http"
    facilitator_url: str
    facilitator_timeout: float
    replay_guard: str | None = None
    #: ``scheme://host[:port]`` sign-in messages must name; ``None``: the request's own.
    origin: str | None = None
    sign_in_window: float = DEFAULT_SIGN_IN_WINDOW
    sign_in_max_age: float = DEFAULT_SIGN_IN_MAX_AGE
    payment_id_ttl: float = DEFAULT_PAYMENT_ID_TTL
    #: Where a route's options without a network are paid (``ACCEPTS``, else ``NETWORK``).
    destinations: tuple[Destination, ...] = ()
    #: Payment channels (``BATCH_SETTLEMENT``); ``None``: not offered.
    batch_settlement: ChannelSettings | None = None
    #: Whether 402s declare the bazaar discovery extension (``DISCOVERY``).
    discovery: bool = False

    def defaults(self) -> tuple[Destination, ...]:
        """``ACCEPTS``, or ``NETWORK`` to ``PAY_TO`` when it is not set."""
        from .options import Destination

        return self.destinations or (Destination(self.network, None),)

    @property
    def is_local(self) -> bool:
        """Whether the in-process :class:`~aixyz_sessions.payments.local.LocalFacilitator` runs."""
        return self.facilitator == LOCAL


def _facilitator_error(msg: str) -> X402ConfigError:
    return X402ConfigError(
        msg,
        id="aixyz_sessions.E104",
        hint=f'Set "FACILITATOR_URL" to the https:// URL of an x402 facilitator '
        f'(default {DEFAULT_FACILITATOR_URL}), or "FACILITATOR": "local" for the '
        "in-process test facilitator; not both. FACILITATOR_TIMEOUT is a positive number.",
    )


def parse_config(value: object) -> X402Config:
    """Validate a value of the ``AIXYZ_X402`` setting; raise :class:`X402ConfigError`."""
    errors = config_errors(value)
    if errors:
        raise errors[0]
    assert isinstance(value, dict)
    facilitator = value.get("FACILITATOR")
    from ..channels.settings import parse_batch_settlement
    from .options import parse_destinations

    destinations: tuple[Destination, ...] = ()
    if value.get("ACCEPTS") is not None:
        destinations = parse_destinations(value["ACCEPTS"], what=f"{SETTING}['ACCEPTS']")
    return X402Config(
        pay_to=value["PAY_TO"],
        network=value.get("NETWORK") or destinations[0].network,
        destinations=destinations,
        facilitator=LOCAL if facilitator == LOCAL else "http",
        facilitator_url=str(value.get("FACILITATOR_URL") or DEFAULT_FACILITATOR_URL).rstrip("/"),
        facilitator_timeout=float(value.get("FACILITATOR_TIMEOUT", DEFAULT_FACILITATOR_TIMEOUT)),
        replay_guard=value.get("REPLAY_GUARD"),
        origin=None if value.get("ORIGIN") is None else str(value["ORIGIN"]).rstrip("/"),
        sign_in_window=float(value.get("SIGN_IN_WINDOW", DEFAULT_SIGN_IN_WINDOW)),
        sign_in_max_age=float(value.get("SIGN_IN_MAX_AGE", DEFAULT_SIGN_IN_MAX_AGE)),
        payment_id_ttl=float(value.get("PAYMENT_ID_TTL", DEFAULT_PAYMENT_ID_TTL)),
        batch_settlement=parse_batch_settlement(value.get("BATCH_SETTLEMENT")),
        discovery=bool(value.get("DISCOVERY", False)),
    )


def config_errors(value: object) -> list[X402ConfigError]:
    """Every problem with a value of ``AIXYZ_X402`` (empty when it can work)."""
    if not isinstance(value, dict):
        return [
            X402ConfigError(
                f"{SETTING} must be a dict, got {type(value).__name__}",
                id="aixyz_sessions.E100",
                hint=f'{SETTING} = {{"PAY_TO": "0x...", "NETWORK": "eip155:84532", '
                '"FACILITATOR_URL": "https://..."}',
            )
        ]
    errors: list[X402ConfigError] = []
    unknown = sorted(str(k) for k in set(value) - KNOWN_KEYS)
    if unknown:
        errors.append(
            X402ConfigError(
                f"{SETTING} has unknown keys: {', '.join(unknown)}",
                id="aixyz_sessions.E105",
                hint=f"Known keys: {', '.join(sorted(KNOWN_KEYS))}.",
            )
        )
    from .options import parse_destinations

    accepts = value.get("ACCEPTS")
    if accepts is not None:
        try:
            parse_destinations(accepts, what=f"{SETTING}['ACCEPTS']")
        except X402ConfigError as exc:
            errors.append(exc)
    required = (check_address, "PAY_TO"), (check_network, "NETWORK")
    for check, key in required:
        if key == "NETWORK" and accepts is not None and value.get(key) is None:
            continue  # the first entry of ACCEPTS
        try:
            check(value.get(key), what=f"{SETTING}[{key!r}]")
        except X402ConfigError as exc:
            errors.append(exc)
    facilitator: Any = value.get("FACILITATOR")
    url: Any = value.get("FACILITATOR_URL")
    timeout: Any = value.get("FACILITATOR_TIMEOUT", DEFAULT_FACILITATOR_TIMEOUT)
    if facilitator is not None and facilitator != LOCAL:
        errors.append(
            _facilitator_error(f"{SETTING}['FACILITATOR'] must be 'local', got {facilitator!r}")
        )
    elif facilitator == LOCAL and url:
        errors.append(
            _facilitator_error(f"{SETTING} sets both FACILITATOR='local' and FACILITATOR_URL")
        )
    if url is not None:
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(
                _facilitator_error(f"{SETTING}['FACILITATOR_URL'] is not an http(s) URL: {url!r}")
            )
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        errors.append(
            _facilitator_error(
                f"{SETTING}['FACILITATOR_TIMEOUT'] must be a positive number, got {timeout!r}"
            )
        )
    guard = value.get("REPLAY_GUARD")
    if guard is not None and not isinstance(guard, str):
        errors.append(
            X402ConfigError(
                f"{SETTING}['REPLAY_GUARD'] must be a dotted path, got {guard!r}",
                id="aixyz_sessions.E106",
                hint="Name a ReplayGuard subclass, instance or zero-argument factory.",
            )
        )
    errors.extend(_returning_payer_errors(value))
    from ..channels.settings import parse_batch_settlement

    try:
        parse_batch_settlement(value.get("BATCH_SETTLEMENT"))
    except X402ConfigError as exc:
        errors.append(exc)
    discovery = value.get("DISCOVERY", False)
    if not isinstance(discovery, bool):
        errors.append(
            X402ConfigError(
                f"{SETTING}['DISCOVERY'] must be True or False, got {discovery!r}",
                id="aixyz_sessions.E114",
                hint="True declares the x402 bazaar discovery extension in every paid "
                "route's 402; leave it out (False) not to.",
            )
        )
    ceiling = value.get("MAX_PRICE", DEFAULT_MAX_PRICE)
    from .decorators import check_price

    try:
        check_price(ceiling, what=f"{SETTING}['MAX_PRICE']")
    except (TypeError, ValueError) as exc:
        errors.append(
            X402ConfigError(
                str(exc),
                id="aixyz_sessions.E109",
                hint="The highest price you mean to charge per call, in dollars: '$10'.",
            )
        )
    return errors


def _returning_payer_errors(value: dict[str, Any]) -> list[X402ConfigError]:
    errors: list[X402ConfigError] = []
    for key in _DURATIONS:
        seconds = value.get(key, _DURATIONS[key])
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
            errors.append(
                X402ConfigError(
                    f"{SETTING}[{key!r}] must be a positive number of seconds, got {seconds!r}",
                    id="aixyz_sessions.E108",
                    hint=f"Leave it out for the default ({_DURATIONS[key]:g} s).",
                )
            )
    origin = value.get("ORIGIN")
    if origin is not None:
        parts = urlsplit(origin) if isinstance(origin, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or "@" in parts.netloc
        ):
            errors.append(
                X402ConfigError(
                    f"{SETTING}['ORIGIN'] must be scheme://host[:port], got {origin!r}",
                    id="aixyz_sessions.E108",
                    hint="The public origin clients reach this server at, e.g. "
                    "'https://api.example.com' (no path): sign-in messages must name it.",
                )
            )
    return errors


_config: Lazy[X402Config] = lazy_setting(
    SETTING, build=lambda: parse_config(getattr(settings, SETTING, None))
)


def get_config() -> X402Config:
    """The process's parsed ``AIXYZ_X402`` setting, read once."""
    return _config.get()


def reset_config() -> None:
    """Forget the parsed setting (the runtime forgets its own on the same signal)."""
    _config.reset()
