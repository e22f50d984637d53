"""StatusCallback POSTs and inbound forwards from the outbox, and the SSRF guard at connect time.

A callback URL was checked when `/send` accepted it, but a name may resolve elsewhere by the time the
POST goes out (DNS rebinding: a short TTL, then a private address). So each POST resolves the host
again, checks every address (app/domain/netguard.py), and connects to the checked address itself,
with the name kept for the `Host` header and TLS (SNI and certificate check): the address judged is
the address connected to. Redirects are never followed (a 3xx is a failed attempt), and a URL the
guard refuses is given up at once rather than retried (a name that does not resolve is retried).
Inbound forwards go to the operator's own `SMSGW_INBOUND_FORWARD_URL` and are not restricted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.tables import OutboxEvent, utcnow
from app.domain.netguard import (
    CallbackRefused,
    CallbackTarget,
    CallbackUnresolved,
    IPAddress,
    IPNetwork,
    check_addresses,
    is_local_name,
    parse_callback_url,
)
from app.domain.twilio_signature import compute_signature
from app.events.stomp_publisher import HTTP_KINDS, _Claimer

log = logging.getLogger("smsgw.callbacks")

RESOLVE_TIMEOUT = 5.0
_LOOPBACK: tuple[IPAddress, ...] = (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (A and AAAA); [] when it does not resolve."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT)
    except (OSError, TimeoutError, UnicodeError):
        return []
    out: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def check_callback(url: str, allow: Sequence[IPNetwork],
                         resolver: Resolver = resolve) -> tuple[CallbackTarget, IPAddress]:
    """The parsed URL and the one address to connect to; raises CallbackRefused."""
    target = parse_callback_url(url)
    if target.address is not None:
        addresses: list[IPAddress] = [target.address]
    elif is_local_name(target.host):  # loopback whatever /etc/hosts or a resolver says
        addresses = list(_LOOPBACK)
    else:
        addresses = await resolver(target.host, target.port)
    return target, check_addresses(target, addresses, allow)


def pinned_request(target: CallbackTarget, address: IPAddress) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The URL naming `address` itself, the `Host` header, and the TLS server name for httpx."""
    ip = f"[{address}]" if address.version == 6 else str(address)
    host = f"[{target.host}]" if ":" in target.host else target.host
    url = f"{target.scheme}://{ip}:{target.port}{target.path}"
    headers = {"host": host if target.default_port else f"{host}:{target.port}"}
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and target.address is None:
        extensions["sni_hostname"] = target.host
    return url, headers, extensions


class CallbackSender(_Claimer):
    """StatusCallback form POSTs and inbound forwards, retried with backoff, given up after N tries."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], settings: Settings, owner: str,
                 resolver: Resolver = resolve) -> None:
        super().__init__(sessions, settings, owner, HTTP_KINDS)
        self.allow = settings.callback_networks()
        self.resolver = resolver  # the system's; tests give one that answers what a rebinding DNS would
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), trust_env=False,
                                        follow_redirects=False, limits=httpx.Limits(max_connections=50))

    async def stop(self) -> None:
        await super().stop()
        await self.client.aclose()

    async def _post(self, row: OutboxEvent) -> tuple[str | None, bool]:
        """(error or None, whether to give up at once)."""
        headers = {"content-type": str(row.headers.get("content-type", "application/json"))}
        token = self.settings.callback_signing_token
        if token is not None and row.kind == "callback":
            params = dict(parse_qsl(row.body, keep_blank_values=True))
            headers["X-Twilio-Signature"] = compute_signature(token.get_secret_value(), row.destination, params)
        url, extensions = row.destination, dict[str, Any]()
        if row.kind == "callback":
            try:
                target, address = await check_callback(row.destination, self.allow, self.resolver)
            except CallbackUnresolved as exc:
                return str(exc), False  # DNS may answer on a later attempt
            except CallbackRefused as exc:
                log.warning("status callback refused: %s", exc, extra={"message_sid": row.message_sid})
                return f"refused: {exc}", True
            url, host, extensions = pinned_request(target, address)
            headers.update(host)
        try:
            r = await self.client.post(url, content=row.body.encode(), headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return type(exc).__name__, False
        return (None if 200 <= r.status_code < 300 else f"HTTP {r.status_code}"), False

    async def run(self) -> None:
        while not self._stopping:
            try:
                rows = await self.claim(100)
                if not rows:
                    await self._nothing_to_do(0.5)
                    continue
                self._idle_wait = 0.0
                results = await asyncio.gather(*(self._post(r) for r in rows))
                await self._settle(rows, results)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("callback delivery failed")
                await self._idle(1.0)

    async def _settle(self, rows: list[OutboxEvent], results: list[tuple[str | None, bool]]) -> None:
        now = utcnow()
        done = [r.id for r, (e, _) in zip(rows, results, strict=True) if e is None]
        await self.mark_published(done)
        async with self.sessions() as s:
            for r, (e, final) in zip(rows, results, strict=True):
                if e is None:
                    continue
                attempts = r.attempts + 1
                values: dict[str, Any] = {"attempts": attempts, "last_error": e, "lease_owner": None,
                                          "lease_expires_at": None}
                if final:
                    values.update(published_at=now, last_error=f"gave up: {e}")
                elif attempts >= self.settings.callback_max_attempts:
                    values.update(published_at=now, last_error=f"gave up after {attempts} attempts: {e}")
                    log.warning("gave up on a %s after %d attempts", r.kind, attempts,
                                extra={"message_sid": r.message_sid})
                else:
                    delay = min(600.0, 2.0 ** attempts) * (0.5 + random.random() / 2)
                    values["available_at"] = now + timedelta(seconds=delay)
                await s.execute(update(OutboxEvent).where(OutboxEvent.id == r.id).values(**values))
            await s.commit()
