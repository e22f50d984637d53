"""Kannel on this machine, measured the way `bench.run e2e-smpp-single` / `e2e-smpp` measure us: the reference
figure of issue 15, taken in the same session on the same box.

    python -m bench.kannel [--messages N] [--per-request N] [--connections N] [--results DIR]

Debian's Kannel (`scripts/setup-kannel.sh` installs it) as bearerbox + smsbox, bound to the bundled SMSC
simulator started as bench/stack.py starts it (receipts 0.5 s after the submit_sm_resp). N messages go to
smsbox's `/cgi-bin/sendsms` from `--connections` keep-alive connections (64 by default with one recipient per
request, else 2, like bench.run), each with `dlr-mask=3` (final receipts only: delivered or failed) and a
`dlr-url` back to an HTTP receiver in this process, which counts the callbacks per message (lost, duplicated).
It reports msg/s from the first request to the last final callback and the CPU µs per message
(= ms per 1,000) of bearerbox, smsbox, the simulator and this process, in our results' `cpu_ms_per_1k` shape
(`gateway` = bearerbox + smsbox; no PostgreSQL, no ActiveMQ).

Not the same work as our end-to-end scenario, which the comparison has to keep in mind:
- A 202 from smsbox means bearerbox has appended the message to its store (`store-type`, a file or one file
  per message, written without fsync) and queued it; our 200 means it is committed to PostgreSQL with
  `synchronous_commit=on`. Kannel's pending receipts (`dlr-storage = internal`) live in bearerbox's memory,
  ours in the database; a bearerbox restart loses them.
- A report here is one HTTP GET from smsbox to the dlr-url, not a persistent STOMP message on ActiveMQ
  written with the status change through an outbox; smsbox does not retry a failed callback
  (`http-request-retry` 0).
- Several recipients in one request (`to` takes space-separated numbers) are one message each with the same
  dlr-url and the same internal id (smsbox copies one message per recipient): the URL cannot carry a
  per-message id, so the receiver tells them apart by `%p` (the destination); the 202 answers once bearerbox
  took the first of them; and bearerbox's store, keyed by that id, keeps one message of the request (spool:
  "File exists" for each other recipient and a failed unlink at its ack, file: "ACK of message not found"),
  so the others would not survive a restart, and those log lines cost CPU (counted under `log`).
  Numbers are not deduplicated or validated as ours are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, unquote

import psutil

from bench import harness
from bench.cluster import tree_cpu_seconds
from bench.harness import (
    HttpConn,
    Proc,
    free_port,
    machine,
    per_second,
    percentile,
    print_table,
    simulator_stats,
    start_simulator,
    write_result,
)
from bench.meters import PROCESSES, CpuMeter

# The simulator's default account, the one bench/stack.py binds our gateway with.
SYSTEM_ID, PASSWORD = "smppclient1", "password"
SMSC_ID = "sim"  # every bind of the SMSC shares it, so a receipt on the transceiver finds a submit of any bind
USER, USER_PASSWORD, ADMIN_PASSWORD = "bench", "bench", "bench"
TEXT = "bench message"  # what bench.loadgen.send_body sends
REQUEST_TIMEOUT_SECONDS = 120.0
FINAL_TYPES = {1: "delivered", 2: "failed", 16: "smsc_reject"}  # %d of a final report (16 is outside mask 3)
RESULTS = harness.ROOT / "bench" / "results" / "kannel"


def destination(i: int) -> str:
    """The i-th message's number: distinct per message, the same numbers as bench.run's e2e scenarios."""
    return f"+1888{i:07d}"


def binary(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if Path(p).exists()),
                                       None)
    if found is None:
        raise SystemExit(f"{name} not found: run scripts/setup-kannel.sh first")
    return found


def kannel_version() -> str:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "kannel"], check=True, capture_output=True,
                              text=True).stdout.strip()
    return "unknown"


@dataclass
class Ports:
    smpp: int = field(default_factory=free_port)
    control: int = field(default_factory=free_port)
    admin: int = field(default_factory=free_port)
    box: int = field(default_factory=free_port)
    sendsms: int = field(default_factory=free_port)
    dlr: int = field(default_factory=free_port)


def kannel_config(folder: Path, ports: Ports, sessions: int, window: int, store: str) -> str:
    """One file for both boxes. Our `sessions` binds are one transceiver and sessions-1 transmitters (the
    simulator, like our SMSC, takes one receiving bind per account): a Kannel smsc group with
    `transceiver-mode` and groups with only `port` (transmitter), all with one smsc-id; `max-pending-submits`
    is the window of each; `throughput` unset (no throttle)."""
    location = folder / ("spool" if store == "spool" else "kannel.store")
    if store == "spool":
        location.mkdir(exist_ok=True)
    groups = [
        "group = core", f"admin-port = {ports.admin}", 'admin-interface = "127.0.0.1"',
        f'admin-password = "{ADMIN_PASSWORD}"', 'admin-allow-ip = "127.0.0.1"',
        f"smsbox-port = {ports.box}", 'smsbox-interface = "127.0.0.1"', 'box-allow-ip = "127.0.0.1"',
        f'store-type = "{store}"', f'store-location = "{location}"', 'dlr-storage = "internal"', "",
    ]
    for i in range(sessions):
        groups += ["group = smsc", "smsc = smpp", f'smsc-id = "{SMSC_ID}"', 'host = "127.0.0.1"',
                   f"port = {ports.smpp}", *(["transceiver-mode = true"] if i == 0 else []),
                   f'smsc-username = "{SYSTEM_ID}"', f'smsc-password = "{PASSWORD}"', 'system-type = ""',
                   f"max-pending-submits = {window}", ""]
    groups += [
        "group = smsbox", 'bearerbox-host = "127.0.0.1"', f"bearerbox-port = {ports.box}",
        f"sendsms-port = {ports.sendsms}", 'sendsms-interface = "127.0.0.1"', 'global-sender = "12345"', "",
        "group = sendsms-user", f'username = "{USER}"', f'password = "{USER_PASSWORD}"', "",
    ]
    return "\n".join(groups)


class DlrReceiver(asyncio.Protocol):
    """The dlr-url's HTTP server (keep-alive, GET without body, as smsbox calls it): counts each callback
    by destination (`%p`) and type (`%d`), and checks `%p` against the request the URL names (`m`, `n`)."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self, counts: DlrCounts) -> None:
        self.counts = counts
        self.buf = bytearray()
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(self.buf[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buf) < end + 4 + length:
                return
            del self.buf[:end + 4 + length]
            self.counts.record(head.split(b" ", 2)[1].decode("latin-1"))
            assert self.transport is not None
            self.transport.write(self.RESPONSE)


@dataclass
class DlrCounts:
    final: Counter[str] = field(default_factory=Counter)  # destination -> final callbacks
    first_final: dict[str, float] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    other_types: Counter[int] = field(default_factory=Counter)  # intermediate: 4 buffered, 8 SMSC ack
    callbacks: int = 0
    mismatched: int = 0  # %p is not a number of the request the URL names
    malformed: int = 0

    def record(self, target: str) -> None:
        now = time.monotonic()
        self.callbacks += 1
        try:
            query = dict(part.split("=", 1) for part in target.split("?", 1)[1].split("&"))
            number, kind, first, count = unquote(query["p"]), int(query["t"]), int(query["m"]), int(query["n"])
            index = int(number.removeprefix("+1888"))  # destination(index)
        except (IndexError, KeyError, ValueError):
            self.malformed += 1
            return
        if not first <= index < first + count:
            self.mismatched += 1
        if kind not in FINAL_TYPES:
            self.other_types[kind] += 1
            return
        self.final[number] += 1
        self.statuses[FINAL_TYPES[kind]] += 1
        self.first_final.setdefault(number, now)

    @property
    def duplicates(self) -> int:
        return sum(self.final.values()) - len(self.final)


class KannelCpuMeter(CpuMeter):
    """CpuMeter's figures in our `cpu_ms_per_1k` shape, with `gateway` = bearerbox + smsbox and each box
    beside it."""

    BOXES = ("bearerbox", "smsbox")

    def result(self, messages: int) -> dict[str, Any]:
        out = super().result(messages)
        boxes = {name: self._delta.get(name) for name in self.BOXES}
        both = None if any(v is None for v in boxes.values()) else sum(v for v in boxes.values() if v is not None)
        for name, seconds in {"gateway": both, **boxes}.items():
            out["cpu_ms_per_1k"][name] = (None if seconds is None or messages <= 0
                                          else round(seconds * 1e6 / messages, 1))
            out["cpu_percent_of_core"][name] = (None if seconds is None or self._wall <= 0
                                                else round(100 * seconds / self._wall, 1))
        return out


def log_lines(proc: Proc, offset: int) -> dict[str, Any]:
    """The ERROR and WARNING lines a box wrote since `offset` (its log appends across runs): counts, and the
    commonest texts without their timestamp and thread."""
    levels: Counter[str] = Counter()
    texts: Counter[str] = Counter()
    with contextlib.suppress(OSError), proc.log_path.open("rb") as f:
        f.seek(offset)
        for raw in f:
            line = raw.decode(errors="replace").strip()
            for level in ("ERROR", "WARNING", "PANIC"):
                if f" {level}: " in line:
                    levels[level] += 1
                    texts[line.split(f" {level}: ", 1)[1][:100]] += 1
    return {**levels, "commonest": dict(texts.most_common(3))}


def log_size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return 0


def cpu_of(proc: Proc) -> float | None:
    return tree_cpu_seconds(proc.pid) if proc.alive() else None


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    conn = HttpConn("127.0.0.1", port)
    try:
        return await asyncio.wait_for(conn.request("GET", path), 5)
    finally:
        await conn.close()


async def wait_until(what: str, check: Callable[[], Awaitable[Any]], procs: list[Proc], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        dead = [p.name for p in procs if not p.alive()]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}: see bench/logs/{dead[0]}.log")
        try:
            if await check():
                return
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            last = f": {exc}"
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s{last}")


async def binds_online(ports: Ports, sessions: int) -> bool:
    """bearerbox's /status.txt lists each smsc connection as `(online Ns, ...)` once bound."""
    status, body = await http_get(ports.admin, f"/status.txt?password={ADMIN_PASSWORD}")
    text = body.decode(errors="replace")
    smscs = text.split("SMSC connections:", 1)[-1]
    return status == 200 and smscs.count("(online") >= sessions


def non_loopback_listeners(procs: list[Proc]) -> list[str]:
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            for c in psutil.Process(proc.pid).net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN and c.laddr.ip != "127.0.0.1":
                    out.append(f"{proc.name} {c.laddr.ip}:{c.laddr.port}")
    return out


async def send_all(args: argparse.Namespace, ports: Ports, n: int, chunk: int, connections: int,
                   sent_at: dict[str, float], accepted: list[float], errors: Counter[str]) -> None:
    """Each request from the next free connection; `sent_at` gets every number of a request answered 202."""
    next_index = iter(range(0, n, chunk))
    fixed = f"/cgi-bin/sendsms?username={USER}&password={USER_PASSWORD}&text={quote(TEXT)}&dlr-mask=3"

    async def submitter() -> None:
        conn = HttpConn("127.0.0.1", ports.sendsms)
        for i in next_index:  # one iterator shared by every connection: each request is sent once
            numbers = [destination(j) for j in range(i, min(n, i + chunk))]
            dlr_url = f"http://127.0.0.1:{ports.dlr}/dlr?m={i}&n={len(numbers)}&p=%p&t=%d"
            path = f"{fixed}&to={quote(' '.join(numbers), safe='')}&dlr-url={quote(dlr_url, safe='')}"
            t0 = time.monotonic()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                    status, body = await conn.request("GET", path)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                status, body = 599, b"no answer"
                await conn.close()
            if status != 202:
                errors[f"{status} {body.decode(errors='replace')[:80]}"] += len(numbers)
                continue
            for number in numbers:
                sent_at[number] = t0
            accepted.append(time.monotonic())
        await conn.close()

    await asyncio.gather(*(submitter() for _ in range(connections)))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bearerbox, smsbox = binary("bearerbox"), binary("smsbox")
    n, chunk = args.messages, max(1, min(args.per_request, args.messages))
    connections = args.connections or (64 if chunk == 1 else 2)
    name = "kannel-single" if chunk == 1 else ("kannel" if chunk == 1000 else f"kannel-per{chunk}")
    ports = Ports()
    counts = DlrCounts()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: DlrReceiver(counts), "127.0.0.1", ports.dlr)
    with tempfile.TemporaryDirectory(prefix="kannel-bench-") as tmp:
        config = kannel_config(Path(tmp), ports, args.sessions, args.window, args.store)
        conf_path = Path(tmp) / "kannel.conf"
        conf_path.write_text(config)
        # As bench/stack.py starts it for e2e-smpp.
        sim = start_simulator(f"{name}-smsc", ports.smpp, ports.control,
                              "--receipt-delay", str(args.receipt_delay), "--record-limit", "1")
        procs = [sim]
        try:
            await wait_until("the simulator", lambda: simulator_stats(ports.control), procs)
            verbosity = ["-v", str(args.log_level)]  # console log level (0 debug ... 4 panic); Kannel's default is 0
            # Each box's log (bench/logs/<name>.log) appends across runs: this run's lines start here.
            offsets = {box: log_size(harness.LOGS / f"{name}-{box}.log") for box in KannelCpuMeter.BOXES}
            bb = Proc(f"{name}-bearerbox", [bearerbox, *verbosity, str(conf_path)], dict(os.environ))
            procs.append(bb)
            await wait_until(f"{args.sessions} SMPP binds online", lambda: binds_online(ports, args.sessions), procs)
            sb = Proc(f"{name}-smsbox", [smsbox, *verbosity, str(conf_path)], dict(os.environ))
            procs.append(sb)

            async def sendsms_answers() -> bool:
                return (await http_get(ports.sendsms, "/cgi-bin/sendsms"))[0] > 0

            await wait_until("smsbox's sendsms port", sendsms_answers, procs)
            listeners = non_loopback_listeners(procs)
            if listeners:
                raise RuntimeError(f"listening beyond 127.0.0.1: {', '.join(listeners)}")
            meter = KannelCpuMeter({"bearerbox": lambda: cpu_of(bb), "smsbox": lambda: cpu_of(sb),
                                    "simulator": lambda: cpu_of(sim)}, {
                "gateway": "bearerbox + smsbox", "loadgen": "this process: HTTP load generator and DLR receiver",
                "simulator": "the bundled SMSC simulator (app/simulator)"})
            sent_at: dict[str, float] = {}
            accepted: list[float] = []
            errors: Counter[str] = Counter()
            meter.start()
            start = time.monotonic()
            await send_all(args, ports, n, chunk, connections, sent_at, accepted, errors)
            last_progress, last_count = time.monotonic(), 0
            while len(counts.final) < len(sent_at) and time.monotonic() - last_progress < args.stall_timeout:
                await asyncio.sleep(0.2)
                if len(counts.final) != last_count:
                    last_progress, last_count = time.monotonic(), len(counts.final)
            await asyncio.sleep(1.0)  # a duplicate would arrive now
            meter.stop()
            sim_stats = await simulator_stats(ports.control)
            status_text = (await http_get(ports.admin, f"/status.txt?password={ADMIN_PASSWORD}"))[1].decode(
                errors="replace")
        finally:
            for proc in reversed(procs):
                proc.stop(timeout=10)
            server.close()
            await server.wait_closed()
    cpu = meter.result(len(sent_at))
    finals = [t for number, t in counts.first_final.items() if number in sent_at]
    last = max(finals, default=start)
    elapsed = last - start
    delivered = set(sent_at) & set(counts.final)
    latencies = [counts.first_final[number] - sent_at[number] for number in delivered]
    result: dict[str, Any] = {
        "scenario": name, "kannel_version": kannel_version(), "messages": n, "per_request": chunk,
        "connections": connections, "accepted": len(sent_at), "accept_errors": sum(errors.values()),
        "accept_error_samples": dict(errors.most_common(5)),
        "dlr_callbacks": counts.callbacks, "final_dlrs_unique": len(delivered),
        "lost": len(sent_at) - len(delivered), "duplicate_dlrs": counts.duplicates,
        "unexpected_dlrs": len(set(counts.final) - set(sent_at)),
        "non_final_dlrs": {str(k): v for k, v in sorted(counts.other_types.items())},
        "mismatched_dlrs": counts.mismatched, "malformed_dlrs": counts.malformed, "statuses": dict(counts.statuses),
        "accept_s": round(max(accepted, default=start) - start, 2),
        "first_request_to_last_dlr_s": round(elapsed, 2),
        "msg_per_s": round(len(delivered) / elapsed, 1) if elapsed > 0 else 0.0,
        "first_dlr_after_s": round(min(finals, default=start) - start, 2),
        "latency_s": {q: round(percentile(latencies, int(q[1:])), 3) for q in ("p50", "p90", "p99")},
        "accepted_requests_per_second": per_second(accepted, start), "final_dlrs_per_second": per_second(finals, start),
        "sessions": args.sessions, "window": args.window, "receipt_delay_s": args.receipt_delay,
        "store_type": args.store, "dlr_mask": 3,
        "submit_sm": sim_stats.get("submit_sm"), "resubmits": sim_stats.get("submit_sm", 0) - len(sent_at),
        "simulator_binds": sim_stats.get("binds"), "simulator_bind_failures": sim_stats.get("bind_failures"),
        "log": {"bearerbox": log_lines(bb, offsets["bearerbox"]), "smsbox": log_lines(sb, offsets["smsbox"])},
        "bearerbox_status": status_text, "kannel_conf": config, "machine": machine(), **cpu,
    }
    result["ok"] = (result["lost"] == 0 and result["duplicate_dlrs"] == 0 and result["accept_errors"] == 0
                    and counts.mismatched == 0 and counts.malformed == 0)
    return result


