"""The short form of the load test (``benchmarks/load.py --short``) as a test.

A real ``uvicorn`` server (one worker) with sessions and the replay guard in
the Redis at 127.0.0.1:6379; two clients, each paying every call with its
own key, write and read their own keys for three seconds. Every call must
succeed and every payer's data must read back exactly as acknowledged.
Skips without Redis (fails under ``CI=true``).
"""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks import load
from tests.services import need_redis


def test_short_load_run_has_no_errors_and_loses_nothing() -> None:
    need_redis()
    if importlib.util.find_spec("uvicorn") is None:
        pytest.skip("uvicorn is not installed (pip install -e '.[dev]')")
    result = load.run(workers=1, clients=2, seconds=3.0)
    print(result.line())
    assert result.errors == 0, result.problems
    assert result.consistent, result.problems
    assert result.calls > 10 and result.keys > 0
