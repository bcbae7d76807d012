"""``benchmarks/channels.py --quick`` with no facilitator delay, as a smoke test.

The script as a user runs it (a subprocess: it configures Django itself and
starts its own uvicorn server), with tiny counts: it must finish, exit 0 and
print the charge check's PASS (every channel charged its calls x price, and
claimed it). It times nothing that is asserted.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_passes_the_charge_check() -> None:
    if importlib.util.find_spec("uvicorn") is None:
        pytest.skip("uvicorn is not installed (pip install -e '.[dev]')")
    # The script calls settings.configure(); the suite's settings module must not leak in.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "channels.py"),
        "--quick",
        *("--calls", "12", "--exact-calls", "3", "--concurrency", "3"),
        *("--verify-delay", "0", "--chain-delay", "0"),
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "charge check: PASS" in done.stdout, output
    assert "failed calls: 0" in done.stdout, output
