"""What the benchmarks and the fault scenarios share: real processes (the gateway as `smsgw serve`, the
SMSC simulator, a fake HTTP provider), a fresh PostgreSQL database, a STOMP consumer counting reports,
an HTTP load generator, an RSS sampler, and the result files (JSON + PNG).

Everything runs on 127.0.0.1. PostgreSQL and ActiveMQ come from `scripts/services.sh` (what `make test`
starts); the runner reads their addresses from `scripts/services.sh env`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from app.events.stomp_frames import parse_frames

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOGS = ROOT / "bench" / "logs"


def use_results_dir(path: Path) -> None:
    """Where write_result and plot put their files (quick runs keep theirs apart from the full run's)."""
    global RESULTS
    RESULTS = path
API_KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_broker_env(name: str) -> dict[str, str]:
    """scripts/services.sh settings for an ActiveMQ of one's own (one a scenario stops and starts): a new
    folder inside $SMSGW_SERVICES_DIR (else the temp directory) and free ports, so runs side by side, or
    a run beside the shared services, never meet. Remove the folder after `mq-stop`."""
    parent = os.environ.get("SMSGW_SERVICES_DIR") or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f"smsgw-{name}-", dir=parent)
    return {"SMSGW_SERVICES_DIR": folder, "SMSGW_MQ_STOMP_PORT": str(free_port()),
            "SMSGW_MQ_OPENWIRE_PORT": str(free_port())}


def _listening(url: str) -> bool:
    host_port = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def services_env() -> dict[str, str]:
    """The addresses of PostgreSQL and ActiveMQ, started first when nothing listens there (a broker that
    is merely slow under load must not get a second instance started beside it)."""
    out = subprocess.run([str(ROOT / "scripts" / "services.sh"), "env"], check=True, capture_output=True,
                         text=True).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if not (_listening(env["SMSGW_TEST_PG_URL"]) and _listening(env["SMSGW_TEST_STOMP_URL"])):
        subprocess.run([str(ROOT / "scripts" / "services.sh"), "up"], check=True, stdout=subprocess.DEVNULL)
    return env


async def fresh_database(admin_url: str, name: str) -> str:
    """Drop and create database `name`; return its SQLAlchemy URL (migrated by the caller)."""
    import asyncpg

    plain = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "python_executable": _base_interpreter(), "kernel": platform.release()}


