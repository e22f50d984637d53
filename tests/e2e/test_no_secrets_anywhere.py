"""A whole run with every kind of secret configured (API key, webhook token and basic password, Twilio
auth token, SMPP password, an HTTP provider's password that travels in query strings, the broker
password, the callback signing token): none of them appears in the logs (as production writes them,
JSON at DEBUG), in any response body, in /metrics, or in any stored row."""

from __future__ import annotations

import asyncio
import io
import logging

import httpx
import pytest
from conftest import STOMP_URL, api_settings, running_app
from fakes.commpeak import FakeCommpeakState
from fakes.commpeak import create_app as commpeak_app
from fakes.server import LoopbackServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.logs import JsonFormatter, RedactFilter, settings_secrets
from app.simulator import SmscSimulator

SECRETS = {
    "api_key": "ApiKey-7f3a9c1e55d2",
    "webhook_token": "HookTok-91b2c3d4e5",
    "basic_password": "BasicPw-0a1b2c3d4e",
    "twilio_token": "TwilioTok-5e6f7a8b9c",
    "smpp_password": "Sm-3c4d9",  # SMPP passwords are at most 8 octets on the wire
    "http_password": "CpPass-8d7c6b5a4f",
    "broker_password": "MqPass-1f2e3d4c5b",
    "signing_token": "SignTok-6a5b4c3d2e",
}


pytestmark = pytest.mark.simulator(credentials={"acme": SECRETS["smpp_password"]})


async def test_no_secret_leaks(module_db_url: str, module_sessions: async_sessionmaker[AsyncSession],
                               sim: SmscSimulator) -> None:
    state = FakeCommpeakState(username="user", password=SECRETS["http_password"], statuses=["DELIVRD"])
    async with LoopbackServer(commpeak_app(state)) as fake:
        host, port = STOMP_URL.rsplit("//", 1)[1].split(":")
        settings = api_settings(
            module_db_url, api_keys=SECRETS["api_key"],
            webhook_auth=f"token:{SECRETS['webhook_token']},basic:hook:{SECRETS['basic_password']}",
            broker_url=f"stomp://{host}:{port}", broker_user="smsgw", broker_password=SECRETS["broker_password"],
            callback_signing_token=SECRETS["signing_token"],
            providers=[
                {"name": "smsc-main", "type": "smpp", "port": sim.port, "system_id": "acme",
                 "password": SECRETS["smpp_password"]},
                {"name": "commpeak", "type": "http", "dialect": "commpeak", "url": f"{fake.url}/api",
                 "username": "user", "password": SECRETS["http_password"], "poll_interval": 0.2,
                 "default_from": "Acme"},
                {"name": "twilio", "type": "http", "dialect": "twilio", "url": "http://127.0.0.1:9",
                 "account_sid": "AC" + "0" * 32, "auth_token": SECRETS["twilio_token"]},
            ],
            routes=[{"channel": "smpp", "providers": ["smsc-main"]}, {"channel": "http", "providers": ["commpeak"]}],
            callback_allow_networks="127.0.0.0/8",  # the callback goes to a closed port on loopback
        )
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)  # what setup_logging installs, writing here instead of stderr
        handler.setFormatter(JsonFormatter())
        handler.addFilter(RedactFilter(settings_secrets(settings)))
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        bodies: list[str] = []
        try:
            async with running_app(settings, start_workers=True) as client:
                client.headers["X-API-Key"] = SECRETS["api_key"]
                sids = []
                for channel in ("smpp", "http"):
                    r = await client.post("/msg-client/send", json={
                        "To": "+14155550100", "Body": "hi", "channel": channel,
                        "StatusCallback": "http://127.0.0.1:9/callback"})
                    bodies.append(r.text)
                    sids.append(r.json()["MessageSid"])
                for _ in range(150):
                    views = [(await client.get(f"/msg-client/messages/{sid}")).json() for sid in sids]
                    if all(v["Status"] == "delivered" for v in views):
                        break
                    await asyncio.sleep(0.1)
                assert [v["Status"] for v in views] == ["delivered", "delivered"], [ln for ln in stream.getvalue().splitlines() if "httpx" not in ln and "httpcore" not in ln][-15:]
                bodies += [str(v) for v in views]
                state.down = True  # errors from the provider, whose URLs carry the password
                r = await client.post("/msg-client/send", json={"To": "+14155550101", "Body": "x", "channel": "http"})
                bodies.append(r.text)
                # Wrong credentials of every kind, and webhooks with the right ones.
                async with httpx.AsyncClient(transport=client._transport, base_url="http://testserver") as anon:
                    for headers in ({"X-API-Key": SECRETS["api_key"] + "x"}, {"Authorization": "Bearer nope"}, {}):
                        bodies.append((await anon.post("/msg-client/send", json={"To": "+1", "Body": "b"},
                                                       headers=headers)).text)
                    bodies.append((await anon.post("/msg-client/receive", data={"Body": "hi", "From": "+1415555",
                                                   "To": "+1415556", "SmsSid": "SMx1"},
                                                   headers={"X-Webhook-Token": SECRETS["webhook_token"]})).text)
                    bodies.append((await anon.post("/msg-client/delivery-notification",
                                                   data={"MessageSid": "SMnope", "SmsStatus": "delivered"},
                                                   auth=("hook", SECRETS["basic_password"]))).text)
                    bodies.append((await anon.post("/msg-client/receive", data={"Body": "x"},
                                                   headers={"X-Webhook-Token": "wrong"})).text)
                bodies.append((await client.get("/msg-client/providers")).text)
                bodies.append((await client.get("/health/ready")).text)
                bodies.append((await client.get("/openapi.json")).text)
                metrics = (await client.get("/metrics")).text
                await asyncio.sleep(1.0)  # callbacks fail and are retried: more log lines
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
    async with module_sessions() as s:
        stored = []
        for table in ("message", "message_part", "status_event", "outbox_event", "kept_receipt",
                      "inbound_message", "api_key", "idempotency_record"):
            stored += [str(tuple(row)) for row in (await s.execute(text(f"SELECT * FROM {table}"))).all()]
    logs = stream.getvalue()
    assert "commpeak" in logs or "smsgw" in logs  # the capture saw the run
    places = {"logs": logs, "responses": "\n".join(bodies), "metrics": metrics, "database": "\n".join(stored)}
    leaks = [(name, where) for name, secret in SECRETS.items() for where, text_ in places.items() if secret in text_]
    assert not leaks, leaks
