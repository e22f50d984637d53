"""`Flash` on POST /msg-client/send is a JSON boolean (contract §2): true or false, nothing that merely
looks like one."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import Message


@pytest.mark.parametrize("value", ["yes", "no", "true", "false", "1", "0", 1, 0, "on", None, [], {}])
async def test_flash_that_is_not_json_true_or_false_is_400_naming_the_field(api: httpx.AsyncClient,
                                                                          value: object) -> None:
    r = await api.post("/msg-client/send", json={"To": "+14155550100", "Body": "x", "Flash": value})
    assert r.status_code == 400, (value, r.text)
    assert r.json()["error"] == {"code": "invalid_field", "field": "Flash",
                                 "message": "Flash: must be JSON true or false"}


async def test_flash_true_and_false_are_stored_as_given(api: httpx.AsyncClient,
                                                        sessions: async_sessionmaker[AsyncSession]) -> None:
    sids = {}
    for flash in (True, False):
        r = await api.post("/msg-client/send", json={"To": "+14155550100", "Body": "x", "Flash": flash})
        assert r.status_code == 200, r.text
        sids[r.json()["MessageSid"]] = flash
    absent = await api.post("/msg-client/send", json={"To": "+14155550100", "Body": "x"})
    sids[absent.json()["MessageSid"]] = False  # the default
    async with sessions() as s:
        rows = (await s.execute(select(Message.sid, Message.flash).where(Message.sid.in_(sids)))).all()
    stored = {sid: flash for sid, flash in rows}
    assert stored == sids
