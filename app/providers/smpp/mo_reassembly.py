"""MO reassembly: the parts of a concatenated inbound message (UDH or SAR) held until the last one, then joined.

Each part has been acknowledged when it arrives (the SMSC will not send it again), so the parts live
here, in memory, by sender and concatenation reference, for `ttl` seconds; a message whose last part
never comes is forgotten then. Parts are joined in sequence order, whatever order they came in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from app.providers.smpp.pdu import ConcatInfo

MO_PARTS_TTL = 300.0  # seconds a part waits for the rest of its message


class MoReassembly:
    """The parts of concatenated MO messages seen so far, by (sender, reference)."""

    def __init__(self, ttl: float = MO_PARTS_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._parts: dict[tuple[str, int], tuple[float, dict[int, str]]] = {}

    def add(self, source: str, info: ConcatInfo | None, text: str) -> str | None:
        """The whole text once every part of `info.total` is in (at once for a message in one part);
        None while parts are missing: this one is held."""
        if info is None or info.total <= 1:
            return text
        now = self._clock()
        self._parts = {k: v for k, v in self._parts.items() if now - v[0] < self.ttl}
        key = (source, info.reference)
        _, parts = self._parts.setdefault(key, (now, {}))
        parts[info.sequence] = text
        if len(parts) < info.total:
            return None
        del self._parts[key]
        return "".join(parts[i] for i in sorted(parts))

    def __len__(self) -> int:
        """Messages waiting for parts."""
        return len(self._parts)
