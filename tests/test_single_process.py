"""In-memory sessions and replay claims under several workers: said where it bites."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

from aixyz_sessions.single_process import _workers_option, worker_count
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


def test_asgi_start_under_two_workers_warns_once_per_worker(tmp_path: Path) -> None:
    env = {**demo_env(tmp_path), "AIXYZ_DEMO_STORE": "memory"}
    env.pop("WEB_CONCURRENCY", None)
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
            if sum("2 worker processes" in seen for seen in lines) == 2:
                break
    finally:
        process.terminate()
        process.wait(20)
    warnings = [line for line in lines if "2 worker processes" in line]
    assert len(warnings) == 2, "".join(lines)
    assert "in-memory session store and replay guard" in warnings[0]
