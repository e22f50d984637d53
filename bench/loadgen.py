"""The HTTP load of the benchmarks: closed loop (the ceiling), open loop (latency at a fixed offered rate,
no coordinated omission), and the latency figures drawn from their samples."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from bench.harness import API_KEY, HttpConn, percentile


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
