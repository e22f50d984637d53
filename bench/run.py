"""`make bench`: accept, bulk, end-to-end SMPP and end-to-end HTTP, against the gateway as it runs in
production (`smsgw serve`, uvloop) on real PostgreSQL and ActiveMQ, with the SMSC simulator (or the
fake commpeak API) in a process of its own and the load generator in this one.

    python -m bench.run [scenario ...] [--messages N] [--duration S] [--workers W] [--quick]

Each scenario prints a table and writes bench/results/<scenario>.json and .png. `--quick` (about a
minute in all) is the CI smoke run: it fails on any lost or duplicated message, not on speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
import psutil

from bench import harness
from bench.harness import (
    API_KEY,
    HttpConn,
    Proc,
    ReportConsumer,
    RssSampler,
    free_port,
    fresh_database,
    machine,
    per_second,
    percentile,
    plot,
    print_table,
    services_env,
    simulator_stats,
    smsgw,
    start_simulator,
    wait_ready,
    write_result,
)

SCENARIOS = ("accept", "bulk", "e2e-smpp", "e2e-http")
# One database per runner: the PostgreSQL server is shared, and a fixed name let one engineer's run
# drop (WITH FORCE) the database under another's.
BENCH_DB = f"smsgw_bench_{os.getpid()}"


@dataclass
class Stack:
    """A fresh database, a simulator or fake provider, and the gateway."""

    gateway: Proc
    upstream: Proc
    port: int
    control_port: int
    queue: str
    stomp_url: str
    database_url: str

    def stop(self) -> None:
        self.gateway.stop()
        self.upstream.stop()


async def start_stack(args: argparse.Namespace, scenario: str, upstream: str = "smpp") -> Stack:
    env = services_env()
    database_url = await fresh_database(env["SMSGW_TEST_PG_URL"], BENCH_DB)
    stomp_url = env["SMSGW_TEST_STOMP_URL"]
    queue = f"bench-{scenario}-{secrets.token_hex(3)}"
    upstream_port, control_port, port = free_port(), free_port(), free_port()
    if upstream == "smpp":
        up = start_simulator(f"{scenario}-smsc", upstream_port, control_port,
                             "--receipt-delay", str(args.receipt_delay), "--record-limit", "1")
        providers = [{"name": "smsc-main", "type": "smpp", "host": "127.0.0.1", "port": upstream_port,
                      "system_id": "smppclient1", "password": "password", "window": args.window,
                      "sessions": args.sessions}]
        routes = [{"channel": "smpp", "providers": ["smsc-main"]}]
    else:
        up = Proc(f"{scenario}-commpeak", [sys.executable, "-m", "bench.fake_provider", "--port", str(upstream_port)],
                  dict(os.environ))
        providers = [{"name": "commpeak", "type": "http", "dialect": "commpeak",
                      "url": f"http://127.0.0.1:{upstream_port}/api", "username": "bench", "password": "secret",
                      "concurrency": 64, "poll_interval": 1.0, "default_from": "Bench"}]
        routes = [{"channel": "smpp", "providers": ["commpeak"]}]
    gw_env = {
        **os.environ,
        "SMSGW_DATABASE_URL": database_url, "SMSGW_DATABASE_POOL_SIZE": "20",
        "SMSGW_BROKER_URL": stomp_url, "SMSGW_DELIVERY_REPORT_QUEUE": queue,
        "SMSGW_API_KEYS": API_KEY, "SMSGW_WEBHOOK_AUTH": "token:bench-webhook",
        "SMSGW_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "SMSGW_PROVIDERS": orjson.dumps(providers).decode(), "SMSGW_ROUTES": orjson.dumps(routes).decode(),
        "SMSGW_WORKERS_ENABLED": "false" if args.api_only else "true",
    }
    migrate = await asyncio.create_subprocess_exec(*smsgw("migrate"), env=gw_env,
                                                   stdout=asyncio.subprocess.DEVNULL)
    if await migrate.wait() != 0:
        raise RuntimeError("smsgw migrate failed")
    gateway = Proc(f"{scenario}-gateway", smsgw("serve", "--port", str(port), "--workers", str(args.workers)), gw_env)
    try:
        await wait_ready(port, path="/health/live" if args.api_only else "/health/ready")
    except BaseException:
        gateway.stop()
        up.stop()
        raise
    return Stack(gateway, up, port, control_port, queue, stomp_url, database_url)


def send_body(to: str | list[str], text: str = "bench message") -> bytes:
    return orjson.dumps({"To": to, "Body": text})


async def closed_loop(port: int, seconds: float, concurrency: int) -> tuple[list[tuple[float, float, int]], float]:
    """`concurrency` connections, each sending as soon as its last answer came: the server's ceiling."""
    samples: list[tuple[float, float, int]] = []  # (done time, latency, status)
    start = time.monotonic()
    stop_at = start + seconds

    async def worker(n: int) -> None:
        conn = HttpConn("127.0.0.1", port, {"X-API-Key": API_KEY})
        i = 0
        while time.monotonic() < stop_at:
            body = send_body(f"+1555{n:03d}{i % 10000:04d}")
            t0 = time.monotonic()
            try:
                status, _ = await conn.request("POST", "/msg-client/send", body)
            except (OSError, asyncio.IncompleteReadError):
                status = 599
                await conn.close()
            t1 = time.monotonic()
            samples.append((t1, t1 - t0, status))
            i += 1
        await conn.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return samples, start


