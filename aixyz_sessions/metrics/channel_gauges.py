"""Payment channel gauges, read from the channel storage when ``/metrics`` is scraped.

The storage every worker shares is the truth about open channels, so the
gauges are read from it at scrape time (by whichever worker answers), not
kept per process: they need no multiprocess mode and cannot drift. Only with
``AIXYZ_X402["BATCH_SETTLEMENT"]``. Reading lists every channel record: fine
for thousands of channels; a scrape interval of a minute or more is plenty.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from ..conf import SettingError

__all__ = ["ChannelGauges"]

logger = logging.getLogger("aixyz_sessions.metrics")


class ChannelGauges:
    """A prometheus-client collector of the open channels, by token (``asset``)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from ..payments.conf import get_config

        try:
            if get_config().batch_settlement is None:
                return
        except SettingError:  # reported by the system check
            return
        up = GaugeMetricFamily(
            "aixyz_channel_storage_up", "1 when the channel storage answered this scrape."
        )
        try:
            channels = _storage().list()
        except Exception as exc:  # an outage shows as up 0, never as a failed scrape
            logger.warning("aixyz_sessions: /metrics could not read the channels: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        count: dict[str, int] = defaultdict(int)
        deposits: dict[str, int] = defaultdict(int)
        unclaimed: dict[str, int] = defaultdict(int)
        for channel in channels:
            asset = channel.channel_config.token
            count[asset] += 1
            deposits[asset] += _units(channel.balance) - _units(channel.total_claimed)
            unclaimed[asset] += _units(channel.charged_cumulative_amount) - _units(
                channel.total_claimed
            )
        families = (
            ("aixyz_channels_open", "Payment channels this server holds a record of.", count),
            (
                "aixyz_channel_balance_atomic_units",
                "What the open channels hold and have not paid out, in atomic units.",
                deposits,
            ),
            (
                "aixyz_channel_unclaimed_atomic_units",
                "Charged to channels and not yet claimed on chain, in atomic units.",
                unclaimed,
            ),
        )
        for name, documentation, values in families:
            family = GaugeMetricFamily(name, documentation, labels=["asset"])
            for asset, value in sorted(values.items()):
                family.add_metric([asset], value)
            yield family


def _storage() -> Any:
    from ..payments.runtime import get_runtime

    scheme = get_runtime().channel_scheme
    assert scheme is not None  # BATCH_SETTLEMENT is set
    return scheme.channel_storage


def _units(text: object) -> int:
    return int(text) if isinstance(text, str) and text.isascii() and text.isdigit() else 0
