"""Kept receipts: reports for an upstream id nobody had yet, and the race they run with submit responses.

A receipt can overtake the submit_sm_resp that gives its id (the SMSC answers, then reports, and our
writer has not committed the answer yet). Such a report is *kept* (table `kept_receipt`, with its
vendor TLVs) and applied once its part exists. The two transactions involved, the one keeping the
report and the one recording the submit response, may each miss the other's rows: neither has
committed when the other reads. So each side checks again in a transaction of its own after it has
committed, and whichever commits second finds the first's rows:

- the receipt side: `recheck_kept(ids)` with the ids of the rows it just kept (services/sink.py);
- the submit side: `recheck_submitted(accepted)` with the upstream ids it just recorded
  (services/dispatching.py);
- the backstop, `sweep()`, every 0.5 s while sending, for a check that never ran (the process stopped
  between a commit and its check, or the check failed).

Both checks lock the kept rows (waiting, not skipping), so a check running alongside the other side's
waits for it: the report is applied by one of them, never both or neither. The sweep skips locked rows
(a check is applying them right now).

A kept report only applies to a part submitted within OVERTAKE_SECONDS of its arrival: an older part
would have matched it at once, and a part sent much later under a reused id is another message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import kept_store
from app.db.tables import KeptReceipt, utcnow
from app.domain.ids import normalise_upstream_id
from app.domain.status import ReportCounts
from app.services import receipts

OVERTAKE_SECONDS = receipts.OVERTAKE_SECONDS
RECENT = receipts.RECENT


# -- the checks after a commit (each its own transaction) -------------------------------------------
async def recheck_kept(sessions: async_sessionmaker[AsyncSession], ids: Sequence[int],
                       settings: Settings) -> ReportCounts | None:
    """The receipt side's check: apply these just-kept reports if their parts committed meanwhile.
    Returns the status counts when any was applied (committed), None when none was."""
    if not ids:
        return None
    counts: ReportCounts = ReportCounts()
    async with sessions() as s:
        rows = await kept_store.lock_by_ids(s, ids)
        if not rows or not await _apply_kept(s, rows, settings, counts):
            return None
        await s.commit()
    return counts


async def recheck_submitted(sessions: async_sessionmaker[AsyncSession],
                            accepted: Sequence[tuple[str, Sequence[str]]], settings: Settings) -> ReportCounts:
    """The submit side's check: apply reports kept for these (provider, upstream ids) just recorded."""
    counts: ReportCounts = ReportCounts()
    formats = receipts.id_formats(settings)
    since = utcnow() - timedelta(seconds=OVERTAKE_SECONDS)
    wanted_by = [(provider, {c for u in upstream_ids for c in _kept_ids(u, formats.get(provider, "same"))})
                 for provider, upstream_ids in accepted]
    # Almost always nothing is kept: then one unlocked look answers, without a transaction. (A report
    # kept but not committed yet is invisible to the locked SELECT below too.)
    if not await kept_store.any_kept_for(sessions, {u for _, wanted in wanted_by for u in wanted}):
        return counts
    async with sessions() as s:
        for provider, wanted in wanted_by:
            if not wanted:
                continue
            rows = await kept_store.lock_for_upstream_ids(s, provider, wanted, since)
            if rows:
                await _apply_kept(s, rows, settings, counts)
        if s.in_transaction():
            await s.commit()
    return counts


async def sweep(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                limit: int = 1000) -> ReportCounts | None:
    """The backstop: apply kept reports whose id has appeared since. Recent ones (two minutes) are tried
    in every form their id may take, older ones (up to OVERTAKE_SECONDS) only if a part has their exact
    id, so the sweep stays cheap when many reports for unknown ids pile up. Returns the status counts
    when any was applied (committed)."""
    now = utcnow()
    counts: ReportCounts = ReportCounts()
    async with sessions() as s:
        rows = await kept_store.lock_recent(s, now - RECENT, limit)
        rows += await kept_store.lock_older_known(s, now - RECENT, now - timedelta(seconds=OVERTAKE_SECONDS), limit)
        if not rows:
            return None
        known = await kept_store.known_upstream_ids(s, {c for r in rows for c in receipts.wanted_ids(r.upstream_id)})
        ready = [r for r in rows if known.intersection(receipts.wanted_ids(r.upstream_id))]
        if not ready or not await _apply_kept(s, ready, settings, counts):
            return None
        await s.commit()
    return counts


async def purge_expired(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Forget kept reports past `pending_receipt_ttl_seconds`."""
    async with sessions() as s:
        n = await kept_store.delete_expired(s, utcnow())
        await s.commit()
    return n


# -- applying ---------------------------------------------------------------------------------------
async def _apply_kept(session: AsyncSession, rows: Sequence[KeptReceipt], settings: Settings,
                      counts: ReportCounts | None = None) -> int:
    """Apply kept reports that now match a part and remove those rows; the others stay kept as they were.
    Returns how many were applied."""
    reports = [kept_store.report_of(r) for r in rows]
    _finals, unmatched = await receipts.apply_batch(session, reports, settings, counts, [r.created_at for r in rows])
    left = {id(r) for r in unmatched}
    done = [row.id for row, r in zip(rows, reports, strict=True) if id(r) not in left]
    if done:
        await kept_store.delete_kept(session, done)
    return len(done)


def _kept_ids(submit_id: str, id_format: str) -> list[str]:
    """How a report for this submit id is kept (its id as the receipt writes it, normalised)."""
    value = normalise_upstream_id(submit_id)
    if id_format == "hex" and value.isdigit() and len(value) <= 30:
        return [format(int(value), "x")]
    if id_format == "decimal" and value and set(value) <= set("0123456789abcdef") and len(value) <= 24:
        return [str(int(value, 16))]
    if id_format == "auto":
        return receipts.wanted_ids(submit_id)
    return [value]
