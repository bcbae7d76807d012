"""Our paid Django endpoint against the x402 SDK's own FastAPI middleware, in one run.

    .venv/bin/python benchmarks/peer_fastapi.py [--rounds 3] [--requests 300] [--profile ours]

Three sides, set up identically (``benchmarks/peer_fastapi_app.py``): network
eip155:84532, price $0.01, pay_to 0xabab..ab, each verifying and settling with
its OWN ``LocalFacilitator`` (the SDK's exact-EVM facilitator over an in-memory
ledger, so verification costs the same everywhere), each answering
``{"ok": true}`` on a free and on a paid endpoint:

* ours: plain Django ASGI (``get_asgi_application``), ``X402Middleware`` and an
  async ``@paid("$0.01")`` view; in-memory session store and replay guard;
* theirs: FastAPI with the SDK's ``PaymentMiddlewareASGI`` on ``GET /paid``;
* SDK flow on Django: the SDK's own middleware sequence ported to Django
  middleware on ``/sdk-paid`` in the same Django app (see the app module): the
  baseline that tells our flow's cost from Django's;
* ours, upto: the same Django app's ``@paid(upto="$0.01")`` view, which
  charges $0.004 (an ``upto`` Permit2 authorization of the maximum, settled for
  less): its paid overhead over ours with ``exact`` is the cost of metering;
* theirs, upto: the FastAPI app's ``upto`` route, settling $0.004 through the
  SDK's ``Settlement-Overrides`` header: the peer for the metered row.

Cases, per side: (a) free requests, (b) the 402 challenge (paid endpoint, no
payment, ``Accept: application/json``), (c) paid requests, each with its own
fresh payment signed BEFORE the clock starts (``x402HTTPClient`` on the side's
own 402). Requests are sequential, in process, through
``httpx.AsyncClient(transport=httpx.ASGITransport(app))``. After a warm-up the
cases run interleaved over ``--rounds`` rounds: within a case the sides
alternate in blocks of 25 requests, so all see the same background load.

Printed per round and side: req/s of each case; the paid overhead (mean paid
latency - mean free latency, ms); the 402's cost over a free request (ms); the
ratios of our paid overhead to FastAPI's and to the SDK flow on Django; and
Django's 402 floor (a plain Django view answering 402, over a free request:
Django logs every response >= 400 through a thread hop). Then the medians over
rounds, and the signature work per paid call on each side: the scheme's EOA
signature checks (calls of the SDK's ``verify_eoa_signature``) and the
secp256k1 key recoveries actually computed (coincurve's
``from_signature_and_message``).

Every paid response must be a 200 with a ``PAYMENT-RESPONSE`` header and every
challenge a 402, else the run aborts. ``--profile ours|sdk-django|theirs`` runs only the
paid case of that side under cProfile (the facilitator's worker threads
included) and prints the top 25 functions by cumulative time (and the top 15
by own time: under asyncio the cumulative view is mostly the event loop).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import logging
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import coincurve
import django
import eth_keys
import httpx
from django.conf import settings
from eth_account import Account
from eth_keys.backends.coincurve import CoinCurveECCBackend
from x402 import x402Client
from x402.http import decode_payment_response_header, x402HTTPClient
from x402.mechanisms.evm import verify as evm_verify
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.mechanisms.evm.upto import UptoEvmClientScheme

from aixyz_sessions.payments.local import LocalFacilitator
from benchmarks import peer_fastapi_app as apps

BASE_URL = "http://testserver"
CASES = ("free", "402", "paid")
WARMUP = {"free": 50, "402": 50, "paid": 20}
CHUNK = 25  # requests per side in a row before the other side runs


class Abort(SystemExit):
    """A response that is not what the case requires: stop the run with the reason."""

    def __init__(self, side: str, what: str, response: httpx.Response) -> None:
        super().__init__(
            f"ABORT [{side}] {what}: got {response.status_code}, "
            f"headers {dict(response.headers)}, body {response.text[:300]!r}"
        )


# Signature recoveries ------------------------------------------------------------------


@dataclass
class Recoveries:
    """Counts signature work during the paid calls, at two levels.

    ``checks``: calls the exact-EVM scheme makes to the module attribute
    ``x402.mechanisms.evm.verify.verify_eoa_signature`` (both branches reach it
    through that module's globals: ``verify_universal_signature``,
    ``verify_typed_data_strict``). Installed after both apps are built, so it is
    the outermost wrapper: a memo inside (``LocalFacilitator`` may keep one)
    does not hide a call. ``functools.wraps`` keeps the wrapped function's
    attributes, so a wrapper that marks itself is not installed twice.

    ``recoveries``: secp256k1 public-key recoveries actually computed,
    ``coincurve.PublicKey.from_signature_and_message`` (eth_keys' backend here,
    and what any direct coincurve use calls).
    """

    checks: int = 0
    recoveries: int = 0

    def install(self) -> None:
        if not isinstance(eth_keys.KeyAPI().backend, CoinCurveECCBackend):
            print("  (warning: eth_keys does not use coincurve: key recoveries are not counted)")
        check = evm_verify.verify_eoa_signature
        recover = coincurve.PublicKey.from_signature_and_message.__func__  # type: ignore[attr-defined]

        @functools.wraps(check)
        def counted_check(*args: Any, **kwargs: Any) -> bool:
            self.checks += 1
            return check(*args, **kwargs)

        def counted_recover(cls: type, *args: Any, **kwargs: Any) -> Any:
            self.recoveries += 1
            return recover(cls, *args, **kwargs)

        evm_verify.verify_eoa_signature = counted_check
        coincurve.PublicKey.from_signature_and_message = classmethod(counted_recover)  # type: ignore[method-assign, assignment]

    def snapshot(self) -> tuple[int, int]:
        return self.checks, self.recoveries


RECOVERIES = Recoveries()


# The two sides -------------------------------------------------------------------------


@dataclass
class Side:
    name: str
    label: str
    client: httpx.AsyncClient
    facilitator: LocalFacilitator
    path: str = "/paid"
    payments: list[dict[str, str]] = field(default_factory=list)
    paid_calls: int = 0
    signature_work: list[int] = field(default_factory=lambda: [0, 0])  # checks, recoveries

    def take_payments(self, n: int) -> list[dict[str, str]]:
        if len(self.payments) < n:
            raise SystemExit(f"ABORT [{self.name}] ran out of pre-signed payments")
        taken, self.payments = self.payments[:n], self.payments[n:]
        return taken

    async def challenge(self) -> httpx.Response:
        response = await self.client.get(self.path)
        if response.status_code != 402 or "payment-required" not in response.headers:
            raise Abort(self.name, "the paid endpoint without payment is not a 402", response)
        if not response.headers.get("content-type", "").startswith("application/json"):
            raise Abort(self.name, "the 402 is not JSON", response)
        return response

    async def sign(self, n: int) -> None:
        """Pre-sign ``n`` payments against this side's own 402 (one fresh nonce each)."""
        challenge = await self.challenge()
        signer = x402Client()
        account = Account.create()
        register_exact_evm_client(signer, account)  # type: ignore[arg-type]
        signer.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(account)))
        http_client = x402HTTPClient(signer)
        headers = dict(challenge.headers)
        for _ in range(n):
            payment, _payload = await http_client.handle_402_response(
                headers, challenge.content, f"{BASE_URL}{self.path}"
            )
            self.payments.append(payment)

    async def preflight(self) -> None:
        """One paid call checked in full (settled, a replay refused), before any timing."""
        free = await self.client.get("/free")
        if free.status_code != 200 or free.json() != {"ok": True}:
            raise Abort(self.name, "the free endpoint", free)
        await self.challenge()
        (payment,) = self.take_payments(1)
        response = await self.client.get(self.path, headers=payment)
        if response.status_code != 200 or response.json() != {"ok": True}:
            raise Abort(self.name, "a paid request did not succeed", response)
        if "payment-response" not in response.headers:
            raise Abort(self.name, "a paid response has no PAYMENT-RESPONSE", response)
        settled = decode_payment_response_header(response.headers["payment-response"])
        if not settled.success:
            raise Abort(self.name, "PAYMENT-RESPONSE says the settlement failed", response)
        if self.path.endswith("-upto") and settled.amount != "4000":
            raise Abort(self.name, "the metered call did not settle $0.004", response)
        replay = await self.client.get(self.path, headers=payment)
        if replay.status_code != 402:
            raise Abort(self.name, "a replayed payment was not refused", replay)

    async def run(self, case: str, n: int) -> float:
        """Run ``n`` sequential requests of one case; the elapsed seconds."""
        client, name, path = self.client, self.name, self.path
        if case == "free":
            start = time.perf_counter()
            for _ in range(n):
                response = await client.get("/free")
                if response.status_code != 200:
                    raise Abort(name, "free request", response)
            return time.perf_counter() - start
        if case == "402":
            start = time.perf_counter()
            for _ in range(n):
                response = await client.get(path)
                if response.status_code != 402:
                    raise Abort(name, "402 challenge", response)
            return time.perf_counter() - start
        payments = self.take_payments(n)
        before = RECOVERIES.snapshot()
        start = time.perf_counter()
        for payment in payments:
            response = await client.get(path, headers=payment)
            if response.status_code != 200 or "payment-response" not in response.headers:
                raise Abort(name, "paid request", response)
        elapsed = time.perf_counter() - start
        after = RECOVERIES.snapshot()
        self.paid_calls += n
        self.signature_work[0] += after[0] - before[0]
        self.signature_work[1] += after[1] - before[1]
        return elapsed


