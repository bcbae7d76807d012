"""Paid vs free view throughput with the LocalFacilitator, and verify+settle latency.

    .venv/bin/python -m benchmarks.payments [N]

Both views do the same work (one session-less JSON response); the paid one
also goes through x402 (decode, verify with EIP-712 recovery, replay claim,
settle). Payments are signed before the clock starts: signing is the
client's cost. Requests go through Django's ASGI handler (AsyncClient),
sequentially, in one process.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django
from django.conf import settings

PAY_TO = "0x" + "ab" * 20

if not settings.configured:
    settings.configure(
        DEBUG=True,
        SECRET_KEY="benchmark",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["aixyz_sessions"],
        MIDDLEWARE=["aixyz_sessions.payments.middleware.X402Middleware"],
        ROOT_URLCONF="benchmarks.payments",
        DATABASES={},
        AIXYZ_X402={"PAY_TO": PAY_TO, "NETWORK": "eip155:84532", "FACILITATOR": "local"},
    )
    django.setup()

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.test import AsyncClient  # noqa: E402
from django.urls import path  # noqa: E402
from eth_account import Account  # noqa: E402
from x402 import x402Client  # noqa: E402
from x402.http import decode_payment_required_header, encode_payment_signature_header  # noqa: E402
from x402.mechanisms.evm.exact import register_exact_evm_client  # noqa: E402

from aixyz_sessions.payments import paid  # noqa: E402
from aixyz_sessions.payments.runtime import get_runtime  # noqa: E402


async def work(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"answer": sum(range(100))})


urlpatterns = [path("free/", work), path("paid/", paid("$0.01")(work))]


async def main(n: int) -> None:
    logging.getLogger("django.request").setLevel(logging.ERROR)  # every paid call starts at 402
    client = AsyncClient()
    unpaid = await client.get("/paid/")
    required = decode_payment_required_header(unpaid["PAYMENT-REQUIRED"])
    signer = x402Client()
    register_exact_evm_client(signer, Account.create())  # type: ignore[arg-type]
    payloads = [await signer.create_payment_payload(required) for _ in range(2 * n)]
    headers = [encode_payment_signature_header(p) for p in payloads]

    for _ in range(20):  # warm-up
        await client.get("/free/")
    start = time.perf_counter()
    for _ in range(n):
        assert (await client.get("/free/")).status_code == 200
    free_rps = n / (time.perf_counter() - start)

    start = time.perf_counter()
    for header in headers[:n]:
        response = await client.get("/paid/", headers={"PAYMENT-SIGNATURE": header})
        assert response.status_code == 200, response.content
    paid_rps = n / (time.perf_counter() - start)

    runtime = get_runtime()
    requirements = required.accepts[0]
    verify_times, both_times = [], []
    for payload in payloads[n:]:
        start = time.perf_counter()
        verified = await runtime.server.verify_payment(payload, requirements)
        verify_times.append(time.perf_counter() - start)
        settled = await runtime.server.settle_payment(payload, requirements)
        both_times.append(time.perf_counter() - start)
        assert verified.is_valid and settled.success
    print(f"requests: {n} each, sequential, Django AsyncClient, LocalFacilitator")
    print(f"free view: {free_rps:8.1f} req/s")
    print(f"paid view: {paid_rps:8.1f} req/s  ({paid_rps / free_rps:.1%} of free)")
    print(f"verify median:        {statistics.median(verify_times) * 1000:.2f} ms  (target < 1 ms)")
    print(f"verify+settle median: {statistics.median(both_times) * 1000:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
