"""A hanging test ends the run within HANG_SECONDS with its stack (tests/conftest.py), not at CI's limit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_hanging_test_ends_the_run_with_every_threads_stack() -> None:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/support/hang_probe.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=50,
        env={**os.environ, "SMSGW_TEST_HANG_SECONDS": "2"})
    assert run.returncode != 0
    assert time.monotonic() - started < 40  # the probe sleeps 60 s: the watchdog ended it
    assert "Timeout (0:00:02)!" in run.stderr, run.stderr[-2000:]
    assert "test_hangs_for_a_minute" in run.stderr and "hang_probe.py" in run.stderr, run.stderr[-2000:]
