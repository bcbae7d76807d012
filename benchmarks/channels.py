"""Payment channels (x402 ``batch-settlement``) against ``exact`` and a free call, in one run.

    .venv/bin/python benchmarks/channels.py [--calls 1000] [--exact-calls 50] [--concurrency 16]
        [--verify-delay 0.05] [--chain-delay 1.0] [--storage database|postgres|redis] [--quick]

One payer (one ``eth_account`` key) makes paid calls to ``GET /paid/?key=K``
(``@paid("$0.001")``, writes ``K`` in the payer's session;
``benchmarks/channels_app.py``) on a real uvicorn server on loopback (in this
process, in a thread, as ``tests/test_channels_e2e.py`` runs it), with
``AIXYZ_X402["BATCH_SETTLEMENT"]`` set, so the route offers ``exact`` and then
``batch-settlement``. The baseline is ``GET /free/`` on the same server. Sessions
live in the in-memory store; channels in ``--storage``: ``database`` (a SQLite
file, migrated at start), ``postgres`` (the database ``aixyz_bench_channels`` at
127.0.0.1:5432, user ``postgres``, created afresh) or ``redis``
(``redis://127.0.0.1:6379/13``, flushed first).

Scenarios, each sequential and with ``--concurrency`` clients at once:

* free: a plain ``httpx.AsyncClient`` (the baseline);
* exact: the SDK's ``x402HttpxClient`` with ``register_exact_evm_client``: every
  call is verified and settled by the facilitator, one on-chain transfer each;
* channels: the SDK's batch-settlement client scheme only (as
  ``payer_client`` in ``tests/test_channels_e2e.py``): the first call of a
  channel deposits (one on-chain transaction), the others send a cumulative
  voucher the server checks itself. A channel serves one call at a time, so
  the concurrent clients use one channel each (same account, different
  ``salt``). After each channel scenario, ``run_pass(..., everything=True)``
  (what ``manage.py aixyz_channels --all`` runs) claims and settles every
  voucher; its transactions are counted with the scenario's.

Every SDK client call is two HTTP requests (the 402, then the paid retry)
plus the client's signing; its latency is measured around the whole call.
The paid retry alone is also timed (a timing transport under the SDK's), to
tell the scheme's own cost from the SDK client's extra round trip.

ASSUMPTIONS (the facilitator stand-in). The process-wide ``LocalFacilitator``
(real SDK verification over an in-memory ledger) is replaced, before the
payment runtime is built, by :class:`DelayedFacilitator`, which sleeps
``--verify-delay`` (default 50 ms: a hosted facilitator's HTTPS round trip)
before each verify and each settle request, and ``--chain-delay`` more
(default 1 s: an L2 transaction's inclusion) after each settlement that
mined a ledger transaction (an ``exact`` transfer, a channel deposit, a claim,
a settle). Async paths sleep with ``asyncio.sleep`` (the server keeps serving),
the management command's sync paths with ``time.sleep``. A real facilitator
and chain vary: these are round numbers, not measurements.

``exact`` with those delays takes about 1.1 s per call, so ``--exact-calls``
defaults to 50 (calls/s and p50 stay comparable; the p99 of 50 calls is their
maximum). ``MIN_DEPOSIT`` is ``--deposit`` (default ``$1``, 1000 calls at
$0.001): the SDK's default deposit is a few calls' worth, which would mean a
top-up deposit every few calls.

Printed: a table (scenario, calls, p50/p99 ms, calls/s, on-chain transactions,
per 100 calls, facilitator requests), then the targets (a channel call's p50
within 3 ms of a free call's; at most 1 on-chain transaction per 100 calls)
and the charge check: each stored channel's ``charged_cumulative_amount`` is
its calls x price, the total is all channel calls x price, and after the
claim every channel's claimed amount (stored and on the ledger) is what it
charged. The charge check, a failed call or a lost session write exits 1;
the targets are reported, not enforced (they depend on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's directory comes first on sys.path, and this module
# (channels.py) would shadow Django Channels' ``channels`` package, which the ASGI
# app imports: drop that entry, import from the project root instead.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.signers.local import LocalAccount  # noqa: E402
from x402 import x402Client  # noqa: E402
from x402.http.clients.httpx import x402_httpx_transport  # noqa: E402
from x402.mechanisms.evm.batch_settlement.client import (  # noqa: E402
    BatchSettlementEvmScheme as ChannelClientScheme,
)
from x402.mechanisms.evm.batch_settlement.client import (  # noqa: E402
    BatchSettlementEvmSchemeOptions,
)
from x402.mechanisms.evm.exact import register_exact_evm_client  # noqa: E402
from x402.mechanisms.evm.signers import EthAccountSigner  # noqa: E402
from x402.schemas import (  # noqa: E402
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    SettleResponse,
    VerifyResponse,
)

from aixyz_sessions.payments import local as local_module  # noqa: E402
from aixyz_sessions.payments.local import LocalFacilitator  # noqa: E402

PAY_TO = "0x" + "ab" * 20
NETWORK = "eip155:84532"
CHAIN_ID = 84532
REDIS_URL = "redis://127.0.0.1:6379/13"
WARMUP = 20  # free calls before anything is timed (connections, imports, the runtime)
TARGET_P50_MS = 3.0
TARGET_TX_PER_100 = 1.0

Payload = PaymentPayload | PaymentPayloadV1
Requirements = PaymentRequirements | PaymentRequirementsV1


# -- the facilitator stand-in -------------------------------------------------------------------


class DelayedFacilitator(LocalFacilitator):
    """The LocalFacilitator with a hosted facilitator's latency and a chain's.

    ``verify_delay`` before every verify and settle request (its round trip),
    ``chain_delay`` after a settlement that mined a transaction on the ledger
    (waiting for inclusion). The async face (the server) sleeps on the loop
    and runs the SDK's checks in a thread as the LocalFacilitator does; the
    sync face (``run_pass``, the SDK's sync channel manager) blocks.
    """

    def __init__(self, verify_delay: float, chain_delay: float) -> None:
        super().__init__()
        self.verify_delay, self.chain_delay = verify_delay, chain_delay
        self._lock = threading.Lock()
        #: Requests served: "verify", "settle", and "onchain" (settlements that mined).
        self.requests: Counter[str] = Counter()

    def _count(self, what: str) -> None:
        with self._lock:
            self.requests[what] += 1

    def _mined(self, settled: SettleResponse) -> bool:
        """Whether ``settled`` names a transaction the ledger recorded (not a no-op settle).

        Looked up by hash rather than by a change in the ledger's count: with
        concurrent settlements the count also moves for the others.
        """
        tx = settled.transaction
        if not (settled.success and tx):
            return False
        mined = any(t.tx == tx for t in self.ledger.transactions)
        if mined:
            self._count("onchain")
        return mined

    async def verify(self, payload: Payload, requirements: Requirements) -> VerifyResponse:
        self._count("verify")
        await asyncio.sleep(self.verify_delay)
        # The parent's sync check, not self.verify_sync: that one would sleep again.
        return await asyncio.to_thread(super().verify_sync, payload, requirements)

    async def settle(self, payload: Payload, requirements: Requirements) -> SettleResponse:
        self._count("settle")
        await asyncio.sleep(self.verify_delay)
        settled = await asyncio.to_thread(super().settle_sync, payload, requirements)
        if self._mined(settled):
            await asyncio.sleep(self.chain_delay)
        return settled

    def verify_sync(self, payload: Payload, requirements: Requirements) -> VerifyResponse:
        self._count("verify")
        time.sleep(self.verify_delay)
        return super().verify_sync(payload, requirements)

    def settle_sync(self, payload: Payload, requirements: Requirements) -> SettleResponse:
        self._count("settle")
        time.sleep(self.verify_delay)
        settled = super().settle_sync(payload, requirements)
        if self._mined(settled):
            time.sleep(self.chain_delay)
        return settled


def install_facilitator(verify_delay: float, chain_delay: float) -> DelayedFacilitator:
    """Make ``get_local_facilitator()`` answer the stand-in (before the runtime is built).

    ``PaymentRuntime.__init__`` and ``channels.operations.sync_facilitator``
    both import ``get_local_facilitator`` from the module when they run, so
    replacing the module attribute reaches both; ``main`` checks that the
    runtime really holds the stand-in.
    """
    facilitator = DelayedFacilitator(verify_delay, chain_delay)
    local_module.get_local_facilitator = lambda: facilitator
    return facilitator


# -- Django and the server ---------------------------------------------------------------------


POSTGRES = {
    "ENGINE": "django.db.backends.postgresql",
    "HOST": "127.0.0.1",
    "PORT": 5432,
    "USER": "postgres",
    "NAME": "aixyz_bench_channels",
}


def fresh_postgres() -> None:
    """Create (or empty) the benchmark's own PostgreSQL database."""
    import psycopg

    admin = {k: v for k, v in POSTGRES.items() if k not in ("ENGINE", "NAME")}
    try:
        with psycopg.connect(
            host=admin["HOST"],
            port=admin["PORT"],
            user=admin["USER"],
            dbname="postgres",
            autocommit=True,
        ) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {POSTGRES['NAME']}")
            connection.execute(f"CREATE DATABASE {POSTGRES['NAME']}")
    except psycopg.Error as exc:
        raise SystemExit(f"ABORT: PostgreSQL at 127.0.0.1:5432: {exc}") from exc


def configure(storage: str, deposit: str, db_path: str, postgres: bool = False) -> None:
    database: dict[str, Any] = (
        dict(POSTGRES)
        if postgres
        else {"ENGINE": "django.db.backends.sqlite3", "NAME": db_path, "OPTIONS": {"timeout": 30}}
    )
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "aixyz_sessions"],
        MIDDLEWARE=["aixyz_sessions.payments.middleware.X402Middleware"],
        ROOT_URLCONF="benchmarks.channels_app",
        # In memory, with room for every key the run writes (the store's LRU cap,
        # 10,000 entries by default, would evict the first ones of a long run).
        AIXYZ_SESSION_STORE={
            "BACKEND": "aixyz_sessions.stores.memory.InMemorySessionStore",
            "OPTIONS": {"max_entries": 1_000_000},
        },
        # A file, not ":memory:": the server's threads and this one must see one database.
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        AIXYZ_X402={
            "PAY_TO": PAY_TO,
            "NETWORK": NETWORK,
            "FACILITATOR": "local",
            "BATCH_SETTLEMENT": {"STORAGE": storage, "MIN_DEPOSIT": deposit},
        },
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            # Every SDK call starts with a 402, which Django logs as a warning; the
            # LocalFacilitator warns that no money moves. Both expected here.
            "loggers": {
                "django.request": {"level": "ERROR"},
                "aixyz_sessions.payments": {"level": "ERROR"},
            },
        },
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


