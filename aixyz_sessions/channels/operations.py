"""Claiming, settling and refunding channels: what ``manage.py aixyz_channels`` runs.

A channel call charges the payer's voucher in channel storage only; the money
moves on chain later, in batches, through the facilitator, by the SDK's own
channel manager (``BatchSettlementChannelManagerSync``):

* **claim**: the latest voucher of each channel, many channels per
  transaction, makes what the server charged claimable by the receiver;
* **settle**: one transaction moves everything claimed to the receiver;
* **refund**: a channel idle for ``REFUND_AFTER`` seconds gives the payer
  back what was not charged (after claiming what was).

The SDK's manager works on one receiver, token and network and on every
channel its storage lists; a project may take payments on several networks
and recipients, so channels are grouped by ``(network, receiver, token)``
(the network recovered from the channel id, the hash of the channel's
config and chain) and each group gets a manager over a view of the storage
listing only its channels.

A payer may withdraw what the server has not claimed once its channel's
``withdrawDelay`` has passed after asking (the scheme's way out of a server
that disappears). The server must claim first: a channel whose payer asked
is claimed at once, whatever its idle time, and ``CLAIM_AFTER`` is bounded
well below the withdraw delay (``E113``).
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from x402.mechanisms.evm.batch_settlement.server import (
    AutoSettlementConfig,
    BatchSettlementChannelManagerSync,
    BatchSettlementEvmScheme,
    BatchSettlementEvmSchemeServerConfig,
    ChannelManagerConfigSync,
    ClaimOptions,
    ClaimResult,
    RefundResult,
    SettleResult,
)
from x402.mechanisms.evm.batch_settlement.server.channel_manager_common import (
    get_idle_channels_for_refund,
)
from x402.mechanisms.evm.batch_settlement.server.storage import (
    Channel,
    ChannelStorage,
    ChannelUpdate,
    ChannelUpdateResult,
)
from x402.mechanisms.evm.batch_settlement.utils import compute_channel_id

from .settings import ChannelSettings

__all__ = ["Group", "Pass", "channel_network", "groups", "run_pass", "watch"]

logger = logging.getLogger("aixyz_sessions.channels")


def channel_network(channel: Channel, networks: Iterable[str]) -> str | None:
    """The network whose channel id ``channel``'s config hashes to, among ``networks``."""
    for network in networks:
        try:
            if compute_channel_id(channel.channel_config, network).lower() == channel.channel_id:
                return network
        except (ValueError, KeyError):
            continue
    return None


def known_networks() -> list[str]:
    from ..payments.conf import known_networks as networks

    return networks()


class _GroupStorage:
    """The storage, listing only one group's channels (reads and writes go through)."""

    def __init__(self, inner: ChannelStorage, ids: frozenset[str]) -> None:
        self.inner, self.ids = inner, ids

    def get(self, channel_id: str) -> Channel | None:
        return self.inner.get(channel_id)

    def list(self) -> builtins.list[Channel]:
        return [c for c in self.inner.list() if c.channel_id.lower() in self.ids]

    def update_channel(self, channel_id: str, update: ChannelUpdate) -> ChannelUpdateResult:
        return self.inner.update_channel(channel_id, update)


@dataclass
class Group:
    """The channels of one ``(network, receiver, token)`` and the SDK manager for them."""

    network: str
    receiver: str
    token: str
    #: The key that co-signs this group's claims (the channels' ``receiverAuthorizer``).
    authorizer: str = ""
    channels: list[Channel] = field(default_factory=list)
    manager: BatchSettlementChannelManagerSync | None = None

    @property
    def label(self) -> str:
        return f"{self.network} to {self.receiver} in {self.token}"


def sync_facilitator() -> Any:
    """The configured facilitator as the SDK's sync manager calls it (``verify``/``settle``)."""
    from ..payments.conf import get_config

    config = get_config()
    if config.is_local:
        from ..payments.local import get_local_facilitator

        return get_local_facilitator().sync_client
    from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync

    return HTTPFacilitatorClientSync(
        FacilitatorConfig(url=config.facilitator_url, timeout=config.facilitator_timeout)
    )


