"""`smsgw send` (chunks, progress line, summary) and `smsgw status [--watch]` against a running gateway:
`smsgw serve` in a subprocess on its own PostgreSQL database, the SMSC simulator as its upstream."""

from __future__ import annotations

import asyncio
import io
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from conftest import API_KEY, STOMP_URL
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support.processes import serve, stop, wait_live
from support.servers import free_port

from app import cli
from app.db.tables import Message
from app.simulator import SimulatorConfig, SmscSimulator

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Gateway:
    url: str
    sim: SmscSimulator


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
async def gateway(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    sim = SmscSimulator(SimulatorConfig(port=0, receipt_delay=0.3))
    await sim.start()
    port = free_port()
    env = {
        **os.environ, "SMSGW_DATABASE_URL": module_db_url, "SMSGW_BROKER_URL": STOMP_URL,
        "SMSGW_DELIVERY_REPORT_QUEUE": "cli-" + secrets.token_hex(4), "SMSGW_API_KEYS": API_KEY,
        "SMSGW_WEBHOOK_AUTH": "token:x", "SMSGW_LOG_LEVEL": "WARNING",
        "SMSGW_PROVIDERS": orjson.dumps([{"name": "smsc-main", "type": "smpp", "port": sim.port,
                                          "system_id": "smppclient1", "password": "password"}]).decode(),
        "SMSGW_ROUTES": orjson.dumps([{"channel": "smpp", "providers": ["smsc-main"]}]).decode(),
    }
    log = tmp_path_factory.mktemp("cli") / "gateway.log"
    proc = serve(port, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_live(url, log, 30.0, path="/health/ready")
        yield Gateway(url, sim)
    finally:
        stop(proc)
        await sim.stop()


async def smsgw(gw: Gateway, *args: str, stdin: bytes | None = None) -> Run:
    """`smsgw <args>` as a user runs it: a process of its own, stdout and stderr captured (not a TTY)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", *args, cwd=ROOT,
        env={**os.environ, "SMSGW_URL": gw.url, "SMSGW_API_KEY": API_KEY},
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


PROGRESS = re.compile(r"sent ([\d,]+)/([\d,]+) \((\d+)%\) [\d,]+ msg/s, ([\d,]+) refused")


async def test_bulk_send_from_a_file_in_chunks_prints_progress_and_a_summary(
        gateway: Gateway, tmp_path: Path, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    numbers = [f"+1415601{i:04d}" for i in range(2500)]
    (tmp_path / "to.txt").write_text("# campaign\n" + "\n".join(numbers) + "\n\n")
    run = await smsgw(gateway, "send", "--to-file", str(tmp_path / "to.txt"), "--chunk", "1000", "--body", "bulk")
    assert run.code == 0, run.err

    lines = run.err.splitlines()
    assert "\r" not in run.err  # not a terminal: plain lines
    progress = [PROGRESS.fullmatch(line) for line in lines[:-1]]
    assert all(progress), lines
    assert [(m[1], m[2], m[3], m[4]) for m in progress if m] == [
        ("1,000", "2,500", "40", "0"), ("2,000", "2,500", "80", "0"), ("2,500", "2,500", "100", "0")]
    assert re.fullmatch(r"done: 2,500 sent, 0 refused of 2,500 in [\d.]+s \([\d,]+ msg/s\)", lines[-1])

    rows = [line.split("\t") for line in run.out.splitlines()]
    assert [r[1] for r in rows] == numbers and {r[2] for r in rows} == {"queued"}
    sids = [r[0] for r in rows]
    assert len(set(sids)) == 2500 and all(s.startswith("SM") for s in sids)
    async with module_sessions() as s:
        stored = await s.scalar(select(func.count()).select_from(Message).where(Message.sid.in_(sids)))
    assert stored == 2500


async def test_a_refused_chunk_is_reported_and_the_exit_code_is_1(gateway: Gateway) -> None:
    run = await smsgw(gateway, "send", "--to", "+14156020001,+14156020002", "+14156020003", "not-a-number",
                      "+14156020005", "--chunk", "2", "--body", "x")
    assert run.code == 1
    lines = run.err.splitlines()
    assert re.fullmatch(r"chunk 2 \(recipients 3-4\) refused: 400 \w+: .+ \(recipient 4: not-a-number\)", lines[1])
    assert PROGRESS.fullmatch(lines[2]).groups() == ("2", "5", "80", "2")  # type: ignore[union-attr]
    assert PROGRESS.fullmatch(lines[3]).groups() == ("3", "5", "100", "2")  # type: ignore[union-attr]
    assert lines[-1].startswith("done: 3 sent, 2 refused of 5 in ")
    assert [line.split("\t")[1] for line in run.out.splitlines()] == ["+14156020001", "+14156020002", "+14156020005"]


async def test_an_unreachable_gateway_stops_the_run(gateway: Gateway) -> None:
    dead = Gateway(f"http://127.0.0.1:{free_port()}", gateway.sim)
    run = await smsgw(dead, "send", "--to", "+14156030001", "+14156030002", "--body", "x", "--chunk", "1")
    assert run.code == 1
    assert "chunk 1 (recipients 1-1) not sent: ConnectError" in run.err
    assert run.err.splitlines()[-1].startswith("stopped: 0 sent, 0 refused, 2 not sent of 2 in ")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_on_a_terminal_the_progress_line_is_rewritten_in_place(gateway: Gateway,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    argv = ["send", "--url", gateway.url, "--api-key", API_KEY, "--chunk", "2", "--body", "tty",
            "--to", *[f"+1415604{i:04d}" for i in range(5)]]
    code = await asyncio.to_thread(cli.main, argv)
    assert code == 0
    text = err.getvalue()
    updates, summary = text.rsplit("\n", 2)[0], text.rsplit("\n", 2)[1]
    assert "\n" not in updates  # one line, rewritten
    frames = [f.removesuffix("\x1b[K") for f in updates.split("\r")[1:]]
    assert [PROGRESS.fullmatch(f)[1] for f in frames] == ["2", "4", "5"]  # type: ignore[index]
    assert summary.startswith("done: 5 sent, 0 refused of 5 in ")
    assert len(out.getvalue().splitlines()) == 5


async def test_status_prints_the_message(gateway: Gateway) -> None:
    sent = await smsgw(gateway, "send", "--to", "+14156050000", "--body", "one")
    assert sent.code == 0
    sid = orjson.loads(sent.out)["MessageSid"]
    run = await smsgw(gateway, "status", sid)
    assert run.code == 0
    msg = orjson.loads(run.out)
    assert msg["MessageSid"] == sid and msg["To"] == "+14156050000" and msg["Body"] == "one"

    missing = await smsgw(gateway, "status", "SM" + "0" * 32)
    assert missing.code == 1 and orjson.loads(missing.out)["error"]["code"] == "not_found"


async def test_status_watch_prints_each_change_until_delivered(gateway: Gateway) -> None:
    sid = orjson.loads((await smsgw(gateway, "send", "--to", "+14156060000", "--body", "w")).out)["MessageSid"]
    run = await smsgw(gateway, "status", sid, "--watch", "--interval", "0.1", "--timeout", "60")
    assert run.code == 0, run.err
    changes = [line.split()[1] for line in run.out.splitlines()]
    assert changes[0] == "queued" and changes[-1] == "delivered" and "sent" in changes
    assert len(changes) == len(set(changes))  # each change once
    assert "DELIVRD" in run.out.splitlines()[-1]


async def test_status_watch_exits_1_when_the_message_is_not_delivered(gateway: Gateway) -> None:
    # The simulator's rule: a destination ending in 0001 gets an UNDELIV receipt.
    sid = orjson.loads((await smsgw(gateway, "send", "--to", "+14156070001", "--body", "u")).out)["MessageSid"]
    run = await smsgw(gateway, "status", sid, "--watch", "--interval", "0.1", "--timeout", "60")
    assert run.code == 1, run.err
    last = run.out.splitlines()[-1].split()
    assert last[1] == "undelivered" and "UNDELIV" in last


async def test_status_watch_gives_up_after_its_timeout(gateway: Gateway) -> None:
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    sid = orjson.loads((await smsgw(gateway, "send", "--to", "+14156080000", "--body", "later",
                                    "--send-at", later)).out)
    assert sid["Status"] == "scheduled"
    run = await smsgw(gateway, "status", sid["MessageSid"], "--watch", "--interval", "0.1", "--timeout", "0.5")
    assert run.code == 1
    assert run.out.split()[1] == "scheduled"
    assert f"{sid['MessageSid']} still scheduled after 0.5s" in run.err


async def test_send_without_recipients_is_a_usage_error(gateway: Gateway) -> None:
    run = await smsgw(gateway, "send", "--body", "x")
    assert run.code == 2 and "no recipients" in run.err
