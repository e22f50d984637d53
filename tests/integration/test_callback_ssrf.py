"""StatusCallback cannot reach inside (issue 12 item 2), over real HTTP on PostgreSQL:
`/send` refuses every non-public form with a 400 naming StatusCallback, and the callback sender checks
again at connect time (a name that now resolves to loopback is refused), connects to the address it
checked, never follows a redirect and never sends userinfo."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets

import httpx
from conftest import api_settings, running_app
from fakes.server import LoopbackServer
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from app.config import Settings
from app.db.tables import Message, OutboxEvent
from app.domain.netguard import IPAddress
from app.domain.status import Status
from app.events.callbacks import CallbackSender
from app.services import outbox_rows as outbox

SEND = "/msg-client/send"
ISSUE_FORMS = [
    "http://127.0.0.1:55432/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/cb", "http://10.0.0.1/cb",
    "http://localhost/cb", "http://localhost.:8080/cb", "http://app.localhost/cb", "http://2130706433/cb",
    "http://0x7f000001/cb", "http://0/cb", "http://127.1/cb", "http://user:pw@8.8.8.8/cb",
    "http://[::ffff:127.0.0.1]/cb", "http://100.64.0.1/cb", "http://[fe80::1]/cb", "http://[fc00::1]/cb",
    "http://224.0.0.1/cb",
]


async def test_send_refuses_every_non_public_callback(api: httpx.AsyncClient,
                                                      sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        before = await s.scalar(select(func.count()).select_from(Message))
    for url in ISSUE_FORMS:
        r = await api.post(SEND, json={"To": "+14155550401", "Body": "x", "StatusCallback": url})
        assert r.status_code == 400, (url, r.text)
        assert r.json()["error"]["field"] == "StatusCallback", url
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Message)) == before
    for url in ("https://8.8.8.8/cb", "https://crm.example.invalid/cb"):  # public; does not resolve (yet)
        ok = await api.post(SEND, json={"To": "+14155550401", "Body": "x", "StatusCallback": url})
        assert ok.status_code == 200, (url, ok.text)


async def test_callback_length_is_capped_at_2048(api: httpx.AsyncClient) -> None:
    base = "https://8.8.8.8/cb?pad="
    fits = await api.post(SEND, json={"To": "+14155550402", "Body": "x",
                                      "StatusCallback": base + "p" * (2048 - len(base))})
    assert fits.status_code == 200, fits.text
    over = await api.post(SEND, json={"To": "+14155550402", "Body": "x",
                                      "StatusCallback": base + "p" * (100_000 - len(base))})
    assert over.status_code == 400 and over.json()["error"]["field"] == "StatusCallback"


async def test_operator_allowed_networks_accept_a_local_listener(db_url: str) -> None:
    async with running_app(api_settings(db_url, callback_allow_networks="127.0.0.0/8,::1/128")) as client:
        for url in ("http://127.0.0.1:9999/cb", "http://localhost:9999/cb", "http://[::1]:9999/cb"):
            r = await client.post(SEND, json={"To": "+14155550403", "Body": "x", "StatusCallback": url})
            assert r.status_code == 200, (url, r.text)
        still = await client.post(SEND, json={"To": "+14155550403", "Body": "x",
                                              "StatusCallback": "http://169.254.169.254/"})
        assert still.status_code == 400


class Hook:
    """A loopback listener recording what reaches it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str]]] = []

    async def handle(self, request: Request) -> Response:
        self.seen.append((request.url.path, dict(request.headers)))
        if request.url.path == "/redirect":
            return RedirectResponse("/landing", status_code=302)
        return PlainTextResponse("ok")


