"""Reading ``AIXYZ_X402["BATCH_SETTLEMENT"]``: payment channels, on or off, and how.

::

    AIXYZ_X402 = {
        ...,
        "BATCH_SETTLEMENT": {},             # on, with every default below
        "BATCH_SETTLEMENT": {
            "STORAGE": "default",           # where channels live: see below
            "WITHDRAW_DELAY": 900,          # seconds a payer waits to withdraw (900..2592000)
            "MIN_DEPOSIT": "$1",            # least first deposit asked for (default: 10 calls)
            "CLAIM_AFTER": 60,              # aixyz_channels: claim vouchers idle this long (s)
            "SETTLE_EVERY": 3600,           # aixyz_channels --watch: settle claimed funds (s)
            "REFUND_AFTER": 86400,          # aixyz_channels: refund channels idle this long (s)
        },
    }

``STORAGE`` (the same backends as sessions and claims; channel state must be
durable, never per process):

* ``"default"``: where the session store keeps its data: the database of a
  ``DatabaseSessionStore``, the Redis of a Redis or cache store; the
  ``default`` database for any other store;
* ``"database"`` or ``"database:<alias>"``: the ``Channel`` table;
* ``"redis://..."`` / ``"rediss://..."``: Redis at that URL;
* a dotted path to a ``ChannelStorage`` instance, class or zero-argument factory.

A value that cannot work is :class:`~aixyz_sessions.payments.conf.X402ConfigError`
``aixyz_sessions.E113`` (``manage.py check`` reports it with a hint).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ChannelSettings", "parse_batch_settlement"]

KEYS = frozenset(
    {"STORAGE", "WITHDRAW_DELAY", "MIN_DEPOSIT", "CLAIM_AFTER", "SETTLE_EVERY", "REFUND_AFTER"}
)
_DIGITS = re.compile(r"[0-9]+")
DEFAULT_CLAIM_AFTER = 60
DEFAULT_SETTLE_EVERY = 3600
DEFAULT_REFUND_AFTER = 24 * 3600
WHAT = "AIXYZ_X402['BATCH_SETTLEMENT']"
HINT = (
    "BATCH_SETTLEMENT is a dict ({} for the defaults) with STORAGE ('default', 'database', "
    "'database:<alias>', a redis:// URL or a dotted path), WITHDRAW_DELAY (seconds, "
    "900 to 2592000), MIN_DEPOSIT ('$1' or atomic units) and CLAIM_AFTER, SETTLE_EVERY, "
    "REFUND_AFTER (seconds)."
)


@dataclass(frozen=True)
class ChannelSettings:
    """The parsed ``BATCH_SETTLEMENT`` setting."""

    storage: str = "default"
    withdraw_delay: int = 900
    #: ``"$1"`` or atomic units as a str; ``None``: the SDK's default (ten calls' worth).
    min_deposit: str | None = None
    claim_after: int = DEFAULT_CLAIM_AFTER
    settle_every: int = DEFAULT_SETTLE_EVERY
    refund_after: int = DEFAULT_REFUND_AFTER


def _error(message: str) -> Exception:
    from ..payments.conf import X402ConfigError

    return X402ConfigError(f"{WHAT}: {message}", id="aixyz_sessions.E113", hint=HINT)


def _seconds(value: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    seconds = value.get(key, default)
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not low <= seconds <= high:
        raise _error(f"{key} must be whole seconds from {low} to {high}, got {seconds!r}")
    return seconds


def _storage(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _error(f"STORAGE must be a non-empty str, got {value!r}")
    if value in ("default", "database"):
        return value
    if value.startswith(("redis://", "rediss://")):
        import importlib.util

        if importlib.util.find_spec("redis") is None:
            raise _error(
                "STORAGE is a Redis URL, but the redis package is not installed "
                "(pip install 'aixyz-sessions[redis]')"
            )
        return value
    if value.startswith("database:"):
        from django.conf import settings

        alias = value.partition(":")[2]
        if alias not in settings.DATABASES:
            raise _error(f"STORAGE names database {alias!r}, which is not in settings.DATABASES")
        return value
    if "." in value and " " not in value and "/" not in value:
        return value  # a dotted path, imported when the runtime is built
    raise _error(f"STORAGE {value!r} is not 'default', 'database[:alias]', a redis URL or a path")


def _min_deposit(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if isinstance(value, str) and _DIGITS.fullmatch(value) and int(value) > 0:
        return str(int(value))  # ASCII digits only: "١٢٣" is no amount
    if isinstance(value, str) and value.startswith("$"):
        from ..payments.decorators import check_price

        try:
            return check_price(value, what="MIN_DEPOSIT")
        except (TypeError, ValueError) as exc:
            raise _error(str(exc)) from None
    raise _error(f"MIN_DEPOSIT must be a price such as '$1' or atomic units, got {value!r}")


def parse_batch_settlement(value: object) -> ChannelSettings | None:
    """``None`` when channels are off (the key is absent or ``None``); raises ``E113``."""
    from x402.mechanisms.evm.batch_settlement.constants import (
        MAX_WITHDRAW_DELAY,
        MIN_WITHDRAW_DELAY,
    )

    if value is None:
        return None
    if not isinstance(value, dict):
        raise _error(f"must be a dict ({{}} for the defaults), got {type(value).__name__}")
    unknown = sorted(str(key) for key in set(value) - KEYS)
    if unknown:
        raise _error(f"unknown keys {', '.join(unknown)}")
    day = 24 * 3600
    parsed = ChannelSettings(
        storage=_storage(value.get("STORAGE", "default")),
        withdraw_delay=_seconds(
            value, "WITHDRAW_DELAY", MIN_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY, MAX_WITHDRAW_DELAY
        ),
        min_deposit=_min_deposit(value.get("MIN_DEPOSIT")),
        claim_after=_seconds(value, "CLAIM_AFTER", DEFAULT_CLAIM_AFTER, 0, 30 * day),
        settle_every=_seconds(value, "SETTLE_EVERY", DEFAULT_SETTLE_EVERY, 1, 30 * day),
        refund_after=_seconds(value, "REFUND_AFTER", DEFAULT_REFUND_AFTER, 0, 365 * day),
    )
    if parsed.claim_after * 2 > parsed.withdraw_delay:
        # A payer who asks to withdraw gets what is unclaimed once the delay has
        # passed: vouchers must be claimed well before that (aixyz_channels).
        raise _error(
            f"CLAIM_AFTER ({parsed.claim_after} s) must be at most half of WITHDRAW_DELAY "
            f"({parsed.withdraw_delay} s), or a withdrawing payer takes back what was charged"
        )
    return parsed