class Server:
    """uvicorn on a free loopback port, in a daemon thread (``tests.payments_helpers.serve``).

    In this process, so the stand-in facilitator, the ledger and the channel
    storage the checks read are the server's own.
    """

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise SystemExit("ABORT: uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)


# -- clients and scenarios ---------------------------------------------------------------------


@dataclass
class Timings:
    """The parts of SDK calls: the unpaid request's 402, the client's work, the paid retry."""

    challenge: list[float] = field(default_factory=list)  # the unpaid request answering 402
    client: list[float] = field(default_factory=list)  # from that 402 to the retry (signing)
    paid: list[float] = field(default_factory=list)  # the paid retry alone

    @staticmethod
    def p50(values: list[float]) -> float:
        return statistics.median(values) * 1000 if values else float("nan")


class TimingTransport(httpx.AsyncHTTPTransport):
    """Under the SDK's transport (one per client): times each request of a paid call."""

    def __init__(self, timings: Timings) -> None:
        super().__init__()
        self.timings = timings
        self._after_402: float | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        signed = "payment-signature" in request.headers
        if signed and self._after_402 is not None:
            self.timings.client.append(started - self._after_402)
        self._after_402 = None
        response = await super().handle_async_request(request)
        await response.aread()  # the whole answer, as the free call's latency includes it
        done = time.perf_counter()
        if signed:
            self.timings.paid.append(done - started)
        elif response.status_code == 402:
            self.timings.challenge.append(done - started)
            self._after_402 = done
        return response


def exact_client(account: LocalAccount) -> x402Client:
    client = x402Client()
    register_exact_evm_client(client, account)  # type: ignore[arg-type]
    return client


def channel_client(account: LocalAccount, salt: str) -> x402Client:
    """The SDK's client with the batch-settlement scheme only (the e2e tests' ``payer_client``)."""
    client = x402Client()
    options = BatchSettlementEvmSchemeOptions(salt=salt)
    client.register("eip155:*", ChannelClientScheme(EthAccountSigner(account), options))
    return client


@dataclass
class Result:
    name: str
    calls: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    per_client: list[int] = field(default_factory=list)  # successful calls per client
    keys: list[str] = field(default_factory=list)  # session keys acknowledged
    errors: list[str] = field(default_factory=list)
    tx: Counter[str] = field(default_factory=Counter)  # ledger transactions by kind
    facilitator: int = 0  # verify + settle requests
    settle_seconds: float = 0.0  # the run_pass after a channel scenario

    @property
    def tx_total(self) -> int:
        return sum(self.tx.values())

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def paid_p50(self) -> float:
        return Timings.p50(self.timings.paid)

    @property
    def rate(self) -> float:
        return self.calls / self.elapsed if self.elapsed else 0.0


async def run_calls(
    result: Result,
    url: str,
    n: int,
    concurrency: int,
    make: Callable[[int, Timings], httpx.AsyncClient],
    path: str,
) -> None:
    """``n`` calls spread over ``concurrency`` clients, each making one call at a time."""
    indices = iter(range(n))  # shared: each client takes the next call when it is free
    result.per_client = [0] * concurrency
    prefix = result.name.replace(" ", "-").replace(",", "")

    async def client_loop(number: int) -> None:
        async with make(number, result.timings) as http:
            for index in indices:
                key = f"{prefix}-{index}"
                started = time.perf_counter()
                try:
                    response = await http.get(path, params={"key": key})
                except Exception as exc:  # a client that raises is a failed call, not a crash
                    result.errors.append(f"{key}: {type(exc).__name__}: {exc}")
                    continue
                result.latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    result.errors.append(f"{key}: {response.status_code} {response.text[:200]}")
                    continue
                if path != "/free/":
                    if "payment-response" not in response.headers:
                        result.errors.append(f"{key}: 200 without PAYMENT-RESPONSE")
                        continue
                    result.keys.append(key)
                result.per_client[number] += 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    result.calls = sum(result.per_client)


class Bench:
    def __init__(self, args: argparse.Namespace, url: str, facilitator: DelayedFacilitator):
        self.args, self.url, self.facilitator = args, url, facilitator
        self.account: LocalAccount = Account.create()  # the one payer
        #: salt -> (scenario, calls on that channel)
        self.channels: dict[str, tuple[str, int]] = {}
        self.pass_lines: list[str] = []

    def plain(self, _number: int, _timings: Timings) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=120)

    def paying(self, client: x402Client, timings: Timings) -> httpx.AsyncClient:
        # What x402HttpxClient builds, with the timing transport under the SDK's.
        transport = x402_httpx_transport(client, transport=TimingTransport(timings))
        return httpx.AsyncClient(transport=transport, base_url=self.url, timeout=120)

    def ledger_kinds(self) -> Counter[str]:
        return Counter(t.kind for t in self.facilitator.ledger.transactions)

    def facilitator_requests(self) -> int:
        return self.facilitator.requests["verify"] + self.facilitator.requests["settle"]

    async def scenario(
        self,
        name: str,
        n: int,
        concurrency: int,
        make: Callable[[int, Timings], httpx.AsyncClient],
        path: str,
    ) -> Result:
        result = Result(name)
        kinds, requests = self.ledger_kinds(), self.facilitator_requests()
        await run_calls(result, self.url, n, concurrency, make, path)
        result.tx = self.ledger_kinds() - kinds
        result.facilitator = self.facilitator_requests() - requests
        print(f"  {name}: {result.calls} calls in {result.elapsed:.1f} s", flush=True)
        return result

    async def channel_scenario(self, name: str, n: int, concurrency: int) -> Result:
        salts = ["0x" + secrets.token_hex(32) for _ in range(concurrency)]

        def make(number: int, timings: Timings) -> httpx.AsyncClient:
            return self.paying(channel_client(self.account, salts[number]), timings)

        result = await self.scenario(name, n, concurrency, make, "/paid/")
        for salt, calls in zip(salts, result.per_client, strict=True):
            if calls:
                self.channels[salt] = (name, calls)
        # Claim and settle now, so the transactions belong to this scenario.
        kinds, requests = self.ledger_kinds(), self.facilitator_requests()
        started = time.perf_counter()
        done = await asyncio.to_thread(self.claim_and_settle)
        result.settle_seconds = time.perf_counter() - started
        result.tx += self.ledger_kinds() - kinds
        result.facilitator += self.facilitator_requests() - requests
        result.errors.extend(f"run_pass: {failure}" for failure in done.failures)
        print(f"    claim + settle (run_pass): {result.settle_seconds:.1f} s", flush=True)
        return result

    def claim_and_settle(self) -> Any:
        from aixyz_sessions.channels.operations import run_pass
        from aixyz_sessions.payments.runtime import get_runtime

        runtime = get_runtime()
        scheme, channel_settings = runtime.channel_scheme, runtime.config.batch_settlement
        assert scheme is not None and channel_settings is not None
        return run_pass(
            scheme.channel_storage,
            channel_settings,
            everything=True,
            refund=False,  # refunds wait REFUND_AFTER (a day): not part of serving calls
            say=self.pass_lines.append,
        )

    async def run(self) -> list[Result]:
        args = self.args
        async with httpx.AsyncClient(base_url=self.url, timeout=60) as warm:
            for _ in range(WARMUP):
                (await warm.get("/free/")).raise_for_status()
            unpaid = await warm.get("/paid/", params={"key": "warm-up"})
            if unpaid.status_code != 402:  # also builds the payment runtime, before any timing
                raise SystemExit(f"ABORT: unpaid /paid/ answered {unpaid.status_code}")
        self.check_stand_in()

        def exact(_number: int, timings: Timings) -> httpx.AsyncClient:
            return self.paying(exact_client(self.account), timings)

        conc = args.concurrency
        print("running:", flush=True)
        # The exact scenarios first (the long ones); each free baseline right before the
        # channel scenario it is compared with, so both see the same background.
        exact_seq = await self.scenario("exact", args.exact_calls, 1, exact, "/paid/")
        exact_conc = await self.scenario(
            f"exact, {conc} concurrent", args.exact_calls, conc, exact, "/paid/"
        )
        free_seq = await self.scenario("free (baseline)", args.calls, 1, self.plain, "/free/")
        channels_seq = await self.channel_scenario("channels", args.calls, 1)
        free_conc = await self.scenario(
            f"free, {conc} concurrent", args.calls, conc, self.plain, "/free/"
        )
        channels_conc = await self.channel_scenario(
            f"channels, {conc} concurrent", args.calls, conc
        )
        return [free_seq, free_conc, exact_seq, exact_conc, channels_seq, channels_conc]

    def check_stand_in(self) -> None:
        from aixyz_sessions.payments.runtime import get_runtime

        inner = getattr(get_runtime().facilitator, "inner", None)
        if inner is not self.facilitator:
            raise SystemExit(f"ABORT: the runtime's facilitator is {inner!r}, not the stand-in")

    # -- checks ----------------------------------------------------------------------------

    def charge_check(self, price: int) -> tuple[bool, list[str]]:
        """Each channel charged its calls x price, claimed all of it; the total adds up."""
        from aixyz_sessions.payments.runtime import get_runtime

        scheme = get_runtime().channel_scheme
        assert scheme is not None
        payer = self.account.address.lower()
        stored = [
            c for c in scheme.channel_storage.list() if c.channel_config.payer.lower() == payer
        ]
        by_salt = {c.channel_config.salt.lower(): c for c in stored}
        lines, ok = [], True
        for salt in sorted(set(by_salt) - set(self.channels)):
            ok = False
            lines.append(f"  unexpected channel {by_salt[salt].channel_id} (salt {salt[:10]}...)")
        total_charged = total_calls = 0
        per_scenario: dict[str, list[int]] = {}
        for salt, (scenario, calls) in self.channels.items():
            channel = by_salt.get(salt)
            total_calls += calls
            if channel is None:
                ok = False
                lines.append(f"  {scenario}: no stored channel for salt {salt[:10]}...")
                continue
            charged = int(channel.charged_cumulative_amount)
            total_charged += charged
            on_chain = self.facilitator.ledger.channel(channel.channel_id, chain_id=CHAIN_ID)
            claimed = on_chain.total_claimed if on_chain is not None else -1
            stats = per_scenario.setdefault(scenario, [0, 0, 0])
            stats[0] += 1
            stats[1] += calls
            stats[2] += charged
            bad = (
                charged != calls * price
                or int(channel.total_claimed) != charged
                or claimed != charged
                or channel.pending_request is not None
            )
            if bad:
                ok = False
                lines.append(
                    f"  {scenario}: channel {channel.channel_id[:12]}...: {calls} calls x {price}"
                    f" = {calls * price}, charged {charged}, claimed {channel.total_claimed} "
                    f"(ledger {claimed}), pending {channel.pending_request is not None}"
                )
        for scenario, (count, calls, charged) in per_scenario.items():
            lines.append(
                f"  {scenario}: {count} channel(s), {calls} calls x {price} = {calls * price}, "
                f"charged {charged}, all claimed on the ledger"
                if charged == calls * price
                else f"  {scenario}: {calls * price} expected, {charged} charged"
            )
        if total_charged != total_calls * price:
            ok = False
        lines.append(
            f"  total: {total_calls} channel calls x {price} = {total_calls * price}, "
            f"charged {total_charged}"
        )
        return ok, lines

    async def lost_writes(self, results: list[Result]) -> list[str]:
        """Acknowledged paid calls whose session key does not read back."""
        from aixyz_sessions import get_store

        store, payer = get_store(), self.account.address.lower()
        lost = []
        for result in results:
            for key in result.keys:
                if await store.get(payer, key) != "1":
                    lost.append(f"{result.name}: {key}")
        return lost


