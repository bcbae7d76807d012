"""The Prometheus metrics this app keeps, and the calls that move them.

The paid-call core, the tools and the agent call the ``record_*`` functions
here (see :mod:`~aixyz_sessions.payments.call_report`); each returns at once
when ``AIXYZ_METRICS`` is not set. The metrics are created in the default
registry on first use, once per process, so a project's own exporter
(django-prometheus, a ``/metrics`` of its own) shows them too. Under several
worker processes prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) keeps them in files that
:mod:`~aixyz_sessions.metrics.views` sums at scrape time.

Label values are bounded by the project's own routes and tools: ``resource``
is a tool's ``tool:<name>``, the agent's ``agent``, or a view's URL pattern
(``/reports/<int:pk>/``), never a path a client chose.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec

from .conf import get_metrics_config

__all__ = [
    "Instruments",
    "instruments",
    "record_agent_turn",
    "record_paid_call",
    "record_payment_required",
    "record_phase",
    "record_sign_in",
    "record_tool",
]

logger = logging.getLogger("aixyz_sessions.metrics")
P = ParamSpec("P")
_write_failed_logged = False


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    """A metric write that fails (a multiprocess file on a full disk, say) is logged once
    and dropped: a paid call that settled must not turn into an error for its metrics."""

    @functools.wraps(record)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        global _write_failed_logged
        try:
            record(*args, **kwargs)
        except Exception:
            if not _write_failed_logged:
                _write_failed_logged = True
                logger.exception("aixyz_sessions: a metric could not be recorded (logged once)")

    return guarded


#: Facilitator round trips (verify, settle): milliseconds on a channel, seconds on a chain.
PAYMENT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
TOOL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class Instruments:
    """The prometheus-client objects, built once per process by :func:`instruments`."""

    paid_calls: Any
    revenue: Any
    payment_required: Any
    replays_refused: Any
    sign_ins: Any
    verify_seconds: Any
    settle_seconds: Any
    tool_seconds: Any
    agent_turns: Any
    agent_tokens: Any


_instruments: Instruments | None = None


def _build() -> Instruments:
    from prometheus_client import Counter, Histogram

    return Instruments(
        paid_calls=Counter(
            "aixyz_paid_calls",
            "Paid calls by how they ended: settled, failed (the work failed or was "
            "aborted), settle_failed, refused, replayed (this server's replay guard), "
            "kept (a retry answered with its first answer), conflict (a payment "
            "identifier reused or in progress), unavailable (a store or the facilitator "
            "could not answer), error (misconfigured).",
            ["resource", "scheme", "network", "outcome"],
        ),
        revenue=Counter(
            "aixyz_revenue_atomic_units",
            "What settled calls were charged, in the asset's atomic units (USDC: 1e-6 "
            "dollars); a channel call's charge, not its deposit.",
            ["resource", "scheme", "network", "asset"],
        ),
        payment_required=Counter(
            "aixyz_payment_required",
            "Answers that asked for a payment (an HTTP 402, or the payment_required "
            "error on the WebSocket and MCP): missing, unreadable, refused, replayed.",
            ["resource", "reason"],
        ),
        replays_refused=Counter(
            "aixyz_replays_refused",
            "Payments this server's replay guard found already used.",
            ["resource"],
        ),
        sign_ins=Counter(
            "aixyz_sign_ins",
            "Returning payers let in by a sign-in instead of a payment.",
            ["resource"],
        ),
        verify_seconds=Histogram(
            "aixyz_payment_verify_seconds",
            "Verifying a payment (the facilitator's /verify, or a channel's voucher check).",
            ["scheme", "network"],
            buckets=PAYMENT_BUCKETS,
        ),
        settle_seconds=Histogram(
            "aixyz_payment_settle_seconds",
            "Settling a payment (the facilitator's /settle, or a channel's charge).",
            ["scheme", "network"],
            buckets=PAYMENT_BUCKETS,
        ),
        tool_seconds=Histogram(
            "aixyz_tool_seconds",
            "Running a registered tool, on any transport or inside an agent turn.",
            ["tool", "outcome"],
            buckets=TOOL_BUCKETS,
        ),
        agent_turns=Counter(
            "aixyz_agent_turns",
            "Text turns of the A2A agent's ToolLoopAgent that reached the model.",
            ["model"],
        ),
        agent_tokens=Counter(
            "aixyz_agent_tokens",
            "Model tokens of the agent's turns, as the model reported them.",
            ["model", "type"],
        ),
    )


def instruments() -> Instruments | None:
    """The metrics, or ``None`` when ``AIXYZ_METRICS`` is off (or prometheus-client absent)."""
    global _instruments
    if get_metrics_config() is None:
        return None
    if _instruments is None:
        try:
            _instruments = _build()
        except ImportError:  # E301 says so; a paid call must not fail for its metrics
            return None
        except ValueError:  # pragma: no cover - registered by another copy of this module
            return None
    return _instruments


@_never_raises
def record_paid_call(
    resource: str,
    scheme: str,
    network: str,
    outcome: str,
    *,
    asset: str = "",
    amount: int = 0,
) -> None:
    """One paid call ended with ``outcome``; a settled one adds ``amount`` to the revenue."""
    found = instruments()
    if found is None:
        return
    found.paid_calls.labels(resource, scheme, network, outcome).inc()
    if outcome == "settled" and amount > 0:
        found.revenue.labels(resource, scheme, network, asset).inc(amount)
    if outcome in ("refused", "replayed"):
        record_payment_required(resource, outcome, found)
    if outcome == "replayed":
        found.replays_refused.labels(resource).inc()


@_never_raises
def record_payment_required(resource: str, reason: str, found: Instruments | None = None) -> None:
    """A client was asked to pay ``resource``: ``missing`` or ``unreadable`` payment (the
    transports), ``refused`` or ``replayed`` (through :func:`record_paid_call`)."""
    found = found or instruments()
    if found is not None:
        found.payment_required.labels(resource, reason).inc()


@_never_raises
def record_sign_in(resource: str) -> None:
    found = instruments()
    if found is not None:
        found.sign_ins.labels(resource).inc()


@_never_raises
def record_phase(phase: str, seconds: float, scheme: str, network: str) -> None:
    """How long ``verify`` or ``settle`` took."""
    found = instruments()
    if found is None:
        return
    histogram = found.verify_seconds if phase == "verify" else found.settle_seconds
    histogram.labels(scheme, network).observe(seconds)


@_never_raises
def record_tool(tool: str, seconds: float, ok: bool) -> None:
    found = instruments()
    if found is not None:
        found.tool_seconds.labels(tool, "ok" if ok else "error").observe(seconds)


@_never_raises
def record_agent_turn(model: str, input_tokens: int, output_tokens: int) -> None:
    found = instruments()
    if found is None:
        return
    found.agent_turns.labels(model).inc()
    if input_tokens:
        found.agent_tokens.labels(model, "input").inc(input_tokens)
    if output_tokens:
        found.agent_tokens.labels(model, "output").inc(output_tokens)