async def open_loop(port: int, seconds: float, rate: float) -> tuple[list[tuple[float, float, int]], float]:
    """Requests at a fixed offered rate; latency counts from the scheduled time (no coordinated omission)."""
    samples: list[tuple[float, float, int]] = []
    idle: list[HttpConn] = []
    start = time.monotonic()
    total = int(seconds * rate)
    tasks: set[asyncio.Task[None]] = set()

    connections = asyncio.Semaphore(256)  # like a client's pool: beyond it, requests queue (and that counts)

    async def one(i: int, scheduled: float) -> None:
        async with connections:
            conn = idle.pop() if idle else HttpConn("127.0.0.1", port, {"X-API-Key": API_KEY})
            try:
                status, _ = await conn.request("POST", "/msg-client/send", send_body(f"+1666{i:07d}"))
                idle.append(conn)
            except (OSError, asyncio.IncompleteReadError):
                status = 599
                await conn.close()
        t1 = time.monotonic()
        samples.append((t1, t1 - scheduled, status))

    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=120)
    for conn in idle:
        await conn.close()
    return samples, start


def latency_rows(samples: list[tuple[float, float, int]], seconds: float) -> dict[str, Any]:
    ok = [lat * 1000 for _, lat, status in samples if status == 200]
    return {"requests": len(samples), "ok": len(ok), "errors": len(samples) - len(ok),
            "req_per_s": round(len(ok) / seconds, 1), "p50_ms": round(percentile(ok, 50), 2),
            "p95_ms": round(percentile(ok, 95), 2), "p99_ms": round(percentile(ok, 99), 2)}


def latency_series(samples: list[tuple[float, float, int]], start: float, q: float) -> list[float]:
    by_second: dict[int, list[float]] = {}
    for t, lat, _ in samples:
        by_second.setdefault(int(t - start), []).append(lat * 1000)
    return [percentile(by_second.get(s, []), q) for s in range(max(by_second, default=-1) + 1)]


