"""Routing of simulator-originated deliver_sm (receipts, MO) to bound receivers.

Round-robin over the sessions bound as receiver/transceiver for the item's system_id (None: any);
with none bound the item waits in `pending` until one binds. Items not acknowledged before a
disconnect, or answered with an error deliver_sm_resp / generic_nack, are delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING

from app.simulator.models import SimulatorConfig, SimulatorStats
from app.simulator.receipts import Outbound

if TYPE_CHECKING:
    from app.simulator.session import SmppSession

log = logging.getLogger("app.simulator")


class DeliverRouter:
    def __init__(self, config: SimulatorConfig, stats: SimulatorStats) -> None:
        self.config = config
        self.stats = stats
        self.receivers: dict[str, list[SmppSession]] = {}
        self.pending: dict[str | None, deque[Outbound]] = {}  # undeliverable deliver_sm by system_id
        self._rr: dict[str | None, int] = {}

    def pending_count(self) -> int:
        return sum(len(q) for q in self.pending.values())

    def session_bound(self, session: SmppSession) -> None:
        if session.can_receive and session.system_id is not None:
            self.receivers.setdefault(session.system_id, []).append(session)

    def session_unbound(self, session: SmppSession) -> None:
        if session.system_id is not None:
            receivers = self.receivers.get(session.system_id, [])
            if session in receivers:
                receivers.remove(session)

    def session_closed(self, session: SmppSession) -> None:
        """Re-route the deliver_sm the closed session never acknowledged."""
        self.session_unbound(session)
        if session.unacked:
            items = [session.unacked[seq] for seq in sorted(session.unacked)]
            session.unacked.clear()
            self.dispatch(items, exclude=session)

    def _pick(self, system_id: str | None, exclude: SmppSession | None) -> SmppSession | None:
        if system_id is None:
            candidates = [s for group in self.receivers.values() for s in group if s is not exclude and s.is_open]
        else:
            candidates = [s for s in self.receivers.get(system_id, ()) if s is not exclude and s.is_open]
        if not candidates:
            return None
        index = self._rr.get(system_id, 0)
        self._rr[system_id] = index + 1
        return candidates[index % len(candidates)]

    def dispatch(self, items: list[Outbound], exclude: SmppSession | None = None) -> None:
        by_session: dict[SmppSession, list[Outbound]] = {}
        for item in items:
            target = self._pick(item.system_id, exclude)
            if target is None:
                self.pending.setdefault(item.system_id, deque()).append(item)
            else:
                by_session.setdefault(target, []).append(item)
        for target, batch in by_session.items():
            target.send_deliver(batch)

    def flush_pending(self, session: SmppSession) -> None:
        """A receiver just bound: hand it everything queued for its system_id (and for anyone)."""
        items: list[Outbound] = []
        for key in (session.system_id, None):
            queue = self.pending.pop(key, None)
            if queue:
                items.extend(queue)
        if items:
            log.info("%s: delivering %d queued deliver_sm", session.peer, len(items))
            session.send_deliver(items)

    def deliver_failed(self, item: Outbound, status: int) -> None:
        self.stats.deliver_sm_errors += 1
        if item.attempts >= self.config.deliver_max_attempts:
            self.stats.deliver_sm_failed += 1
            log.warning("giving up on %s deliver_sm %s after %d attempts (last status 0x%08X)", item.kind,
                        item.message_id, item.attempts, status)
            return
        asyncio.get_running_loop().call_later(self.config.deliver_retry_delay, self.dispatch, [item])
