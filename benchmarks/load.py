"""Load test: paying clients against a real ASGI server with several workers, sessions in Redis.

Starts ``uvicorn benchmarks.load_app:application --workers N`` on a free
loopback port (``benchmarks/load_settings.py``: ``X402Middleware``, the
local facilitator, ``RedisSessionStore`` on 127.0.0.1:6379 under a fresh key
prefix). Then ``--clients`` payers, each with its own ``eth_account`` key and
the x402 SDK's httpx client (``x402HttpxClient``: request, 402, sign,
paid retry), alternate ``put`` and ``get`` of their own keys for
``--seconds``. Each client checks every answer (status 200, its own payer,
and for ``get`` the value it was last acknowledged); at the end every
payer's data is read back from Redis through the store and compared with
what that client was acknowledged: nothing lost, nothing foreign.

Prints, per worker count: paid calls/s (each paid call is two HTTP
requests: the 402 and the paid retry), p50/p99 latency of a paid call
(both round trips and the signing), errors (must be 0), the consistency
verdict, and the client process's CPU use. Signing an EIP-712 payment costs
the client CPU (all clients share one process and one core), so on a small
machine the client, not the server, can be the limit: the CPU figure says.

    .venv/bin/python benchmarks/load.py [--workers 1 2] [--clients 8] [--seconds 20]
    .venv/bin/python benchmarks/load.py --short     # 2 clients, 3 s, 1 worker

Needs Redis at 127.0.0.1:6379 and uvicorn; deletes every key it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from eth_account import Account  # noqa: E402
from redis.asyncio import Redis  # noqa: E402
from x402 import x402Client  # noqa: E402
from x402.http.clients.httpx import x402HttpxClient  # noqa: E402
from x402.mechanisms.evm.exact import register_exact_evm_client  # noqa: E402

from aixyz_sessions.stores.redis import RedisSessionStore  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/0"
KEYS_PER_CLIENT = 50


@dataclass
class ClientStats:
    address: str
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: What the server acknowledged: key -> the last value written.
    acknowledged: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    workers: int
    clients: int
    seconds: float
    calls: int
    errors: int
    p50_ms: float
    p99_ms: float
    consistent: bool
    keys: int
    client_cpu: float
    problems: list[str] = field(default_factory=list)

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"workers={self.workers} clients={self.clients} seconds={self.seconds:.1f}: "
            f"{self.calls} paid calls ({self.calls_per_second:.1f}/s, "
            f"{2 * self.calls_per_second:.1f} HTTP requests/s), "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, errors {self.errors}, "
            f"consistency {'OK' if self.consistent else 'FAIL'} "
            f"({self.clients} payers, {self.keys} keys), client CPU {self.client_cpu:.0%}"
        )


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``uvicorn --workers N`` as a subprocess; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, workers: int, prefix: str, store: str, redis_url: str) -> None:
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "benchmarks.load_settings",
            "AIXYZ_LOAD_PREFIX": prefix,
            "AIXYZ_LOAD_STORE": store,
            "AIXYZ_LOAD_REDIS_URL": redis_url,
            "PYTHONPATH": str(ROOT),
        }
        self.log = tempfile.TemporaryFile()
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.load_app:application",
            *("--host", "127.0.0.1", "--port", str(self.port)),
            *("--workers", str(self.workers)),
            *("--lifespan", "off", "--log-level", "warning", "--no-access-log"),
        ]
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_ready(self, timeout: float = 60) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        answered = 0
        while answered < 2 * self.workers:  # several answers: every worker had time to boot
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited ({self.proc.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not answer within {timeout} s:\n{self.output()}")
            try:
                if httpx.get(self.url + "/tools/", timeout=2).status_code == 200:
                    answered += 1
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.1)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # uvicorn stops its workers, then itself
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.log.close()


# -- the clients -----------------------------------------------------------------------------------


async def client_loop(
    base_url: str, client_id: int, window: tuple[float, float], stats: ClientStats
) -> x402HttpxClient:
    """One payer: two warm-up writes, then put/get of its own keys within ``window``."""
    account = Account.create()
    stats.address = str(account.address).lower()
    payer_client = x402Client()
    register_exact_evm_client(payer_client, account)  # type: ignore[arg-type]
    http = x402HttpxClient(payer_client, base_url=base_url, timeout=30)
    rng = random.Random(client_id)
    seq = 0

    async def call(tool: str, arguments: dict[str, str], measured: bool) -> Any:
        started = time.perf_counter()
        response = await http.post(f"/tools/{tool}", json=arguments)
        elapsed = time.perf_counter() - started
        if measured:
            stats.latencies.append(elapsed)
        if response.status_code != 200:
            raise RuntimeError(f"{tool}: HTTP {response.status_code}: {response.text[:200]}")
        if "PAYMENT-RESPONSE" not in response.headers:
            raise RuntimeError(f"{tool}: 200 without a settlement (PAYMENT-RESPONSE)")
        result = response.json()["result"]
        if result["payer"] != stats.address:
            raise RuntimeError(f"{tool}: answered for payer {result['payer']}")
        return result

    async def put(measured: bool = True) -> None:
        nonlocal seq
        seq += 1
        key = f"k{rng.randrange(KEYS_PER_CLIENT):03d}"
        value = f"{client_id}:{seq}:{secrets.token_hex(8)}"
        await call("put", {"key": key, "value": value}, measured)
        stats.acknowledged[key] = value

    async def get(measured: bool = True) -> None:
        key = rng.choice(sorted(stats.acknowledged)) if rng.random() < 0.8 else "missing"
        result = await call("get", {"key": key}, measured)
        expected = stats.acknowledged.get(key)
        if result["value"] != expected:
            raise RuntimeError(f"get {key}: {result['value']!r}, acknowledged {expected!r}")

    async def attempt(operation: Any, measured: bool = True) -> None:
        try:
            await operation(measured)
        except Exception as exc:
            stats.errors.append(f"{type(exc).__name__}: {exc}")

    opens, closes = window
    for _ in range(2):
        await attempt(put, measured=False)
    await asyncio.sleep(max(0.0, opens - time.monotonic()))
    while time.monotonic() < closes:
        await attempt(put)
        if stats.acknowledged and time.monotonic() < closes:
            await attempt(get)
    return http


async def drive(
    base_url: str, clients: int, seconds: float
) -> tuple[list[ClientStats], float, float]:
    """Run the clients; their stats, the measured wall time and the client's CPU share."""
    stats = [ClientStats(address="") for _ in range(clients)]
    opens = time.monotonic() + 2.0  # the warm-up calls happen before: not measured
    window = (opens, opens + seconds)
    tasks = [
        asyncio.create_task(client_loop(base_url, i, window, stats[i])) for i in range(clients)
    ]
    await asyncio.sleep(max(0.0, opens - time.monotonic()))
    cpu_start, started = time.process_time(), time.monotonic()
    https = await asyncio.gather(*tasks)
    wall = time.monotonic() - started
    cpu = time.process_time() - cpu_start
    for http in https:
        await http.aclose()
    return stats, wall, cpu / wall


