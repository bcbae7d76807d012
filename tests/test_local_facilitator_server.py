"""``manage.py aixyz_local_facilitator``: the real command, on loopback, against hostile input."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.core.management import CommandError, call_command

from aixyz_sessions.payments.local_server import MAX_BODY_BYTES, check_bind_host
from tests.attacks import nested
from tests.payments_helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def facilitator() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "aixyz_local_facilitator", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{url}/supported", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the local facilitator did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _still_answers(url: str) -> None:
    supported = httpx.get(f"{url}/supported", timeout=10)
    assert supported.status_code == 200 and supported.json()["kinds"]


@pytest.mark.parametrize("path", ["/verify", "/settle"])
@pytest.mark.parametrize(("depth", "status"), [(200_000, 413), (30_000, 400)])
def test_deeply_nested_body_is_refused_and_the_server_lives(
    facilitator: str, path: str, depth: int, status: int
) -> None:
    # 200,000 levels (400 KB) pass the size bound first; 30,000 fit in it and
    # meet the depth bound.
    response = httpx.post(f"{facilitator}{path}", content=nested(depth), timeout=30)
    assert response.status_code == status, response.text
    if status == 400:
        assert "deeper than" in response.json()["error"]
    _still_answers(facilitator)


def test_oversize_body_is_413(facilitator: str) -> None:
    response = httpx.post(f"{facilitator}/verify", content=b" " * (MAX_BODY_BYTES + 1), timeout=30)
    assert response.status_code == 413, response.text
    _still_answers(facilitator)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    assert check_bind_host(host, allow_remote=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com", ""])
def test_other_hosts_need_the_explicit_flag(host: str) -> None:
    problem = check_bind_host(host, allow_remote=False)
    assert problem is not None and "--allow-non-loopback" in problem
    assert check_bind_host(host, allow_remote=True) is None


def test_the_command_refuses_a_public_host_before_listening() -> None:
    with pytest.raises(CommandError, match="loopback only"):
        call_command("aixyz_local_facilitator", "--host", "0.0.0.0", "--port", "1")
