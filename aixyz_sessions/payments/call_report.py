"""What one paid call tells its operator: a trace span and its metrics, from one place.

:class:`~aixyz_sessions.payments.paid_call.PaidCall` owns a :class:`CallReport`
and tells it what happens (the verified terms, the phases, the settlement);
the report opens the spans (:mod:`~aixyz_sessions.tracing`) and moves the
Prometheus metrics (:mod:`~aixyz_sessions.metrics.instruments`). Both do
nothing when they are off, so the report costs a few attribute writes.

Outcomes, once per call (the ``outcome`` label of ``aixyz_paid_calls_total``
and the ``x402.outcome`` span attribute): ``settled``; ``failed`` (the work
raised, answered an error or was aborted: nothing settled); ``settle_failed``;
``refused`` (the payment was not verified); ``replayed`` (this server's replay
guard found it used); ``kept`` (a retry got its first answer again);
``conflict`` (a payment identifier reused or still in progress);
``unavailable`` (a store or the facilitator could not answer); ``error``
(the server cannot take this payment: misconfigured).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..metrics.instruments import (
    record_paid_call,
    record_payment_required,
    record_phase,
    record_sign_in,
)
from ..tracing import set_attributes, span
from .failures import (
    FACILITATOR_TIMEOUT,
    FACILITATOR_UNAVAILABLE,
    INVALID_PAYMENT,
    PAYMENT_ID_CONFLICT,
    PAYMENT_IN_PROGRESS,
    REPLAYED,
    SETTLEMENT_FAILED,
    STORE_MISCONFIGURED,
    STORE_UNAVAILABLE,
    PaymentFailure,
)

__all__ = ["CallReport", "asked_to_pay", "resource_label", "signed_in"]

_OUTCOME_OF_CODE = {
    SETTLEMENT_FAILED: "settle_failed",
    FACILITATOR_UNAVAILABLE: "unavailable",
    FACILITATOR_TIMEOUT: "unavailable",
    STORE_UNAVAILABLE: "unavailable",
    STORE_MISCONFIGURED: "error",
    PAYMENT_ID_CONFLICT: "conflict",
    PAYMENT_IN_PROGRESS: "conflict",
}


def resource_label(spec_resource: str | None, route: str | None, where: str) -> str:
    """What metrics and spans call the paid resource: the same on every transport.

    A tool's ``tool:<name>`` and the agent's ``agent`` (their spec's
    ``resource``), else the view's URL pattern (``/reports/<int:pk>/``): a
    bounded set, where the request path is the client's to vary.
    """
    if spec_resource:
        return spec_resource
    if route is not None:
        return "/" + route.lstrip("^").lstrip("/")
    return where


def asked_to_pay(spec_resource: str | None, route: str | None, where: str, reason: str) -> None:
    """A transport asked a client to pay (or sign in) before any paid call began:
    ``missing`` (nothing sent) or ``unreadable`` (not an x402 payment)."""
    record_payment_required(resource_label(spec_resource, route, where), reason)


def signed_in(spec_resource: str | None, route: str | None, where: str) -> None:
    """A returning payer's sign-in let them in without a payment."""
    record_sign_in(resource_label(spec_resource, route, where))


class CallReport:
    """One paid call's span and metrics; see the module for the outcomes."""

    __slots__ = ("_span", "amount", "asset", "network", "outcome", "resource", "scheme")

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self.scheme = ""
        self.network = ""
        self.asset = ""
        self.amount = 0
        self.outcome: str | None = None
        self._span: Any = None

    @contextmanager
    def call(self) -> Iterator[None]:
        """The whole call (:meth:`PaidCall.run`): its span; its outcome counted on the way out."""
        error: str | None = None
        with span(f"x402.call {self.resource}", {"x402.resource": self.resource}) as opened:
            self._span = opened
            try:
                yield
            except PaymentFailure as failure:
                error = failure.code
                if self.outcome is None:
                    if failure.code == INVALID_PAYMENT:
                        self.outcome = "replayed" if failure.message == REPLAYED else "refused"
                    else:
                        self.outcome = _OUTCOME_OF_CODE.get(failure.code, "error")
                raise
            except BaseException as exc:
                error = type(exc).__qualname__
                self.outcome = self.outcome or "failed"
                raise
            finally:
                outcome = self.outcome or "failed"
                set_attributes(
                    opened,
                    {
                        "x402.outcome": outcome,
                        "x402.scheme": self.scheme or None,
                        "x402.network": self.network or None,
                        "error.type": error,
                    },
                )
                record_paid_call(
                    self.resource,
                    self.scheme,
                    self.network,
                    outcome,
                    asset=self.asset,
                    amount=self.amount,
                )

    def terms(self, requirements: Any) -> None:
        """The verified option: its scheme, network and asset."""
        self.scheme = str(requirements.scheme)
        self.network = str(requirements.network)
        self.asset = str(requirements.asset)
        set_attributes(
            self._span,
            {"x402.scheme": self.scheme, "x402.network": self.network, "x402.asset": self.asset},
        )

    def payer(self, payer: str | None) -> None:
        """The payer the verification established (on the span only: not a metric label,
        whose values must stay few)."""
        set_attributes(self._span, {"x402.payer": payer})

    @contextmanager
    def phase(self, name: str) -> Iterator[Any]:
        """``verify`` or ``settle``: a child span and a latency sample (labelled with the
        terms known when it ends: a verification learns them)."""
        started = time.perf_counter()
        with span(f"x402.{name}") as opened:
            try:
                yield opened
            finally:
                set_attributes(
                    opened,
                    {"x402.scheme": self.scheme or None, "x402.network": self.network or None},
                )
                record_phase(name, time.perf_counter() - started, self.scheme, self.network)

    def describe(self, phase_span: Any, amount: int, transaction: str | None) -> None:
        """What a settlement that succeeded charged, on the ``x402.settle`` span."""
        if amount or transaction:
            set_attributes(
                phase_span, {"x402.amount": amount, "x402.transaction": transaction or None}
            )

    def settled(self, amount: int, transaction: str | None) -> None:
        """The call settled for ``amount`` atomic units (counted once the call ends)."""
        self.outcome = "settled"
        self.amount = amount
        set_attributes(self._span, {"x402.amount": amount, "x402.transaction": transaction or None})
