"""`smsgw dev` (or `make run`) as a real process on free loopback ports, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
# `-o`: never reinstall the virtualenv from a test, even when the lock files are newer than its stamp.
MAKE_RUN = ["make", "--no-print-directory", "-o", ".venv/.installed", "run"]  # + RUN_ARGS=...


@dataclass
class Dev:
    proc: subprocess.Popen[str]
    base_url: str
    broker_port: int
    smsc_port: int
    db_path: Path
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self, timeout: float = 30) -> str:
        """Everything the process printed, once it has exited."""
        self.proc.wait(timeout)
        self._reader.join(timeout)
        return "".join(line + "\n" for line in self.lines)


def dev_env(tmp: Path, http: int, broker: int, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SMSGW_PORT": str(http), "SMSGW_BROKER_URL": f"embedded://127.0.0.1:{broker}",
           "SMSGW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/dev.db", "PYTHONPATH": str(ROOT), **extra}
    for k in ("SMSGW_CONFIG", "SMSGW_PROVIDERS", "SMSGW_ROUTES", "SMSGW_API_KEYS", "SMSGW_WEBHOOK_AUTH",
              "SMSGW_LOG_FORMAT", "SMSGW_LOG_LEVEL", "SMSGW_DEFAULT_COUNTRY"):
        if k not in extra:
            env.pop(k, None)
    return env


@contextmanager
def running_dev(tmp: Path, *, make: bool = False, wait_ready: bool = True, **extra: str) -> Iterator[Dev]:
    """Starts `smsgw dev` (through `make run` with make=True) in a process group of its own, waits for its
    `ready` line, and ends the group at the end."""
    http, broker, smsc = free_port(), free_port(), free_port()
    cmd = ([*MAKE_RUN, f"RUN_ARGS=--smsc-port {smsc}"] if make
           else [sys.executable, "-m", "app.cli", "dev", "--smsc-port", str(smsc)])
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dev_env(tmp, http, broker, **extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    dev = Dev(proc, f"http://127.0.0.1:{http}", broker, smsc, tmp / "dev.db")
    try:
        if wait_ready:
            deadline = time.monotonic() + 30
            while True:
                if any(line.startswith("ready: ") for line in dev.lines):  # printed once /health/ready is 200
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"smsgw dev never became ready:\n{dev.output()}")
                time.sleep(0.1)
        yield dev
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
