"""The x402 machinery built from ``AIXYZ_X402``: one per process and setting.

One ``x402ResourceServer`` (exact and upto EVM schemes, the configured facilitator),
one ``x402HTTPResourceServer`` per distinct :class:`PaidSpec` (each with a
single catch-all route, since Django's URL resolver already decided that the
view is paid), and the replay guard.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.utils.module_loading import import_string
from x402 import x402ResourceServer
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    declare_payment_identifier_extension,
    payment_identifier_resource_server_extension,
)
from x402.http import HTTPRequestContext, PaymentOption, RouteConfig, x402HTTPResourceServer
from x402.http.types import HTTPProcessResult, HTTPResponseInstructions
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.mechanisms.evm.upto.server import UptoEvmScheme as UptoEvmServerScheme
from x402.schemas import AssetAmount, PaymentRequirements

from ..conf import SETTING as STORE_SETTING
from ..conf import get_store
from ..lazy import Lazy, lazy_setting
from ..replay import InMemoryReplayGuard, PayerRecords, PaymentClaims, ReplayGuard
from .authorization import after_verify
from .conf import SETTING as X402_SETTING
from .conf import X402Config, X402ConfigError, get_config
from .decorators import PaidSpec
from .facilitators import LoopLocalHTTPFacilitator, ReportingFacilitator
from .options import ResolvedOption, resolve, with_channels

if TYPE_CHECKING:
    from ..channels.scheme import ChannelScheme

logger = logging.getLogger("aixyz_sessions.payments")

__all__ = [
    "MAX_CHALLENGES",
    "MAX_CHALLENGE_KEY_CHARS",
    "PaymentRuntime",
    "get_runtime",
    "reset_runtime",
]

#: Most unpaid 402 answers a runtime keeps (one per resource and client kind).
MAX_CHALLENGES = 1024
#: Longest key (URL, Accept, User-Agent... together, in characters) whose 402 is kept: the
#: client chooses them, and an answer repeats its URL, so the cache stays a few MB at most.
MAX_CHALLENGE_KEY_CHARS = 2048


def build_replay_guard(path: str | None) -> ReplayGuard:
    """The guard named by ``AIXYZ_X402["REPLAY_GUARD"]``, else the session store's.

    Without the setting, claims live where the configured session store keeps
    its data when that is shared (Redis, the database: every worker process
    refuses a replay) and in this process's memory otherwise.
    """
    if path is None:
        return get_store().replay_guard() or InMemoryReplayGuard()
    target = import_string(path)
    guard = target() if inspect.isclass(target) or callable(target) else target
    if not isinstance(guard, ReplayGuard):
        raise X402ConfigError(
            f"AIXYZ_X402['REPLAY_GUARD'] = {path!r} does not give a ReplayGuard",
            id="aixyz_sessions.E106",
            hint="Name a ReplayGuard subclass, instance or zero-argument factory.",
        )
    return guard


#: Where :class:`FixedPriceHTTPServer` puts a failure to build a route's requirements.
_build_failure: ContextVar[list[Exception] | None] = ContextVar("aixyz_build_failure", default=None)


class FixedPriceHTTPServer(x402HTTPResourceServer):
    """The SDK's HTTP resource server for one :class:`PaidSpec`: requirements built once.

    A spec's price, recipient and network are plain values (``@paid`` takes
    no callables), so the payment requirements the SDK builds from them are
    the same on every request; it rebuilds them per request otherwise (price
    parsing, the scheme's enrichment, pydantic models: about 0.05 ms of each
    paid call). Each request gets a new list of the same frozen-in-practice
    models: the SDK derives changed requirements with ``model_copy``, it does
    not edit them.
    """

    _built: list[PaymentRequirements] | None = None

    async def process_http_request(
        self, context: HTTPRequestContext, paywall_config: Any = None
    ) -> HTTPProcessResult:
        """The SDK's answer, or the reason the route's options cannot be offered.

        The SDK turns an exception raised while it builds the requirements into
        a bare "Failed to process request"; a route whose options the
        facilitator does not support (``upto`` on a network it lacks, say) is
        the server's fault, and says so (:class:`PaymentFailure`
        ``server_misconfigured``, logged with the scheme and network).
        """
        slot: list[Exception] = []
        token = _build_failure.set(slot)
        try:
            result = await super().process_http_request(context, paywall_config)
        finally:
            _build_failure.reset(token)
        if slot:
            raise slot[0]
        return result

    async def _build_payment_requirements_from_options(
        self,
        options: PaymentOption | list[PaymentOption],
        context: HTTPRequestContext,
        timeout: float | None,  # noqa: ASYNC109 - the SDK's signature (its hook timeout)
    ) -> list[PaymentRequirements]:
        if self._built is None:
            try:
                self._built = await super()._build_payment_requirements_from_options(
                    options, context, timeout
                )
            except Exception as exc:  # the facilitator lacks a scheme or network, ...
                failure = _cannot_offer(options, exc)
                slot = _build_failure.get()
                if slot is not None:
                    slot.append(failure)
                raise failure from exc
        return list(self._built)


class PaymentRuntime:
    """Everything the middleware needs for one configuration."""

    def __init__(self, config: X402Config, *, replay_guard: ReplayGuard | None = None) -> None:
        self.config = config
        if config.is_local:
            from .local import get_local_facilitator

            inner: object = get_local_facilitator()
        else:
            inner = LoopLocalHTTPFacilitator(
                config.facilitator_url, timeout=config.facilitator_timeout
            )
        self.facilitator = ReportingFacilitator(inner)  # type: ignore[arg-type]
        self.server: x402ResourceServer
        if config.discovery:  # AIXYZ_X402["DISCOVERY"]
            from .discovery import DiscoveryResourceServer

            self.server = DiscoveryResourceServer(self.facilitator)
        else:
            self.server = x402ResourceServer(self.facilitator)
        self.server.register(
            "eip155:*",
            ExactEvmServerScheme(),  # type: ignore[no-untyped-call, arg-type]
        )
        self.server.register("eip155:*", UptoEvmServerScheme())  # type: ignore[no-untyped-call, arg-type]
        #: The ``batch-settlement`` scheme when ``BATCH_SETTLEMENT`` is set (its storage:
        #: ``channel_scheme.channel_storage``), else ``None``.
        self.channel_scheme: ChannelScheme | None = None
        channels = config.batch_settlement
        if channels is not None:
            from ..channels.backends import build_channel_storage
            from ..channels.scheme import ChannelScheme

            self.channel_scheme = ChannelScheme(
                config.pay_to,
                build_channel_storage(channels.storage),
                withdraw_delay=channels.withdraw_delay,
            )
            self.server.register("eip155:*", self.channel_scheme)  # type: ignore[arg-type]
        # Binds the payer the facilitator verified, on every transport (HTTP, WS, MCP).
        self.server.on_after_verify(after_verify)
        self.server.register_extension(
            payment_identifier_resource_server_extension  # type: ignore[arg-type]  # SDK's own
        )
        if config.discovery:  # AIXYZ_X402["DISCOVERY"]: the bazaar declarations' methods
            from .discovery import discovery_enricher

            self.server.register_extension(discovery_enricher)  # type: ignore[arg-type]
        self.replay_guard = replay_guard or build_replay_guard(config.replay_guard)
        #: The guard's two jobs, as the paid-call core uses them (one backend).
        self.claims: PaymentClaims = self.replay_guard
        self.records: PayerRecords = self.replay_guard
        self._lock = threading.Lock()
        self._initialized = False
        #: When (``time.monotonic()``) the facilitator last answered ``/supported``; one
        #: readiness probe at a time asks again (see :meth:`confirm_facilitator`).
        self._supported_at = float("-inf")
        self._supported_lock = threading.Lock()
        self._http_servers: dict[PaidSpec, x402HTTPResourceServer] = {}
        self._offers: dict[PaidSpec, tuple[ResolvedOption, ...]] = {}
        #: Unpaid JSON 402 answers (a few KB each) by (spec, method, path, URL, Accept,
        #: User-Agent); see ``X402Middleware._challenge``. Bounded: emptied at the cap.
        self.challenges: dict[tuple[object, ...], HTTPResponseInstructions] = {}

    def remember_challenge(self, key: tuple[object, ...], value: HTTPResponseInstructions) -> None:
        """Keep one unpaid answer (at most :data:`MAX_CHALLENGES`; then start afresh).

        An answer whose key is longer than :data:`MAX_CHALLENGE_KEY_CHARS` is
        not kept: bounding entries alone would let long client-chosen URLs and
        User-Agents fill memory.
        """
        if sum(len(part) for part in key if isinstance(part, str)) > MAX_CHALLENGE_KEY_CHARS:
            return
        if len(self.challenges) >= MAX_CHALLENGES:
            self.challenges.clear()
        self.challenges[key] = value

    def _initialize_sync(self) -> None:
        with self._lock:
            if not self._initialized:
                self.server.initialize()  # GET /supported
                self._initialized = True
                self._supported_at = time.monotonic()

    @property
    def initialized(self) -> bool:
        """Whether the facilitator has said what it supports (see :meth:`ensure_initialized`)."""
        return self._initialized

    async def ensure_initialized(self) -> None:
        """Ask the facilitator what it supports, once (off the event loop). Raises on failure."""
        if not self._initialized:
            await asyncio.to_thread(self._initialize_sync)

    def _confirm_sync(self, within: float) -> None:
        # One probe at a time: those that waited here see the answer it just got.
        with self._supported_lock:
            if time.monotonic() - self._supported_at < within:
                return
            if self._initialized:
                self.facilitator.get_supported()  # blocking; failures noted as on a paid call
                self._supported_at = time.monotonic()
            else:  # the first answer is the initialization paid calls wait for anyway
                self._initialize_sync()

    async def confirm_facilitator(self, within: float) -> None:
        """Check that the facilitator answers ``/supported`` now (off the event loop).

        A success less than ``within`` seconds old (this, or the initialization
        :meth:`ensure_initialized` runs) stands for a new one, so readiness probes
        do not ask the facilitator on every request. Raises on failure;
        initializes the runtime when it was not yet.
        """
        if time.monotonic() - self._supported_at >= within:
            await asyncio.to_thread(self._confirm_sync, within)

    def offers(self, spec: PaidSpec) -> tuple[ResolvedOption, ...]:
        """``spec``'s options as the 402 offers them (networks and recipients filled in).

        Raises :class:`X402ConfigError` (``E112``) when two come out the same.
        """
        offers = self._offers.get(spec)
        if offers is None:
            config = self.config
            try:
                offers = resolve(spec.offered(), config.defaults(), config.pay_to)
                if self.channel_scheme is not None:
                    offers = with_channels(offers)
            except X402ConfigError as exc:  # manage.py check says so too (E110, E112)
                raise _misconfigured_route(spec, exc) from exc
            self._offers[spec] = offers
        return offers

    def _gas_sponsoring(self, offers: tuple[ResolvedOption, ...]) -> dict[str, Any]:
        """The gas-sponsoring extensions to declare for ``offers``' Permit2 payments.

        An ``upto`` payer needs a Permit2 allowance of the token; a facilitator
        that advertises the SDK's ``eip2612GasSponsoring`` (an EIP-2612 permit
        signed with the payment) or ``erc20ApprovalGasSponsoring`` (a signed
        approval it broadcasts) for ``upto`` on an offered network can set it up
        for the payer, but the client signs one only when the 402 declares it.
        """
        from x402.extensions.eip2612_gas_sponsoring import (
            EIP2612_GAS_SPONSORING_KEY,
            declare_eip2612_gas_sponsoring_extension,
        )
        from x402.extensions.erc20_approval_gas_sponsoring import (
            ERC20_APPROVAL_GAS_SPONSORING_KEY,
            declare_erc20_approval_gas_sponsoring_extension,
        )

        declarations = {
            EIP2612_GAS_SPONSORING_KEY: declare_eip2612_gas_sponsoring_extension,
            ERC20_APPROVAL_GAS_SPONSORING_KEY: declare_erc20_approval_gas_sponsoring_extension,
        }
        advertised: set[str] = set()
        for offer in offers:
            if offer.option.metered and not offer.channel:
                # The SDK keeps what /supported said per scheme and network here.
                advertised.update(self.server._facilitator_extensions(offer.network, "upto"))
        declared: dict[str, Any] = {}
        for key, declare in declarations.items():
            if key in advertised:
                declared.update(declare())
        return declared

    def _discovery(self, spec: PaidSpec) -> dict[str, Any]:
        """The bazaar declaration for ``spec`` when ``AIXYZ_X402["DISCOVERY"]`` is on."""
        if not self.config.discovery:
            return {}
        from .discovery import declare

        return declare(spec)

    def sign_in_network(self, spec: PaidSpec) -> str:
        """The chain a sign-in for ``spec`` names: its own, its first option's, else NETWORK."""
        if spec.network:
            return spec.network
        offers = self.offers(spec) if spec.charges else ()
        return offers[0].network if offers else self.config.network

    def offer_of(self, spec: PaidSpec, requirements: PaymentRequirements) -> ResolvedOption | None:
        """Which of ``spec``'s offers the verified ``requirements`` came from."""
        for offer in self.offers(spec):
            option = offer.option
            if (
                offer.scheme == requirements.scheme
                and offer.network == requirements.network
                and offer.pay_to.lower() == str(requirements.pay_to).lower()
                and (option.asset is None or option.asset.lower() == requirements.asset.lower())
            ):
                return offer
        return None

    def http_server(self, spec: PaidSpec) -> x402HTTPResourceServer:
        """The SDK's HTTP resource server for one set of payment options."""
        server = self._http_servers.get(spec)
        if server is None:
            offers = self.offers(spec)
            with self._lock:
                server = self._http_servers.get(spec)
                if server is None:
                    channels = self.config.batch_settlement
                    least = None if channels is None else channels.min_deposit
                    route = RouteConfig(
                        accepts=[_payment_option(offer, least) for offer in offers],
                        # The SDK's paywall page appends ". To access this content...".
                        description=(spec.description or "").rstrip(" .") or None,
                        # Safe retries: a payment may carry an id (see payments.retries).
                        extensions={
                            PAYMENT_IDENTIFIER: declare_payment_identifier_extension(),
                            **self._gas_sponsoring(offers),
                            **self._discovery(spec),
                        },
                    )
                    server = FixedPriceHTTPServer(self.server, route)
                    self._http_servers[spec] = server
        return server


