"""What the gateway's INFO lines cost per message, in process.

    python -m bench.log_cost [--messages N] [--rounds R] [--format json|console]

At the default `SMSGW_LOG_LEVEL=INFO` a message sent and delivered makes three lines: "message accepted"
(the API), "submitted" (the dispatcher) and "status" (the receipt). This writes those three, with the
fields the gateway gives them, through `app.logs.setup_logging` (its filters and formatter, three
secrets to redact) to a file, from an event loop (uvloop, as `smsgw serve`) that turns after every
`--per-turn` messages, and prints the process CPU per message, less the loop's turns alone: the median
of R rounds. The benchmarks run the gateway at WARNING (`BENCH_LOG_LEVEL`), so their figures leave this
out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time

import uvloop

from app.logs import request_id_var, setup_logging


async def _turns(messages: int, per_turn: int) -> float:
    started = time.process_time()
    for i in range(messages):
        if i % per_turn == 0:
            await asyncio.sleep(0)
    return time.process_time() - started


async def _round(messages: int, per_turn: int) -> float:
    api, dispatch, receipts = (logging.getLogger(n) for n in ("smsgw.api", "smsgw.dispatch", "smsgw.receipts"))
    started = time.process_time()
    for i in range(messages):
        if i % per_turn == 0:
            await asyncio.sleep(0)  # the loop turns: the lines of the turn before are written
        sid, upstream = f"SM{i:032x}", f"{i:010x}"
        api.info("message accepted", extra={"message_sid": sid, "to": "+15550001234", "channel": "smpp",
                                            "segments": 1, "status": "queued"})
        dispatch.info("submitted", extra={"message_sid": sid, "provider": "smsc-main", "upstream_id": upstream,
                                          "attempt": 1})
        receipts.info("status", extra={"message_sid": sid, "status": "delivered", "reported": "delivered",
                                       "provider": "smsc-main", "upstream_id": upstream,
                                       "source": "smpp:smsc-main"})
    await asyncio.sleep(0)
    return (time.process_time() - started - await _turns(messages, per_turn)) / messages


async def _rounds(args: argparse.Namespace) -> list[float]:
    return [await _round(args.messages, args.per_turn) for _ in range(args.rounds)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--format", choices=("json", "console"), default="json")
    ap.add_argument("--per-turn", type=int, default=1, metavar="M",
                    help="messages logged between two turns of the loop (default 1: three lines a turn)")
    args = ap.parse_args(argv)
    out = sys.stdout
    with tempfile.TemporaryFile("w") as log_file:
        sys.stderr = log_file  # setup_logging's handler writes to the stderr of the moment
        setup_logging(args.format, "INFO", ["k" * 32, "smpp-password", "another-secret-token"])
        request_id_var.set("0123456789abcdef")
        runs = uvloop.run(_rounds(args))
        logging.getLogger().handlers[0].flush()
        sys.stderr = sys.__stderr__
    shown = ", ".join(f"{r * 1e6:.1f}" for r in runs)
    out.write(f"{statistics.median(runs) * 1e6:.1f} µs CPU per message for its three INFO lines "
              f"({args.format}, {args.per_turn} message(s) a turn; median of {args.rounds}: {shown})\n")


if __name__ == "__main__":
    main()
