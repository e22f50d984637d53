"""Private services for one bench or faults run: a PostgreSQL cluster and an ActiveMQ broker of their own.

Why not the shared ones that `make test` starts: that PostgreSQL runs with `synchronous_commit=off` (a test
server) and must not be reconfigured, and both are shared with every other test run on the machine, so
neither their commit settings nor their CPU would be the benchmark's. A private cluster has production's
commit settings (`synchronous_commit=on`; only `fsync=off` stays, and is printed with the results), loads
`pg_stat_statements`, and every process in it belongs to the run, so its CPU can be attributed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVICES = Path(__file__).resolve().parents[1] / "scripts" / "services.sh"

# Production's commit path (`synchronous_commit=on`, `full_page_writes=on`, the defaults); `fsync=off`
# because the cluster is thrown away and the disk is shared: it skips the flush to the platter, not the
# WAL write that a commit waits for.
BENCH_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": "300",
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.max": "2000",
    "pg_stat_statements.track": "all",
}
# What the results record about the server the figures were measured on.
REPORTED_SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level",
                     "shared_buffers", "max_connections", "wal_writer_delay", "shared_preload_libraries")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _base_dir() -> Path:
    """$SMSGW_SERVICES_DIR when set (where scripts/services.sh keeps its instances), else the temp dir."""
    parent = Path(os.environ.get("SMSGW_SERVICES_DIR") or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="smsgw-bench-", dir=parent))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants, plus what its reaped children used
    (PostgreSQL's postmaster reaps every backend that disconnects; their CPU would otherwise vanish)."""
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        children = root.children(recursive=True)
    except psutil.Error:
        return 0.0
    for child in children:
        with contextlib.suppress(psutil.Error):
            c = child.cpu_times()
            total += c.user + c.system + c.children_user + c.children_system
    return float(total)


