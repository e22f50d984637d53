"""`smsgw` as users run it: real processes on loopback ports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def serve(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`smsgw serve`, its stderr in a file (a pipe nobody reads could fill up and stall it)."""
    with open(log, "wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)


async def wait_live(url: str, log: Path, seconds: float = 30.0, path: str = "/health/live") -> None:
    """Until `url` answers 200 on `path` (`/health/ready` to wait for its binds and broker too)."""
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(int(seconds * 10)):
            try:
                if (await client.get(f"{url}{path}")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not up: " + (await asyncio.to_thread(log.read_text))[-2000:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def smsgw(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """`smsgw <args>` in a process of its own: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "app.cli", *args, cwd=ROOT, env=env,
                                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
