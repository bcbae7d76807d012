"""CacheSessionStore against raw ``redis.asyncio`` on the same Redis, in one run.

Prints ops/s of the store's ``set``, ``get`` and list pages (100 entries a
page) beside the least raw Redis work for the same result: ``SET``/``GET``
of one key, and ``ZRANGEBYLEX`` + ``MGET`` for a page. Every number is
sequential awaits from one coroutine (latency-bound, as one request is),
with the same connection settings on both sides. Store and raw run in
alternating chunks of ``--chunk`` operations (the order flipping every
chunk), so drift in the machine's load hits both alike; each figure is
total operations over total time. Target: set and get >= 0.8x raw.

    .venv/bin/python benchmarks/redis_store.py [--ops 20000] [--chunk 500] [--keys 5000]

Needs Redis at 127.0.0.1:6379 (db 0); writes under a random prefix and
deletes it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from django.conf import settings

REDIS_URL = "redis://127.0.0.1:6379/0"
PAGE = 100

settings.configure(
    SECRET_KEY="benchmark-only",
    CACHES={
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    },
)

from redis.asyncio import Redis  # noqa: E402

from aixyz_sessions.stores.cache import CacheSessionStore  # noqa: E402
from aixyz_sessions.stores.redis_config import resolve_cache_alias  # noqa: E402


async def timed(op: Callable[[int], Awaitable[Any]], indexes: range) -> float:
    start = time.perf_counter()
    for i in indexes:
        await op(i)
    return time.perf_counter() - start


async def compare(
    raw_op: Callable[[int], Awaitable[Any]],
    store_op: Callable[[int], Awaitable[Any]],
    n: int,
    chunk: int,
) -> tuple[float, float]:
    """(raw ops/s, store ops/s) over ``n`` operations each, in alternating chunks."""
    raw_time = store_time = 0.0
    for number, first in enumerate(range(0, n, chunk)):
        indexes = range(first, min(first + chunk, n))
        if number % 2:
            store_time += await timed(store_op, indexes)
            raw_time += await timed(raw_op, indexes)
        else:
            raw_time += await timed(raw_op, indexes)
            store_time += await timed(store_op, indexes)
    return n / raw_time, n / store_time


async def drop(raw: Redis, prefix: str) -> None:
    batch: list[str] = []
    async for key in raw.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await raw.delete(*batch)
            batch.clear()
    if batch:
        await raw.delete(*batch)


async def main(ops: int, chunk: int, n_keys: int, value_size: int) -> None:
    prefix = f"aixyz:bench:{secrets.token_hex(6)}"
    store = CacheSessionStore(key_prefix=prefix + ":store", ttl_ms=600_000)
    raw = resolve_cache_alias("default").new_client()  # the store's connection settings
    payer = "0x" + "5e" * 20
    value = "v" * value_size
    keys = [f"key:{i:06d}" for i in range(ops)]
    raw_keys = [f"{prefix}:raw:{k}" for k in keys]
    try:
        await raw.ping()
        await store.get(payer, "warm-up")

        # The list data: n_keys entries, as the store holds them and as a bare
        # sorted set + strings for the raw baseline.
        list_payer = "0x" + "1a" * 20
        list_keys = [f"item:{i:06d}" for i in range(n_keys)]
        raw_idx = f"{prefix}:rawlist:idx"
        for start in range(0, n_keys, 1000):
            batch = list_keys[start : start + 1000]
            await store.set_many(list_payer, dict.fromkeys(batch, value), ttl_ms=0)
            await raw.zadd(raw_idx, dict.fromkeys(batch, 0))
            await raw.mset({f"{prefix}:rawlist:v:{k}": value for k in batch})
        pages_per_walk = -(-n_keys // PAGE)

        async def store_walk(_: int) -> None:
            cursor = None
            while True:
                page = await store.list(list_payer, cursor=cursor, limit=PAGE)
                cursor = page.cursor
                if cursor is None:
                    return

        async def raw_walk(_: int) -> None:
            lo = "-"
            while True:
                members = await raw.zrangebylex(raw_idx, lo, "+", start=0, num=PAGE + 1)
                page = members[:PAGE]
                await raw.mget([f"{prefix}:rawlist:v:{k}" for k in page])
                if len(members) <= PAGE:
                    return
                lo = "(" + page[-1]

        rates: dict[str, tuple[float, float]] = {}
        rates["set"] = await compare(
            lambda i: raw.set(raw_keys[i], value, px=600_000),
            lambda i: store.set(payer, keys[i], value),
            ops,
            chunk,
        )
        rates["get"] = await compare(
            lambda i: raw.get(raw_keys[i]), lambda i: store.get(payer, keys[i]), ops, chunk
        )
        walks = max(2, ops // 5 // pages_per_walk)
        raw_walks, store_walks = await compare(raw_walk, store_walk, walks, 1)
        rates["page"] = (raw_walks * pages_per_walk, store_walks * pages_per_walk)

        print(
            f"Redis {REDIS_URL}: {ops} sets and gets each side, chunks of {chunk}, "
            f"{value_size}-byte values; {walks} walks each side through {n_keys} keys, "
            f"pages of {PAGE}"
        )
        print(f"{'operation':<10} {'store ops/s':>12} {'raw ops/s':>12} {'ratio':>7}  raw baseline")
        for name, baseline in (
            ("set", "SET key value PX"),
            ("get", "GET key"),
            ("page", "ZRANGEBYLEX + MGET (2 round trips)"),
        ):
            theirs, ours = rates[name]
            print(f"{name:<10} {ours:>12,.0f} {theirs:>12,.0f} {ours / theirs:>6.2f}x  {baseline}")
    finally:
        await drop(raw, prefix)
        await raw.aclose()
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=20_000, help="sets and gets on each side")
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--keys", type=int, default=5_000, help="entries behind the list pages")
    parser.add_argument("--value-size", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.ops, args.chunk, args.keys, args.value_size))