async def _deliver(sessions: async_sessionmaker[AsyncSession], settings: Settings, urls: list[str],
                   resolver: dict[str, str]) -> dict[str, OutboxEvent]:
    """Callback rows for `urls`, sent by a CallbackSender until none is pending; the rows afterwards."""
    rows = [outbox.callback_event(url=u, message_sid="SM" + secrets.token_hex(16), status=Status.DELIVERED,
                                  to="+1", sender=None, error_code=None) for u in urls]
    async with sessions() as s:
        await s.execute(insert(OutboxEvent), rows)
        await s.commit()

    async def resolve(host: str, _port: int) -> list[IPAddress]:  # what a rebinding DNS answers now
        return [ipaddress.ip_address(resolver[host])] if host in resolver else []

    sender = CallbackSender(sessions, settings, "ssrf-" + secrets.token_hex(2), resolver=resolve)
    task = asyncio.create_task(sender.run())
    try:
        for _ in range(100):
            async with sessions() as s:
                left = await s.scalar(select(func.count()).select_from(OutboxEvent).where(
                    OutboxEvent.destination.in_(urls), OutboxEvent.published_at.is_(None), OutboxEvent.attempts == 0))
            if left == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        await sender.stop()
        await asyncio.wait([task], timeout=5)
    async with sessions() as s:
        return {r.destination: r for r in (await s.scalars(
            select(OutboxEvent).where(OutboxEvent.destination.in_(urls)))).all()}


async def test_sender_refuses_a_name_that_now_resolves_inside(module_db_url: str,
                                                              module_sessions: async_sessionmaker[AsyncSession]) -> None:
    hook = Hook()
    async with LoopbackServer(Starlette(routes=[Route("/{p}", hook.handle, methods=["POST"])])) as server:
        rebind = f"http://rebind.test:{server.port}/hook"  # public when /send checked it; loopback now
        literal = f"http://127.0.0.1:{server.port}/direct"  # e.g. accepted before the rule existed
        gone = f"http://gone.test:{server.port}/later"  # does not resolve now: tried again later
        rows = await _deliver(module_sessions, Settings(database_url=module_db_url), [rebind, literal, gone],
                              {"rebind.test": "127.0.0.1"})
    assert hook.seen == []
    assert rows[gone].published_at is None and "does not resolve" in (rows[gone].last_error or "")
    for url in (rebind, literal):
        assert rows[url].published_at is not None and "not a public address" in (rows[url].last_error or "")
        assert rows[url].attempts == 1  # given up at once, not retried ten times


async def test_sender_connects_to_the_checked_address_and_follows_no_redirect(
        module_db_url: str, module_sessions: async_sessionmaker[AsyncSession]) -> None:
    hook = Hook()
    async with LoopbackServer(Starlette(routes=[Route("/{p}", hook.handle, methods=["POST"])])) as server:
        settings = Settings(database_url=module_db_url, callback_allow_networks="127.0.0.0/8")
        named = f"http://hooks.test:{server.port}/named"
        redirect = f"http://127.0.0.1:{server.port}/redirect"
        userinfo = f"http://user:pw@127.0.0.1:{server.port}/userinfo"
        rows = await _deliver(module_sessions, settings, [named, redirect, userinfo], {"hooks.test": "127.0.0.1"})
    paths = [p for p, _ in hook.seen]
    assert sorted(paths) == ["/named", "/redirect"]  # no /landing, no /userinfo
    named_headers = next(h for p, h in hook.seen if p == "/named")
    assert named_headers["host"] == f"hooks.test:{server.port}"
    assert all("authorization" not in h for _, h in hook.seen)
    assert named not in rows  # delivered: its row is gone
    assert rows[redirect].published_at is None and rows[redirect].last_error == "HTTP 302"
    assert "credentials" in (rows[userinfo].last_error or "")


async def test_idempotent_retry_with_a_callback_is_answered_once(api: httpx.AsyncClient,
                                                                 sessions: async_sessionmaker[AsyncSession]) -> None:
    payload = {"To": ["+14155550404", "+14155550405"], "Body": "x", "StatusCallback": "https://8.8.8.8/cb"}
    key = {"Idempotency-Key": secrets.token_hex(8)}
    first = await api.post(SEND, json=payload, headers=key)
    again = await api.post(SEND, json=payload, headers=key)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    async with sessions() as s:
        n = await s.scalar(select(func.count()).select_from(Message).where(Message.to_number == "+14155550405"))
    assert n == 1
