"""The Twilio flow over real HTTP both ways: the gateway (served by uvicorn on loopback) sends through
the Twilio fake, whose signed status callbacks come back on /msg-client/delivery-notification and
drive the message to delivered (or undelivered with Twilio's ErrorCode)."""

from __future__ import annotations

import secrets

import httpx
from conftest import API_KEY, api_settings
from fakes.server import LoopbackServer
from fakes.twilio import TwilioFakeState
from fakes.twilio import create_app as twilio_app
from support.gateway import wait_status
from support.servers import free_port

from app.main import create_app

TOKEN = "tw-" + secrets.token_hex(8)


async def test_signed_callbacks_drive_twilio_messages_to_final(module_db_url: str) -> None:
    state = TwilioFakeState(auth_token=TOKEN)
    state.outcomes["+14155550177"] = ("undelivered", "30003")
    port = free_port()
    async with LoopbackServer(twilio_app(state)) as twilio:
        settings = api_settings(
            module_db_url, public_url=f"http://127.0.0.1:{port}", broker_url="stomp://127.0.0.1:1",
            webhook_auth="twilio-signature",
            providers=[{"name": "twilio", "type": "http", "dialect": "twilio", "url": twilio.url,
                        "account_sid": state.account_sid, "auth_token": TOKEN, "default_from": "+15005550006"}],
            routes=[{"channel": "http", "providers": ["twilio"]}], default_channel="http",
        )
        async with LoopbackServer(create_app(settings), port=port, lifespan="on") as gateway, \
                httpx.AsyncClient(base_url=gateway.url, headers={"X-API-Key": API_KEY}) as client:
            ok = (await client.post("/msg-client/send", json={"To": "+14155550176", "Body": "hi"})).json()
            bad = (await client.post("/msg-client/send", json={"To": "+14155550177", "Body": "hi"})).json()
            m1 = await wait_status(client, ok["MessageSid"], {"delivered"})
            m2 = await wait_status(client, bad["MessageSid"], {"undelivered"})
            await state.drain()
    assert m1["Status"] == "delivered" and m1["Provider"] == "twilio" and m1["UpstreamIds"][0].startswith("sm")
    assert (m2["Status"], m2["ErrorCode"]) == ("undelivered", "30003")
    assert state.callbacks and all(c.response_status == 200 for c in state.callbacks)
    sources = {h["Source"] for h in m1["History"]}
    assert "webhook" in sources
