"""GET /msg-client/messages[/{sid}] and DELETE (cancel): the caller's own messages (all of them for an
admin key), as stored, with their history. The queries and the commit are in app/services/messages.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ApiKeyDep, Session
from app.api.schemas import HistoryEntry, MessagePage, MessageView, error_responses
from app.services import messages as service
from app.services.messages import MessageRecord

router = APIRouter(prefix="/msg-client", tags=["messages"])


def _view(r: MessageRecord) -> MessageView:
    m = r.message
    history = [HistoryEntry(Status=h.status, At=h.at, Source=h.source, Applied=h.applied,
                            ProviderStatusCode=h.provider_status_code, Detail=h.detail) for h in r.entries()]
    return MessageView(
        MessageSid=m.sid, Status=m.status, To=m.to_number, From=m.from_addr, Body=m.full_body,
        Segments=m.segments, Encoding=m.encoding, Channel=m.channel, Provider=m.provider,
        UpstreamIds=r.upstream_ids(),
        ProviderStatusCode=m.provider_status_code, ErrorCode=m.error_code, CreatedAt=m.created_at,
        UpdatedAt=m.updated_at, SendAt=m.send_at, History=history,
    )


@router.get("/messages/{sid}", response_model=MessageView, responses=error_responses(401, 404, 500),
            summary="One message with its status history")
async def get_message(sid: str, session: Session, key: ApiKeyDep) -> MessageView:
    """Another API key's message answers 404, as an unknown one does (an admin key sees every message)."""
    return _view(await service.get(session, key, sid))


@router.get("/messages", response_model=MessagePage, responses=error_responses(400, 401, 500),
            summary="List messages, newest first, paginated")
async def list_messages(
    session: Session,
    key: ApiKeyDep,
    status: Annotated[str | None, Query(description="one of the contract's statuses")] = None,
    to: Annotated[str | None, Query(description="E.164 destination")] = None,
    since: Annotated[str | None, Query(description="ISO-8601 time with offset: created at or after")] = None,
    cursor: Annotated[str | None, Query(description="NextCursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> MessagePage:
    """The caller's own messages (every account's for an admin key), each with its `History`."""
    page = await service.list_page(session, key, service.parse_filter(status, to, since, cursor), limit)
    return MessagePage(Messages=[_view(r) for r in page.records], NextCursor=page.next_cursor)


@router.delete("/messages/{sid}", response_model=MessageView, responses=error_responses(401, 404, 409, 500),
               summary="Cancel a scheduled or queued message")
async def cancel_message(sid: str, session: Session, key: ApiKeyDep) -> MessageView:
    """Another API key's message answers 404, as an unknown one does."""
    return _view(await service.cancel(session, key, sid))