async def scenario_accept(args: argparse.Namespace) -> dict[str, Any]:
    stack = await start_stack(args, "accept")
    drain = ReportConsumer(stack.stomp_url, stack.queue)  # reports must not pile up in the broker
    await drain.start()
    rss = RssSampler([stack.gateway])
    rss.start()
    try:
        await closed_loop(stack.port, 3, args.concurrency)  # warm-up
        max_samples, max_start = await closed_loop(stack.port, args.duration, args.concurrency)
        fixed_samples, _ = await open_loop(stack.port, max(5.0, args.duration / 2), args.offered_rate)
    finally:
        await rss.stop()
        stack.stop()
        await drain.stop()
    ceiling = latency_rows(max_samples, args.duration)
    offered = latency_rows(fixed_samples, max(5.0, args.duration / 2))
    name = "accept-api-only" if args.api_only else "accept"
    result = {"scenario": name, "workers": args.workers, "api_only": args.api_only, "concurrency": args.concurrency,
              "duration_s": args.duration, "max": ceiling, "offered_rate": args.offered_rate,
              "at_offered_rate": offered, "peak_rss_mb": rss.peak_mb, "machine": machine()}
    print_table(f"accept: single-recipient POST /msg-client/send, {args.workers} worker(s)", [
        (f"max req/s (closed loop, c={args.concurrency})", ceiling["req_per_s"]),
        ("  p50 / p95 / p99 ms", f"{ceiling['p50_ms']} / {ceiling['p95_ms']} / {ceiling['p99_ms']}"),
        ("  errors", ceiling["errors"]),
        (f"at {args.offered_rate:.0f} req/s offered: p50/p95/p99 ms",
         f"{offered['p50_ms']} / {offered['p95_ms']} / {offered['p99_ms']}"),
        ("  errors", offered["errors"]),
        ("gateway peak RSS MB", rss.peak_mb),
    ])
    ok_times = [t for t, _, s in max_samples if s == 200]
    plot(name, f"{name}: closed loop, c={args.concurrency}, {args.workers} worker(s)",
         {"accepted req/s": [float(x) for x in per_second(ok_times, max_start)]},
         {"p50": latency_series(max_samples, max_start, 50), "p99": latency_series(max_samples, max_start, 99)})
    result["ok"] = ceiling["errors"] == 0 and offered["errors"] == 0
    return result


async def scenario_bulk(args: argparse.Namespace) -> dict[str, Any]:
    stack = await start_stack(args, "bulk")
    drain = ReportConsumer(stack.stomp_url, stack.queue)
    await drain.start()
    timings: list[float] = []
    statuses: list[int] = []
    try:
        for run in range(args.bulk_runs):
            conn = HttpConn("127.0.0.1", stack.port, {"X-API-Key": API_KEY})  # fresh: the last one idled out
            await conn.connect()
            body = send_body([f"+1777{run:02d}{i:05d}" for i in range(10_000)])
            t0 = time.monotonic()
            status, data = await conn.request("POST", "/msg-client/send", body)
            timings.append(time.monotonic() - t0)
            statuses.append(status)
            if status == 200 and len(orjson.loads(data)["Messages"]) != 10_000:
                statuses[-1] = -1
            # Each run starts on an idle gateway: wait until the SMSC has had this run's messages.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if (await simulator_stats(stack.control_port)).get("submit_sm", 0) >= 10_000 * (run + 1):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)
            await conn.close()
    finally:
        stack.stop()
        await drain.stop()
    result = {"scenario": "bulk", "recipients": 10_000, "runs_s": [round(t, 3) for t in timings],
              "median_s": round(statistics.median(timings), 3), "statuses": statuses, "machine": machine(),
              "ok": all(s == 200 for s in statuses)}
    print_table("bulk: one POST with 10,000 recipients", [
        ("runs (s)", ", ".join(f"{t:.3f}" for t in timings)), ("median time to 200 (s)", result["median_s"]),
        ("statuses", statuses)])
    plot("bulk", "bulk: time to 200 for 10,000 recipients, per run", {"runs": [1.0] * len(timings)},
         {"time to 200": [t * 1000 for t in timings]})
    return result


def _cpu_seconds(proc: Proc) -> float:
    """User + system CPU seconds so far of a process and its children (uvicorn workers)."""
    try:
        p = psutil.Process(proc.pid)
        return sum(sum(q.cpu_times()[:2]) for q in [p, *p.children(recursive=True)])
    except psutil.Error:
        return 0.0


