"""An in-memory OpenTelemetry exporter for tests: the SDK's, behind a switch.

The global tracer provider can be set once per process, so it is set on the
first use and kept; spans are recorded only while :func:`recorded_spans` is
open, so the rest of the suite pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


class _Switched(SimpleSpanProcessor):
    active = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            super().on_end(span)


_exporter: InMemorySpanExporter | None = None
_processor: _Switched | None = None


def _install() -> tuple[InMemorySpanExporter, _Switched]:
    global _exporter, _processor
    if _exporter is None or _processor is None:
        _exporter = InMemorySpanExporter()
        _processor = _Switched(_exporter)
        provider = TracerProvider()
        provider.add_span_processor(_processor)
        trace.set_tracer_provider(provider)
    return _exporter, _processor


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Record every finished span into the exporter while the block runs."""
    exporter, processor = _install()
    exporter.clear()
    processor.active = True
    try:
        yield exporter
    finally:
        processor.active = False
        exporter.clear()


def named(spans: Any, prefix: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name.startswith(prefix)]