def groups(storage: ChannelStorage, facilitator: Any, withdraw_delay: int) -> list[Group]:
    """Every stored channel in its group, each group with its SDK channel manager."""
    networks = known_networks()
    found: dict[tuple[str, str, str, str], Group] = {}
    for channel in storage.list():
        network = channel_network(channel, networks)
        if network is None:
            logger.warning("x402: channel %s is on no known network; skipped", channel.channel_id)
            continue
        config = channel.channel_config
        authorizer = config.receiver_authorizer
        key = (network, config.receiver.lower(), config.token.lower(), authorizer.lower())
        group = found.setdefault(key, Group(network, config.receiver, config.token, authorizer))
        group.channels.append(channel)
    for group in found.values():
        ids = frozenset(c.channel_id.lower() for c in group.channels)
        scheme = BatchSettlementEvmScheme(
            group.receiver,
            BatchSettlementEvmSchemeServerConfig(
                storage=_GroupStorage(storage, ids),
                withdraw_delay=withdraw_delay,
            ),
        )
        group.manager = BatchSettlementChannelManagerSync(
            ChannelManagerConfigSync(
                scheme=scheme,
                facilitator=facilitator,
                receiver=group.receiver,
                token=group.token,
                network=group.network,
            )
        )
    return list(found.values())


def _unclaimable(group: Group, facilitator: Any) -> str | None:
    """Why ``facilitator`` cannot claim ``group``'s channels, if it cannot; said plainly,
    rather than as the contract's revert.

    A claim is co-signed by the channels' ``receiverAuthorizer``, which the
    facilitator holds: channels naming another key (opened through another
    facilitator, or a LocalFacilitator before its process restarted) cannot be
    claimed through this one. The LocalFacilitator's chain is its process's
    memory: channels a server process opened are unknown to a ``manage.py``
    process.
    """
    from ..payments.local import LocalFacilitatorSync

    count = f"{len(group.channels)} channel(s)"
    if isinstance(facilitator, LocalFacilitatorSync):
        from x402.mechanisms.evm.utils import get_evm_chain_id

        local = facilitator.facilitator
        if local.receiver_authorizer.lower() == group.authorizer.lower():
            chain_id = get_evm_chain_id(group.network)
            if any(local.ledger.channel(c.channel_id, chain_id=chain_id) for c in group.channels):
                return None
        return (
            f"{count} opened through the in-process LocalFacilitator of another process "
            "(the server, or one that has restarted since): its chain lives in that process's "
            "memory. Claim from the server's admin (Payment channels, 'Claim and settle now'), "
            "or run the facilitator as its own server (manage.py aixyz_local_facilitator) and "
            "set FACILITATOR_URL to it; channels of a LocalFacilitator do not survive its restart"
        )
    advertised = _advertised_authorizer(facilitator, group.network)
    if advertised is not None and advertised.lower() != group.authorizer.lower():
        return (
            f"{count} name receiverAuthorizer {group.authorizer}, but the facilitator's is "
            f"{advertised}: they were opened through another facilitator, which must claim them"
        )
    return None


def _advertised_authorizer(facilitator: Any, network: str) -> str | None:
    """The ``receiverAuthorizer`` the facilitator's ``/supported`` names for ``network``."""
    try:
        supported = facilitator.get_supported()
    except Exception:  # unreachable now: the claim itself will say so
        return None
    for kind in getattr(supported, "kinds", []):
        if kind.scheme == "batch-settlement" and kind.network == network:
            extra = kind.extra or {}
            found = extra.get("receiverAuthorizer")
            return found if isinstance(found, str) else None
    return None


