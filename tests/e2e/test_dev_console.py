"""What a person at the terminal sees from `make run` (issue #17.3, .5, .7): warnings and one `ready`
line at start, one `stopped` line and a clean exit on Ctrl-C, a taken port named before anything starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import stomp
from support.dev import ROOT, dev_env, running_dev
from support.servers import free_port


def after_ready(output: str) -> list[str]:
    lines = output.splitlines()
    ready = [i for i, line in enumerate(lines) if line.startswith("ready: ")]
    assert len(ready) == 1, output
    return lines[ready[0] + 1:]


def test_ctrl_c_on_make_run_prints_one_stopped_line_and_exits_cleanly(tmp_path: Path) -> None:
    with running_dev(tmp_path, make=True) as dev:
        # A consumer connected to the embedded broker: its connection is open when the loop stops.
        consumer = stomp.Connection([("127.0.0.1", dev.broker_port)])
        consumer.connect(wait=True)
        consumer.subscribe("/queue/delivery-report", 1)
        time.sleep(0.5)
        os.killpg(dev.proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        output = dev.output()
        code = dev.proc.returncode
    # make itself dies of the SIGINT it got too (130 in a shell), silently since smsgw exited 0.
    assert code in (0, 130, -signal.SIGINT), (code, output)
    assert after_ready(output) == ["stopped"], output
    for noise in ("Traceback", "KeyboardInterrupt", "CancelledError", "make:", "Exception in callback"):
        assert noise not in output, output


def test_sigterm_stops_smsgw_dev_with_exit_0(tmp_path: Path) -> None:
    with running_dev(tmp_path) as dev:
        dev.proc.send_signal(signal.SIGTERM)
        output = dev.output()
        assert dev.proc.returncode == 0, output
    assert after_ready(output) == ["stopped"], output


def test_console_at_start_is_one_ready_line_naming_url_key_broker_smsc_and_database(tmp_path: Path) -> None:
    with running_dev(tmp_path) as dev:
        time.sleep(0.5)
        os.killpg(dev.proc.pid, signal.SIGINT)
        output = dev.output()
    [ready] = [line for line in output.splitlines() if line.startswith("ready: ")]
    assert f"{dev.base_url}  API key: dev-key" in ready
    assert f"broker: stomp://127.0.0.1:{dev.broker_port} (embedded) /queue/delivery-report" in ready
    assert f"SMSC: smsc-main 127.0.0.1:{dev.smsc_port} (bundled simulator" in ready
    assert f"database: sqlite+aiosqlite:///{tmp_path}/dev.db" in ready
    assert "alembic" not in output and "color_message" not in output and "\x1b" not in output, output
    assert "uvicorn" not in output and "Press CTRL+C" not in output, output


def test_port_taken_is_named_before_anything_starts(tmp_path: Path) -> None:
    http, broker, smsc = free_port(), free_port(), free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", http))
        taken.listen()
        r = subprocess.run([sys.executable, "-m", "app.cli", "dev", "--smsc-port", str(smsc)], cwd=ROOT,
                           env=dev_env(tmp_path, http, broker), capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"127.0.0.1:{http} (the HTTP API) is already in use" in r.stderr
    assert "SMSGW_PORT=" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert not (tmp_path / "dev.db").exists()  # not even migrated: nothing started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_make_run_uses_almost_no_cpu(tmp_path: Path) -> None:
    """Idle pollers back off (issue #17.7): measured 4.9 % of a core before, 1.2 % after, over 30 s."""
    with running_dev(tmp_path) as dev:
        time.sleep(3)  # past the start-up work
        before, started = cpu_seconds(dev.proc.pid), time.monotonic()
        time.sleep(10)
        share = (cpu_seconds(dev.proc.pid) - before) / (time.monotonic() - started)
    assert share < 0.03, f"idle smsgw dev used {share:.1%} of a core"