def report(result: dict[str, Any]) -> None:
    print_table(f"{result['scenario']}: Kannel {result['kannel_version']}, {result['messages']:,} messages, "
                f"{result['per_request']:,} per request from {result['connections']} connection(s), "
                f"sendsms -> bearerbox ({result['store_type']} store) -> SMSC -> receipts -> dlr-url", [
        ("accepted (202)", f"{result['accepted']:,} in {result['accept_s']} s"),
        ("accept errors", result["accept_errors"]),
        ("final DLRs (unique)", f"{result['final_dlrs_unique']:,}  {result['statuses']}"),
        ("lost", result["lost"]), ("duplicate DLRs", result["duplicate_dlrs"]),
        ("first request -> last final DLR (s)", result["first_request_to_last_dlr_s"]),
        ("sustained msg/s", result["msg_per_s"]),
        ("latency request -> DLR p50 / p90 / p99 (s)", " / ".join(str(v) for v in result["latency_s"].values())),
        ("submit_sm at the SMSC", result["submit_sm"]),
        *((f"{box} log", f"{log.get('ERROR', 0)} errors, {log.get('WARNING', 0)} warnings  "
                         f"{next(iter(log['commonest']), '')}") for box, log in result["log"].items()),
    ])
    cpu, pct = result["cpu_ms_per_1k"], result["cpu_percent_of_core"]
    print(f"\nCPU µs per message (= ms per 1,000), over {result['cpu_window_s']} s, "
          f"{result['cpu_messages']:,} messages:")
    for name in ("gateway", *KannelCpuMeter.BOXES, *(p for p in PROCESSES if p != "gateway")):
        value = cpu.get(name)
        label = "kannel" if name == "gateway" else f"  {name}" if name in KannelCpuMeter.BOXES else name
        if value is not None:
            print(f"  {label:<12} {value:>9.1f}   ({pct.get(name)} % of a core)")
    print(f"  {'(others)':<12} {result['cpu_other_ms_per_1k']:>9.1f}   "
          f"({result['cpu_other_percent_of_core']} % of a core: other work on this machine)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.kannel", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000, help="messages (default 100,000, as bench.run)")
    p.add_argument("--per-request", type=int, default=1,
                   help="recipients per sendsms request (default 1: kannel-single.json; 1000: kannel.json)")
    p.add_argument("--connections", type=int, default=0,
                   help="keep-alive connections (default 64 with one recipient per request, else 2)")
    p.add_argument("--sessions", type=int, default=2, help="SMPP binds: one transceiver + transmitters (default 2)")
    p.add_argument("--window", type=int, default=100, help="max-pending-submits per bind (default 100)")
    p.add_argument("--receipt-delay", type=float, default=0.5, help="simulator: seconds to the receipt (0.5)")
    p.add_argument("--store", choices=("spool", "file"), default="file",
                   help="bearerbox store-type: spool (one file per message) or file (Kannel's default when "
                        "store-location is set: one append-only file); default file")
    p.add_argument("--log-level", type=int, default=2, choices=range(5),
                   help="Kannel's console log level, 0 debug .. 4 panic (default 2, warnings, like our WARNING)")
    p.add_argument("--stall-timeout", type=float, default=60.0, help="give up when no DLR came for this long")
    p.add_argument("--results", default="", help=f"directory for the result file (default {RESULTS})")
    args = p.parse_args(argv)
    if args.messages < 1 or args.per_request < 1 or args.sessions < 1 or args.window < 1:
        p.error("--messages, --per-request, --sessions and --window must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    args = parse_args(argv)
    harness.use_results_dir(Path(args.results).resolve() if args.results else RESULTS)
    result = asyncio.run(run(args))
    report(result)
    print(f"-> {write_result(result['scenario'], result)}")
    if not result["ok"]:
        print("\nFAILED (lost, duplicated or refused messages)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
