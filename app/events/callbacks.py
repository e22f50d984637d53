"""StatusCallback POSTs and inbound forwards from the outbox, and the SSRF guard at connect time (the
address check itself is app/services/callback_address.py, which `/send` uses too). A delivered row is
deleted; a failed one is retried with backoff and, after `SMSGW_CALLBACK_MAX_ATTEMPTS`, given up (kept,
with `published_at` and `last_error` set): app/services/outbox_work.py.

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
import logging
from typing import Any
from urllib.parse import parse_qsl

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db.outbox_store import OutboxRow
from app.domain.netguard import CallbackRefused, CallbackTarget, CallbackUnresolved, IPAddress
from app.domain.twilio_signature import compute_signature
from app.events.stomp_publisher import _Claimer
from app.services.callback_address import Resolver, check_callback, resolve
from app.services.outbox_rows import HTTP_KINDS, OutboxKind, http_rows_written

log = logging.getLogger("smsgw.callbacks")

HTTP_BATCH = 100
__all__ = ["CallbackSender", "Resolver", "check_callback", "pinned_request", "resolve"]


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
        self._http_rows_seen = http_rows_written()

    def notify(self) -> None:
        """Woken by a commit only if this process wrote HTTP rows since the last time (outbox_rows)."""
        written = http_rows_written()
        if written != self._http_rows_seen:
            self._http_rows_seen = written
            super().notify()

    async def stop(self) -> None:
        await super().stop()
        await self.client.aclose()

    async def _post(self, row: OutboxRow) -> tuple[str | None, bool]:
        """(error or None, whether to give up at once)."""
        headers = {"content-type": str(row.headers.get("content-type", "application/json"))}
        token = self.settings.callback_signing_token
        if token is not None and row.kind == OutboxKind.CALLBACK:
            params = dict(parse_qsl(row.body, keep_blank_values=True))
            headers["X-Twilio-Signature"] = compute_signature(token.get_secret_value(), row.destination, params)
        url, extensions = row.destination, dict[str, Any]()
        if row.kind == OutboxKind.CALLBACK:
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
                # The rows stay locked (not written) while their POSTs go out; the block's end deletes
                # the delivered ones and records the failures, in one transaction.
                async with self.work.http_batch(self.kinds, HTTP_BATCH, self.settings.callback_max_attempts) as batch:
                    if batch.rows:
                        batch.settle(await asyncio.gather(*(self._post(r) for r in batch.rows)))
                if not batch.rows:
                    await self._nothing_to_do(0.5)
                    continue
                self._idle_wait = 0.0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("callback delivery failed")
                await self._idle(1.0)
