"""The ESME's own CPU per deliver_sm receipt, in process: no socket, no database.

    python -m bench.deliver_cost [--receipts N] [--per-read K ...] [--rounds R]

N receipts (deliver_sm, esm_class 0x04, the text form the simulator writes) reach one bind of an
`SmppProvider` K to a read, through `Bind._read_loop`: framing, decoding, the receipt's parse, the
hand-over to a sink that stores nothing and answers at once, and the deliver_sm_resp queued for the
write. Printed: the process CPU (user + system) per receipt, the median of R rounds for each K. The
simulator's receipts come about 30 to a read in `bench.run e2e-smpp-single` (one read for what the
socket held), so K = 32 is the end-to-end case and K = 1 the worst.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import cast

import uvloop

from app.config import SmppProviderConfig
from app.providers.base import InboundSms, Receipt
from app.providers.smpp.pdu import CommandId, Pdu, encode_pdu
from app.providers.smpp.provider import SmppProvider


class _Sink:
    def __init__(self, total: int) -> None:
        self.stored = 0
        self.total = total
        self.done = asyncio.Event()

    async def receipts(self, receipts: Sequence[Receipt]) -> None:
        self.stored += len(receipts)
        await asyncio.sleep(0)  # a group commit answers on a later turn of the loop
        if self.stored >= self.total:
            self.done.set()

    async def inbound(self, message: InboundSms) -> None:
        raise AssertionError("no MO in this load")


class _Writer:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def is_closing(self) -> bool:
        return False


class _Reader:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.next = 0

    async def read(self, _limit: int) -> bytes:
        if self.next < len(self.chunks):
            self.next += 1
            await asyncio.sleep(0)  # each read is a turn of the loop of its own
            return self.chunks[self.next - 1]
        await asyncio.Event().wait()  # then the SMSC stays silent
        return b""


def _receipt(seq: int) -> bytes:
    text = (f"id:{seq:010x} sub:001 dlvrd:001 submit date:2612011200 done date:2612011201 stat:DELIVRD "
            f"err:000 text:")
    return encode_pdu(Pdu(CommandId.DELIVER_SM, 0, seq, {
        "source_addr": "4477000001", "destination_addr": "Acme", "esm_class": 0x04, "data_coding": 0,
        "short_message": text.encode()}))


async def _round(receipts: int, per_read: int) -> float:
    """CPU seconds per receipt for one round."""
    provider = SmppProvider(SmppProviderConfig(name="smsc", system_id="bench", password="bench"))
    sink = _Sink(receipts - receipts % per_read)
    provider.sink = sink
    bind = provider.binds[0]
    writer = _Writer()
    bind._writer = cast(asyncio.StreamWriter, writer)
    chunks = [b"".join(_receipt(i * per_read + j + 1) for j in range(per_read)) for i in range(receipts // per_read)]
    started = time.process_time()
    reading = asyncio.create_task(bind._read_loop(cast(asyncio.StreamReader, _Reader(chunks))))
    await sink.done.wait()
    for _ in range(5):  # the last answers are queued a turn or two after the sink returned
        await asyncio.sleep(0)
    spent = time.process_time() - started
    reading.cancel()
    answered = writer.written // 17  # a deliver_sm_resp with an empty message_id is 17 bytes
    if answered != sink.total:
        raise SystemExit(f"{answered} deliver_sm_resp written for {sink.total} receipts")
    return spent / sink.total


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--receipts", type=int, default=40_000)
    ap.add_argument("--per-read", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    uvloop.install()
    for k in args.per_read:
        runs: list[float] = [asyncio.run(_round(args.receipts, k)) for _ in range(args.rounds)]
        shown = ", ".join(f"{r * 1e6:.1f}" for r in runs)
        print(f"{k:>3} a read: {statistics.median(runs) * 1e6:6.1f} µs CPU per receipt "
              f"(median of {args.rounds}: {shown})")


if __name__ == "__main__":
    main()