# -- reporting -----------------------------------------------------------------------------------


def table(results: list[Result]) -> list[str]:
    head = (
        f"{'scenario':26}{'calls':>7}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>9}"
        f"{'on-chain tx':>13}{'tx/100 calls':>14}{'facilitator req':>17}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        per_100 = 100 * r.tx_total / r.calls if r.calls else float("nan")
        lines.append(
            f"{r.name:26}{r.calls:7d}{r.p50:9.2f}{r.p(0.99):9.2f}{r.rate:9.1f}"
            f"{r.tx_total:13d}{per_100:14.2f}{r.facilitator:17d}"
        )
    return lines


def tx_note(r: Result) -> str:
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(r.tx.items())) or "none"
    return f"  {r.name}: {kinds}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", type=int, help="channel and free calls per scenario (1000)")
    parser.add_argument("--exact-calls", type=int, help="exact calls per scenario (50)")
    parser.add_argument("--concurrency", type=int, help="clients at once (16)")
    parser.add_argument("--verify-delay", type=float, default=0.05, help="s per verify/settle")
    parser.add_argument("--chain-delay", type=float, default=1.0, help="s per on-chain tx")
    parser.add_argument("--storage", choices=("database", "postgres", "redis"), default="database")
    parser.add_argument("--deposit", default="$1", help="BATCH_SETTLEMENT MIN_DEPOSIT ($1)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 30 calls, 6 exact, 4 clients"
    )
    args = parser.parse_args(argv)
    small, full = (30, 6, 4), (1000, 50, 16)
    for name, default in zip(
        ("calls", "exact_calls", "concurrency"), small if args.quick else full, strict=True
    ):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if min(args.calls, args.exact_calls, args.concurrency) < 1:
        parser.error("--calls, --exact-calls and --concurrency must be positive")
    if min(args.verify_delay, args.chain_delay) < 0:
        parser.error("delays cannot be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="aixyz-bench-channels-")
    storage = "database"
    if args.storage == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            client.flushdb()
        except redis.RedisError as exc:
            raise SystemExit(f"ABORT: Redis at {REDIS_URL}: {exc}") from exc
        finally:
            client.close()
        storage = REDIS_URL
    if args.storage == "postgres":
        fresh_postgres()
    try:
        configure(
            storage,
            args.deposit,
            str(Path(workdir) / "bench.sqlite3"),
            postgres=args.storage == "postgres",
        )
        facilitator = install_facilitator(args.verify_delay, args.chain_delay)
        from aixyz_sessions.asgi import get_asgi_application
        from benchmarks.channels_app import PRICE, PRICE_ATOMIC

        print("payment channels benchmark: one payer, paid GET /paid/ vs free GET /free/")
        print(
            f"  server: uvicorn on loopback (in this process, one thread), {NETWORK}, "
            f"price {PRICE} per call (writes one session key; sessions in memory)"
        )
        where = {"database": "SQLite file", "postgres": "PostgreSQL, 127.0.0.1"}.get(
            args.storage, storage
        )
        print(f"  channel storage: {args.storage} ({where}); MIN_DEPOSIT {args.deposit}")
        print(
            f"  ASSUMED facilitator: LocalFacilitator + {args.verify_delay * 1000:.0f} ms per "
            f"verify/settle request + {args.chain_delay:g} s per on-chain transaction "
            "(exact transfer, deposit, claim, settle); round numbers, not measurements"
        )
        print(
            f"  calls: {args.calls} free and channel calls per scenario; exact: "
            f"{args.exact_calls} per scenario (each waits for its own settlement; fewer calls, "
            f"calls/s and p50 still comparable); concurrency {args.concurrency}"
        )
        print(
            "  latency: a whole SDK call (the 402, the client's signing, the paid retry); "
            "channel first calls (deposits) included"
        )
        print(flush=True)
        with Server(get_asgi_application()) as server:
            bench = Bench(args, server.url, facilitator)
            results = asyncio.run(bench.run())
            charge_ok, charge_lines = bench.charge_check(PRICE_ATOMIC)
            lost = asyncio.run(bench.lost_writes(results))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(args, results, charge_ok, charge_lines, lost)


def report(
    args: argparse.Namespace,
    results: list[Result],
    charge_ok: bool,
    charge_lines: list[str],
    lost: list[str],
) -> int:
    free_seq, free_conc, _exact_seq, _exact_conc, channels_seq, channels_conc = results
    print()
    for line in table(results):
        print(line)
    print()
    print("on-chain transactions by kind:")
    for r in results[2:]:
        print(tx_note(r))
    print(
        f"  (claim + settle by run_pass: {channels_seq.settle_seconds:.1f} s and "
        f"{channels_conc.settle_seconds:.1f} s, not in calls/s)"
    )
    print("a paid call's parts, p50 ms: the 402 round trip + the client's work (signing) + the")
    print("paid retry (server: verify, view, settle); the free call's round trip for comparison:")
    print(f"  {'free (baseline)':26}{'':>24}{free_seq.p50:9.2f}")
    for r in results[2:]:
        t = r.timings
        print(
            f"  {r.name:26}{t.p50(t.challenge):7.2f} + {t.p50(t.client):7.2f} + "
            f"{t.p50(t.paid):9.2f}"
        )
    print()
    print("targets:")
    diff = channels_seq.p50 - free_seq.p50
    verdict = "holds" if diff <= TARGET_P50_MS else "MISSED"
    print(
        f"  channel p50 within {TARGET_P50_MS:g} ms of free: channels {channels_seq.p50:.2f} ms, "
        f"free {free_seq.p50:.2f} ms, difference {diff:+.2f} ms: {verdict}"
    )
    diff_conc = channels_conc.p50 - free_conc.p50
    print(
        f"    ({args.concurrency} concurrent: channels {channels_conc.p50:.2f} ms, free "
        f"{free_conc.p50:.2f} ms, difference {diff_conc:+.2f} ms; paid retry alone vs free: "
        f"{channels_seq.paid_p50 - free_seq.p50:+.2f} ms sequential)"
    )
    for r in (channels_seq, channels_conc):
        per_100 = 100 * r.tx_total / r.calls if r.calls else float("nan")
        verdict = "holds" if per_100 <= TARGET_TX_PER_100 else "MISSED"
        print(
            f"  at most {TARGET_TX_PER_100:g} on-chain tx per 100 calls, {r.name}: "
            f"{r.tx_total} tx / {r.calls} calls = {per_100:.2f}: {verdict}"
        )
    errors = [e for r in results for e in r.errors]
    print()
    print(f"charge check: {'PASS' if charge_ok else 'FAIL'}")
    for line in charge_lines:
        print(line)
    print(f"failed calls: {len(errors)}")
    for error in errors[:10]:
        print(f"  {error}")
    acknowledged = sum(len(r.keys) for r in results)
    print(f"session writes: {acknowledged} acknowledged, {len(lost)} lost")
    for key in lost[:10]:
        print(f"  lost: {key}")
    return 0 if charge_ok and not errors and not lost else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
