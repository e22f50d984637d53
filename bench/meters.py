"""Where the time goes: CPU per process, row versions per table, and PostgreSQL's costliest statements,
each over a scenario's measured window and divided by the messages it carried.

- `CpuMeter`: user + system CPU of each process group (gateway, PostgreSQL, ActiveMQ, simulator, load
  generator) from psutil, plus the whole machine's busy time, so a figure disturbed by other work on a
  shared box shows it (`other` = machine minus ours). For the gateway and the simulator also the time
  their threads were ready to run and waited for a CPU (Linux's schedstat run delay): a process at
  80 % of a core that waits the other 20 % is saturated, on a machine whose cores the rest keep busy.
- `GatewayMeter`: the gateway's own `/metrics` at both ends of the window: how long its handler took
  per request (`smsgw_http_request_duration_seconds`) and how late its event loop ran due timers
  (`smsgw_event_loop_lag_seconds`). A process that is not at 100 % of a core can still be what sets
  the pace: every step of a request waits for the loop's turn.
- `PgMeter`: on the run's private cluster, `pg_stat_user_tables` deltas (n_tup_ins + n_tup_upd + n_tup_del,
  and how many updates were HOT), `pg_stat_database` commits, the WAL written (LSN difference) and the top
  statements from `pg_stat_statements` by total execution time.

CPU ms per 1,000 messages is numerically the same as µs per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from prometheus_client.parser import text_string_to_metric_families

PROCESSES = ("gateway", "postgres", "activemq", "simulator", "loadgen")
_TX_CONTROL = re.compile(r"^\s*(BEGIN|COMMIT|ROLLBACK|START TRANSACTION|SAVEPOINT|RELEASE|END)\b", re.I)


def _machine_busy_seconds() -> float:
    # Summed over all CPUs, like a process's CPU seconds; guest time is already inside user, and idle,
    # iowait and steal are not work done here.
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _self_cpu_seconds() -> float:
    # Only this process: its reaped children (a `smsgw migrate`, a stopped gateway) are not load generation.
    t = psutil.Process().cpu_times()
    return float(t.user + t.system)


def host_check_ms(rounds: int = 5) -> float:
    """The CPU time (ms, the fastest of `rounds`) of one fixed piece of pure Python: dict, string and
    integer work, as a gateway does. The same code's CPU per message moved by up to 60 % within an
    hour on these shared VMs (steal ≈ 0); this figure moves with it, so two runs compare only when it
    does not differ much between them. Measured before and after each scenario's load (not during)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.thread_time()
        table: dict[str, int] = {}
        for i in range(40_000):
            key = f"SM{i:032x}"
            table[key] = table.get(key[:20], 0) + len(key.upper()) + (i * 7919) % 1013
        best = min(best, time.thread_time() - t0)
    return round(best * 1000, 2)


