"""The processes a benchmark scenario runs against, and the measurement around its load.

`BenchServices` (once per `bench.run`): the private PostgreSQL cluster (production's commit settings,
pg_stat_statements) and a private ActiveMQ, or the shared broker with `--shared-broker`.
`Stack` (once per scenario): a fresh database on that cluster, the SMSC simulator or the fake commpeak
provider, and the gateway (`smsgw serve`).
`Measurement`: CPU of each process and PostgreSQL's counters over the scenario's window.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import os
import secrets
import sys
from dataclasses import dataclass, field
from typing import Any

import orjson

from bench.cluster import PgCluster, PrivateBroker, broker_cpu_by_port, tree_cpu_seconds
from bench.harness import (
    API_KEY,
    LOGS,
    HttpConn,
    Proc,
    free_port,
    fresh_database,
    services_env,
    smsgw,
    start_simulator,
    wait_ready,
    warm_broker,
)
from bench.meters import CpuMeter, GatewayMeter, PgMeter, host_check_ms, run_delay_seconds


@dataclass
class BenchServices:
    pg: PgCluster
    broker: PrivateBroker | None
    stomp_url: str
    postgres_settings: dict[str, str] = field(default_factory=dict)
    broker_note: str = ""

    @classmethod
    async def start(cls, shared_broker: bool = False, broker_warm_up: int = 0) -> BenchServices:
        pg = PgCluster()
        atexit.register(pg.stop_sync)
        broker: PrivateBroker | None = None
        if shared_broker:
            stomp_url = services_env()["SMSGW_TEST_STOMP_URL"]
            note = "shared broker: its CPU includes whatever else the machine's tests send through it"
        else:
            broker = PrivateBroker()
            atexit.register(broker.remove_sync)
            note = "private broker (scripts/activemq/activemq.xml: KahaDB, journalDiskSyncStrategy=never)"
        # Both start at once: initdb and the JVM each take a few seconds.
        await asyncio.gather(pg.start(), *([broker.start()] if broker else []))
        stomp_url = broker.stomp_url if broker else stomp_url
        if broker is not None:
            if broker_warm_up:
                seconds = await warm_broker(stomp_url, broker_warm_up)
                note += f"; warmed up with {broker_warm_up:,} persistent messages ({seconds:.1f} s) first"
            else:
                note += "; cold (no warm-up): its JIT compiles during the first scenario"
        services = cls(pg, broker, stomp_url, broker_note=note)
        services.postgres_settings = await pg.show_settings()
        return services

    def activemq_cpu(self) -> float | None:
        if self.broker is not None:
            return self.broker.cpu_seconds()
        return broker_cpu_by_port(int(self.stomp_url.rsplit(":", 1)[1]))

    async def stop(self) -> None:
        await asyncio.to_thread(self.pg.stop_sync)
        if self.broker is not None:
            await asyncio.to_thread(self.broker.remove_sync)


@dataclass
class Stack:
    """A fresh database, a simulator or fake provider, and the gateway."""

    services: BenchServices
    gateway: Proc
    upstream: Proc
    port: int
    control_port: int
    queue: str
    stomp_url: str
    database_url: str
    pg_meter: PgMeter
    workers: int = 1  # gateway processes: /metrics is one process's own

    def stop(self) -> None:
        self.gateway.stop()
        self.upstream.stop()


async def start_stack(args: argparse.Namespace, services: BenchServices, scenario: str,
                      upstream: str = "smpp") -> Stack:
    database = "smsgw_bench"
    database_url = await fresh_database(services.pg.admin_url, database)
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
        "SMSGW_BROKER_URL": services.stomp_url, "SMSGW_DELIVERY_REPORT_QUEUE": queue,
        "SMSGW_API_KEYS": API_KEY, "SMSGW_WEBHOOK_AUTH": "token:bench-webhook",
        "SMSGW_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "SMSGW_PROVIDERS": orjson.dumps(providers).decode(), "SMSGW_ROUTES": orjson.dumps(routes).decode(),
        "SMSGW_WORKERS_ENABLED": "false" if args.api_only else "true",
    }
    migrate = await asyncio.create_subprocess_exec(*smsgw("migrate"), env=gw_env,
                                                   stdout=asyncio.subprocess.DEVNULL)
    if await migrate.wait() != 0:
        up.stop()
        raise RuntimeError("smsgw migrate failed")
    meter = PgMeter(services.pg.port, database)
    await meter.create_extension()
    await meter.baseline()  # before the gateway connects: see PgMeter.baseline
    argv = smsgw("serve", "--port", str(port), "--workers", str(args.workers))
    if getattr(args, "profile", False):  # bench.sampler: the gateway's busy stacks, written when it stops
        argv = [sys.executable, "-m", "bench.sampler", str(LOGS / f"{scenario}-gateway.profile.txt"), *argv[1:]]
    gateway = Proc(f"{scenario}-gateway", argv, gw_env)
    try:
        await wait_ready(port, path="/health/live" if args.api_only else "/health/ready")
    except BaseException:
        gateway.stop()
        up.stop()
        raise
    return Stack(services, gateway, up, port, control_port, queue, services.stomp_url, database_url, meter,
                 args.workers)


class Measurement:
    """CPU per process and PostgreSQL's counters from `begin()` to `end()`; `end()` also stops the stack,
    since the database's table counters are complete only once the gateway's connections have closed."""

    def __init__(self, stack: Stack, upstream_name: str = "simulator") -> None:
        self.stack = stack
        self.host_before = 0.0
        services = stack.services
        notes = {"loadgen": "the runner process: HTTP load generator and the STOMP report consumer",
                 "activemq": services.broker_note,
                 "postgres": "postmaster, background processes and every backend (private cluster)"}
        if upstream_name != "simulator":
            notes["simulator"] = upstream_name
        self.gateway = GatewayMeter(self._scrape)
        self.cpu = CpuMeter({
            "gateway": lambda: tree_cpu_seconds(stack.gateway.pid) if stack.gateway.alive() else None,
            "postgres": services.pg.cpu_seconds,
            "activemq": services.activemq_cpu,
            "simulator": lambda: tree_cpu_seconds(stack.upstream.pid) if stack.upstream.alive() else None,
        }, notes, waits={
            "gateway": lambda: run_delay_seconds(stack.gateway.pid) if stack.gateway.alive() else None,
            "simulator": lambda: run_delay_seconds(stack.upstream.pid) if stack.upstream.alive() else None,
        })

    async def _scrape(self) -> str:
        if self.stack.workers != 1:  # each worker process has its own figures: two scrapes may reach two
            return ""
        conn = HttpConn("127.0.0.1", self.stack.port)
        try:
            status, body = await asyncio.wait_for(conn.request("GET", "/metrics"), 30)
        finally:
            await conn.close()
        if status != 200:
            raise RuntimeError(f"gateway /metrics answered {status}")
        return body.decode()

    async def begin(self) -> None:
        self.host_before = host_check_ms()
        await self.stack.pg_meter.start_window()
        await self.gateway.start()
        self.cpu.start()

    async def end(self, messages: int, client_request_s: float | None = None) -> dict[str, Any]:
        """`client_request_s`: the mean time a request took at the load generator, when it measured it."""
        self.cpu.stop()
        latency = await self.gateway.result(client_request_s)
        self.stack.stop()
        await self.stack.pg_meter.wait_for_clients_gone()
        return {**self.cpu.result(messages), **latency, **await self.stack.pg_meter.result(messages),
                "host_check_ms": {"before": self.host_before, "after": host_check_ms()},
                "postgres_settings": self.stack.services.postgres_settings}
