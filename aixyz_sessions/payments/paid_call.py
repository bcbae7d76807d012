"""The paid-call flow, once, for every transport: :meth:`PaidCall.run` owns the order.

kept answer (a retry with a payment identifier) -> verify (the facilitator,
through the SDK) -> claim the authorization in the replay guard -> run the
work inside the payer's :class:`~aixyz_sessions.staging.StagedSession`, with
the call's :class:`~aixyz_sessions.payments.metering.Meter` for ``charge()``
-> settle (what a metered ``upto`` call charged; the verified option's price
otherwise) -> commit the staged session writes -> record the payment (sign-in)
-> keep the answer (retries) -> release what is left. Commit, record and
keep are one step where the store keeps the replay guard's records beside
the session (one round trip on Redis; see :meth:`PaidCall.commit`). Each
failure becomes a :class:`~aixyz_sessions.payments.failures.PaymentFailure`
with its code.

The HTTP middleware and the message gate (WebSocket, MCP, any transport
without headers; see :mod:`~aixyz_sessions.payments.messages`) adapt this:
they say how the payment arrives, how the work runs, what counts as success
and what a retry gets back, and render the :class:`Outcome` in their own
protocol. None of them orders the steps. What the rules are lives here:

* the payer is the address the facilitator verified (see
  :mod:`~aixyz_sessions.payments.authorization`), never one read beside it;
* one authorization buys one call: the claim, keyed by the payer and the
  canonical nonce, is taken before the handler runs; once the handler has
  started (:meth:`PaidCall.bound`) the authorization is spent here, settled
  or not, so a call that fails, is aborted or cannot settle cannot be started
  again with it. Only a call refused before its work started (the transport
  found the request unusable: :meth:`PaidCall.refused_before_work`) gives the
  claim back. A payment channel's voucher (x402 ``batch-settlement``) has no
  one-time nonce: the SDK's scheme reserves the channel for the call and
  charges each cumulative amount once, in storage every worker shares; a
  call that does not settle releases the channel (the SDK's cancel, from
  :meth:`PaidCall.close`) and charges nothing;
* the handler's session writes take effect only if the payment settles;
* an outage of the replay guard's store is ``session_store_unavailable``,
  the facilitator's ``facilitator_unavailable``/``facilitator_timeout``;
* a settled payment is recorded for sign-in (``records``: what some
  declared ``sign_in`` policy reads); a returning payer's sign-in
  (:func:`signed_in_payer`) proves the payer without a payment;
* what each call tells its operator (spans, metrics: its outcome, what it
  was charged, how long verify and settle took) goes through its
  :class:`~aixyz_sessions.payments.call_report.CallReport`, once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from contextvars import Token
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from django.dispatch import Signal
from x402.http import x402HTTPResourceServer
from x402.http.types import (
    HTTPProcessResult,
    HTTPRequestContext,
    HTTPResponseInstructions,
    HTTPTransportContext,
    ProcessSettleResult,
)
from x402.schemas import (
    PaymentCancellationDispatcher,
    PaymentPayload,
    PaymentRequired,
    PaymentRequirements,
    VerifiedPaymentCancelOptions,
)

from .. import signals
from ..channels.scheme import storage_failures
from ..context import payer_context
from ..exceptions import SessionStoreError
from ..replay import MAX_EXPIRY, Record
from ..staging import StagedSession
from . import retries
from .authorization import (
    CHANNEL_BRANCHES,
    Authorization,
    PaymentHeaderError,
    Verification,
    read_payment,
    verification,
)
from .call_report import CallReport, resource_label, signed_in
from .decorators import PaidSpec
from .facilitators import facilitator_failures
from .failures import (
    INVALID_PAYMENT,
    INVALID_SIGN_IN,
    NOT_STORED,
    NOT_VERIFIED,
    REPLAYED,
    SERVER_MISCONFIGURED,
    PaymentFailure,
)
from .headers import PAYMENT_REQUIRED, PAYMENT_RESPONSE
from .metering import Meter, bind_meter, unbind_meter
from .options import CHANNEL_SCHEME, known_decimals
from .retries import Retry
from .runtime import PaymentRuntime
from .sign_in import (
    SignInRefused,
    offer,
    payment_records,
    records_for,
    target_of,
    verify_sign_in,
)

__all__ = [
    "Outcome",
    "PaidCall",
    "reason_of",
    "sign_in_offer",
    "sign_in_origin",
    "signed_in_payer",
]

logger = logging.getLogger("aixyz_sessions.payments")

W = TypeVar("W")


@dataclass
class Outcome(Generic[W]):
    """How :meth:`PaidCall.run` ended; the transport renders it in its own shape.

    Exactly one of three: ``kept`` is set (a retry of a call already served:
    the answer its first run kept, see
    :mod:`~aixyz_sessions.payments.retries`); ``refused`` is true (the SDK
    refused the payment: ``instructions`` is its answer, a 402 saying what to
    pay, and ``reason`` the most telling words for why); or ``ran`` is true
    (the work ran and returned ``value``; ``settlement`` is set when the
    value counted as success and the payment settled, ``None`` otherwise).
    """

    kept: dict[str, Any] | None = None
    refused: bool = False
    instructions: HTTPResponseInstructions | None = None
    reason: str | None = None
    ran: bool = False
    value: W | None = None
    settlement: ProcessSettleResult | None = None


def _always(value: object) -> bool:
    return True


def _never(value: object) -> bool:
    return False


def reason_of(instructions: HTTPResponseInstructions | None) -> str | None:
    """The ``error`` the SDK put in a 402's ``PAYMENT-REQUIRED`` header, if any."""
    from x402.http import decode_payment_required_header

    header = None if instructions is None else instructions.headers.get(PAYMENT_REQUIRED)
    if not header:
        return None
    try:
        decoded = decode_payment_required_header(header)
    except Exception:  # pragma: no cover - the SDK encoded it
        return None
    return decoded.error if isinstance(decoded, PaymentRequired) else None