@dataclass
class CpuMeter:
    """Reads each process group's CPU at `start()` and `stop()`; a source answers None when it has no
    process to measure (no simulator in the HTTP scenario, say)."""

    sources: dict[str, Callable[[], float | None]]
    notes: dict[str, str] = field(default_factory=dict)
    waits: dict[str, Callable[[], float | None]] = field(default_factory=dict)  # run delay, in seconds
    _t0: float = 0.0
    _wall: float = 0.0
    _before: dict[str, float | None] = field(default_factory=dict)
    _delta: dict[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sources = {"loadgen": _self_cpu_seconds, **self.sources}

    def _read(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {name: src() for name, src in self.sources.items()}
        out.update({f"wait:{name}": src() for name, src in self.waits.items()})
        out["machine"] = _machine_busy_seconds()
        return out

    def start(self) -> None:
        self._before = self._read()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        after = self._read()
        self._wall = time.monotonic() - self._t0
        self._delta = {}
        for name, value in after.items():
            before = self._before.get(name)
            self._delta[name] = None if value is None or before is None else max(0.0, value - before)

    def result(self, messages: int) -> dict[str, Any]:
        """`cpu_ms_per_1k` per process, the share of one core each held, and the machine's other load."""
        ours = sum(v for k, v in self._delta.items() if k != "machine" and not k.startswith("wait:") and v is not None)
        machine = self._delta.get("machine") or 0.0

        def per_1k(seconds: float | None) -> float | None:
            return None if seconds is None or messages <= 0 else round(seconds * 1000 / messages * 1000, 1)

        def pct(seconds: float | None) -> float | None:
            return None if seconds is None or self._wall <= 0 else round(100 * seconds / self._wall, 1)

        per_process = {name: per_1k(self._delta.get(name)) for name in PROCESSES}
        return {
            "cpu_ms_per_1k": per_process,
            "cpu_percent_of_core": {name: pct(self._delta.get(name)) for name in PROCESSES},
            # Of the window, how long each process was ready to run and waited for a CPU (summed over threads).
            "cpu_wait_percent": {name: pct(self._delta.get(f"wait:{name}")) for name in self.waits},
            "cpu_window_s": round(self._wall, 2),
            "cpu_messages": messages,
            # Busy time of the whole machine that none of our processes used: other jobs on a shared box.
            "cpu_other_ms_per_1k": per_1k(max(0.0, machine - ours)),
            "cpu_other_percent_of_core": pct(max(0.0, machine - ours)),
            **({"cpu_notes": self.notes} if self.notes else {}),
        }


def run_delay_seconds(pid: int) -> float | None:
    """How long the threads of a process and its descendants spent runnable, waiting for a CPU
    (`/proc/<pid>/task/<tid>/schedstat`, its second field; None where the kernel does not keep it)."""
    try:
        root = psutil.Process(pid)
        pids = [pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.Error:
        return None
    total = 0
    for p in pids:
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            if p == pid:
                return None
    return total / 1e9


async def _connect(port: int, database: str) -> Any:
    import asyncpg

    return await asyncpg.connect(host="127.0.0.1", port=port, user="postgres", database=database)


@dataclass
class PgMeter:
    """Counters of one database on the run's private cluster, before and after a scenario."""

    port: int
    database: str
    _tables: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    _db: tuple[int, int] = (0, 0)
    _lsn: str = "0/0"
    statements: bool = True

    async def create_extension(self) -> None:
        import asyncpg

        conn = await _connect(self.port, self.database)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        except asyncpg.PostgresError:  # a cluster without the library: statements are simply not reported
            self.statements = False
        finally:
            await conn.close()

    @staticmethod
    async def _tables_now(conn: Any) -> dict[str, tuple[int, int, int, int]]:
        rows = await conn.fetch("SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del "
                                "FROM pg_stat_user_tables")
        return {r["relname"]: (r["n_tup_ins"], r["n_tup_upd"], r["n_tup_hot_upd"], r["n_tup_del"]) for r in rows}

    @staticmethod
    async def _db_now(conn: Any) -> tuple[int, int]:
        row = await conn.fetchrow("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                                  "WHERE datname = current_database()")
        return int(row["xact_commit"]), int(row["xact_rollback"])

    async def baseline(self) -> None:
        """Table and database counters now (call it before the gateway connects: a backend publishes its
        counters when it exits or at most once a second, so a baseline taken under load lags)."""
        conn = await _connect(self.port, self.database)
        try:
            self._tables = await self._tables_now(conn)
            self._db = await self._db_now(conn)
        finally:
            await conn.close()

    async def start_window(self) -> None:
        """Reset statement statistics and note the WAL position: the measured window starts now."""
        conn = await _connect(self.port, self.database)
        try:  # the reset last, so that the meter's own statements (all on pg_stat_*) are the only ones left out
            self._lsn = str(await conn.fetchval("SELECT pg_current_wal_lsn()::text"))
            if self.statements:
                await conn.execute("SELECT pg_stat_statements_reset()")
        finally:
            await conn.close()

    async def wait_for_clients_gone(self, timeout: float = 10.0) -> None:
        """Until no other session is connected to the database: each backend's counters are published when
        it exits, so the deltas are complete only after the gateway's pool has closed."""
        conn = await _connect(self.port, self.database)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                others = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                                             "AND pid <> pg_backend_pid()", self.database)
                if not others:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.1)
        finally:
            await conn.close()

    async def result(self, messages: int, top: int = 10) -> dict[str, Any]:
        """Row versions per message (per table and total), commits and WAL per message, top statements."""
        conn = await _connect(self.port, self.database)
        try:
            stmts = await self._statements(conn) if self.statements else None  # before the meter's own
            tables = await self._tables_now(conn)
            commits, rollbacks = await self._db_now(conn)
            wal = int(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)", self._lsn))
        finally:
            await conn.close()
        n = max(1, messages)
        counts: dict[str, dict[str, int]] = {}
        for name, now in sorted(tables.items()):
            before = self._tables.get(name, (0, 0, 0, 0))
            ins, upd, hot, dele = (a - b for a, b in zip(now, before, strict=True))
            if ins or upd or dele:
                counts[name] = {"ins": ins, "upd": upd, "hot_upd": hot, "del": dele, "total": ins + upd + dele}
        total = sum(c["total"] for c in counts.values())
        out: dict[str, Any] = {
            "row_versions_per_message": {
                "total": round(total / n, 2),
                "by_table": {name: round(c["total"] / n, 2) for name, c in counts.items()},
            },
            "row_versions": counts,
            "hot_update_percent": {name: round(100 * c["hot_upd"] / c["upd"], 1)
                                   for name, c in counts.items() if c["upd"]},
            "commits_per_message": round((commits - self._db[0]) / n, 3),
            "rollbacks": rollbacks - self._db[1],
            "wal_bytes_per_message": round(wal / n, 1),
        }
        if stmts is not None:
            out.update(self._summarise(stmts, n, top))
        return out

    @staticmethod
    async def _statements(conn: Any) -> list[dict[str, Any]]:
        # Everything of this database except the meter's own queries of the statistics views.
        rows = await conn.fetch(
            "SELECT s.query, s.toplevel, s.calls, s.total_exec_time, s.rows, s.wal_bytes, s.shared_blks_dirtied "
            "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND s.query NOT LIKE '%pg\\_stat%' "
            "ORDER BY s.total_exec_time DESC")
        return [dict(r) for r in rows]

    @staticmethod
    def _summarise(stmts: list[dict[str, Any]], n: int, top: int) -> dict[str, Any]:
        # A top-level statement's time includes what it ran nested (the foreign-key checks its triggers
        # run): the sums count top-level statements only; the list shows nested ones too.
        top_level = [s for s in stmts if s["toplevel"]]
        total_ms = sum(s["total_exec_time"] for s in top_level)
        tx_calls = sum(s["calls"] for s in top_level if _TX_CONTROL.match(s["query"]))
        return {
            "statements_per_message": round((sum(s["calls"] for s in top_level) - tx_calls) / n, 2),
            "transaction_statements_per_message": round(tx_calls / n, 2),
            "nested_statements_per_message": round(sum(s["calls"] for s in stmts if not s["toplevel"]) / n, 2),
            "statement_time_us_per_message": round(total_ms * 1000 / n, 1),
            "top_statements": [{
                "query": " ".join(s["query"].split())[:400],
                "nested": not s["toplevel"],
                "calls": s["calls"],
                "total_ms": round(s["total_exec_time"], 1),
                "us_per_message": round(s["total_exec_time"] * 1000 / n, 1),
                "share_percent": round(100 * s["total_exec_time"] / total_ms, 1) if total_ms else 0.0,
                "rows": s["rows"],
                "wal_bytes": int(s["wal_bytes"]),
            } for s in stmts[:top]],
        }


def prometheus_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in a Prometheus text exposition (prometheus_client's parser,
    as bench.dashboard_preview reads it)."""
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


@dataclass
class GatewayMeter:
    """Deltas of the gateway's own latency figures over the window (`scrape` returns its /metrics text)."""

    scrape: Callable[[], Any]  # an awaitable of the text
    route: str = "/msg-client/send"
    _before: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    async def start(self) -> None:
        self._before = prometheus_samples(await self.scrape())

    async def result(self, client_request_s: float | None) -> dict[str, Any]:
        """`client_request_s`: the mean request time the load generator saw (None: not measured)."""
        after = prometheus_samples(await self.scrape())

        def total(name: str, **match: str) -> float:
            def of(samples: list[tuple[str, dict[str, str], float]]) -> float:
                return sum(v for n, labels, v in samples if n == name
                           and all(labels.get(k) == want for k, want in match.items()))
            return of(after) - of(self._before)

        requests = total("smsgw_http_request_duration_seconds_count", route=self.route)
        turns = total("smsgw_event_loop_lag_seconds_count")
        bucket = "smsgw_event_loop_lag_seconds_bucket"
        earlier = {labels["le"]: v for n, labels, v in self._before if n == bucket}
        buckets = sorted((float(labels["le"]), v - earlier.get(labels["le"], 0.0))
                         for n, labels, v in after if n == bucket)

        def quantile(q: float) -> float | None:
            """The bucket bound at or under which q of the samples fell (None without samples)."""
            if turns <= 0:
                return None
            return next((bound for bound, count in buckets if count >= q * turns), None)

        def ms(seconds: float | None) -> float | None:
            return None if seconds is None or seconds == float("inf") else round(1000 * seconds, 2)

        return {"gateway_latency_ms": {
            "request_at_client": ms(client_request_s),
            "request_in_handler": ms(total("smsgw_http_request_duration_seconds_sum", route=self.route) / requests)
            if requests else None,
            "loop_lag_mean": ms(total("smsgw_event_loop_lag_seconds_sum") / turns) if turns else None,
            "loop_lag_p50_at_most": ms(quantile(0.5)), "loop_lag_p99_at_most": ms(quantile(0.99)),
            "loop_lag_samples": int(turns),
        }}


def print_measurements(result: dict[str, Any], targets: dict[str, float] | None = None) -> None:
    """The per-process CPU, row versions and top statements of a scenario, under its table."""
    targets = targets or {}
    cpu = result.get("cpu_ms_per_1k") or {}
    pct = result.get("cpu_percent_of_core") or {}
    waits = result.get("cpu_wait_percent") or {}
    print(f"\nCPU ms per 1,000 messages (= µs per message), over {result.get('cpu_window_s')} s, "
          f"{result.get('cpu_messages', 0):,} messages:")
    for name in PROCESSES:
        value = cpu.get(name)
        mark = ""
        if value is not None and name in targets:
            mark = f"   target ≤ {targets[name]:.0f}: {'met' if value <= targets[name] else 'MISSED'}"
        shown = "-" if value is None else f"{value:>9.1f}"
        waited = waits.get(name)
        wait_note = "" if waited is None else f", and {waited} % of the time waiting for a CPU"
        print(f"  {name:<10} {shown:>9}   ({pct.get(name, '-')} % of a core{wait_note}){mark}")
    check = result.get("host_check_ms")
    if check:
        print(f"  host check: a fixed Python workload took {check['before']} ms CPU before the load, "
              f"{check['after']} ms after (compare runs only where these are close)")
    if result.get("cpu_other_ms_per_1k") is not None:
        print(f"  {'(others)':<10} {result['cpu_other_ms_per_1k']:>9.1f}   "
              f"({result.get('cpu_other_percent_of_core')} % of a core: other work on this machine)")
    lat = result.get("gateway_latency_ms")
    if lat and lat.get("loop_lag_samples"):
        where = ""
        if lat.get("request_at_client") is not None and lat.get("request_in_handler") is not None:
            where = (f"a request took {lat['request_at_client']} ms at the load generator, "
                     f"{lat['request_in_handler']} ms of it in the gateway's handler; ")
        print(f"  gateway event loop: {where}due timers ran {lat['loop_lag_mean']} ms late on average "
              f"(p50 ≤ {lat['loop_lag_p50_at_most']}, p99 ≤ {lat['loop_lag_p99_at_most']} ms): each step of a "
              "request waits that long for its turn")
    rows = result.get("row_versions_per_message")
    if rows:
        mark = ""
        if "row_versions" in targets:
            mark = f"   target ≤ {targets['row_versions']:.0f}: " \
                   f"{'met' if rows['total'] <= targets['row_versions'] else 'MISSED'}"
        detail = ", ".join(f"{t} {v}" for t, v in rows["by_table"].items())
        print(f"row versions per message: {rows['total']}{mark}  ({detail})")
        hot = result.get("hot_update_percent") or {}
        if hot:
            print("  HOT updates: " + ", ".join(f"{t} {v} %" for t, v in hot.items()))
        print(f"  commits per message {result.get('commits_per_message')}, "
              f"WAL {result.get('wal_bytes_per_message')} bytes per message")
    if "statements_per_message" in result:
        print(f"statements per message {result['statements_per_message']} "
              f"(+ {result['transaction_statements_per_message']} BEGIN/COMMIT, "
              f"+ {result['nested_statements_per_message']} run by triggers), "
              f"execution time {result['statement_time_us_per_message']} µs per message; top by total time:")
        for s in result.get("top_statements", [])[:8]:
            print(f"  {s['us_per_message']:>8.1f} µs/msg {s['share_percent']:>5.1f} % {s['calls']:>8} calls  "
                  f"{'(nested) ' if s['nested'] else ''}{s['query'][:90]}")
    settings = result.get("postgres_settings")
    if settings:
        with contextlib.suppress(KeyError):
            print(f"PostgreSQL {settings['server_version']}: synchronous_commit={settings['synchronous_commit']}, "
                  f"fsync={settings['fsync']}, full_page_writes={settings['full_page_writes']}")
