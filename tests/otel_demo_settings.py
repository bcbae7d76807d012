"""The demo's settings with an OpenTelemetry SDK that prints spans, in batches a minute apart.

For ``test_operations_e2e``: the spans of a call made just before the server
stops reach the console only if the shutdown flushes them.
"""

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from demo_project.settings import *  # noqa: F403

_provider = TracerProvider()
_provider.add_span_processor(
    BatchSpanProcessor(ConsoleSpanExporter(), schedule_delay_millis=60_000)
)
trace.set_tracer_provider(_provider)