async def scenario_e2e(args: argparse.Namespace, upstream: str) -> dict[str, Any]:
    name = f"e2e-{upstream}"
    stack = await start_stack(args, name, upstream)
    consumer = ReportConsumer(stack.stomp_url, stack.queue)
    await consumer.start()
    rss = RssSampler([stack.gateway])
    rss.start()
    n, chunk = args.messages, min(1000, args.messages)
    accepted: list[float] = []
    accept_errors = 0
    sent_at: dict[str, float] = {}
    cpu_start = {p.name: _cpu_seconds(p) for p in (stack.gateway, stack.upstream)}
    start = time.monotonic()
    try:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(0, n, chunk):
            queue.put_nowait(i)

        async def submitter() -> None:
            nonlocal accept_errors
            conn = HttpConn("127.0.0.1", stack.port, {"X-API-Key": API_KEY})
            while not queue.empty():
                i = queue.get_nowait()
                to = [f"+1888{j:07d}" for j in range(i, min(n, i + chunk))]
                t0 = time.monotonic()
                status, data = await conn.request("POST", "/msg-client/send", send_body(to))
                if status != 200:
                    accept_errors += len(to)
                    continue
                now = time.monotonic()
                for m in orjson.loads(data)["Messages"]:
                    sent_at[m["MessageSid"]] = t0
                    accepted.append(now)
            await conn.close()

        await asyncio.gather(*(submitter() for _ in range(2)))
        last_progress, last_count = time.monotonic(), 0
        while consumer.unique < len(sent_at) and time.monotonic() - last_progress < args.stall_timeout:
            await asyncio.sleep(0.2)
            if consumer.unique != last_count:
                last_progress, last_count = time.monotonic(), consumer.unique
        await asyncio.sleep(1.0)  # a duplicate would arrive now
        sim = await simulator_stats(stack.control_port) if upstream == "smpp" else {}
        cpu = {p.name: _cpu_seconds(p) - cpu_start[p.name] for p in (stack.gateway, stack.upstream)}
    finally:
        await rss.stop()
        await consumer.stop()
        stack.stop()
    first_report = min(consumer.arrivals, default=start)
    last_report = max(consumer.arrivals, default=start)
    elapsed = last_report - start
    lost = len(sent_at) - len(set(sent_at) & set(consumer.seen))
    result = {
        "scenario": name, "messages": n, "accepted": len(sent_at), "accept_errors": accept_errors,
        "reports": sum(consumer.seen.values()), "unique_reports": consumer.unique, "lost": lost,
        "duplicate_reports": consumer.duplicates, "statuses": dict(consumer.statuses),
        "headers_ok": consumer.headers_ok,
        "accept_s": round(max(accepted, default=start) - start, 2),
        "first_accept_to_last_report_s": round(elapsed, 2),
        "msg_per_s": round(consumer.unique / elapsed, 1) if elapsed > 0 else 0.0,
        "first_report_after_s": round(first_report - start, 2),
        "peak_rss_mb": rss.peak_mb, "workers": args.workers, "window": args.window, "sessions": args.sessions,
        "submit_sm": sim.get("submit_sm"), "resubmits": (sim["submit_sm"] - n) if sim else None,
        "machine": machine(),
        "cpu_ms_per_msg": {k.rsplit("-", 1)[-1]: round(1000 * v / max(1, consumer.unique), 3) for k, v in cpu.items()},
    }
    result["ok"] = lost == 0 and consumer.duplicates == 0 and accept_errors == 0 and consumer.headers_ok
    print_table(f"{name}: {n:,} messages, accept -> upstream -> receipts -> reports on ActiveMQ", [
        ("accepted", f"{len(sent_at):,} in {result['accept_s']} s"),
        ("reports (unique)", f"{consumer.unique:,}"), ("lost", lost), ("duplicate reports", consumer.duplicates),
        ("first accept -> last report (s)", result["first_accept_to_last_report_s"]),
        ("sustained msg/s", result["msg_per_s"]), ("gateway peak RSS MB", rss.peak_mb),
        *((f"CPU ms per message: {k}", v) for k, v in result["cpu_ms_per_msg"].items()),
        *((("submit_sm at the SMSC", sim.get("submit_sm")),) if sim else ()),
    ])
    lat_by_second: dict[int, list[float]] = {}
    for sid, seen_at in consumer.first_seen.items():
        if sid in sent_at:
            lat_by_second.setdefault(int(seen_at - start), []).append(seen_at - sent_at[sid])
    seconds = range(max(lat_by_second, default=-1) + 1)
    result["latency_s"] = {"p50": round(percentile([x for v in lat_by_second.values() for x in v], 50), 2),
                           "p99": round(percentile([x for v in lat_by_second.values() for x in v], 99), 2)}
    plot(name, f"{name}: {n:,} messages (latency = accept request to report on the queue)", {
        "accepted/s": [float(x) for x in per_second(accepted, start)],
        "reports/s": [float(x) for x in per_second(consumer.arrivals, start)],
    }, {"p50": [percentile(lat_by_second.get(s, []), 50) for s in seconds],
        "p99": [percentile(lat_by_second.get(s, []), 99) for s in seconds]}, latency_unit="s")
    return result