def _base_interpreter() -> str:
    """The interpreter the virtualenv was made from: how it was built moves every Python process's CPU figures
    (scripts/python.sh)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


_CHILDREN: list[Proc] = []


@atexit.register
def _kill_children() -> None:
    """No gateway outlives its run (a stray one would claim the next run's messages)."""
    for proc in _CHILDREN:
        if proc.alive():
            proc.kill()


class Proc:
    """A child process with its output in bench/results/logs/<name>.log; killed when the runner exits."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        _CHILDREN.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children (uvicorn workers)."""
        try:
            p = psutil.Process(self.pid)
            return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)])
        except psutil.Error:
            return 0

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def smsgw(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def start_simulator(name: str, port: int, control_port: int, *extra: str) -> Proc:
    return Proc(name, smsgw("simulate-smsc", "--port", str(port), "--control-port", str(control_port),
                            "--no-default-rules", "--log-level", "WARNING", *extra), dict(os.environ))


async def control(port: int, command: str) -> str:
    """One command to the simulator's control port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 10)).decode().strip()
    finally:
        writer.close()


async def simulator_stats(port: int) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(await control(port, "stats"))
    return data


async def wait_ready(port: int, timeout: float = 60.0, path: str = "/health/ready") -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            conn = HttpConn("127.0.0.1", port)
            await conn.connect()
            status, body = await conn.request("GET", path)
            await conn.close()
            if status == 200:
                return
            last = body.decode(errors="replace")[:300]
        except OSError as exc:
            last = str(exc)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"gateway on {port} not ready: {last}")


class HttpConn:
    """A lean keep-alive HTTP/1.1 client: a load generator must cost less CPU than the server it loads."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=2**22)

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        reused = self.writer is not None
        try:
            return await self._request(method, path, body)
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            # The server closed a keep-alive connection that sat idle (uvicorn: after 5 s): it never
            # read this request, so sending it again on a new connection is safe.
            await self.close()
            return await self._request(method, path, body)

    async def _request(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            await self.connect()
        assert self.writer is not None and self.reader is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{self.headers}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        length = 0
        for line in raw.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await self.reader.readexactly(length) if length else b""
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class ReportConsumer:
    """Subscribes to a queue over STOMP and counts what arrives, by MessageSID."""

    url: str
    queue: str
    seen: Counter[str] = field(default_factory=Counter)
    arrivals: list[float] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    status_by_sid: dict[str, set[str]] = field(default_factory=dict)
    headers_ok: bool = True
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        host_port = self.url.split("://", 1)[-1]
        host, _, port = host_port.rpartition(":")
        while True:
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(b"CONNECT\naccept-version:1.2\nhost:127.0.0.1\nheart-beat:0,0\n\n\x00")
                writer.write(f"SUBSCRIBE\ndestination:/queue/{self.queue}\nid:1\nack:auto\n\n\x00".encode())
                await writer.drain()
                buf = bytearray()
                while chunk := await reader.read(1 << 20):
                    buf += chunk
                    now = time.monotonic()
                    for command, headers, body in parse_frames(buf):
                        if command != "MESSAGE":
                            continue
                        report = orjson.loads(body)
                        self.seen[report["MessageSID"]] += 1
                        self.first_seen.setdefault(report["MessageSID"], now)
                        self.statuses[report["DeliveryStatus"]] += 1
                        self.status_by_sid.setdefault(report["MessageSID"], set()).add(report["DeliveryStatus"])
                        self.arrivals.append(now)
                        if headers.get("smsgw-report-id") != "report:" + report["MessageSID"]:
                            self.headers_ok = False
                writer.close()
            except OSError:
                pass
            await asyncio.sleep(0.5)  # the broker went away: reconnect, as a real consumer would

    async def stop(self) -> None:
        await cancel(self._task)

    @property
    def unique(self) -> int:
        return len(self.seen)

    @property
    def duplicates(self) -> int:
        return sum(self.seen.values()) - len(self.seen)

    @property
    def conflicting(self) -> int:
        """Messages reported with two different statuses: never a harmless redelivery."""
        return sum(1 for s in self.status_by_sid.values() if len(s) > 1)


async def warm_broker(url: str, messages: int, batch: int = 200) -> float:
    """Send `messages` persistent report-sized messages through `url` the way the publisher does (STOMP
    transactions of `batch`) and consume them; returns the seconds it took.

    A broker of the run's own is a JVM just started: until its JIT has compiled the hot paths it spends
    several times the CPU per message that a broker in service does (30,000 batched messages: ActiveMQ
    433–485 µs a message cold, 195–219 after 40,000–120,000 messages of warm-up), and that CPU comes out
    of the same two cores the gateway runs on."""
    from app.events.stomp_client import StompConnection  # the gateway's own client, as in production

    queue = f"bench-warm-up-{os.getpid()}"
    consumer = ReportConsumer(url, queue)
    await consumer.start()
    started = time.monotonic()
    conn = await StompConnection.open(url, None, None)
    try:
        for first in range(0, messages, batch):
            await conn.send_transaction([
                (f"/queue/{queue}", {"persistent": "true", "content-type": "application/json", "type": "sms",
                                     "smsgw-report-id": f"report:warm{i}"},
                 orjson.dumps({"MessageSID": f"warm{i}", "DeliveryStatus": "DELIVERED", "Status": "delivered",
                               "To": "+18880000000", "Channel": "sms"}).decode())
                for i in range(first, min(messages, first + batch))])
        deadline = time.monotonic() + 120
        while consumer.unique < messages and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
        await consumer.stop()
    return time.monotonic() - started


class RssSampler:
    def __init__(self, procs: list[Proc], every: float = 0.5) -> None:
        self.procs = procs
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), sum(p.rss_bytes() for p in self.procs)))
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)

    @property
    def peak_mb(self) -> float:
        return round(max((s for _, s in self.samples), default=0) / 2**20, 1)


async def cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def per_second(times: list[float], start: float) -> list[int]:
    """Events per whole second since `start`."""
    if not times:
        return []
    buckets = [0] * (int(max(times) - start) + 1)
    for t in times:
        buckets[max(0, int(t - start))] += 1
    return buckets


def print_table(title: str, rows: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    print("-" * (width + 24))
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def write_result(scenario: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}.json"
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def plot(scenario: str, title: str, series: dict[str, list[float]], latency: dict[str, list[float]],
         latency_unit: str = "ms") -> Path:
    """Throughput (per second) above, latency below, against seconds since the start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name, values in series.items():
        top.plot(range(len(values)), values, label=name)
    top.set_ylabel("per second")
    top.set_title(title)
    top.legend(loc="upper right")
    top.grid(alpha=0.3)
    for name, values in latency.items():
        bottom.plot(range(len(values)), values, label=name)
    bottom.set_ylabel(f"latency ({latency_unit})")
    bottom.set_xlabel("seconds since start")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{scenario}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
