"""Each API key is an account (issue 12 item 1): over HTTP on PostgreSQL, a second key gets 404 on
another key's message (GET, DELETE) and never sees it in a list; an admin key sees and cancels all."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import httpx
from conftest import ADMIN_API_KEY, API_KEY, OTHER_API_KEY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import ApiKey, Message
from app.services.api_keys import hash_key

LATER = (datetime.now(UTC) + timedelta(hours=1)).isoformat()


def as_key(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def _send(api: httpx.AsyncClient, key: str, to: str, body: str = "one-time code 4711") -> str:
    r = await api.post("/msg-client/send", json={"To": to, "Body": body, "SendAt": LATER}, headers=as_key(key))
    assert r.status_code == 200, r.text
    return str(r.json()["MessageSid"])


async def test_another_keys_message_is_404_like_an_unknown_one(api: httpx.AsyncClient) -> None:
    sid = await _send(api, API_KEY, "+14155550301")
    assert (await api.get(f"/msg-client/messages/{sid}", headers=as_key(API_KEY))).json()["Body"] == \
        "one-time code 4711"

    theirs = await api.get(f"/msg-client/messages/{sid}", headers=as_key(OTHER_API_KEY))
    unknown = await api.get(f"/msg-client/messages/SM{secrets.token_hex(16)}", headers=as_key(OTHER_API_KEY))
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"]["code"] == unknown.json()["error"]["code"]
    assert "4711" not in theirs.text

    cancel = await api.delete(f"/msg-client/messages/{sid}", headers=as_key(OTHER_API_KEY))
    assert cancel.status_code == 404, cancel.text
    still = await api.get(f"/msg-client/messages/{sid}", headers=as_key(API_KEY))
    assert still.json()["Status"] == "scheduled"


async def test_list_shows_only_the_callers_own_messages(api: httpx.AsyncClient) -> None:
    to = f"+1415{secrets.choice('23456789')}{secrets.randbelow(10**6):06d}"  # a number no other test of the module sends to
    mine = {await _send(api, API_KEY, to) for _ in range(3)}
    theirs = {await _send(api, OTHER_API_KEY, to) for _ in range(2)}

    async def listed(key: str) -> set[str]:
        sids: set[str] = set()
        cursor: str | None = None
        while True:
            params = {"to": to, "limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/msg-client/messages", params=params, headers=as_key(key))).json()
            sids |= {m["MessageSid"] for m in page["Messages"]}
            cursor = page["NextCursor"]
            if not cursor:
                return sids

    assert await listed(API_KEY) == mine
    assert await listed(OTHER_API_KEY) == theirs
    assert await listed(ADMIN_API_KEY) == mine | theirs


async def test_admin_key_reads_and_cancels_any_accounts_message(api: httpx.AsyncClient) -> None:
    sid = await _send(api, OTHER_API_KEY, "+14155550302")
    r = await api.get(f"/msg-client/messages/{sid}", headers=as_key(ADMIN_API_KEY))
    assert r.status_code == 200 and r.json()["MessageSid"] == sid
    r = await api.delete(f"/msg-client/messages/{sid}", headers=as_key(ADMIN_API_KEY))
    assert r.status_code == 200 and r.json()["Status"] == "canceled", r.text


async def test_owner_cancels_its_own_message(api: httpx.AsyncClient) -> None:
    sid = await _send(api, OTHER_API_KEY, "+14155550303")
    r = await api.delete(f"/msg-client/messages/{sid}", headers=as_key(OTHER_API_KEY))
    assert r.status_code == 200 and r.json()["Status"] == "canceled"
    again = await api.delete(f"/msg-client/messages/{sid}", headers=as_key(OTHER_API_KEY))
    assert again.status_code == 409  # its own message: it may know it is no longer cancelable


async def test_list_items_carry_their_history_like_get(api: httpx.AsyncClient) -> None:
    sid = await _send(api, API_KEY, "+14155550304")
    await api.delete(f"/msg-client/messages/{sid}", headers=as_key(API_KEY))
    one = (await api.get(f"/msg-client/messages/{sid}", headers=as_key(API_KEY))).json()
    page = (await api.get("/msg-client/messages", params={"to": "+14155550304"}, headers=as_key(API_KEY))).json()
    item = next(m for m in page["Messages"] if m["MessageSid"] == sid)
    assert [h["Status"] for h in item["History"]] == ["scheduled", "canceled"]
    assert item == one


async def test_bootstrap_keys_are_accounts_and_admin_keys_admin(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        rows = {k.key_hash: k for k in (await s.scalars(select(ApiKey))).all()}
    assert rows[hash_key(API_KEY)].is_admin is False
    assert rows[hash_key(OTHER_API_KEY)].is_admin is False
    assert rows[hash_key(ADMIN_API_KEY)].is_admin is True
    # Chosen keys keep no prefix: the first characters of `dev-key` are most of it.
    assert {rows[hash_key(k)].prefix for k in (API_KEY, OTHER_API_KEY, ADMIN_API_KEY)} == {""}


async def test_messages_record_the_account_that_sent_them(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    r = await api.post("/msg-client/send", json={"To": ["+14155550305", "+14155550306"], "Body": "x"},
                       headers=as_key(OTHER_API_KEY))
    sids = [m["MessageSid"] for m in r.json()["Messages"]]
    async with sessions() as s:
        owners = set((await s.scalars(select(Message.api_key_id).where(Message.sid.in_(sids)))).all())
        other = await s.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(OTHER_API_KEY)))
    assert owners == {other}
