"""OpenTelemetry spans for paid calls, tools and agent turns (the ``[otel]`` extra).

With ``opentelemetry-api`` installed, the paid-call core and the tools open
spans on the tracer ``aixyz_sessions``; they go wherever the project's tracer
provider sends them (an OTLP exporter, the console, a test's in-memory
exporter). With the API but no SDK configured, the API's own no-op tracer
takes them and nothing is recorded; without the package, every function here
does nothing at all. The spans, on every transport:

* ``x402.call <resource>``: one paid call, from the kept-answer look to the
  settlement. ``x402.resource``, ``x402.scheme``, ``x402.network``,
  ``x402.payer`` and ``x402.outcome`` (the ``outcome`` label of the
  ``aixyz_paid_calls_total`` metric); ``error.type`` (the error code) when it
  did not settle for a reason other than the work's own answer.
* ``x402.verify`` and ``x402.settle`` inside it; a settled one carries
  ``x402.amount`` (atomic units charged) and ``x402.transaction``.
* ``execute_tool <name>`` around every run of a registered tool, on every
  transport and inside agent turns (OpenTelemetry GenAI conventions:
  ``gen_ai.operation.name``, ``gen_ai.tool.name``, ``gen_ai.tool.type``).
* ``invoke_agent <name>`` around an A2A agent turn (``gen_ai.agent.name``,
  ``gen_ai.conversation.id``, ``gen_ai.usage.input_tokens`` and
  ``gen_ai.usage.output_tokens`` when a :class:`ToolLoopAgent` reported
  them), with a ``chat <model>`` client span per model step.

Without a configured SDK no span is opened at all (the API's no-op span
costs about 13 microseconds, measured here; a paid call would open four).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "TRACER_NAME",
    "current_span_set",
    "flush",
    "set_attributes",
    "span",
    "tracing_available",
]

TRACER_NAME = "aixyz_sessions"

try:
    from opentelemetry import trace as _trace
    from opentelemetry.trace import ProxyTracerProvider as _Unconfigured
    from opentelemetry.trace import SpanKind as _SpanKind
except ImportError:  # the [otel] extra is not installed: nothing to do
    _trace = None  # type: ignore[assignment]
    _SpanKind = None  # type: ignore[assignment,misc]
    _Unconfigured = None  # type: ignore[assignment,misc]

_tracer: Any = None
#: A tracer provider was set: it stays set for the life of the process (the API allows one).
_configured = False


def tracing_available() -> bool:
    """Whether ``opentelemetry-api`` is installed (spans are then opened)."""
    return _trace is not None


def _recording() -> bool:
    """Whether spans go anywhere: the API is installed and a provider is configured."""
    global _configured
    if _trace is None:
        return False
    if not _configured:
        # No SDK configured: the API would hand out a no-op span for about 13
        # microseconds each; a paid call opens four.
        _configured = not isinstance(_trace.get_tracer_provider(), _Unconfigured)
    return _configured


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        from . import __version__

        # A proxy until the project sets its tracer provider, the real tracer after:
        # keeping it is safe whenever the provider is configured.
        _tracer = _trace.get_tracer(TRACER_NAME, __version__)
    return _tracer


@contextmanager
def span(
    name: str, attributes: dict[str, Any] | None = None, *, client: bool = False
) -> Iterator[Any]:
    """A span named ``name`` around the block, current inside it; ``None`` without the API.

    ``client`` marks a call to another service (a model). An exception that
    leaves the block is recorded on the span and marks it as an error.
    """
    if not _recording():
        yield None
        return
    kind = _SpanKind.CLIENT if client else _SpanKind.INTERNAL
    with _get_tracer().start_as_current_span(
        name, kind=kind, attributes=_clean(attributes)
    ) as opened:
        yield opened


def set_attributes(opened: Any, attributes: dict[str, Any]) -> None:
    """Add ``attributes`` (``None`` values left out) to a span :func:`span` gave."""
    if opened is not None and opened.is_recording():
        opened.set_attributes(_clean(attributes))


def current_span_set(attributes: dict[str, Any]) -> None:
    """Add ``attributes`` to the current span (an agent's turn reporting its tokens)."""
    if _trace is not None:
        set_attributes(_trace.get_current_span(), attributes)


def flush(timeout_millis: int = 5000) -> None:
    """Send the spans still queued (a ``BatchSpanProcessor``'s) before the process ends.

    Blocking (the exporter sends): call it off the event loop. The ASGI
    application calls it at lifespan shutdown, because uvicorn ends its
    process by re-raising the stop signal, and the SDK's exit hook never runs.
    """
    if _trace is None:
        return
    provider = _trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if callable(force_flush) and not isinstance(provider, _Unconfigured):
        force_flush(timeout_millis)


def _clean(attributes: dict[str, Any] | None) -> dict[str, Any]:
    if not attributes:
        return {}
    return {key: value for key, value in attributes.items() if value is not None}
