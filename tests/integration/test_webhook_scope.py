"""A status signed with one Twilio provider's auth_token moves only that provider's messages (issue 12
item 10), over HTTP on PostgreSQL: two Twilio accounts, a message sent through each with the same
upstream id."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from conftest import WEBHOOK_TOKEN, api_settings, running_app
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import KeptReceipt, Message, MessagePart, utcnow
from app.domain.ids import new_message_sid, normalise_upstream_id
from app.domain.twilio_signature import compute_signature

PATH = "/msg-client/delivery-notification"
TOKENS = {"twilio-a": "token-of-account-a", "twilio-b": "token-of-account-b"}


@pytest.fixture(scope="module")
async def api(module_db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    providers = [{"name": name, "type": "http", "dialect": "twilio", "url": "http://127.0.0.1:9",
                  "account_sid": "AC" + str(i) * 32, "auth_token": token}
                 for i, (name, token) in enumerate(TOKENS.items())]
    settings = api_settings(module_db_url, providers=providers,
                            routes=[{"channel": "http", "providers": ["twilio-a", "twilio-b"]}], default_channel="http")
    async with running_app(settings) as client:
        yield client


async def _sent_through(sessions: async_sessionmaker[AsyncSession], provider: str, upstream_id: str) -> str:
    sid, now = new_message_sid(), utcnow()
    async with sessions() as s:
        await s.execute(insert(Message), [{"sid": sid, "status": "sent", "to_number": "+14155550700", "body": "x",
                                           "encoding": "GSM7", "segments": 1, "channel": "http", "provider": provider,
                                           "created_at": now, "updated_at": now}])
        await s.execute(insert(MessagePart), [{"message_sid": sid, "part_no": 1, "provider": provider,
                                               "upstream_id": normalise_upstream_id(upstream_id),
                                               "status": "sent"}])
        await s.commit()
    return sid


async def _status(sessions: async_sessionmaker[AsyncSession], sid: str) -> str | None:
    async with sessions() as s:
        return await s.scalar(select(Message.status).where(Message.sid == sid))


def _signed(provider: str, form: dict[str, str]) -> dict[str, str]:
    return {"X-Twilio-Signature": compute_signature(TOKENS[provider], "http://testserver" + PATH, form)}


async def test_a_signed_status_applies_only_to_the_signing_providers_messages(
        api: httpx.AsyncClient, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    upstream = "SM" + secrets.token_hex(16)
    of_b = await _sent_through(module_sessions, "twilio-b", upstream)
    form = {"MessageSid": upstream, "MessageStatus": "undelivered", "ErrorCode": "30003"}

    r = await api.post(PATH, data=form, headers=_signed("twilio-a", form))
    assert r.status_code == 200, r.text
    assert await _status(module_sessions, of_b) == "sent"  # account A cannot touch B's message
    async with module_sessions() as s:
        kept = (await s.scalars(select(KeptReceipt.provider).where(
            KeptReceipt.upstream_id == normalise_upstream_id(upstream)))).all()
    assert list(kept) == ["twilio-a"]  # kept for an A message with that id, should one appear

    delivered = {"MessageSid": upstream, "MessageStatus": "delivered"}
    r = await api.post(PATH, data=delivered, headers=_signed("twilio-b", delivered))
    assert r.status_code == 200, r.text
    assert await _status(module_sessions, of_b) == "delivered"


async def test_the_same_id_at_two_providers_moves_only_the_signers_message(
        api: httpx.AsyncClient, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    upstream = "SM" + secrets.token_hex(16)
    of_a = await _sent_through(module_sessions, "twilio-a", upstream)
    of_b = await _sent_through(module_sessions, "twilio-b", upstream)
    form = {"MessageSid": upstream, "MessageStatus": "delivered"}
    assert (await api.post(PATH, data=form, headers=_signed("twilio-a", form))).status_code == 200
    assert (await _status(module_sessions, of_a), await _status(module_sessions, of_b)) == ("delivered", "sent")


async def test_operator_token_auth_is_not_scoped_to_a_provider(
        api: httpx.AsyncClient, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    upstream = "SM" + secrets.token_hex(16)
    of_b = await _sent_through(module_sessions, "twilio-b", upstream)
    r = await api.post(PATH, data={"MessageSid": upstream, "MessageStatus": "delivered"},
                       headers={"X-Webhook-Token": WEBHOOK_TOKEN})
    assert r.status_code == 200, r.text
    assert await _status(module_sessions, of_b) == "delivered"
