"""``benchmarks/operations.py`` at a few requests, as a smoke test: it runs every mode and
prints each beside the baseline (the figures themselves are for people, not asserts)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.docs_examples import ROOT


def test_the_operations_benchmark_runs_every_mode() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.operations", "5", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for mode in ("baseline", "metrics", "traces", "both"):
        assert re.search(rf"^  {mode} +\d+\.\d+ ms/request +[+-]\d+\.\d us", done.stdout, re.M)
