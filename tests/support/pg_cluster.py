"""A PostgreSQL cluster of a test's own, for tests that stop, start or crash the database.

Never the shared cluster on 55432: `initdb` into a temporary directory, a free loopback port, run as
the `postgres` user (PostgreSQL refuses to run as root). Ready in 2–3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from support.servers import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _children(pid: int) -> list[int]:
    """Every process whose parent is `pid` (the postmaster's backends and auxiliary processes)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            # The command name in parentheses may hold spaces: the parent pid is the 2nd field after it.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


class PrivateCluster:
    """`options` are server settings (`-c name=value`), e.g. {"synchronous_commit": "off"}."""

    def __init__(self, options: dict[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="smsgw-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.options = {"listen_addresses": "127.0.0.1", "fsync": "off", "max_connections": "50",
                        **(options or {})}
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(_as_postgres(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode != 0:
            log = self.dir / "postgres.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')}\n{tail}")

    async def init(self) -> None:
        await asyncio.to_thread(self._run, [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                                            "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])

    async def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} " + " ".join(f"-c {k}={v}" for k, v in self.options.items())
        await asyncio.to_thread(self._run, [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l",
                                            str(self.dir / "postgres.log"), "-w", "-t", "60", "start", "-o", opts])

    async def stop(self) -> None:
        await asyncio.to_thread(self._run, [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                            "-w", "stop"])

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    async def kill9(self) -> None:
        """A crash: SIGKILL to the postmaster and every process it started, at once, so nothing gets
        to flush what it held (the WAL writer's buffer included)."""
        pid = self.postmaster_pid()
        assert pid is not None, "the cluster is not running"
        children = _children(pid)
        for p in [pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        for _ in range(3):  # a backend forked while we looked is reparented: kill it by the pid we saw fork
            late = [c for c in _children(pid) if c not in children]
            for p in late:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
            await asyncio.sleep(0.1)
        # A postmaster whose parent does not reap it stays a zombie, and PostgreSQL would take the pids in
        # its lock files for a live server: the lock files of a dead server go, as after a real crash.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        (self.dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    async def destroy(self) -> None:
        if self.postmaster_pid() is not None:
            with contextlib.suppress(RuntimeError):
                await self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