def make_sides() -> tuple[Side, ...]:
    """Ours, the SDK's flow ported to the same Django process, FastAPI with the SDK, and
    ours again with a metered (``upto``) price on the same Django app."""
    settings.configure(**apps.DJANGO_SETTINGS)
    django.setup()
    django_app = apps.build_django_app()
    theirs_facilitator = LocalFacilitator()
    theirs_app = apps.build_fastapi_app(theirs_facilitator)

    def client(app: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=BASE_URL,
            headers={"Accept": "application/json"},
        )

    ours = Side("ours", "ours (Django)", client(django_app), apps.django_facilitator())
    sdk_on_django = Side(
        "sdk-django",
        "SDK flow on Django",
        client(django_app),
        apps.sdk_flow_facilitator(),
        path="/sdk-paid",
    )
    theirs = Side("theirs", "theirs (FastAPI)", client(theirs_app), theirs_facilitator)
    assert len({id(s.facilitator) for s in (ours, sdk_on_django, theirs)}) == 3
    metered = Side(
        "ours-upto",
        "ours, upto",
        client(django_app),
        apps.django_facilitator(),
        path="/paid-upto",
    )
    theirs_metered = Side(
        "theirs-upto", "theirs, upto", client(theirs_app), theirs_facilitator, path="/paid-upto"
    )
    return ours, sdk_on_django, theirs, metered, theirs_metered


