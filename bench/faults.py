"""`make faults`: five scripted faults with real processes, and the counts at the end.

    python -m bench.faults [scenario ...] [--messages N] [--short]

1. smsc       the SMSC drops every connection twice mid-stream, then is killed (-9) and restarted
2. broker     ActiveMQ stopped for 30 s under load, then started
3. database   PostgreSQL restarted under load: /send answers 503 while it cannot commit, never 200
              for something not stored, and the gateway recovers on its own
4. gateway    the gateway killed (-9) under load and restarted
5. replicas   two gateways on one database and one broker; one is killed (-9) and stays dead

Load is paced (`--rate` messages/s in bulk requests of 50) so each fault lands while messages flow.
For each: every message that got a 200 reaches a final status; exactly one report per message on the
queue (a duplicate must carry the same `smsgw-report-id`); resubmits to the SMSC counted (a resubmit
is a message the SMSC received more than once: its submit_sm was sent but the answer never recorded).
`--short` is the CI version (fewer messages, a 5 s broker outage).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench import harness
from bench.harness import (
    API_KEY,
    ROOT,
    HttpConn,
    Proc,
    ReportConsumer,
    control,
    free_port,
    fresh_database,
    print_table,
    private_broker_env,
    services_env,
    simulator_stats,
    smsgw,
    start_simulator,
    wait_ready,
    write_result,
)

SCENARIOS = ("smsc", "broker", "database", "gateway", "replicas")
SERVICES = str(ROOT / "scripts" / "services.sh")


@dataclass
class Run:
    args: argparse.Namespace
    name: str
    env: dict[str, str]
    stomp_url: str
    queue: str
    database_url: str = ""
    smsc_port: int = 0
    control_port: int = 0
    smsc: Proc | None = None
    gateways: dict[int, Proc] = field(default_factory=dict)
    accepted: dict[str, float] = field(default_factory=dict)
    refused: dict[int, int] = field(default_factory=dict)  # status -> count (503 expected while the DB is away)
    mq_env: dict[str, str] = field(default_factory=dict)  # the broker fault's own ActiveMQ (services.sh env)
    submits_before_restart: int = 0
    resubmits_before_restart: int = 0

    def gateway_env(self) -> dict[str, str]:
        providers = [{"name": "smsc-main", "type": "smpp", "host": "127.0.0.1", "port": self.smsc_port,
                      "system_id": "smppclient1", "password": "password", "window": 20,
                      "response_timeout": 5.0}]
        return {
            **os.environ, "SMSGW_DATABASE_URL": self.database_url, "SMSGW_BROKER_URL": self.stomp_url,
            "SMSGW_DELIVERY_REPORT_QUEUE": self.queue, "SMSGW_API_KEYS": API_KEY,
            "SMSGW_WEBHOOK_AUTH": "token:faults", "SMSGW_LOG_LEVEL": "WARNING",
            "SMSGW_DISPATCH_LEASE_SECONDS": "10", "SMSGW_RETRY_BASE_SECONDS": "0.5",
            "SMSGW_RECEIPT_TIMEOUT_SECONDS": "20",
            "SMSGW_RETRY_MAX_SECONDS": "5", "SMSGW_RETRY_MAX_ATTEMPTS": "1000",
            "SMSGW_PROVIDERS": orjson.dumps(providers).decode(),
            "SMSGW_ROUTES": orjson.dumps([{"channel": "smpp", "providers": ["smsc-main"]}]).decode(),
        }

    def start_smsc(self) -> None:
        self.smsc = start_simulator(f"faults-{self.name}-smsc", self.smsc_port, self.control_port,
                                    "--receipt-delay", "0.2")

    def start_gateway(self, port: int | None = None) -> int:
        port = port or free_port()
        self.gateways[port] = Proc(f"faults-{self.name}-gateway-{port}", smsgw("serve", "--port", str(port)),
                                   self.gateway_env())
        return port

    def stop(self) -> None:
        for g in self.gateways.values():
            g.stop()
        if self.smsc is not None:
            self.smsc.stop()


async def load(run: Run, ports: list[int], n: int, rate: float) -> None:
    """Send n messages in bulk requests of 50 at `rate` messages/s, spread over the gateways; a request
    refused (503 while the database is away) or cut off is tried again after a pause."""
    chunk = 50
    start = time.monotonic()
    conns = {p: HttpConn("127.0.0.1", p, {"X-API-Key": API_KEY}) for p in ports}
    i = 0
    while i < n:
        due = start + i / rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
        live = [p for p in ports if p in run.gateways and run.gateways[p].alive()]
        if not live:
            await asyncio.sleep(0.2)
            continue
        port = live[(i // chunk) % len(live)]
        to = [f"+1212{run.args.seed:02d}{j:05d}" for j in range(i, min(n, i + chunk))]
        conns[port].headers = f"X-API-Key: {API_KEY}\r\nIdempotency-Key: {run.queue}-{i}\r\n"
        try:  # a retry after a cut-off answer replays it (Idempotency-Key): nothing is stored twice
            status, data = await asyncio.wait_for(
                conns[port].request("POST", "/msg-client/send", orjson.dumps({"To": to, "Body": "fault test"})), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            await conns[port].close()
            status, data = 599, b""
        if status == 200:
            now = time.monotonic()
            for m in orjson.loads(data)["Messages"]:
                run.accepted[m["MessageSid"]] = now
            i += chunk
        elif 400 <= status < 500 and status != 429:
            raise RuntimeError(f"the gateway refused the load itself: {status} {data[:300]!r}")
        else:
            run.refused[status] = run.refused.get(status, 0) + 1
            await asyncio.sleep(0.5)
    for c in conns.values():
        await c.close()


async def final_counts(run: Run) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(run.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM message GROUP BY status")
        stored = {r["sid"] for r in await conn.fetch("SELECT sid FROM message")}
    finally:
        await conn.close()
    counts = {r["status"]: int(r["n"]) for r in rows}
    counts["accepted_but_not_stored"] = len(set(run.accepted) - stored)
    return counts


async def settle(run: Run, consumer: ReportConsumer, timeout: float) -> None:
    """Wait until every accepted message has its report (or nothing moved for `timeout` seconds)."""
    last, moved = -1, time.monotonic()
    while time.monotonic() - moved < timeout:
        done = len(set(run.accepted) & set(consumer.seen))
        if done == len(run.accepted) and done > 0:
            break
        if done != last:
            last, moved = done, time.monotonic()
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.5)  # a duplicate would arrive now


async def services(*command: str, env: dict[str, str] | None = None) -> None:
    await asyncio.to_thread(subprocess.run, [SERVICES, *command], check=True, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL)


async def scenario(args: argparse.Namespace, name: str) -> dict[str, Any]:
    env = services_env()
    stomp_url = env["SMSGW_TEST_STOMP_URL"]
    # An ActiveMQ of its own for the broker fault, so stopping it disturbs nothing else.
    mq_env = private_broker_env("faults-mq") if name == "broker" else {}
    if mq_env:
        await services("mq-start", env=mq_env)
        stomp_url = f"stomp://127.0.0.1:{mq_env['SMSGW_MQ_STOMP_PORT']}"
    run = Run(args, name, env, stomp_url, f"faults-{name}-{secrets.token_hex(3)}", mq_env=mq_env)
    run.database_url = await fresh_database(env["SMSGW_TEST_PG_URL"], f"smsgw_faults_{name}")
    run.smsc_port, run.control_port = free_port(), free_port()
    migrate = await asyncio.create_subprocess_exec(*smsgw("migrate"), env=run.gateway_env(),
                                                   stdout=asyncio.subprocess.DEVNULL)
    assert await migrate.wait() == 0, "smsgw migrate failed"
    run.start_smsc()
    ports = [run.start_gateway()] + ([run.start_gateway()] if name == "replicas" else [])
    for p in ports:
        await wait_ready(p)
    consumer = ReportConsumer(stomp_url, run.queue)
    await consumer.start()
    n = args.messages
    events: list[str] = []
    started = time.monotonic()
    try:
        loader = asyncio.create_task(load(run, ports, n, args.rate))
        await fault(run, name, ports, n, events, lambda: len(run.accepted))
        await loader
        await settle(run, consumer, args.settle_timeout)
        stats = await simulator_stats(run.control_port)
        counts = await final_counts(run)
    finally:
        await consumer.stop()
        run.stop()
        if mq_env:
            await services("mq-stop", env=mq_env)
            shutil.rmtree(mq_env["SMSGW_SERVICES_DIR"], ignore_errors=True)
    finals = sum(counts.get(s, 0) for s in ("delivered", "undelivered", "failed"))
    reported = set(consumer.seen)
    resubmits = stats.get("duplicates", 0) + run.resubmits_before_restart
    result = {
        "scenario": name, "events": events, "accepted": len(run.accepted),
        "refused": {str(k): v for k, v in run.refused.items()},
        "final": finals, "not_final": len(run.accepted) - finals,
        "accepted_but_not_stored": counts["accepted_but_not_stored"],
        "reports_unique": len(reported & set(run.accepted)), "lost_reports": len(set(run.accepted) - reported),
        "duplicate_reports": consumer.duplicates, "unexplained_duplicates": 0 if consumer.headers_ok else -1,
        "submit_sm": stats.get("submit_sm", 0) + run.submits_before_restart, "resubmits": resubmits,
        "resubmit_pct": round(100 * resubmits / max(1, len(run.accepted)), 3),
        "seconds": round(time.monotonic() - started, 1), "statuses": counts,
    }
    result["ok"] = (result["not_final"] == 0 and result["lost_reports"] == 0 and consumer.headers_ok
                    and result["accepted_but_not_stored"] == 0 and len(run.accepted) == n)
    return result


async def wait_until(count: Callable[[], int], target: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while count() < target and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def fault(run: Run, name: str, ports: list[int], n: int, events: list[str],
                accepted: Callable[[], int]) -> None:
    """Inject the scenario's fault once part of the load is in."""
    note: Callable[[str], None] = lambda what: events.append(f"{accepted()} accepted: {what}")  # noqa: E731
    await wait_until(accepted, n // 4)
    if name == "smsc":
        note("SMSC drops every connection: " + await control(run.control_port, "drop"))
        await wait_until(accepted, n // 2)
        note("SMSC drops every connection: " + await control(run.control_port, "drop"))
        await wait_until(accepted, 2 * n // 3)
        stats = await simulator_stats(run.control_port)
        assert run.smsc is not None
        run.smsc.kill()
        run.submits_before_restart = stats.get("submit_sm", 0)
        run.resubmits_before_restart = stats.get("duplicates", 0)
        note("SMSC killed (-9)")
        await asyncio.sleep(2)
        run.start_smsc()
        note("SMSC restarted")
    elif name == "broker":
        await services("mq-stop", env=run.mq_env)
        note(f"ActiveMQ stopped for {run.args.broker_down:.0f} s")
        await asyncio.sleep(run.args.broker_down)
        await services("mq-start", env=run.mq_env)
        note("ActiveMQ started")
    elif name == "database":
        await services("pg-restart")
        note("PostgreSQL restarted (stop, start)")
    elif name == "gateway":
        run.gateways[ports[0]].kill()
        note("gateway killed (-9)")
        await asyncio.sleep(1)
        run.start_gateway(ports[0])
        await wait_ready(ports[0])
        note("gateway restarted")
    elif name == "replicas":
        run.gateways[ports[1]].kill()
        note("replica 2 of 2 killed (-9); it stays down")


def summary(results: list[dict[str, Any]]) -> None:
    for r in results:
        r["delivered/undelivered"] = f"{r['statuses'].get('delivered', 0)}/{r['statuses'].get('undelivered', 0)}"
    cols = ("scenario", "accepted", "final", "delivered/undelivered", "lost_reports", "duplicate_reports",
            "resubmits", "resubmit_pct", "refused", "seconds", "ok")
    widths = [max(len(c), *(len(str(r.get(c))) for r in results)) for c in cols]
    print("\n" + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in results:
        print("  ".join(str(r.get(c)).ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in results:
        print(f"\n{r['scenario']}: " + "; ".join(r["events"]))


async def main_async(args: argparse.Namespace) -> int:
    if args.short:
        harness.use_results_dir(harness.ROOT / "bench" / "results" / "quick")
    results = []
    for name in args.scenarios:
        print(f"=== {name} ===", flush=True)
        result = await scenario(args, name)
        results.append(result)
        print_table(name, [(k, v) for k, v in result.items() if k not in ("events", "statuses")])
        write_result(f"faults-{name}", result)
    summary(results)
    failed = [r["scenario"] for r in results if not r["ok"]]
    if failed:
        print(f"\nFAILED: {', '.join(failed)} (lost, not final, or unstored messages)")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="faults", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)} (default all)")
    p.add_argument("--messages", type=int, default=10_000, help="at most 100,000 (default 10,000)")
    p.add_argument("--rate", type=float, default=400.0, help="messages/s offered (default 400)")
    p.add_argument("--broker-down", type=float, default=30.0, help="seconds ActiveMQ stays stopped (default 30)")
    p.add_argument("--settle-timeout", type=float, default=90.0)
    p.add_argument("--seed", type=int, default=int(time.time()) % 100)
    p.add_argument("--short", action="store_true", help="the CI version: 1,500 messages, a 5 s broker outage")
    args = p.parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {unknown[0]!r}; one of {', '.join(SCENARIOS)}")
    args.scenarios = args.scenarios or list(SCENARIOS)
    if args.short:
        args.messages, args.broker_down = min(args.messages, 1500), min(args.broker_down, 5.0)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
