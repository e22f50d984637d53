"""The gateway's own CPU per POST /msg-client/send, in process: no uvicorn, no HTTP client, no dispatcher.

    python -m bench.send_cost [--requests N] [--concurrency C] [--recipients R] [--same-recipient] [--uvloop]
                              [--profile [N]]

`create_app` is driven through raw ASGI calls (what uvicorn hands it once it has parsed a request) on a
fresh database copied from the test template on the shared PostgreSQL (tests/conftest.py), from C
concurrent tasks after a warm-up. Printed: requests/s and the process CPU (user + system) per request
and per message. PostgreSQL's CPU is its own process's and is not counted; the driver's is.

`--recipients 1` (the default) is the contact-centre load; `--recipients 1000` gives the per-message
work, so that the difference is what a request costs on top of its messages (issue 15: ≤ 150 µs).
`--profile` adds a cProfile of the measured run (the N costliest functions by own time and by
cumulative time); profiling roughly doubles the figures, so read its shares, not its totals.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
from starlette.types import ASGIApp

from app.main import create_app
from tests.conftest import API_KEY, api_settings, create_database, drop_database  # the template database


def request_bodies(count: int, recipients: int, same: bool) -> list[bytes]:
    """`count` bodies, built before the clock starts. Each request goes to numbers of its own (a cache
    keyed by number would otherwise flatter the figure) unless `same`."""
    out = []
    for n in range(count):
        first = 0 if same else n * recipients
        numbers = [f"+9617{(first + i) % 10**7:07d}" for i in range(recipients)]
        out.append(orjson.dumps({"To": numbers[0] if recipients == 1 else numbers, "Body": "Hello from smsgw",
                                 "From": "Acme"}))
    return out


async def post(app: ASGIApp, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One request as uvicorn would hand it over; returns the status."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/msg-client/send", "raw_path": b"/msg-client/send",
             "query_string": b"", "root_path": "", "headers": headers, "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80), "state": {}}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client never disconnects
        return {"type": "http.disconnect"}

    status: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def measure(requests: int, concurrency: int, recipients: int, profile: int, same: bool) -> None:
    url = await create_database()
    try:
        app = create_app(api_settings(url), start_workers=False)
        warm_up = max(concurrency, requests // 10)
        bodies = iter(request_bodies(warm_up + requests, recipients, same))
        headers = [(b"host", b"testserver"), (b"content-type", b"application/json"),
                   (b"x-api-key", API_KEY.encode())]

        async def worker(n: int) -> None:
            for _ in range(n):
                body = next(bodies)
                status = await post(app, body, [*headers, (b"content-length", str(len(body)).encode())])
                if status != 200:
                    raise SystemExit(f"POST /msg-client/send answered {status}")

        async def run(total: int) -> None:
            per, extra = divmod(total, concurrency)
            await asyncio.gather(*(worker(per + (i < extra)) for i in range(concurrency)))

        async with app.router.lifespan_context(app):
            await run(warm_up)  # pool connections, prepared statements, caches
            prof = cProfile.Profile(time.process_time) if profile else None  # CPU, not waits
            t0, c0 = time.perf_counter(), time.process_time()
            if prof:
                prof.enable()
            await run(requests)
            if prof:
                prof.disable()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        batcher = app.state.ctx.accept_batcher
        print(f"{requests} requests x {recipients} recipient(s), {concurrency} concurrent: "
              f"{requests / wall:,.0f} req/s, gateway CPU {cpu / requests * 1e6:,.0f} µs/request, "
              f"{cpu / (requests * recipients) * 1e6:,.1f} µs/message "
              f"({batcher.commits} group commits, {batcher.rows} rows in all)"
              + (" [profiled]" if prof else ""))
        if prof:
            stats = pstats.Stats(prof)
            stats.sort_stats("tottime").print_stats(profile)
            stats.sort_stats("cumulative").print_stats(profile)
    finally:
        await drop_database(url)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--recipients", type=int, default=1, help="recipients per request (1 = the everyday load)")
    ap.add_argument("--same-recipient", action="store_true", help="every request to the same number(s)")
    ap.add_argument("--uvloop", action="store_true", help="run on uvloop, as `smsgw serve` does")
    ap.add_argument("--profile", type=int, nargs="?", const=40, default=int(os.environ.get("PROF", "0")) and 40,
                    metavar="N", help="cProfile the measured run and print its N costliest functions")
    args = ap.parse_args(argv)
    coro = measure(args.requests, args.concurrency, args.recipients, args.profile, args.same_recipient)
    if args.uvloop:
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)


if __name__ == "__main__":
    main()