# Reporting -----------------------------------------------------------------------------


@dataclass
class Figures:
    rps: dict[str, float]
    paid_overhead_ms: float
    challenge_over_free_ms: float


def figures(elapsed: dict[str, float], counts: dict[str, int]) -> Figures:
    mean_ms = {case: elapsed[case] / counts[case] * 1000 for case in CASES}
    return Figures(
        rps={case: counts[case] / elapsed[case] for case in CASES},
        paid_overhead_ms=mean_ms["paid"] - mean_ms["free"],
        challenge_over_free_ms=mean_ms["402"] - mean_ms["free"],
    )


HEADER = (
    f"  {'':18}{'free req/s':>11}{'402 req/s':>11}{'paid req/s':>12}"
    f"{'paid ovh ms':>13}{'402-free ms':>13}"
)


def row(label: str, f: Figures) -> str:
    return (
        f"  {label:18}{f.rps['free']:11.1f}{f.rps['402']:11.1f}{f.rps['paid']:12.1f}"
        f"{f.paid_overhead_ms:13.3f}{f.challenge_over_free_ms:13.3f}"
    )


def median_figures(rounds: list[Figures]) -> Figures:
    return Figures(
        rps={case: statistics.median(f.rps[case] for f in rounds) for case in CASES},
        paid_overhead_ms=statistics.median(f.paid_overhead_ms for f in rounds),
        challenge_over_free_ms=statistics.median(f.challenge_over_free_ms for f in rounds),
    )