@dataclass
class Pass:
    """What one pass did: ``(group label, vouchers, tx)`` claims, settlements, refunds."""

    claims: list[tuple[str, int, str]] = field(default_factory=list)
    settlements: list[tuple[str, str]] = field(default_factory=list)
    refunds: list[tuple[str, str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Channels with charged vouchers left for a later pass (idle less than CLAIM_AFTER).
    waiting: int = 0


def _unclaimed(channel: Channel) -> bool:
    return int(channel.charged_cumulative_amount) > int(channel.total_claimed)


def _claim_selector(settings: ChannelSettings, everything: bool) -> Callable[..., list[Channel]]:
    """Channels to claim: idle ``CLAIM_AFTER`` seconds, or whose payer asked to withdraw."""

    def select(channels: list[Channel], _context: Any) -> list[Channel]:
        if everything:
            return channels
        now = int(time.time() * 1000)
        idle_ms = settings.claim_after * 1000
        return [
            c
            for c in channels
            if c.withdraw_requested_at > 0 or now - c.last_request_timestamp >= idle_ms
        ]

    return select


def run_pass(
    storage: ChannelStorage,
    settings: ChannelSettings,
    *,
    everything: bool = False,
    refund: bool = True,
    facilitator: Any = None,
    say: Callable[[str], None] = logger.info,
) -> Pass:
    """One round: claim (``everything``: every charged voucher now), settle, refund idle.

    Each batch is said in one line through ``say``. A group that fails is
    reported and the others go on.
    """
    facilitator = facilitator if facilitator is not None else sync_facilitator()
    done = Pass()
    for group in groups(storage, facilitator, settings.withdraw_delay):
        manager = group.manager
        assert manager is not None
        reason = _unclaimable(group, facilitator)
        if reason:
            done.failures.append(f"{group.label}: {reason}")
            say(f"FAILED on {group.label}: {reason}")
            continue
        select = _claim_selector(settings, everything)
        charged = [c for c in group.channels if _unclaimed(c)]
        done.waiting += len(charged) - len(select(charged, None))
        try:
            claims = manager.claim(ClaimOptions(select_claim_channels=select))
            for claim in claims:
                done.claims.append((group.label, claim.vouchers, claim.transaction))
                say(f"claimed {claim.vouchers} voucher(s) on {group.label}: tx {claim.transaction}")
            if claims:
                settled = manager.settle()
                done.settlements.append((group.label, settled.transaction))
                say(f"settled claimed funds on {group.label}: tx {settled.transaction}")
            if refund:
                for result in manager.refund_idle_channels(settings.refund_after):
                    done.refunds.append((group.label, result.channel, result.transaction))
                    say(
                        f"refunded idle channel {result.channel} on {group.label}: "
                        f"tx {result.transaction}"
                    )
        except Exception as exc:  # one group's failure must not stop the others
            done.failures.append(f"{group.label}: {exc}")
            say(f"FAILED on {group.label}: {exc}")
    return done


def _timers(
    settings: ChannelSettings,
    label: str,
    say: Callable[[str], None],
    refund_idle: Callable[[list[Channel], Any], list[Channel]],
    log_error: Callable[[BaseException], None],
) -> AutoSettlementConfig:
    """The SDK manager's timers for one group, each batch said in one line."""

    def claimed(result: ClaimResult) -> None:
        say(f"claimed {result.vouchers} voucher(s) on {label}: tx {result.transaction}")

    def settled(result: SettleResult) -> None:
        say(f"settled claimed funds on {label}: tx {result.transaction}")

    def refunded(result: RefundResult) -> None:
        say(f"refunded idle channel {result.channel} on {label}: tx {result.transaction}")

    return AutoSettlementConfig(
        claim_interval_secs=max(1, settings.claim_after),
        settle_interval_secs=settings.settle_every,
        refund_interval_secs=max(1, settings.claim_after),
        select_claim_channels=_claim_selector(settings, False),
        select_refund_channels=refund_idle,
        on_claim=claimed,
        on_settle=settled,
        on_refund=refunded,
        on_error=log_error,
    )


def watch(
    storage: ChannelStorage,
    settings: ChannelSettings,
    *,
    stop: threading.Event,
    facilitator: Any = None,
    rescan: float = 60.0,
    say: Callable[[str], None] = logger.info,
) -> None:
    """Run the SDK's timers (claim every ``CLAIM_AFTER``, settle every ``SETTLE_EVERY``,
    refund channels idle ``REFUND_AFTER``) for every group until ``stop`` is set.

    Groups are found again every ``rescan`` seconds (a first payment on a new
    network starts a new one). On stop, every charged voucher is claimed and
    settled (``flush``), so nothing charged is left unclaimed by a restart.
    """
    facilitator = facilitator if facilitator is not None else sync_facilitator()
    running: dict[str, BatchSettlementChannelManagerSync] = {}

    def refund_idle(channels: list[Channel], _context: Any) -> list[Channel]:
        return get_idle_channels_for_refund(channels, settings.refund_after)

    def log_error(exc: BaseException) -> None:
        say(f"FAILED: {exc}")

    while not stop.is_set():
        for group in groups(storage, facilitator, settings.withdraw_delay):
            if group.label in running:
                continue
            manager = group.manager
            assert manager is not None
            label = group.label
            manager.start(_timers(settings, group.label, say, refund_idle, log_error))
            running[label] = manager
            say(f"watching channels on {label}")
        stop.wait(rescan)
    for manager in running.values():
        manager.stop()
    # Claims are cumulative: claiming every charged voucher now is safe, and a
    # restart leaves nothing charged unclaimed for longer than it is down.
    run_pass(storage, settings, everything=True, refund=False, facilitator=facilitator, say=say)
