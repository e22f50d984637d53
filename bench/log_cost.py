"""What the gateway's INFO lines cost per message, in process.

    python -m bench.log_cost [--messages N] [--rounds R] [--format json|console]

At the default `SMSGW_LOG_LEVEL=INFO` a message sent and delivered makes three lines: "message accepted"
(the API), "submitted" (the dispatcher) and "status" (the receipt). This writes those three, with the
fields the gateway gives them, through `app.logs.setup_logging` (its filters and formatter, three
secrets to redact) to /dev/null, and prints the process CPU per message: the median of R rounds.
The benchmarks run the gateway at WARNING (`BENCH_LOG_LEVEL`), so their figures leave this out.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time

from app.logs import request_id_var, setup_logging


def _round(messages: int) -> float:
    api, dispatch, receipts = (logging.getLogger(n) for n in ("smsgw.api", "smsgw.dispatch", "smsgw.receipts"))
    started = time.process_time()
    for i in range(messages):
        sid, upstream = f"SM{i:032x}", f"{i:010x}"
        api.info("message accepted", extra={"message_sid": sid, "to": "+15550001234", "channel": "smpp",
                                            "segments": 1, "status": "queued"})
        dispatch.info("submitted", extra={"message_sid": sid, "provider": "smsc-main", "upstream_id": upstream,
                                          "attempt": 1})
        receipts.info("status", extra={"message_sid": sid, "status": "delivered", "reported": "delivered",
                                       "provider": "smsc-main", "upstream_id": upstream,
                                       "source": "smpp:smsc-main"})
    return (time.process_time() - started) / messages


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--format", choices=("json", "console"), default="json")
    args = ap.parse_args(argv)
    out = sys.stdout
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull  # setup_logging's handler writes to the stderr of the moment
        setup_logging(args.format, "INFO", ["k" * 32, "smpp-password", "another-secret-token"])
        request_id_var.set("0123456789abcdef")
        runs = [_round(args.messages) for _ in range(args.rounds)]
        sys.stderr = sys.__stderr__
    shown = ", ".join(f"{r * 1e6:.1f}" for r in runs)
    out.write(f"{statistics.median(runs) * 1e6:.1f} µs CPU per message for its three INFO lines "
              f"({args.format}; median of {args.rounds}: {shown})\n")


if __name__ == "__main__":
    main()