# Modes ---------------------------------------------------------------------------------


def chunks(n: int) -> list[int]:
    """``n`` requests as blocks of at most ``CHUNK``."""
    return [min(CHUNK, n - start) for start in range(0, n, CHUNK)]


async def compare(sides: list[Side], rounds: int, counts: dict[str, int]) -> None:
    """Interleaved rounds; per round and in medians, each side's figures and the ratios."""
    ours, baseline, theirs = sides[:3]
    metered = sides[3] if len(sides) > 4 else None
    theirs_metered = sides[4] if len(sides) > 4 else None
    results: dict[str, list[Figures]] = {side.name: [] for side in sides}
    ratios: dict[str, list[float]] = {"theirs": [], "baseline": [], "upto": [], "upto-peer": []}
    floors: list[float] = []
    for number in range(1, rounds + 1):
        order = sides[number % len(sides) :] + sides[: number % len(sides)]  # rotate who leads
        leader = order[0].name
        elapsed: dict[str, dict[str, float]] = {side.name: {} for side in sides}
        for case in CASES:
            for side in order:
                elapsed[side.name][case] = 0.0
            for chunk in chunks(counts[case]):  # alternate in small blocks: same background load
                for side in order:
                    elapsed[side.name][case] += await side.run(case, chunk)
                order = order[::-1]
        round_figures = {side.name: figures(elapsed[side.name], counts) for side in sides}
        for name, f in round_figures.items():
            results[name].append(f)
        mine = round_figures[ours.name].paid_overhead_ms
        ratios["theirs"].append(mine / round_figures[theirs.name].paid_overhead_ms)
        ratios["baseline"].append(mine / round_figures[baseline.name].paid_overhead_ms)
        if metered is not None and theirs_metered is not None:
            metered_ms = round_figures[metered.name].paid_overhead_ms
            ratios["upto"].append(metered_ms / mine)
            ratios["upto-peer"].append(
                metered_ms / round_figures[theirs_metered.name].paid_overhead_ms
            )
        floors.append(await django_402_floor(ours, counts["402"]))
        print(f"round {number} ({leader} first)")
        report(sides, round_figures, ratios["theirs"][-1], ratios["baseline"][-1], floors[-1])
        if metered is not None:
            print(f"  paid overhead ratio ours upto/ours exact:      {ratios['upto'][-1]:.3f}")
            print(f"  paid overhead ratio ours upto/theirs upto:     {ratios['upto-peer'][-1]:.3f}")
            print()

    medians = {side.name: median_figures(results[side.name]) for side in sides}
    print(f"medians over {rounds} rounds (ratios: median of per-round ratios)")
    report(
        sides,
        medians,
        statistics.median(ratios["theirs"]),
        statistics.median(ratios["baseline"]),
        statistics.median(floors),
    )
    if metered is not None:
        print(
            "  paid overhead ratio ours upto/ours exact:      "
            f"{statistics.median(ratios['upto']):.3f}"
        )
        print(
            "  paid overhead ratio ours upto/theirs upto:     "
            f"{statistics.median(ratios['upto-peer']):.3f}"
        )
    print("  target: ours/theirs <= 1.0 (aim 0.8); 402-free <= 0.2 ms")
    print()
    print(
        "signature work per paid call: EOA checks (x402 verify_eoa_signature calls) / "
        "key recoveries computed (coincurve)"
    )
    for side in sides:
        checks, recoveries = (count / side.paid_calls for count in side.signature_work)
        print(
            f"  {side.label:18}{checks:6.2f} / {recoveries:.2f}   over {side.paid_calls} paid calls"
        )


async def django_402_floor(side: Side, n: int) -> float:
    """What any 402 costs on Django over a free request (plain view; ms, interleaved).

    Django's handler logs every response >= 400 through ``sync_to_async``
    (a thread hop), whoever built it: no middleware can answer a 402 for less.
    """
    free = plain = 0.0
    for chunk in chunks(n):
        for path in ("/free", "/plain-402"):
            start = time.perf_counter()
            for _ in range(chunk):
                await side.client.get(path)
            spent = time.perf_counter() - start
            if path == "/free":
                free += spent
            else:
                plain += spent
    return (plain - free) / n * 1000


