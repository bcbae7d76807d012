"""InMemorySessionStore against a bare OrderedDict store, measured in one run.

Prints ops/s of set and get (100k keys over 100 payers) and the time to page
through one payer's 100k keys 100 at a time, each beside the bare baseline
and as a ratio. Targets (issue #2): set and get >= 0.5x the baseline; paging
100k keys in under 1 s.

    .venv/bin/python benchmarks/memory_store.py [--keys 100000] [--payers 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import OrderedDict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aixyz_sessions.stores.memory import InMemorySessionStore


class BareStore:
    """The least a store can do: an LRU OrderedDict, no validation, no TTL, no order."""

    def __init__(self) -> None:
        self.data: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def set(self, payer: str, key: str, value: str) -> None:
        self.data[(payer, key)] = value
        self.data.move_to_end((payer, key))

    async def get(self, payer: str, key: str) -> str | None:
        value = self.data.get((payer, key))
        if value is not None:
            self.data.move_to_end((payer, key))
        return value

    async def page(self, payer: str, after: str | None, limit: int) -> list[str]:
        # Minimal ordered paging: the payer's keys sorted once, then sliced.
        keys = self._sorted.get(payer)
        if keys is None:
            keys = self._sorted[payer] = sorted(k for p, k in self.data if p == payer)
        start = 0 if after is None else _bisect_right(keys, after)
        return keys[start : start + limit]

    _sorted: dict[str, list[str]] = {}


def _bisect_right(keys: list[str], key: str) -> int:
    import bisect

    return bisect.bisect_right(keys, key)


async def timed_ops(op, pairs: list[tuple[str, str]], value: str | None) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    if value is None:
        for payer, key in pairs:
            await op(payer, key)
    else:
        for payer, key in pairs:
            await op(payer, key, value)
    return len(pairs) / (time.perf_counter() - start)


async def main(n_keys: int, n_payers: int, rounds: int) -> None:
    payers = [f"0x{p:040x}" for p in range(n_payers)]
    pairs = [(payers[i % n_payers], f"key:{i:08d}") for i in range(n_keys)]
    value = "v" * 64

    best: dict[str, float] = {}
    for _ in range(rounds):
        bare = BareStore()
        ours = InMemorySessionStore(max_entries=n_keys * 2)
        for name, store in (("bare", bare), ("ours", ours)):
            best[f"{name}.set"] = max(
                best.get(f"{name}.set", 0), await timed_ops(store.set, pairs, value)
            )
            best[f"{name}.get"] = max(
                best.get(f"{name}.get", 0), await timed_ops(store.get, pairs, None)
            )

    print(f"InMemorySessionStore vs bare OrderedDict store, {n_keys:,} keys over {n_payers} payers")
    print(f"{'op':<6}{'ours ops/s':>14}{'bare ops/s':>14}{'ratio':>8}  target")
    for op in ("set", "get"):
        o, b = best[f"ours.{op}"], best[f"bare.{op}"]
        print(f"{op:<6}{o:>14,.0f}{b:>14,.0f}{o / b:>8.2f}  >= 0.50")

    # Paging: one payer with n_keys keys, 100 at a time.
    ours = InMemorySessionStore(max_entries=n_keys + 1)
    bare = BareStore()
    payer = payers[0]
    keys = [f"key:{i:08d}" for i in range(n_keys)]
    for key in keys:
        await ours.set(payer, key, value)
        await bare.set(payer, key, value)

    start = time.perf_counter()
    cursor, seen = None, 0
    while True:
        page = await ours.list(payer, cursor=cursor, limit=100)
        seen += len(page.entries)
        cursor = page.cursor
        if cursor is None:
            break
    ours_paging = time.perf_counter() - start
    assert seen == n_keys, seen

    start = time.perf_counter()
    after, seen = None, 0
    while True:
        chunk = await bare.page(payer, after, 100)
        if not chunk:
            break
        seen += len(chunk)
        after = chunk[-1]
    bare_paging = time.perf_counter() - start
    pages = n_keys // 100
    print(
        f"paging {n_keys:,} keys by 100 ({pages} pages): ours {ours_paging:.3f} s, "
        f"bare sorted-list slices {bare_paging:.3f} s, ratio {bare_paging / ours_paging:.2f} "
        f"(target: ours < 1 s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--payers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.keys, args.payers, args.rounds))
