"""What metrics and traces cost a paid call: the same paid view with each off and on.

    .venv/bin/python -m benchmarks.operations [N] [ROUNDS]

Four modes, interleaved round by round so that the machine's drift falls on
all of them alike: nothing on (the baseline); ``AIXYZ_METRICS`` on; an
OpenTelemetry SDK tracer provider on (a ``BatchSpanProcessor`` to an exporter
that drops the spans, so the export itself is not measured); both. Each paid
request goes through Django's ASGI handler (``AsyncClient``) with the
LocalFacilitator, sequentially, in one process; payments are signed before the
clock starts. Printed: the median per-request time of each mode over the
rounds, and its difference from the baseline.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django
from django.conf import settings

PAY_TO = "0x" + "ab" * 20

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["aixyz_sessions"],
        MIDDLEWARE=["aixyz_sessions.payments.middleware.X402Middleware"],
        ROOT_URLCONF="benchmarks.operations",
        DATABASES={},
        AIXYZ_X402={"PAY_TO": PAY_TO, "NETWORK": "eip155:84532", "FACILITATOR": "local"},
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import AsyncClient, override_settings  # noqa: E402
from django.urls import path  # noqa: E402
from eth_account import Account  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from x402 import x402Client  # noqa: E402
from x402.http import decode_payment_required_header, encode_payment_signature_header  # noqa: E402
from x402.mechanisms.evm.exact import register_exact_evm_client  # noqa: E402

from aixyz_sessions import tracing  # noqa: E402
from aixyz_sessions.payments import paid  # noqa: E402


async def work(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"answer": sum(range(100))})


urlpatterns = [path("paid/", paid("$0.01")(work))]

MODES = ("baseline", "metrics", "traces", "both")


class _Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _round(client: AsyncClient, headers: list[str]) -> float:
    """Seconds per paid request over ``headers``."""
    start = time.perf_counter()
    for header in headers:
        response = await client.get("/paid/", headers={"PAYMENT-SIGNATURE": header})
        assert response.status_code == 200, response.content
    return (time.perf_counter() - start) / len(headers)


async def main(n: int, rounds: int) -> None:
    logging.disable(logging.WARNING)  # the 402s and the local facilitator's notice
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Dropped()))
    trace.set_tracer_provider(provider)
    api = tracing._trace

    client = AsyncClient()
    unpaid = await client.get("/paid/")
    required = decode_payment_required_header(unpaid["PAYMENT-REQUIRED"])
    signer = x402Client()
    register_exact_evm_client(signer, Account.create())  # type: ignore[arg-type]
    total = n * (rounds + 1) * len(MODES)
    headers = [
        encode_payment_signature_header(await signer.create_payment_payload(required))
        for _ in range(total)
    ]
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_number in range(rounds + 1):  # round 0 warms every mode up
        for mode in MODES:
            batch, headers = headers[:n], headers[n:]
            tracing._trace = api if mode in ("traces", "both") else None  # type: ignore[assignment]
            metrics = (
                {"TOKEN": "benchmark-token-0123456789"} if mode in ("metrics", "both") else None
            )
            with override_settings(AIXYZ_METRICS=metrics):
                seconds = await _round(client, batch)
            if round_number:
                times[mode].append(seconds)
    tracing._trace = api
    provider.shutdown()

    base = statistics.median(times["baseline"])
    print(f"paid requests: {n} per mode per round, {rounds} rounds, interleaved; median")
    for mode in MODES:
        median = statistics.median(times[mode])
        extra = (median - base) * 1e6
        print(
            f"  {mode:9s} {median * 1e3:7.3f} ms/request  {extra:+7.1f} us vs baseline"
            f"  ({median / base:.3f}x)"
        )


if __name__ == "__main__":
    asyncio.run(
        main(
            int(sys.argv[1]) if len(sys.argv) > 1 else 200,
            int(sys.argv[2]) if len(sys.argv) > 2 else 5,
        )
    )
