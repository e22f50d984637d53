"""Applying status reports (SMPP receipts, webhooks, status polls) to messages, many at a time.

One call handles a batch in a handful of round trips: one SELECT for the parts the reports may name,
one for their messages and sibling parts, then one statement per table for what changes.

Matching a report to a part (what Jasmin does with its expiring `queue-msgid` keys):
- The report's id is read as the provider's `receipt_id_format` says (`same`, `hex`, `decimal`,
  `auto`); a webhook (no provider known) is read as each candidate part's provider writes ids.
- Only parts submitted within the receipt window (`receipt_timeout_seconds`) are candidates, and of
  those the most recent message's parts that are not final yet: an SMSC that restarted its id counter
  gives new messages old ids, and their receipts belong to the new messages. Several parts of that
  message may share the id (one id and one receipt for a long message): the report applies to all.
- When every candidate is final the report is a duplicate or a late one: written to the most recent
  one's history with `applied = false`, never applied.
- A report for an id nobody has (yet) is kept (`kept_receipt`, with its vendor TLVs) and applied when
  a submit response brings that id: services/kept_receipts.py, which also closes the race of the two
  transactions.

Statuses only move forward; a report that changes nothing is still written to the history with
`applied = false`. A message's first final status writes its delivery report to the outbox, in this
same transaction: that is the only place reports are created, so there is one per message.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, SmppProviderConfig
from app.db import kept_store
from app.db.bulk import Built, any_of_param, holding_param, insert_rows, one_of, rows_holding, update_rows
from app.db.tables import Message, MessagePart, OutboxEvent, StatusEvent, utcnow
from app.domain.ids import receipt_id_candidates
from app.domain.messages import Receipt
from app.domain.status import FINAL, ReportCounts, Status
from app.services.outbox_rows import count_written
from app.services.receipt_rules import MessageState, PartState, decide
from app.services.status_change import Recipient

log = logging.getLogger("smsgw.receipts")

OVERTAKE_SECONDS = 600.0  # a kept report applies to a part submitted at most this long after it came
RECENT = timedelta(seconds=120)  # the race of a part committed just after its report was kept
_EPOCH = datetime.min.replace(tzinfo=UTC)
_FINAL_VALUES = frozenset(s.value for s in FINAL)


def id_formats(settings: Settings) -> dict[str, str]:
    return {p.name: p.receipt_id_format for p in settings.providers if isinstance(p, SmppProviderConfig)}


_SAME_FIRST = frozenset({"same", "auto"})  # the id formats whose first candidate is the id as written


def _first_ids(receipt: Receipt, formats: dict[str, str], wanted: list[str]) -> set[str]:
    """The ids `_match` looks at first for this report: by its provider's id format (by every format
    configured when the report does not say which provider it is from). `wanted` is `wanted_ids` of its
    id: its head is what `same` and `auto` look at first."""
    kinds = {formats.get(receipt.provider, "same")} if receipt.provider is not None else {*formats.values(), "same"}
    return {wanted[0] if kind in _SAME_FIRST else str(receipt_id_candidates(receipt.upstream_id, kind)[0])
            for kind in kinds}


def wanted_ids(upstream_id: str) -> list[str]:
    """Every stored id a report's id could stand for, in any format (the SELECT's superset)."""
    return [str(u) for u in receipt_id_candidates(upstream_id, "auto")]


@dataclass(slots=True)
class _Part:
    """A part as matching reads it (a plain row: no ORM identity map on this path): a message_part row,
    or a message of one part whose upstream id is on its own row (`id` None; see Message.upstream_id)."""

    id: int | None
    message_sid: str
    part_no: int
    provider: str
    upstream_id: str | None
    status: str
    submitted_at: datetime | None


_PART_COLUMNS = (MessagePart.id, MessagePart.message_sid, MessagePart.part_no, MessagePart.provider,
                 MessagePart.upstream_id, MessagePart.status, MessagePart.submitted_at)


async def _parts_where(session: AsyncSession, *criteria: Any) -> list[_Part]:
    rows = (await session.execute(select(*_PART_COLUMNS).where(*criteria))).all()
    return [_Part(*row) for row in rows]


async def _parts_holding(session: AsyncSession, column: Any, values: Collection[Any], *criteria: Any) -> list[_Part]:
    rows = (await session.execute(rows_holding(session, _PART_COLUMNS, column, values, *criteria))).all()
    return [_Part(*row) for row in rows]


def _submitted(part: _Part) -> datetime:
    return part.submitted_at if part.submitted_at is not None else _EPOCH


def _match(receipt: Receipt, wanted: list[str], by_id: dict[str, list[_Part]], formats: dict[str, str],
           kept_at: datetime | None = None) -> tuple[list[_Part], bool]:
    """(parts this report applies to, whether they are all final already: a duplicate or late one)."""
    near = [p for u in wanted for p in by_id.get(u, ()) if receipt.provider in (None, p.provider)]
    if not near:
        return [], False
    candidates: dict[str, list[str]] = {}  # by id format: one entry unless a webhook spans providers
    found: list[_Part] = []
    for first in (True, False):  # `auto` reads the same id first, the other base only if that finds nothing
        for part in near:
            fmt = formats.get(part.provider, "same")
            ids = candidates.get(fmt)
            if ids is None:  # `wanted` is already the `auto` list, its head the `same` id
                ids = candidates[fmt] = (wanted[:1] if fmt == "same" else wanted if fmt == "auto"
                                         else [str(u) for u in receipt_id_candidates(receipt.upstream_id, fmt)])
            if part.upstream_id in (ids[:1] if first else ids[1:]):
                found.append(part)
        if found:
            break
    if receipt.submitted_after is not None:
        found = [p for p in found if p.submitted_at is None or p.submitted_at >= receipt.submitted_after]
    if kept_at is not None:
        low, high = kept_at - RECENT, kept_at + timedelta(seconds=OVERTAKE_SECONDS)
        found = [p for p in found if p.submitted_at is None or low <= p.submitted_at <= high]
    if not found:
        return [], False
    live = [p for p in found if p.status not in _FINAL_VALUES]
    pool = live or found
    if len(pool) == 1:
        return pool, not live
    newest = max(pool, key=lambda p: (_submitted(p), p.id or 0))
    return [p for p in pool if p.message_sid == newest.message_sid], not live


# The receipt path's SELECTs, built once (bulk.Built): their values are the parameters `ids`, `window`, `sids`.
_WINDOW = bindparam("window", type_=MessagePart.submitted_at.type)
_PARTS_BY_UPSTREAM = Built(lambda pg: holding_param(
    pg, _PART_COLUMNS, MessagePart.upstream_id, "ids",
    or_(MessagePart.submitted_at.is_(None), MessagePart.submitted_at >= _WINDOW)))
# A message of one part holds its id itself (unless a part row was written for it since: TLVs).
# The window is applied in Python, not in the WHERE: given `sent_at >= …` as well, PostgreSQL's planner
# (its statistics lagging a table that grows by thousands of rows a second) ANDed ix_message_sent's
# range into a bitmap scan, which reads every message sent within the window, once per batch. The
# upstream id alone picks a few rows through ix_message_upstream.
_HELD_BY_MESSAGE = Built(lambda pg: holding_param(
    pg, (Message.sid, Message.provider, Message.upstream_id, Message.status, Message.sent_at),
    Message.upstream_id, "ids"))


async def _candidate_parts(session: AsyncSession, wanted: set[str],
                           settings: Settings) -> dict[str, list[_Part]]:
    window = utcnow() - timedelta(seconds=settings.receipt_timeout_seconds)
    ids = list(wanted)
    parts = [_Part(*row) for row in await _PARTS_BY_UPSTREAM.rows(session, {"ids": ids, "window": window})]
    with_rows = {p.message_sid for p in parts}
    parts += [_Part(None, row[0], 1, row[1] or "", row[2], row[3], row[4])
              for row in await _HELD_BY_MESSAGE.rows(session, {"ids": ids})
              if row[0] not in with_rows and row[4] is not None and row[4] >= window]
    by_id: dict[str, list[_Part]] = defaultdict(list)
    for part in parts:
        if part.upstream_id is not None:
            by_id[part.upstream_id].append(part)
    return by_id


async def apply_receipts(session: AsyncSession, receipts: Sequence[Receipt], settings: Settings,
                         counts: ReportCounts | None = None, kept: list[int] | None = None) -> list[str]:
    """Apply a batch of reports (no commit). Returns the sids whose status became final; `counts` (when
    given) gains `matched`, `kept` (reports for ids not known yet, kept as pending) and
    `status:<status>:<provider>` for each status change applied; `kept` (when given) gains the ids of
    the `kept_receipt` rows written, for `kept_receipts.recheck_kept` once this transaction has committed."""
    finals, unmatched = await apply_batch(session, receipts, settings, counts)
    if unmatched:
        if log.isEnabledFor(logging.INFO):
            for r in unmatched:
                log.info("status kept", extra={"upstream_id": r.upstream_id, "provider": r.provider,
                                               "reported": r.status.value,
                                               "provider_status_code": r.provider_status_code, "source": r.source})
        ids = await kept_store.insert_kept(session, unmatched, utcnow(),
                                           timedelta(seconds=settings.pending_receipt_ttl_seconds))
        if kept is not None:
            kept.extend(ids)
    if counts is not None:
        counts.kept += len(unmatched)
    return finals


async def apply_batch(session: AsyncSession, receipts: Sequence[Receipt], settings: Settings,
                       counts: ReportCounts | None = None,
                       kept_at: Sequence[datetime] | None = None) -> tuple[list[str], list[Receipt]]:
    """Apply what matches; returns (sids that became final, reports that matched nothing)."""
    if not receipts:
        return [], []
    wanted = [wanted_ids(r.upstream_id) for r in receipts]
    formats = id_formats(settings)
    # The ids a match is first looked for by (`_match`'s first pass); the other forms only for the
    # reports those find nothing for: most reports cost one id looked up, not two or three.
    firsts = [_first_ids(r, formats, w) for r, w in zip(receipts, wanted, strict=True)]
    by_id = await _candidate_parts(session, {u for ids in firsts for u in ids}, settings)
    def match(i: int) -> list[_Part]:
        return _match(receipts[i], wanted[i], by_id, formats, kept_at[i] if kept_at is not None else None)[0]

    hits = [match(i) for i in range(len(receipts))]
    rest = {u for i, hit in enumerate(hits) if not hit for u in wanted[i] if u not in firsts[i]}
    if rest:
        for u, parts in (await _candidate_parts(session, rest, settings)).items():
            by_id[u] += parts
        hits = [hit or match(i) for i, hit in enumerate(hits)]
    matched: list[tuple[Receipt, list[_Part]]] = []
    unmatched: list[Receipt] = []
    for r, hit in zip(receipts, hits, strict=True):
        (matched.append((r, hit)) if hit else unmatched.append(r))

    # Webhooks may name our own MessageSid instead of an upstream id.
    direct: dict[str, Receipt] = {}
    if unmatched and kept_at is None:
        own = set((await session.scalars(
            select(Message.sid).where(one_of(session, Message.sid,
                                             [r.upstream_id for r in unmatched if r.provider is None]))
        )).all())
        direct = {r.upstream_id: r for r in unmatched if r.upstream_id in own}
        unmatched = [r for r in unmatched if r.upstream_id not in own]

    finals = await _apply(session, matched, direct, settings, counts)
    if counts is not None:
        counts.matched += len(matched) + len(direct)
    return finals, unmatched


async def apply_to_parts(session: AsyncSession, reports: Sequence[tuple[int, Receipt]], settings: Settings,
                         counts: ReportCounts | None = None) -> list[str]:
    """Apply answers about known parts (a status poll asked about part `id`; no commit): each goes to
    the part asked about and its siblings with the same upstream id, never to another message that
    holds the id too. Returns the sids whose status became final."""
    if not reports:
        return []
    asked = {p.id: p for p in await _parts_where(session, one_of(session, MessagePart.id, [pid for pid, _ in reports]))}
    sids = {p.message_sid for p in asked.values()}
    siblings: dict[tuple[str, str | None], list[_Part]] = defaultdict(list)
    for part in await _parts_holding(session, MessagePart.message_sid, sids):
        siblings[(part.message_sid, part.upstream_id)].append(part)
    matched = [(r, siblings[(asked[pid].message_sid, asked[pid].upstream_id)]) for pid, r in reports if pid in asked]
    finals = await _apply(session, matched, {}, settings, counts)
    if counts is not None:
        counts.matched += len(matched)
    return finals


async def _apply(
    session: AsyncSession,
    matched: list[tuple[Receipt, list[_Part]]],
    direct: dict[str, Receipt],
    settings: Settings,
    counts: ReportCounts | None = None,
) -> list[str]:
    """Decide (receipt_rules.decide) and write: one statement each for the parts, the messages, the
    history and the outbox, whatever the batch size. Plain rows in, no ORM objects or flush."""
    now = utcnow()
    sids = {p.message_sid for _, ps in matched for p in ps} | set(direct)
    if not sids:
        return []
    messages: dict[str, MessageState] = {}
    # Locked (in sid order, so two batches never deadlock here): a transaction applying a duplicate
    # concurrently waits and then sees the final status; a published report's row is deleted, so its
    # dedupe_key would not stop a second one.
    in_order = sorted(sids)
    for sid, status, channel, to_number, from_addr, provider, callback_url, code, error, updated_at in (
            await _LOCKED.rows(session, {"sids": in_order})):  # _MESSAGE_COLUMNS' order
        messages[sid] = MessageState(sid, Status(status),
                                     Recipient(sid, channel, to_number, from_addr, provider, callback_url),
                                     code, error, updated_at)
    parts: dict[int, PartState] = {}
    parts_of: dict[str, list[PartState]] = defaultdict(list)
    for part_id, sid, status, code, error, tlvs, done_at, next_poll_at in (
            await _STATES_OF.rows(session, {"sids": in_order})):  # _STATE_COLUMNS' order
        state = PartState(part_id, sid, Status(status), code, error, tlvs, done_at, next_poll_at)
        parts[part_id] = state
        parts_of[sid].append(state)
    # A message of one part with its id on its own row: its part, as the rules see it, under a negative
    # id (no row yet; one is inserted only if the rules write it).
    held: dict[str, _Part] = {}
    for _r, hit in matched:
        for part in hit:
            if part.id is None and part.message_sid in messages and not parts_of[part.message_sid]:
                held[part.message_sid] = part
                msg = messages[part.message_sid]
                state = PartState(-len(held), part.message_sid, msg.status, msg.provider_status_code,
                                  msg.error_code)
                parts[state.id] = state
                parts_of[part.message_sid].append(state)

    def states(hit: list[_Part]) -> list[PartState]:
        ids = [p.id if p.id is not None else parts_of[p.message_sid][0].id for p in hit]
        return [parts[i] for i in ids if i in parts]

    out = decide([(r, states(hit)) for r, hit in matched],
                 [(sid, r) for sid, r in direct.items() if sid in messages],
                 messages, parts_of, now=now, report_queue=settings.delivery_report_queue)
    if log.isEnabledFor(logging.INFO):
        for sid, after, r, applied in out.applied:
            # `status` is the message's status after this report (a long message's parts aggregate);
            # `applied` false: a duplicate or a report that came behind a later status.
            log.info("status", extra={"message_sid": sid, "status": after.value, "reported": r.status.value,
                                      "applied": applied, "provider_status_code": r.provider_status_code,
                                      "error_code": r.error_code, "upstream_id": r.upstream_id, "source": r.source})
    if counts is not None:
        counts.changes.update(out.counts)
    written = [p for p in out.parts.values() if p.id > 0]
    if written:
        await update_rows(session, MessagePart.__table__, "id", [p.row() for p in written])
    new = [p for p in out.parts.values() if p.id < 0]  # a part held on its message that now needs its row
    if new:
        await insert_rows(session, MessagePart.__table__, [
            {**{k: v for k, v in p.row().items() if k != "id"}, "message_sid": p.message_sid, "part_no": 1,
             "provider": held[p.message_sid].provider, "upstream_id": held[p.message_sid].upstream_id,
             "submitted_at": held[p.message_sid].submitted_at} for p in new])
    if out.messages:
        await update_rows(session, Message.__table__, "sid", [m.row() for m in out.messages.values()])
    if out.history:
        await insert_rows(session, StatusEvent.__table__, out.history)
    if out.outbox:
        await outbox_insert(session, out.outbox)
    return out.finals


_MESSAGE_COLUMNS = (Message.sid, Message.status, Message.channel, Message.to_number, Message.from_addr,
                    Message.provider, Message.callback_url, Message.provider_status_code, Message.error_code,
                    Message.updated_at)
_STATE_COLUMNS = (MessagePart.id, MessagePart.message_sid, MessagePart.status, MessagePart.provider_status_code,
                  MessagePart.error_code, MessagePart.tlvs, MessagePart.done_at, MessagePart.next_poll_at)
_LOCKED = Built(lambda pg: select(*_MESSAGE_COLUMNS).where(any_of_param(pg, Message.sid, "sids"))
                .order_by(Message.sid).with_for_update(of=Message))
_STATES_OF = Built(lambda pg: holding_param(pg, _STATE_COLUMNS, MessagePart.message_sid, "sids"))


async def outbox_insert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Outbox rows, skipping any whose dedupe_key is already there: one statement for all the rows that
    name the same columns (each builder in services/outbox_rows.py always names the same ones)."""
    count_written(rows)
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        shapes[tuple(sorted(r))].append(r)
    for same in shapes.values():
        await insert_rows(session, OutboxEvent.__table__, same, skip_conflicts=True)
