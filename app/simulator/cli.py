"""`smsgw simulate-smsc` / `python -m app.simulator`: run the SMSC simulator until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from app.simulator.control import parse_weights
from app.simulator.models import DEFAULT_DEST_RULES, DEFAULT_REJECT_DEST_RULES, SimulatorConfig
from app.simulator.receipts import ID_FORMATS, RECEIPT_ID_FORMATS
from app.simulator.server import SmscSimulator


def _pairs(values: list[str] | None, convert: Callable[[str], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        out[key] = convert(value)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    a("--port", type=int, default=2775, help="SMPP port (0 = ephemeral; default 2775)")
    a("--system-id", default="smppclient1", help="accepted system_id (default smppclient1)")
    a("--password", default="password", help="its password (default password)")
    a("--account", action="append", metavar="SYSTEM_ID:PASSWORD", help="additional account (repeatable)")
    a("--control-port", type=int, default=0, help="line-based control port on the same host (0 = off)")
    a("--id-format", choices=ID_FORMATS, default="hex", help="message id in submit_sm_resp")
    a("--receipt-id-format", choices=RECEIPT_ID_FORMATS, default="same", help="message id base in receipts")
    a("--id-start", type=int, default=None, help="first numeric message id (default: time-based)")
    a("--receipt-delay", type=float, default=0.05, help="seconds until the receipt (default 0.05)")
    a("--receipt-before-response", action="store_true", help="send receipts before submit_sm_resp")
    a("--outcomes", default="DELIVRD=1", help="receipt stat weights, e.g. DELIVRD=0.9,UNDELIV=0.1")
    a("--dest-rule", action="append", metavar="SUFFIX=STAT",
      help="force a receipt stat for destinations ending in SUFFIX (repeatable)")
    a("--reject-dest", action="append", metavar="SUFFIX=STATUS",
      help="answer submit_sm to destinations ending in SUFFIX with STATUS (e.g. 9999=0x0B; repeatable)")
    a("--no-default-rules", action="store_true",
      help="drop the default destination rules: suffix 0001 UNDELIV, 0002 EXPIRED, 0003 REJECTD, 0004 DELETED, "
      "0005 UNKNOWN; 9999 rejected with ESME_RINVDSTADR")
    a("--duplicate-receipts", action="store_true", help="send every receipt twice")
    a("--vendor-tlvs", action="store_true", help="add vendor TLVs 0x2000-0x2004 to receipts")
    a("--long-message-single-id", action="store_true", help="one id and one receipt per concatenated message")
    a("--multiple-receivers", action="store_true",
      help="accept several receiver/transceiver binds per system_id (default: one, as seed 002's SMSC)")
    a("--intermediate-notifications", action="store_true",
      help="send an intermediate notification (esm_class 0x20, stat ENROUTE) before each receipt")
    a("--receipts-as-data-sm", action="store_true", help="send receipts as data_sm instead of deliver_sm")
    a("--drop-receipts", action="store_true", help="decide receipts (query_sm answers them) but never send them")
    a("--throttle-rate", type=float, default=0.0, help="submit_sm/s per session before ESME_RTHROTTLED (0 = off)")
    a("--queue-full-every", type=int, default=0, help="answer every Nth submit_sm with ESME_RMSGQFUL")
    a("--reject-rate", type=float, default=0.0, help="fraction of submit_sm answered ESME_RSUBMITFAIL")
    a("--drop-after", type=int, default=0, help="close the connection at the Nth submit_sm (unanswered)")
    a("--drop-repeat", action="store_true", help="... at every Nth, not only once")
    a("--response-delay", type=float, default=0.0, help="seconds before each submit_sm_resp")
    a("--no-response-every", type=int, default=0, help="never answer every Nth submit_sm")
    a("--record-limit", type=int, default=100_000, help="received submit_sm kept for inspection")
    a("--no-track-duplicates", action="store_true", help="do not count submits per (destination, text)")
    a("--seed", type=int, default=None, help="random seed for outcomes / reject rate")
    a("--log-level", default="INFO", help="logging level (default INFO)")
    a("--no-uvloop", action="store_true", help="use the stdlib event loop even if uvloop is installed")


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    credentials = {args.system_id: args.password}
    for account in args.account or []:
        system_id, _, password = account.partition(":")
        credentials[system_id] = password
    dest_rules = {} if args.no_default_rules else dict(DEFAULT_DEST_RULES)
    dest_rules.update(_pairs(args.dest_rule, str.upper))
    reject_rules = {} if args.no_default_rules else dict(DEFAULT_REJECT_DEST_RULES)
    reject_rules.update(_pairs(args.reject_dest, lambda v: int(v, 0)))
    return SimulatorConfig(
        host=args.host, port=args.port, credentials=credentials,
        control_port=args.control_port or None, id_format=args.id_format,
        receipt_id_format=args.receipt_id_format, id_start=args.id_start, receipt_delay=args.receipt_delay,
        receipt_before_response=args.receipt_before_response, outcomes=parse_weights(args.outcomes),
        dest_rules=dest_rules, reject_dest_rules=reject_rules, duplicate_receipts=args.duplicate_receipts,
        vendor_tlvs=args.vendor_tlvs, long_message_single_id=args.long_message_single_id,
        single_receiver=not args.multiple_receivers,
        intermediate_notifications=args.intermediate_notifications, receipts_as_data_sm=args.receipts_as_data_sm,
        drop_receipts=args.drop_receipts,
        throttle_rate=args.throttle_rate, queue_full_every=args.queue_full_every, reject_rate=args.reject_rate,
        drop_after=args.drop_after, drop_repeat=args.drop_repeat, response_delay=args.response_delay,
        no_response_every=args.no_response_every, record_limit=args.record_limit,
        track_duplicates=not args.no_track_duplicates, seed=args.seed,
    )


async def serve(config: SimulatorConfig) -> None:
    sim = SmscSimulator(config)
    await sim.start()
    control = f" control {config.host}:{sim.control_port}" if sim.control_port else ""
    print(f"SMSC simulator listening on {config.host}:{sim.port}{control}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        logging.getLogger("app.simulator").info("shutting down: %s", sim.stats.to_dict())
        await sim.stop(unbind=True)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=str(args.log_level).upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(args)
        SmscSimulator(config)  # validate before starting the loop
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"simulate-smsc: {exc}", file=sys.stderr)
        return 2
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if not args.no_uvloop:
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
        except ImportError:
            pass
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(config))
    except OSError as exc:
        print(f"simulate-smsc: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.simulator", description="SMPP 3.4 SMSC simulator")
    add_arguments(parser)
    return run(parser.parse_args(argv))