async def main_async(args: argparse.Namespace) -> int:
    if args.quick:
        harness.use_results_dir(harness.ROOT / "bench" / "results" / "quick")
    results: dict[str, dict[str, Any]] = {}
    try:
        await _run_scenarios(args, results)
    finally:
        import asyncpg

        conn = await asyncpg.connect(services_env()["SMSGW_TEST_PG_URL"].replace("postgresql+asyncpg://", "postgresql://"))
        await conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await conn.close()
    failed = [s for s, r in results.items() if not r.get("ok")]
    if failed:
        print(f"\nFAILED (lost, duplicated or refused messages): {', '.join(failed)}")
        return 1
    return 0


async def _run_scenarios(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    for scenario in args.scenarios:
        print(f"\n=== {scenario} ===", flush=True)
        if scenario == "accept":
            result = await scenario_accept(args)
        elif scenario == "bulk":
            result = await scenario_bulk(args)
        else:
            result = await scenario_e2e(args, scenario.split("-", 1)[1])
        result["quick"] = args.quick
        path = write_result(result["scenario"], result)
        print(f"-> {path.relative_to(harness.ROOT)} and .png", flush=True)
        results[scenario] = result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)} (default all)")
    p.add_argument("--messages", type=int, default=100_000, help="end-to-end messages (default 100,000)")
    p.add_argument("--duration", type=float, default=60.0, help="accept run, seconds (default 60)")
    p.add_argument("--workers", type=int, default=1, help="smsgw serve --workers (default 1)")
    p.add_argument("--concurrency", type=int, default=64, help="accept: connections (default 64)")
    p.add_argument("--offered-rate", type=float, default=1000.0, help="accept: fixed rate for latency (default 1000)")
    p.add_argument("--window", type=int, default=100, help="SMPP window per session (default 100)")
    p.add_argument("--sessions", type=int, default=2, help="SMPP sessions (default 2)")
    p.add_argument("--bulk-runs", type=int, default=5)
    p.add_argument("--receipt-delay", type=float, default=0.5,
                   help="simulator: seconds from submit_sm_resp to the receipt (default 0.5)")
    p.add_argument("--stall-timeout", type=float, default=60.0, help="give up when no report came for this long")
    p.add_argument("--api-only", action="store_true",
                   help="gateway without its dispatcher/publishers (SMSGW_WORKERS_ENABLED=false): the API alone")
    p.add_argument("--quick", action="store_true", help="a short smoke run (CI): checks 0 lost / 0 duplicates")
    args = p.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; one of {', '.join(SCENARIOS)}")
    args.scenarios = args.scenarios or list(SCENARIOS)
    if args.quick:
        args.messages = min(args.messages, 3000)
        args.duration = min(args.duration, 8.0)
        args.bulk_runs = min(args.bulk_runs, 2)
        args.offered_rate = min(args.offered_rate, 300.0)
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
