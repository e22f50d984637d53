"""The benchmark's instruments measure what they claim: the private cluster has production's commit
settings and pg_stat_statements, row versions and statements are counted per table and per message, CPU
is attributed to the right process (including backends that have already exited), and a postmaster
killed with -9 comes back with what was committed synchronously."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bench.cluster import PgCluster, tree_cpu_seconds
from bench.meters import CpuMeter, PgMeter, run_delay_seconds
from bench.run import check_targets, e2e_name

# Burns `seconds` of CPU (its own, not wall time: the machine is shared), then waits to be killed.
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {seconds}: pass\n"


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[PgCluster]:
    pg = PgCluster()
    await pg.start()
    yield pg
    await asyncio.to_thread(pg.stop_sync)


async def _connect(pg: PgCluster, database: str = "postgres") -> asyncpg.Connection:
    return await asyncpg.connect(host="127.0.0.1", port=pg.port, user="postgres", database=database)


async def test_private_cluster_commits_synchronously_and_loads_pg_stat_statements(cluster: PgCluster) -> None:
    settings = await cluster.show_settings()
    assert settings["synchronous_commit"] == "on"
    assert settings["fsync"] == "off"
    assert "pg_stat_statements" in settings["shared_preload_libraries"]
    assert settings["server_version"].startswith("15")
    await cluster.set_server("synchronous_commit", "off")  # what the postgres-kill fault does
    assert (await cluster.show_settings())["synchronous_commit"] == "off"
    await cluster.set_server("synchronous_commit", None)
    assert (await cluster.show_settings())["synchronous_commit"] == "on"


async def test_row_versions_and_statements_are_counted_per_table_and_per_message(cluster: PgCluster) -> None:
    admin = await _connect(cluster)
    await admin.execute("DROP DATABASE IF EXISTS meter_test")
    await admin.execute("CREATE DATABASE meter_test")
    await admin.close()
    conn = await _connect(cluster, "meter_test")
    await conn.execute("CREATE TABLE item (id int PRIMARY KEY, state text)")
    await conn.execute("CREATE TABLE untouched (id int)")
    await conn.execute("CREATE TABLE child (id int, item_id int REFERENCES item (id))")
    await conn.close()
    meter = PgMeter(cluster.port, "meter_test")
    await meter.create_extension()
    await meter.baseline()
    await meter.start_window()

    conn = await _connect(cluster, "meter_test")
    await conn.execute("INSERT INTO item SELECT g, 'new' FROM generate_series(1, 10) g")
    await conn.execute("UPDATE item SET state = 'sent'")  # no index on state: HOT-eligible
    await conn.execute("DELETE FROM item WHERE id <= 5")
    await conn.execute("INSERT INTO child VALUES (1, 10)")  # its foreign-key check runs nested
    await conn.close()  # its counters are published when the backend exits
    await meter.wait_for_clients_gone()
    result = await meter.result(messages=10)

    assert result["row_versions"]["item"] == {"ins": 10, "upd": 10, "hot_upd": 10, "del": 5, "total": 25}
    assert result["row_versions_per_message"] == {"total": 2.6, "by_table": {"child": 0.1, "item": 2.5}}
    assert result["hot_update_percent"] == {"item": 100.0}
    assert result["wal_bytes_per_message"] > 0
    queries = [s["query"] for s in result["top_statements"]]
    assert any(q.startswith("UPDATE item SET state") for q in queries)
    assert not any("pg_stat" in q for q in queries)  # the meter's own queries are left out
    assert result["statements_per_message"] == pytest.approx(0.4)  # 4 statements for 10 "messages"
    assert result["nested_statements_per_message"] >= 0.1  # the foreign-key checks (insert and delete)
    assert any(s["nested"] and "FOR KEY SHARE" in s["query"] for s in result["top_statements"])


async def test_cpu_meter_attributes_a_busy_process_to_its_own_group() -> None:
    busy = subprocess.Popen([sys.executable, "-c", BURN.format(seconds=0.4) + "time.sleep(60)"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        meter = CpuMeter({"gateway": lambda: tree_cpu_seconds(busy.pid),
                          "simulator": lambda: tree_cpu_seconds(idle.pid)},
                         waits={"gateway": lambda: run_delay_seconds(busy.pid)})
        meter.start()
        deadline = time.monotonic() + 30
        while tree_cpu_seconds(busy.pid) < 0.4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        meter.stop()
        result = meter.result(messages=1000)  # per 1,000 messages = the CPU in ms
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
    cpu = result["cpu_ms_per_1k"]
    assert cpu["gateway"] >= 300
    assert cpu["simulator"] < 100
    assert cpu["postgres"] is None and cpu["activemq"] is None  # no process given: not measured, not 0
    assert set(cpu) == {"gateway", "postgres", "activemq", "simulator", "loadgen"}
    assert set(result["cpu_wait_percent"]) == {"gateway"} and result["cpu_wait_percent"]["gateway"] >= 0


def test_run_delay_is_the_time_a_process_waited_for_a_cpu() -> None:
    """Two processes burning on one CPU for a second each wait about half of it; one asleep does not."""
    cpu = min(os.sched_getaffinity(0))
    burn = ("import os, time\n"
            f"os.sched_setaffinity(0, {{{cpu}}})\n"
            "end = time.monotonic() + 1.0\n"
            "while time.monotonic() < end:\n    pass\n"
            "time.sleep(60)")
    burners = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(2.5)  # both have burnt their second of wall time (and started: ~0.1 s)
        waited = [run_delay_seconds(p.pid) for p in burners]
        asleep = run_delay_seconds(idle.pid)
    finally:
        for p in [*burners, idle]:
            p.kill()
            p.wait()
    assert all(w is not None for w in waited) and asleep is not None
    assert sum(w for w in waited if w is not None) >= 0.5, waited
    assert asleep < 0.2
    assert run_delay_seconds(idle.pid) is None  # gone: nothing to read


def test_cpu_of_children_that_already_exited_is_still_counted() -> None:
    # PostgreSQL's postmaster reaps every backend that disconnects: their CPU must not vanish with them.
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time\n"
                               f"subprocess.run([sys.executable, '-c', {BURN.format(seconds=0.3)!r}])\n"
                               "print('done', flush=True)\ntime.sleep(60)\n"], stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"done"
        assert tree_cpu_seconds(parent.pid) >= 0.3
    finally:
        parent.kill()
        parent.wait()


async def test_killed_postmaster_restarts_with_synchronously_committed_rows() -> None:
    pg = PgCluster()
    await pg.start()
    try:
        conn = await _connect(pg)
        await conn.execute("CREATE TABLE kept (id int)")
        await conn.execute("INSERT INTO kept SELECT generate_series(1, 100)")
        await conn.close()
        what = await pg.kill_postmaster()
        assert "killed (-9)" in what and not pg.running
        await pg.start()  # crash recovery, past the dead postmaster's lock files
        conn = await _connect(pg)
        assert await conn.fetchval("SELECT count(*) FROM kept") == 100
        await conn.close()
    finally:
        await asyncio.to_thread(pg.stop_sync)
    assert not await asyncio.to_thread(pg.dir.exists)  # the directory goes with the cluster


def test_e2e_scenario_names_and_targets() -> None:
    assert e2e_name("smpp", 1000) == "e2e-smpp"
    assert e2e_name("smpp", 1) == "e2e-smpp-single"
    assert e2e_name("smpp", 50) == "e2e-smpp-per50"
    targets = check_targets("e2e-smpp", {"cpu_ms_per_1k": {"gateway": 700.0, "postgres": 120.0},
                                         "row_versions_per_message": {"total": 11.0},
                                         "msg_per_s": 3100.0, "peak_rss_mb": 130.0})
    assert targets["gateway"] == {"target": "≤ 250", "measured": 700.0, "met": False}
    assert targets["postgres"]["met"] is True
    assert targets["row_versions"]["met"] is False
    assert targets["msg_per_s"] == {"target": "≥ 3000", "measured": 3100.0, "met": True}


def _fault_result(name: str, ok: bool, unstored: int = 0) -> dict[str, object]:
    return {"scenario": name, "ok": ok, "accepted": 500, "messages": 500, "accepted_but_not_stored": unstored,
            "not_final": unstored, "lost_reports": unstored, "statuses": {"delivered": 500 - unstored},
            "events": [], "postgres_settings": {"synchronous_commit": "off", "fsync": "off"}}


def test_a_known_fault_failure_is_reported_loudly_and_fails_only_the_full_run(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import faults
    from bench.faults import summary

    assert faults.KNOWN_FAILURES == {}  # postgres-kill passes since every connection commits synchronously
    monkeypatch.setitem(faults.KNOWN_FAILURES, "postgres-kill", "planted for this test")
    known = [_fault_result("postgres-kill", ok=False, unstored=2), _fault_result("database", ok=True)]
    assert summary(known, lenient=True) == 0  # CI (--short) goes on
    assert "*** FAILED postgres-kill: 2 message(s) answered 200 are not in the database" in capsys.readouterr().out
    assert summary(known, lenient=False) == 1  # make faults does not
    assert summary([_fault_result("database", ok=False, unstored=1)], lenient=True) == 1  # unknown: always fatal
    capsys.readouterr()
    summary([_fault_result("postgres-kill", ok=True)], lenient=True)
    assert "XPASS postgres-kill" in capsys.readouterr().out