class PaidCall:
    """One paid call's state: verification, claim, the staged session, settlement.

    Use as an async context manager; leaving it discards unsettled writes
    and gives back an unsettled claim, whatever happened inside.
    """

    def __init__(
        self,
        runtime: PaymentRuntime,
        *,
        where: str,
        spec: PaidSpec | None = None,
        request_path: str = "",
        retry: Retry | None = None,
        route: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.where = where
        self.spec = spec
        #: Its span and metrics; ``route`` is the view's URL pattern, their label.
        self.report = CallReport(
            resource_label(spec.resource if spec is not None else None, route, where)
        )
        #: What the call may charge (:func:`~aixyz_sessions.payments.metering.charge`).
        self.meter: Meter | None = None
        #: Resources this payment is recorded for once settled (what sign-in reads).
        self.records: list[str] = []
        if spec is not None:
            self.records = records_for(spec.sign_in, target_of(spec.resource, request_path)[0])
        #: The call's payment identifier (``payment-identifier``), if the payment has one.
        self.retry = retry
        self._retry_open = False
        #: The answer handed to the guard for retries is a real one (not "too large").
        self._answer_kept = False
        self.verified = Verification()
        self.authorization: Authorization | None = None
        self.session: StagedSession | None = None
        self.claimed = False
        #: The handler began: the authorization is spent, whatever happens next.
        self.started = False
        self.settled = False
        #: The SDK's way to tell the scheme a verified payment will not settle (a
        #: channel then releases its reservation); set once the payment is verified.
        self.cancellation: PaymentCancellationDispatcher | None = None

    async def __aenter__(self) -> PaidCall:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def run(
        self,
        server: x402HTTPResourceServer,
        context: HTTPRequestContext,
        work: Callable[[], Awaitable[W]],
        *,
        answer: Callable[[W, ProcessSettleResult], dict[str, Any] | None],
        succeeded: Callable[[W], bool] = _always,
        refused_before_work: Callable[[W], bool] = _never,
        response_headers: Callable[[W], dict[str, str]] | None = None,
        discard: Callable[[W], None] | None = None,
        settled: Callable[[W, ProcessSettleResult], Awaitable[None]] | None = None,
    ) -> Outcome[W]:
        """One paid call, in the one order every transport shares.

        ``context`` carries the payment as the header the SDK reads (any
        transport: see :mod:`~aixyz_sessions.payments.messages`); ``work()``
        runs the view or tool, in the payer's staged session; what it returns
        settles when ``succeeded(value)``; ``refused_before_work(value)`` says
        an unsuccessful value refused the request before doing any work (the
        authorization is then not spent); ``answer(value, settlement)`` is
        what a retry with the payment's identifier gets back (JSON, or
        ``None`` when it cannot be kept); ``response_headers(value)`` the
        headers the SDK's settlement hooks see; ``discard(value)`` frees a
        value whose payment did not settle (an HTTP response's stream);
        ``settled(value, settlement)`` runs once the payment settled, before the
        staged writes are committed, in the payer's session (it may stage more:
        the A2A in-band flow writes the receipt into the payer's task).

        Raises :class:`PaymentFailure` (facilitator, store, replayed,
        settlement) or what ``work`` raises; either way nothing settles, the
        staged writes are dropped, and an authorization whose work started
        stays spent. Use inside ``async with PaidCall(...)``.
        """
        with self.report.call():  # the call's span; its outcome counted on the way out
            kept = await self.kept_answer()
            if kept is not None:  # a retry of a call already served: its answer again
                assert self.retry is not None
                signals.send(
                    signals.payment_replayed, PaidCall, payer=self.retry.payer, resource=self.where
                )
                self.report.outcome = "kept"
                return Outcome(kept=kept)
            with (
                self.report.phase("verify"),
                facilitator_failures() as failures,
                storage_failures() as channels_down,
                self.verifying(),
            ):
                verified = await server.process_http_request(context)
                if verified.type == "payment-verified":
                    self.report.terms(verified.payment_requirements)
            if channels_down:
                raise PaymentFailure.store(channels_down[0], f"the channel storage ({self.where})")
            if failures:
                raise PaymentFailure.facilitator(failures)
            if verified.type != "payment-verified":
                instructions = verified.response
                reason = self.refusal(context.payment_header or "", reason_of(instructions))
                self._refused(reason)
                self.report.outcome = "refused"
                return Outcome(refused=True, instructions=instructions, reason=reason)
            self.cancellation = verified.cancellation_dispatcher
            try:
                await self.claim()
            except PaymentFailure as failure:
                if failure.code == INVALID_PAYMENT:
                    self._refused(failure.message, replayed=failure.message == REPLAYED)
                raise
            self.report.payer(self.authorization.payer if self.authorization else None)
            self._signal_payment(signals.payment_verified, verified.payment_requirements)
            self.meter = self.meter_for(verified.payment_requirements)
            async with self.bound():
                value = await work()
            overrides = None if self.meter is None else self.meter.settlement_overrides()
            if self.meter is not None:
                self.meter.closed = True  # a streamed body cannot charge after the fact
            if not succeeded(value):
                if refused_before_work(value):
                    self.refused_before_work()  # the authorization may be used again
                return Outcome(ran=True, value=value)  # not settled; the staged writes go
            headers = response_headers(value) if response_headers is not None else None
            try:
                settlement = await self.settle(
                    server,
                    verified,
                    context,
                    response_headers=headers,
                    answer=lambda settlement: answer(value, settlement),
                    settlement_overrides=overrides,
                    before_commit=None if settled is None else (lambda s: settled(value, s)),
                )
            except PaymentFailure:
                if discard is not None:
                    discard(value)
                raise
            return Outcome(ran=True, value=value, settlement=settlement)

    async def kept_answer(self) -> dict[str, Any] | None:
        """Before verification: the kept answer of this call's first run, if it is a retry.

        ``None``: run the call (its payment identifier, if any, is now taken).
        Raises :class:`PaymentFailure` 409 (conflict, still in progress) or a
        store failure. See :mod:`~aixyz_sessions.payments.retries`.
        """
        if self.retry is None:
            return None
        try:
            answer = await retries.begin(self.runtime.records, self.retry)
        except SessionStoreError as exc:
            raise PaymentFailure.store(exc, f"the payment identifier of {self.where}") from exc
        except NotImplementedError as exc:  # a custom guard without records (check W104)
            logger.warning("x402: payment identifier ignored in %s: %s", self.where, exc)
            await self.runtime.records.forget_quietly(self.retry.payer, self.retry.name)
            self.retry = None
            return None
        self._retry_open = answer is None
        return answer

    async def keep(self, answer: Callable[[], dict[str, Any] | None]) -> None:
        """After settlement: keep ``answer()`` (JSON-able) for retries of this payment identifier.

        ``answer`` is called only when the payment carried an id; ``None`` from
        it marks an answer too large (or streamed) to keep. It is kept for
        ``PAYMENT_ID_TTL`` or until the authorization's ``validBefore``,
        whichever ends first. A store failure here is logged: the payment
        settled, and a retry is refused by the replay guard rather than run
        twice.
        """
        if self.retry is None or not self._retry_open:
            return
        record = self._kept(answer)
        self._retry_open = False
        if record is None:  # its time is already up: free the id instead
            await retries.forget(self.runtime.records, self.retry)
            return
        if await self._remember([record], "keep the answer for retries"):
            self._signal_kept()

    def _signal_kept(self) -> None:
        """``answer_kept``, when what was stored is an answer (not the mark of one too
        large to keep)."""
        if self._answer_kept and self.retry is not None:
            signals.send(signals.answer_kept, PaidCall, payer=self.retry.payer, resource=self.where)

    async def _remember(self, records: list[Record], what: str) -> bool:
        """Write records of the settled payment; a store failure costs only them (logged:
        the payment settled, and a retry is refused by the replay guard, never run twice)."""
        guard = self.runtime.records
        try:
            for record in records:
                await guard.remember(record.payer, record.key, record.value, record.expires_at)
        except (SessionStoreError, NotImplementedError) as exc:
            logger.warning("x402: could not %s in %s: %s", what, self.where, exc)
            return False
        return True

    def _kept_ttl(self) -> float:
        """Seconds a kept answer lives: ``PAYMENT_ID_TTL``, never beyond ``validBefore``."""
        ttl = self.runtime.config.payment_id_ttl
        if self.authorization is not None:
            ttl = min(ttl, min(self.authorization.valid_before, MAX_EXPIRY) - time.time())
        return ttl

    def _kept(self, answer: Callable[[], dict[str, Any] | None]) -> Record | None:
        """The kept answer as the guard's record, to go with the commit; ``None``: no id,
        or its time is already up (then :meth:`keep` frees the id after the commit).

        ``answer()`` runs here, before the commit; if it fails, the writes of a
        settled call must still land, so it is logged and the answer kept as
        not kept (a retry gets 409, as for an answer too large to keep).
        """
        if self.retry is None or not self._retry_open:
            return None
        ttl = self._kept_ttl()
        if ttl <= 0:
            return None
        try:
            value = answer()
        except Exception:
            logger.exception("x402: the answer of %s could not be kept for retries", self.where)
            value = None
        self._answer_kept = value is not None
        return retries.kept_record(self.retry, value, ttl)

    def _refused(self, reason: str | None, *, replayed: bool = False) -> None:
        signals.send(
            signals.payment_refused, PaidCall, resource=self.where, reason=reason, replayed=replayed
        )

    def _signal_payment(self, signal: Signal, requirements: object, **arguments: Any) -> None:
        """Send a payment ``signal`` with the verified payer and ``requirements``' terms."""
        if not signal.has_listeners(PaidCall) or not isinstance(requirements, PaymentRequirements):
            return
        payer = self.authorization.payer if self.authorization is not None else None
        terms: dict[str, Any] = {
            "payer": payer,
            "resource": self.where,
            "scheme": requirements.scheme,
            "network": str(requirements.network),
        }
        if signal is not signals.payment_settle_failed:
            terms["asset"] = requirements.asset
            terms.setdefault("amount", int(requirements.amount))
        signals.send(signal, PaidCall, **{**terms, **arguments})

    def verifying(self) -> AbstractContextManager[Verification]:
        """Wrap the SDK call that verifies: the verified payer lands in :attr:`verified`."""
        return verification(self.verified)

    def refusal(self, payment_header: str, sdk_reason: str | None) -> str | None:
        """Why a payment the SDK refused was refused, in the most telling words known.

        The payer check's refusal first, then what decoding the payment in full
        says is wrong with it (that pydantic round trip the SDK makes anyway,
        so it happens only here, to explain a refusal, never on the paid path),
        then the SDK's own reason unless it is only "Payment required".
        """
        if self.verified.refusal is not None:
            return self.verified.refusal
        try:
            read_payment(payment_header)
        except PaymentHeaderError as exc:
            return str(exc)
        if sdk_reason and sdk_reason != "Payment required":
            return sdk_reason
        return None

    async def claim(self) -> None:
        """After verification: take the authorization in the replay guard.

        Raises :class:`PaymentFailure`: ``invalid_payment`` when verification
        did not establish the payer or the authorization is already used,
        a store failure when the guard's store cannot answer.
        """
        authorization = self.verified.authorization
        if authorization is None:
            raise PaymentFailure(INVALID_PAYMENT, self.verified.refusal or NOT_VERIFIED)
        self.authorization = authorization
        self.session = StagedSession(authorization.payer)
        if authorization.branch in CHANNEL_BRANCHES:
            # A channel call: the SDK reserved the channel for this call in the
            # shared channel storage, and charges each cumulative amount once
            # (see authorization's module); there is no one-time nonce to take.
            return
        guard = self.runtime.claims
        try:
            claimed = await guard.claim(
                authorization.payer, authorization.nonce, authorization.valid_before
            )
        except SessionStoreError as exc:
            raise PaymentFailure.store(exc, f"the replay guard ({self.where})") from exc
        if not claimed:
            raise PaymentFailure(INVALID_PAYMENT, REPLAYED)
        self.claimed = True
        if guard.shares_server(self.session.store):
            # The claim was answered by the server of this payer's session: if the
            # work is quick, that answer is the probe ``ready`` would make.
            self.session.answered()

    def bound(self) -> _Bound:
        """Bind the payer's staged session and the call's :class:`Meter` (``with`` or
        ``async with``) around the handler.

        From here on the call has started: its authorization stays spent even
        if the handler fails or nothing settles (see :meth:`close`).
        """
        assert self.session is not None, "claim() first"
        self.started = True
        return _Bound(payer_context(self.session), self.meter)

    def meter_for(self, requirements: object) -> Meter | None:
        """The :class:`Meter` of the verified ``requirements`` (the option the payer chose)."""
        if not isinstance(requirements, PaymentRequirements):
            return None
        try:
            maximum = int(requirements.amount)
        except ValueError:  # pragma: no cover - the SDK built these requirements
            return None
        decimals = known_decimals(requirements.asset, str(requirements.network))
        scheme = requirements.scheme
        if decimals is None or scheme == CHANNEL_SCHEME:  # what the offer says, only then
            offer = None if self.spec is None else self.runtime.offer_of(self.spec, requirements)
            if decimals is None and offer is not None:
                decimals = offer.option.decimals
            if scheme == CHANNEL_SCHEME:
                # A channel call is priced as its option is: metered when that is ``upto``.
                scheme = "exact" if offer is None else offer.option.scheme
        return Meter(
            scheme=scheme,
            maximum=maximum,
            decimals=decimals,
            asset=requirements.asset,
        )

    def refused_before_work(self) -> None:
        """The handler refused the request before doing any of its work (bad arguments,
        an unknown tool): the authorization is not spent, the client may use it again."""
        self.started = False

    async def settle(
        self,
        http_server: x402HTTPResourceServer,
        verified: HTTPProcessResult,
        context: HTTPRequestContext,
        *,
        response_headers: dict[str, str] | None = None,
        answer: Callable[[ProcessSettleResult], dict[str, Any] | None] | None = None,
        settlement_overrides: dict[str, str] | None = None,
        before_commit: Callable[[ProcessSettleResult], Awaitable[None]] | None = None,
    ) -> ProcessSettleResult:
        """Settle through the SDK, then commit the staged writes; the SDK's settlement.

        ``answer(settlement)`` is what a retry with the payment's identifier
        gets back (see :meth:`run`); it is kept with the commit (:meth:`commit`).
        ``settlement_overrides`` is what a metered (``upto``) call charged
        (see :mod:`~aixyz_sessions.payments.metering`). Raises
        :class:`PaymentFailure` ``settlement_failed`` (with the SDK's encoded
        response), a facilitator failure, or, when the payment settled but
        the writes could not be stored, a store failure carrying the
        settlement (the writes stay staged and are reported, not lost silently).
        """
        payload, requirements = verified.payment_payload, verified.payment_requirements
        assert isinstance(payload, PaymentPayload)
        assert isinstance(requirements, PaymentRequirements)
        await self.ready()
        with (
            self.report.phase("settle") as phase_span,
            facilitator_failures() as failures,
            storage_failures() as channels_down,
        ):
            settlement = await http_server.process_settlement(
                payload,
                requirements,
                context=context,
                settlement_overrides=settlement_overrides,
                declared_extensions=verified.declared_extensions,
                transport_context=HTTPTransportContext(
                    request=context, response_headers=response_headers or {}
                ),
                before_handler_settlement=verified.before_handler_settlement,
            )
            amount = settled_amount(settlement, requirements) if settlement.success else 0
            self.report.describe(phase_span, amount, settlement.transaction)
        if channels_down:
            raise PaymentFailure.store(channels_down[0], f"the channel storage ({self.where})")
        if failures:
            self.report.outcome = "settle_failed"
            self._signal_payment(
                signals.payment_settle_failed, requirements, reason=failures.message
            )
            raise PaymentFailure.facilitator(failures)
        if not settlement.success:
            logger.warning("x402: settlement failed: %s", settlement.error_reason)
            self._signal_payment(
                signals.payment_settle_failed,
                requirements,
                reason=settlement.error_reason or "settlement failed",
            )
            raise PaymentFailure(
                "settlement_failed",
                settlement.error_reason or "settlement failed",
                payment_response=settlement.headers.get(PAYMENT_RESPONSE),
            )
        self.settled = True
        self.report.settled(amount, settlement.transaction)
        self._signal_payment(
            signals.payment_settled,
            requirements,
            amount=amount,
            transaction=settlement.transaction or "",
        )
        if before_commit is not None and self.session is not None:
            async with payer_context(self.session):
                await before_commit(settlement)
        kept = None if answer is None else (lambda: answer(settlement))
        await self.commit(settlement.headers.get(PAYMENT_RESPONSE), answer=kept)
        return settlement

    def _payment_records(self) -> list[Record]:
        """The settled payment's records for sign-in (``records``), as the guard keeps them.

        A metered call that charged nothing paid nothing: it opens no sign-in.
        """
        if not self.records or self.authorization is None:
            return []
        if self.meter is not None and self.meter.metered and self.meter.charged == 0:
            return []
        return payment_records(
            self.authorization.payer, self.records, self.runtime.config.sign_in_window
        )

    async def ready(self) -> None:
        """Before settling: the session's store must answer, or the call ends unsettled.

        (A claim or read the store answered just before counts: see
        :meth:`StagedSession.ready <aixyz_sessions.staging.StagedSession.ready>`.)
        """
        if self.session is None:
            return
        try:
            await self.session.ready()
        except SessionStoreError as exc:
            raise PaymentFailure.store(exc, self.where) from exc

    async def commit(
        self,
        payment_response: str | None = None,
        *,
        answer: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        """The payment settled: store the staged writes (``PaymentFailure`` if the store fails).

        With them go the payment's records: for sign-in (``records``) and,
        given ``answer``, the answer kept for retries of the payment's
        identifier (see :meth:`keep`). A store that keeps the replay guard's
        records beside the session (Redis) writes all of it in one round
        trip; otherwise the records follow the writes, as separate writes
        whose failure is logged, not raised. When the writes fail nothing is
        recorded, and the kept answer is left to :meth:`close` (retries get 409).
        """
        self.settled = True
        records = self._payment_records()
        kept = None if answer is None else self._kept(answer)
        written = False
        if self.session is not None:
            try:
                written = await self.session.commit(
                    records=records if kept is None else [*records, kept],
                    guard=self.runtime.records,
                )
            except SessionStoreError as exc:
                logger.error(
                    "x402: %s for %s in %s: %s", NOT_STORED, self.session.payer, self.where, exc
                )
                failure = PaymentFailure.store(exc, self.where, prefix=NOT_STORED)
                failure.payment_response = payment_response
                raise failure from exc
        if written:
            if kept is not None:
                self._retry_open = False
                self._signal_kept()
            return
        if records:
            await self._remember(records, "record the payment for sign-in")
        if kept is not None:
            self._retry_open = False
            if await self._remember([kept], "keep the answer for retries"):
                self._signal_kept()
        elif answer is not None:
            await self.keep(answer)  # no id (nothing to do), or its time is up: free it

    async def close(self) -> None:
        """Drop unsettled writes and the payment identifier; give the claim back only
        when the handler never started (see :meth:`refused_before_work`); tell the
        scheme a verified payment did not settle (a channel's charge stays put)."""
        if self.settled:
            await self.keep(lambda: None)  # settled, no answer kept: retries get 409
            return
        if self.cancellation is not None:
            cancellation, self.cancellation = self.cancellation, None
            try:
                await cancellation.cancel(VerifiedPaymentCancelOptions(reason="handler_failed"))
            except Exception:  # the SDK logs hook failures; a reservation also expires
                logger.exception("x402: could not release the verified payment of %s", self.where)
        if self.retry is not None and self._retry_open:
            self._retry_open = False
            await retries.forget(self.runtime.records, self.retry)
        if self.session is not None:
            self.session.discard()
        if self.claimed and self.authorization is not None and not self.started:
            self.claimed = False
            await self.runtime.claims.release_quietly(
                self.authorization.payer, self.authorization.nonce
            )

    @staticmethod
    def headers(failure: PaymentFailure) -> dict[str, Any]:
        """Extra HTTP headers for a failure (``Retry-After``, ``PAYMENT-RESPONSE``)."""
        headers: dict[str, Any] = {"Cache-Control": "no-store"}
        if failure.retry_after is not None:
            headers["Retry-After"] = str(failure.retry_after)
        if failure.payment_response is not None:
            headers[PAYMENT_RESPONSE] = failure.payment_response
        return headers


class _Bound:
    """The payer's session and the call's meter, bound together (``with``/``async with``)."""

    __slots__ = ("_meter", "_payer", "_tokens")

    def __init__(self, payer: payer_context, meter: Meter | None) -> None:
        self._payer = payer
        self._meter = meter
        self._tokens: list[Token[Meter | None]] = []

    def __enter__(self) -> None:
        self._tokens.append(bind_meter(self._meter))
        self._payer.__enter__()

    def __exit__(self, *exc: Any) -> None:
        try:
            self._payer.__exit__(*exc)
        finally:
            unbind_meter(self._tokens.pop())

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        self.__exit__(*exc)


def sign_in_origin(runtime: PaymentRuntime, origin: str | None) -> str:
    """The ``scheme://host`` a sign-in must name, on every transport.

    ``AIXYZ_X402["ORIGIN"]`` when set; else ``origin`` (where the request
    arrived) only if ``ALLOWED_HOSTS`` names its host. A host header is the
    client's to choose: were it trusted, a phishing site could get a payer
    to sign an ordinary sign-in for ``evil.example`` and replay it here with
    ``Host: evil.example``. A bare ``"*"`` names no host, so with it the
    origin must be configured. ``origin`` comes from
    :func:`~aixyz_sessions.hosts.request_origin` (``None`` when the request's
    ``Host`` names another port than the one this server listens on).
    Raises :class:`PaymentFailure`: ``invalid_sign_in`` for an origin this
    server does not own or cannot know, ``server_misconfigured`` when
    ``ALLOWED_HOSTS`` takes any host and ``ORIGIN`` is not set.
    """
    from ..hosts import any_host_allowed, owns_host

    if runtime.config.origin:
        return runtime.config.origin
    if not origin:  # the transport could not tell (see hosts.request_origin)
        raise PaymentFailure(
            INVALID_SIGN_IN,
            "this server's origin is not known for this request, so no sign-in can name it: "
            "the server sets AIXYZ_X402['ORIGIN'] (a request whose Host does not name the "
            "port the server listens on, as behind a proxy, cannot)",
        )
    host = urlsplit(origin).netloc
    if owns_host(host):
        return origin
    if any_host_allowed():
        raise PaymentFailure(
            SERVER_MISCONFIGURED,
            "ALLOWED_HOSTS takes any host ('*'), so a request's host proves nothing about "
            "this server: set AIXYZ_X402['ORIGIN'] to the origin clients reach, for sign-in",
        )
    raise PaymentFailure(
        INVALID_SIGN_IN,
        f"sign-in is for this server's own origin, and {host!r} is not one of ALLOWED_HOSTS",
    )


_unusable_origin_logged = False


def sign_in_offer(
    runtime: PaymentRuntime,
    spec: PaidSpec,
    required: PaymentRequired | None,
    *,
    url: str,
    request_path: str,
    origin: str | None,
) -> PaymentRequired:
    """``required`` with ``spec``'s sign-in offered (``None``: the auth-only form), any transport.

    When no origin can be trusted (:func:`sign_in_origin`) the payment alone
    is offered, its ``error`` saying that sign-in is not, and the reason is
    logged once; with nothing else to offer (``required`` is ``None``) the
    :class:`PaymentFailure` is raised.
    """
    global _unusable_origin_logged
    _, path = target_of(spec.resource, request_path)
    try:
        trusted = sign_in_origin(runtime, origin)
    except PaymentFailure as failure:
        if required is None:
            raise
        if not _unusable_origin_logged:
            _unusable_origin_logged = True
            logger.warning("x402: sign-in not offered: %s", failure.message)
        said = required.error or "Payment required"
        return required.model_copy(update={"error": f"{said}; sign-in not offered here"})
    offered: PaymentRequired = offer(
        required,
        url=url,
        path=path,
        origin=trusted,
        network=runtime.sign_in_network(spec),
        max_age=runtime.config.sign_in_max_age,
        description=spec.description,
    )
    return offered


async def signed_in_payer(
    runtime: PaymentRuntime,
    spec: PaidSpec,
    credential: object,
    *,
    request_path: str,
    origin: str | None,
    where: str,
    route: str | None = None,
) -> str:
    """The payer a returning client's sign-in proves for ``spec``, for every transport.

    ``credential`` is the ``SIGN-IN-WITH-X`` value (or its payload object);
    ``origin`` the ``scheme://host`` the request reached (``AIXYZ_X402["ORIGIN"]``
    wins). Raises :class:`PaymentFailure`: ``invalid_sign_in`` with the reason,
    ``server_misconfigured``, or a store failure.
    """
    assert spec.sign_in is not None
    resource, path = target_of(spec.resource, request_path)
    try:
        payer = await verify_sign_in(
            credential,
            origin=sign_in_origin(runtime, origin),
            path=path,
            network=runtime.sign_in_network(spec),
            policy=spec.sign_in,
            resource=resource,
            claims=runtime.claims,
            records=runtime.records,
            max_age=runtime.config.sign_in_max_age,
        )
    except SignInRefused as exc:
        raise PaymentFailure(INVALID_SIGN_IN, str(exc)) from None
    except NotImplementedError as exc:
        raise PaymentFailure(SERVER_MISCONFIGURED, str(exc)) from None
    except SessionStoreError as exc:
        raise PaymentFailure.store(exc, f"the sign-in of {where}") from exc
    signed_in(spec.resource, route, where)  # route: a view's URL pattern (the metric's label)
    signals.send(signals.sign_in_accepted, PaidCall, payer=payer, resource=where)
    return payer


def settled_amount(settlement: ProcessSettleResult, requirements: PaymentRequirements) -> int:
    """Atomic units the call was charged: a channel's ``chargedAmount`` (a deposit's
    ``amount`` is the deposit, not the charge), the SDK's ``amount`` (``upto``), else
    the verified requirements' amount (``exact``)."""
    response = settlement.settle_response
    for value in (
        ((getattr(response, "extra", None) or {}).get("chargedAmount")),
        getattr(response, "amount", None),
    ):
        if isinstance(value, str) and value.isascii() and value.isdigit():
            return int(value)
    return int(requirements.amount)
