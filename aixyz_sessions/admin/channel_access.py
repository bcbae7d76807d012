"""What the admin's "Payment channels" pages ask of the configured ``ChannelStorage``.

The storage is the payment runtime's (``get_runtime().channel_scheme.channel_storage``),
so the pages show exactly the channels the server charges against. Every
storage answers the SDK's protocol (``get``, ``list``); the database one is
read through its table's copied columns instead, so a page of the list loads
one page of rows, not every channel. Either way the figures shown come from
the SDK's record (the table's ``data``), the only source of truth: the
columns only sort and filter.

All of it is synchronous, like the storages; the admin's views are too.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.paginator import Page, Paginator
from django.db import DatabaseError

from ..conf import SettingError
from ..exceptions import SessionStoreUnavailable

if TYPE_CHECKING:
    from x402.mechanisms.evm.batch_settlement.server.storage import Channel, ChannelStorage

__all__ = [
    "ChannelView",
    "channels_configured",
    "channels_page",
    "configured_storage",
    "describe",
    "normalize_id",
    "short",
]


def channels_configured() -> bool:
    """Whether ``AIXYZ_X402["BATCH_SETTLEMENT"]`` is set (and the setting parses).

    Reads the parsed setting only: the admin index and the sessions pages ask
    on every request, and must not build the payment runtime (or reach the
    storage) to do so.
    """
    from ..payments.conf import get_config

    try:
        return get_config().batch_settlement is not None
    except SettingError:
        return False


def configured_storage() -> ChannelStorage | None:
    """The runtime's channel storage; ``None`` when channels are off."""
    if not channels_configured():
        return None
    from ..payments.runtime import get_runtime

    scheme = get_runtime().channel_scheme
    return None if scheme is None else scheme.channel_storage


def normalize_id(text: str) -> str | None:
    """A channel id as the storages file it (lower case), or ``None`` if it is not one."""
    from x402.mechanisms.evm.batch_settlement.utils import normalize_channel_id

    try:
        return normalize_channel_id(text)
    except ValueError:
        return None


def short(text: str, head: int = 6, tail: int = 4) -> str:
    """``0x1234…abcd``: enough of a long hex string to tell it apart in a table."""
    return text if len(text) <= head + tail + 1 else f"{text[:head]}…{text[-tail:]}"


@functools.cache
def _usd_tokens() -> frozenset[str]:
    """Lower-case addresses of the SDK's default USD stablecoins that have 6 decimals."""
    from x402.mechanisms.evm.default_assets import DEFAULT_ASSETS

    return frozenset(
        asset["asset"].lower()
        for assets in DEFAULT_ASSETS.values()
        for asset in assets
        if asset["decimals"] == 6
    )


def dollars(units: int, token: str) -> str | None:
    """``"$1.50"`` for an amount of a known 6-decimal USD token; ``None`` for any other token.

    Only tokens the SDK lists as USD-pegged defaults qualify: a channel's
    record does not say how many decimals its token has.
    """
    if token.lower() not in _usd_tokens():
        return None
    text = f"{Decimal(units).scaleb(-6):,.6f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


def _time(epoch_ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC) if epoch_ms else None


@dataclass(frozen=True, slots=True)
class Amount:
    """Token base units, with the dollar value when the token is a known 6-decimal stablecoin."""

    units: int
    usd: str | None


@dataclass(frozen=True, slots=True)
class ChannelView:
    """One channel as the admin shows it."""

    channel: Channel
    balance: Amount
    charged: Amount
    claimed: Amount
    #: ``charged - claimed``: what the server has charged and may still claim.
    pending: Amount
    signed_max: Amount
    last_activity: datetime | None
    #: When the payer asked to withdraw (the contract's block time, seconds); ``None``: never.
    withdraw_requested: datetime | None
    synced: datetime | None
    #: A request holds the channel now (its reservation has not expired).
    busy: bool
    busy_until: datetime | None

    @property
    def id(self) -> str:
        return self.channel.channel_id.lower()

    @property
    def short_id(self) -> str:
        return short(self.id, 10, 6)

    @property
    def payer(self) -> str:
        return self.channel.channel_config.payer.lower()

    @property
    def signature_short(self) -> str:
        return short(self.channel.signature, 12, 10)


def describe(channel: Channel, now_ms: int) -> ChannelView:
    token = channel.channel_config.token

    def amount(units: int) -> Amount:
        return Amount(units, dollars(units, token))

    charged, claimed = int(channel.charged_cumulative_amount), int(channel.total_claimed)
    pending = channel.pending_request
    withdraw = channel.withdraw_requested_at
    return ChannelView(
        channel=channel,
        balance=amount(int(channel.balance)),
        charged=amount(charged),
        claimed=amount(claimed),
        pending=amount(charged - claimed),
        signed_max=amount(int(channel.signed_max_claimable)),
        last_activity=_time(channel.last_request_timestamp),
        withdraw_requested=_time(withdraw * 1000) if withdraw else None,
        synced=_time(channel.onchain_synced_at),
        busy=pending is not None and pending.expires_at > now_ms,
        busy_until=_time(pending.expires_at) if pending is not None else None,
    )


def _database_page(storage: Any, payer: str, number: str | int, per_page: int) -> Page[Channel]:
    """A page from the table: filtered and sorted by its columns, figures from ``data``."""
    from x402.mechanisms.evm.batch_settlement.server.storage import Channel

    from ..channels.models import Channel as ChannelRow

    rows = ChannelRow.objects.using(storage.using).order_by("-last_request_timestamp", "pk")
    if payer:
        rows = rows.filter(payer__startswith=payer)  # the column is lower case
    try:
        page: Page[Any] = Paginator(rows.values_list("data", flat=True), per_page).get_page(number)
        page.object_list = [Channel.from_dict(data) for data in page.object_list]
    except DatabaseError as exc:
        raise SessionStoreUnavailable(
            f"DatabaseChannelStorage: listing channels failed on database {storage.using!r}: {exc}"
        ) from exc
    return page


def _listed_page(
    storage: ChannelStorage, payer: str, number: str | int, per_page: int
) -> Page[Channel]:
    """A page of ``storage.list()``: every channel read, filtered and sorted here."""
    channels = sorted(
        (c for c in storage.list() if c.channel_config.payer.lower().startswith(payer)),
        key=lambda c: (-c.last_request_timestamp, c.channel_id.lower()),
    )
    return Paginator(channels, per_page).get_page(number)


def channels_page(
    storage: ChannelStorage, *, payer: str, number: str | int, per_page: int
) -> Page[Channel]:
    """Page ``number`` of the channels whose payer starts with ``payer`` (lower case), newest
    activity first; a page number out of range gives the last page, as the admin does."""
    from ..channels.scheme import LoopSafeStorage
    from ..channels.storage import DatabaseChannelStorage

    inner = storage.inner if isinstance(storage, LoopSafeStorage) else storage
    if isinstance(inner, DatabaseChannelStorage):
        return _database_page(inner, payer, number, per_page)
    return _listed_page(storage, payer, number, per_page)