async def read_back(prefix: str, redis_url: str, stats: list[ClientStats]) -> list[str]:
    """Every payer's data, read through the store, against what it was acknowledged."""
    store = RedisSessionStore(url=redis_url, key_prefix=prefix, ttl_ms=0)
    problems: list[str] = []
    try:
        for s in stats:
            stored: dict[str, str] = {}
            cursor = None
            while True:
                page = await store.list(s.address, cursor=cursor, limit=100)
                stored.update(page.entries)
                cursor = page.cursor
                if cursor is None:
                    break
            if stored != s.acknowledged:
                lost = sorted(set(s.acknowledged) - set(stored))
                extra = sorted(set(stored) - set(s.acknowledged))
                wrong = sorted(
                    k for k in set(stored) & set(s.acknowledged) if stored[k] != s.acknowledged[k]
                )
                problems.append(f"{s.address}: lost {lost}, extra {extra}, different {wrong}")
    finally:
        await store.close()
    return problems


async def drop_prefix(prefix: str, redis_url: str) -> int:
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await client.delete(*keys[start : start + 500])
        return len(keys)
    finally:
        await client.aclose()


def run(
    *,
    workers: int,
    clients: int,
    seconds: float,
    store: str = "redis",
    redis_url: str = REDIS_URL,
) -> LoadResult:
    """One load run against a fresh server with ``workers`` processes; cleans up after itself."""
    prefix = f"aixyz:load:{secrets.token_hex(6)}"
    try:
        with Server(workers, prefix, store, redis_url) as server:

            async def main() -> tuple[list[ClientStats], float, float, list[str]]:
                stats, wall, cpu = await drive(server.url, clients, seconds)
                problems = await read_back(prefix, redis_url, stats)
                return stats, wall, cpu, problems

            stats, wall, cpu, problems = asyncio.run(main())
    finally:
        asyncio.run(drop_prefix(prefix, redis_url))
    latencies = sorted(latency for s in stats for latency in s.latencies)
    errors = [error for s in stats for error in s.errors]

    def percentile(q: float) -> float:
        if not latencies:
            return float("nan")
        if len(latencies) == 1:
            return latencies[0] * 1000
        return statistics.quantiles(latencies, n=100, method="inclusive")[int(q) - 1] * 1000

    return LoadResult(
        workers=workers,
        clients=clients,
        seconds=wall,
        calls=len(latencies),
        errors=len(errors),
        p50_ms=percentile(50),
        p99_ms=percentile(99),
        consistent=not problems and all(s.acknowledged for s in stats),
        keys=sum(len(s.acknowledged) for s in stats),
        client_cpu=cpu,
        problems=problems + errors[:10],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--store", choices=["redis", "cache"], default="redis")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument("--short", action="store_true", help="2 clients, 3 s, 1 worker")
    args = parser.parse_args()
    if args.short:
        args.workers, args.clients, args.seconds = [1], 2, 3.0
    print(
        f"load: {args.clients} paying clients, {args.seconds:.0f} s per run, "
        f"{args.store} store at {args.redis_url}, {os.cpu_count()} CPUs"
    )
    failed = False
    for workers in args.workers:
        result = run(
            workers=workers,
            clients=args.clients,
            seconds=args.seconds,
            store=args.store,
            redis_url=args.redis_url,
        )
        print(result.line(), flush=True)
        for problem in result.problems:
            print(f"  problem: {problem}")
        failed = failed or result.errors > 0 or not result.consistent
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
