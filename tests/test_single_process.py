"""In-memory sessions and replay claims under several workers: said where it bites."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.test import override_settings

from aixyz_sessions.checks.workers import _workers_option, worker_count
from tests.demo_server import ROOT, demo_env
from tests.payments_helpers import LOCAL, free_port

DB_STORE = "aixyz_sessions.stores.db.DatabaseSessionStore"


def _check_output(capsys: pytest.CaptureFixture[str]) -> str:
    call_command("check", "--tag", "aixyz_sessions")
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_in_memory_store_and_guard_warn_outside_debug(capsys: pytest.CaptureFixture[str]) -> None:
    with override_settings(DEBUG=False, AIXYZ_X402=LOCAL):
        output = _check_output(capsys)
    assert "aixyz_sessions.W010" in output and "aixyz_sessions.W103" in output
    with override_settings(DEBUG=True, AIXYZ_X402=LOCAL):
        output = _check_output(capsys)
    assert "W010" not in output and "W103" not in output


def test_shared_store_brings_a_shared_guard(capsys: pytest.CaptureFixture[str]) -> None:
    with override_settings(DEBUG=False, AIXYZ_X402=LOCAL, AIXYZ_SESSION_STORE=DB_STORE):
        output = _check_output(capsys)
    assert "W010" not in output and "W103" not in output
    memory_guard = {**LOCAL, "REPLAY_GUARD": "aixyz_sessions.replay.InMemoryReplayGuard"}
    with override_settings(DEBUG=False, AIXYZ_X402=memory_guard, AIXYZ_SESSION_STORE=DB_STORE):
        output = _check_output(capsys)
    assert "W010" not in output and "aixyz_sessions.W103" in output


@pytest.mark.parametrize(
    ("argv", "count"),
    [
        (["uvicorn", "app:app", "--workers", "4"], 4),
        (["uvicorn", "app:app", "--workers=3"], 3),
        (["gunicorn", "-w", "2", "app"], 2),
        (["uvicorn", "app:app"], None),
        (["uvicorn", "--workers", "many"], None),
    ],
)
def test_workers_option(argv: list[str], count: int | None) -> None:
    assert _workers_option(argv) == count


def test_web_concurrency_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    assert worker_count() == 5


def _two_workers(env: dict[str, str], until: str, count: int = 2) -> list[str]:
    """The demo under ``uvicorn --workers 2`` until ``until`` was printed ``count`` times.

    Also tries one request while it runs: its status, or the error, is the last line.
    """
    env = {k: v for k, v in env.items() if k != "WEB_CONCURRENCY"}
    port = free_port()
    server = ["uvicorn", "demo_project.asgi:application", "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [sys.executable, "-m", *server, "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if sum(until in seen for seen in lines) >= count:
                break
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/tools/", timeout=3)
            lines.append(f"request answered {answer.status_code}")
        except httpx.HTTPError as exc:
            lines.append(f"request failed: {type(exc).__name__}")
    finally:
        process.terminate()
        process.wait(20)
    return lines


def test_two_workers_with_the_in_memory_store_refuse_to_start(tmp_path: Path) -> None:
    """Sessions would split between workers and a payment be accepted once per worker."""
    lines = _two_workers({**demo_env(tmp_path), "AIXYZ_DEMO_STORE": "memory"}, "E013")
    refusals = [line for line in lines if "aixyz_sessions.E013" in line]
    assert len(refusals) >= 2, "".join(lines)  # each worker refuses
    assert "2 worker processes with the in-memory session store and replay guard" in refusals[0]
    assert "AIXYZ_ALLOW_IN_MEMORY_WORKERS" in "".join(lines)
    assert lines[-1].startswith("request failed"), lines[-1]  # nothing serves


def test_two_workers_allowed_explicitly_start_and_warn_once_per_worker(tmp_path: Path) -> None:
    env = {
        **demo_env(tmp_path),
        "AIXYZ_DEMO_STORE": "memory",
        "AIXYZ_ALLOW_IN_MEMORY_WORKERS": "1",
    }
    lines = _two_workers(env, "2 worker processes")
    warnings = [line for line in lines if "2 worker processes" in line]
    assert len(warnings) == 2, "".join(lines)
    assert "in-memory session store and replay guard" in warnings[0]
    assert "E013" not in "".join(lines)