def report(
    sides: list[Side],
    table: dict[str, Figures],
    vs_theirs: float,
    vs_sdk: float,
    floor_402: float,
) -> None:
    print(HEADER)
    for side in sides:
        print(row(side.label, table[side.name]))
    print(f"  paid overhead ratio ours/theirs (FastAPI + SDK): {vs_theirs:.3f}")
    print(f"  paid overhead ratio ours/SDK flow on Django:     {vs_sdk:.3f}")
    print(f"  Django's 402 floor (a plain view answering 402) - free: {floor_402:.3f} ms")
    print()


def profile_worker_threads(facilitator: LocalFacilitator, profiler: cProfile.Profile) -> None:
    """Profile the facilitator's verify/settle, which run in worker threads (asyncio.to_thread)."""

    def profiled(method: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            profiler.enable()
            try:
                return method(*args)
            finally:
                profiler.disable()

        return run

    facilitator.verify_sync = profiled(facilitator.verify_sync)  # type: ignore[method-assign]
    facilitator.settle_sync = profiled(facilitator.settle_sync)  # type: ignore[method-assign]


async def profile(side: Side, n: int) -> None:
    main_thread, workers = cProfile.Profile(), cProfile.Profile()
    profile_worker_threads(side.facilitator, workers)
    main_thread.enable()
    elapsed = await side.run("paid", n)
    main_thread.disable()
    print(f"{side.label}: {n} paid requests under cProfile, {n / elapsed:.1f} req/s")
    print("top 25 by cumulative time (event-loop thread + facilitator worker threads merged)")
    stats = pstats.Stats(main_thread, stream=sys.stdout).add(workers)
    stats.strip_dirs().sort_stats("cumulative").print_stats(25)
    print("top 15 by own time")
    stats.sort_stats("tottime").print_stats(15)


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("django.request").setLevel(logging.ERROR)  # every 402 is a warning
    logging.getLogger("aixyz_sessions.payments").setLevel(logging.ERROR)  # LocalFacilitator note
    logging.getLogger("x402.mechanisms.evm.exact").setLevel(logging.ERROR)  # preflight's replay
    counts = {"free": args.requests, "402": args.requests, "paid": args.paid_requests}
    all_sides = list(make_sides())
    RECOVERIES.install()  # after the apps (and their LocalFacilitators) exist: outermost
    sides = [s for s in all_sides if args.profile in (None, s.name)]

    print("peer benchmark: aixyz_sessions (Django ASGI, @paid) vs x402 SDK FastAPI middleware")
    print(
        f"  {apps.NETWORK}, price {apps.PRICE}, one LocalFacilitator per side, "
        "httpx.ASGITransport, sequential requests"
    )
    timed = counts["paid"] if args.profile else args.rounds * counts["paid"]
    needed = 1 + WARMUP["paid"] + timed  # preflight, warm-up, timed
    start = time.perf_counter()
    for side in sides:
        await side.sign(needed)
    print(f"  pre-signed {needed} payments per side in {time.perf_counter() - start:.1f} s")

    for side in sides:
        await side.preflight()
        for case in CASES:
            await side.run(case, WARMUP[case])
        side.paid_calls, side.signature_work = 0, [0, 0]

    if args.profile:
        print()
        await profile(sides[0], counts["paid"])
    else:
        print(
            f"  per case per round: free {counts['free']}, 402 {counts['402']}, "
            f"paid {counts['paid']}; rounds: {args.rounds}; warm-up {WARMUP}"
        )
        print()
        await compare(sides, args.rounds, counts)
    for side in all_sides:
        await side.client.aclose()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--requests", type=int, default=300, help="free and 402 requests per case per round"
    )
    parser.add_argument(
        "--paid-requests", type=int, help="paid requests per round (default: 2/3 of --requests)"
    )
    parser.add_argument(
        "--profile", choices=("ours", "sdk-django", "theirs", "ours-upto", "theirs-upto")
    )
    args = parser.parse_args()
    if args.paid_requests is None:
        args.paid_requests = max(1, args.requests * 2 // 3)
    if min(args.rounds, args.requests, args.paid_requests) < 1:
        parser.error("--rounds, --requests and --paid-requests must be positive")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