class PgCluster:
    """A throwaway PostgreSQL 15 cluster on 127.0.0.1:<free port> in a directory of its own."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        self.settings = {**BENCH_SETTINGS, **(settings or {})}
        self.port = _free_port()
        self.dir = _base_dir()
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.running = False

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *argv: str) -> list[str]:
        # initdb and the postmaster refuse to run as root: as root, run them as `postgres`.
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)

    def _start_command(self) -> list[str]:
        # Only the address on the command line: the settings are in postgresql.conf, where ALTER SYSTEM
        # (postgresql.auto.conf) can still override them, which a -c option would not allow.
        return self._as_owner(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                              "start", "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir}")

    def start_sync(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(self._as_owner(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A",
                                          "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"),
                           check=True, stdout=subprocess.DEVNULL)
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write("\n# smsgw bench (bench/cluster.py)\n")
                conf.writelines(f"{k} = '{v}'\n" for k, v in self.settings.items())
        self._remove_stale_lock()
        done = subprocess.run(self._start_command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"private PostgreSQL did not start on {self.port}:\n{tail}")
        self.running = True

    async def start(self) -> None:
        await asyncio.to_thread(self.start_sync)

    def _remove_stale_lock(self) -> None:
        """After a kill -9 the old postmaster may linger as a zombie until init reaps it, and PostgreSQL
        takes the PID in its lock file for a live server: remove the file once that PID is dead or a zombie
        and none of its processes is left (what an operator does after a crash)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            pass
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        (self.dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)  # the socket's lock names it too

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float:
        """CPU used so far by the postmaster, its background processes and every backend, live or gone."""
        pid = self.postmaster_pid()
        return tree_cpu_seconds(pid) if pid else 0.0

    async def restart(self) -> None:
        """A clean restart (stop -m fast, start): what an operator's restart does."""
        await asyncio.to_thread(subprocess.run, self._as_owner(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m",
                                                               "fast", "-w", "stop"),
                                check=True, stdout=subprocess.DEVNULL)
        await self.start()

    def stall_wal_writer(self) -> int | None:
        """SIGSTOP the WAL writer: with `synchronous_commit=off` nothing then writes committed WAL out of
        shared memory, so a crash now loses every commit since, the documented worst case of asynchronous
        commit (up to 3 × wal_writer_delay), made certain instead of a matter of timing. Returns its PID."""
        pid = self.postmaster_pid()
        if pid is None:
            return None
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(pid).children():
                if "walwriter" in " ".join(child.cmdline()):
                    child.suspend()
                    return int(child.pid)
        return None

    async def kill_postmaster(self, orphan_grace: float = 5.0) -> str:
        """SIGKILL to the postmaster alone, as a crash or the OOM killer would. Its backends notice it is
        gone and exit on their own without writing WAL buffers out; any still there after `orphan_grace`
        seconds are killed too (a new postmaster refuses to start beside them). Returns what happened."""
        pid = self.postmaster_pid()
        if pid is None:
            return "no postmaster to kill"
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.Error:
            children = []
        os.kill(pid, signal.SIGKILL)
        self.running = False
        for c in children:  # a stopped process (the stalled WAL writer) would never notice: it goes too
            with contextlib.suppress(psutil.Error):
                if c.status() == psutil.STATUS_STOPPED:
                    c.kill()
        deadline = time.monotonic() + orphan_grace
        alive = children
        while alive and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            alive = [c for c in alive if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        for c in alive:
            with contextlib.suppress(psutil.Error):
                c.kill()
        return f"postmaster {pid} killed (-9); {len(children)} child process(es), {len(alive)} killed after " \
               f"{orphan_grace:.0f} s"

    async def show_settings(self) -> dict[str, str]:
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            return {name: str(await conn.fetchval(f"SHOW {name}")) for name in REPORTED_SETTINGS}
        finally:
            await conn.close()

    async def set_server(self, name: str, value: str | None) -> None:
        """ALTER SYSTEM SET (or RESET with None) and reload: the cluster is ours to reconfigure."""
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            sql = f"ALTER SYSTEM RESET {name}" if value is None else f"ALTER SYSTEM SET {name} = '{value}'"
            await conn.execute(sql)
            await conn.execute("SELECT pg_reload_conf()")
            # The reload is asynchronous: wait until a new session sees the value.
            for _ in range(50):
                probe = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
                try:
                    now = await probe.fetchval(f"SHOW {name}")
                finally:
                    await probe.close()
                if value is None or now == value:
                    break
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    def stop_sync(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(self._as_owner(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                                          "stop"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.running = False
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateBroker:
    """An ActiveMQ of the run's own (scripts/services.sh mq-start in a directory and on ports of its own)."""

    def __init__(self) -> None:
        self.dir = _base_dir()
        self.stomp_port, self.openwire_port = _free_port(), _free_port()
        self.env = {**os.environ, "SMSGW_SERVICES_DIR": str(self.dir), "SMSGW_MQ_STOMP_PORT": str(self.stomp_port),
                    "SMSGW_MQ_OPENWIRE_PORT": str(self.openwire_port)}

    @property
    def stomp_url(self) -> str:
        return f"stomp://127.0.0.1:{self.stomp_port}"

    async def start(self) -> None:
        await asyncio.to_thread(subprocess.run, [str(SERVICES), "mq-start"], check=True, env=self.env,
                                stdout=subprocess.DEVNULL)

    async def stop(self) -> None:
        await asyncio.to_thread(subprocess.run, [str(SERVICES), "mq-stop"], check=False, env=self.env,
                                stdout=subprocess.DEVNULL)

    def pid(self) -> int | None:
        try:
            return int((self.dir / "mq" / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float:
        pid = self.pid()
        return tree_cpu_seconds(pid) if pid else 0.0

    def remove_sync(self) -> None:
        subprocess.run([str(SERVICES), "mq-stop"], check=False, env=self.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def broker_cpu_by_port(port: int) -> float | None:
    """CPU of whatever process listens on `port` (the shared broker: its CPU includes other runs' load)."""
    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return tree_cpu_seconds(conn.pid)
    return None
