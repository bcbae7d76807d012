"""Whether Redis and PostgreSQL are reachable, and markers that act on it.

On a machine without them their tests skip with a one-line reason; under
``CI=true`` a missing service is a failure, not a skip.
"""

from __future__ import annotations

import os
import socket
from functools import cache

import pytest

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_HOST, PG_PORT = "127.0.0.1", 5432
IN_CI = os.environ.get("CI") == "true"


@cache
def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def redis_up() -> bool:
    return port_open(REDIS_HOST, REDIS_PORT)


def postgres_up() -> bool:
    return port_open(PG_HOST, PG_PORT)


def need(up: bool, what: str) -> None:
    """Skip (or fail under CI=true) the calling test when ``what`` is not reachable."""
    if up:
        return
    if IN_CI:
        pytest.fail(f"{what} is not reachable and CI=true: start it (make test does)")
    pytest.skip(f"{what} is not reachable here")


def need_redis() -> None:
    need(redis_up(), f"Redis at {REDIS_HOST}:{REDIS_PORT}")


def need_postgres() -> None:
    need(postgres_up(), f"PostgreSQL at {PG_HOST}:{PG_PORT}")
