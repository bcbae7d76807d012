"""A memo for the SDK's ``compute_channel_id``: the same hash, computed once per channel.

A channel's id is the EIP-712 hash of its config and chain. The SDK's server
scheme computes it twice for every voucher (binding the claimed id before
verification, checking the config in the local verification), at about
0.4 ms each in pure Python: more than everything else a channel call costs
this app. It is a pure function of ``(config, network)``, and a payer sends
the same config on every call, so the SDK's two module-level references are
pointed at one memoized wrapper (:func:`install`, idempotent; bounded LRU).
If a later SDK renames them, the patch just finds nothing and the SDK's own
function runs.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

__all__ = ["install", "memoized"]

#: Distinct (config, network) pairs remembered: a few per active payer.
MAX_IDS = 16_384
_MARK = "_aixyz_memoized"
_lock = threading.Lock()


def memoized(inner: Any) -> Any:
    """``inner(config, network)`` remembered by the config's fields and the network."""

    @functools.lru_cache(maxsize=MAX_IDS)
    def by_fields(fields: tuple[Any, ...], network: str | int) -> str:
        from x402.mechanisms.evm.batch_settlement.types import ChannelConfig

        return str(inner(ChannelConfig(*fields), network))

    @functools.wraps(inner)
    def compute_channel_id(config: Any, network: str | int) -> str:
        fields = (
            config.payer,
            config.payer_authorizer,
            config.receiver,
            config.receiver_authorizer,
            config.token,
            config.withdraw_delay,
            config.salt,
        )
        try:
            return by_fields(fields, network)
        except TypeError:  # a field that cannot be a key (not hashable): compute it
            return str(inner(config, network))

    setattr(compute_channel_id, _MARK, True)
    return compute_channel_id


def install() -> None:
    """Point the SDK server's references to ``compute_channel_id`` at the memo (once)."""
    from x402.mechanisms.evm.batch_settlement import utils
    from x402.mechanisms.evm.batch_settlement.facilitator import utils as verification

    with _lock:
        for module in (utils, verification):
            current = getattr(module, "compute_channel_id", None)
            if current is not None and not getattr(current, _MARK, False):
                module.compute_channel_id = memoized(current)  # type: ignore[attr-defined]