def _misconfigured_route(spec: PaidSpec, exc: X402ConfigError) -> Exception:
    """A route whose options cannot be offered with this configuration: a server fault."""
    from .readiness import misconfigured

    where = spec.resource or spec.description or "a paid route"
    logger.error("x402: %s cannot be offered: %s", where, exc)
    return misconfigured(f"{where}: {exc.msg}")


def _cannot_offer(options: PaymentOption | list[PaymentOption], exc: Exception) -> Exception:
    """A route whose options the SDK cannot turn into requirements: a server fault."""
    from .readiness import misconfigured

    listed = options if isinstance(options, list) else [options]
    offered = ", ".join(f"{o.scheme} on {o.network}" for o in listed)
    logger.error(
        "x402: cannot offer %s: %s (does the facilitator support each scheme and network?)",
        offered,
        exc,
    )
    return misconfigured(f"cannot offer {offered}: {exc}")


def _payment_option(offer: ResolvedOption, min_deposit: str | None = None) -> PaymentOption:
    """One offer as the SDK's route option (a channel's asks ``min_deposit`` first, if set)."""
    option = offer.option
    price: str | AssetAmount
    if option.price is not None:
        price = option.price
    else:
        assert option.amount is not None and option.asset is not None
        price = AssetAmount(amount=option.amount, asset=option.asset, extra=dict(option.extra))
    extra = dict(option.extra)
    if offer.channel and min_deposit is not None:
        extra["minDeposit"] = min_deposit  # the SDK's hint: atomic units or "$1"
    return PaymentOption(
        scheme=offer.scheme,
        pay_to=offer.pay_to,
        price=price,
        network=offer.network,
        extra=extra or None,
    )


# Built from AIXYZ_X402; the default replay guard lives in the session store's backend.
_runtime: Lazy[PaymentRuntime] = lazy_setting(
    X402_SETTING, STORE_SETTING, build=lambda: PaymentRuntime(get_config())
)


def get_runtime() -> PaymentRuntime:
    """The process's runtime for the current ``AIXYZ_X402``."""
    return _runtime.get()


def reset_runtime() -> None:
    """Drop the runtime (settings changed; tests)."""
    _runtime.reset()
