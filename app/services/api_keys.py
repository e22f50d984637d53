"""API keys: stored as SHA-256 hashes (keys are long random tokens, so a fast hash is enough), looked
up through a small in-process cache so authenticating a request rarely costs a database round trip.

Each key is an account (it sees only its own messages); an admin key sees all. `SMSGW_API_KEYS` and
`SMSGW_ADMIN_API_KEYS` bootstrap keys at start; `smsgw keys create|list|revoke` manages the others.

Revocation: `revoke_key` NOTIFYs every replica in its own transaction (PostgreSQL), and each replica's
`KeyStore` drops the key from its cache when the notification arrives (milliseconds after the COMMIT).
While a replica's listening connection is down, and on SQLite, the cache keeps entries for
`FALLBACK_TTL` seconds only, so a revoked key stops working within that everywhere.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db.notify import Listener, notify
from app.db.tables import ApiKey, utcnow
from app.db.upsert import insert_ignore

CHANNEL = "smsgw_api_key"
LIVE_TTL = 60.0  # while notifications arrive, a cached key is dropped by them, not by its age
FALLBACK_TTL = 1.0  # SQLite, or the listening connection is down: revocation within this (+ a lookup)
NEGATIVE_TTL = 1.0  # an unknown key: short, so a key created a moment ago works at once
GENERATED_PREFIX = "sk_"
SHOWN_PREFIX = 8  # "sk_" + 5 of the 43 random characters: under a quarter of a generated key


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return GENERATED_PREFIX + secrets.token_urlsafe(32)


def shown_prefix(key: str) -> str:
    """What `keys list` shows of a key: a prefix of generated keys only, never over a quarter of it.
    An operator-chosen key (`SMSGW_API_KEYS=dev-key`) keeps none: its first characters may be most of it."""
    if not key.startswith(GENERATED_PREFIX) or len(key) < 4 * SHOWN_PREFIX:
        return ""
    return key[:SHOWN_PREFIX]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    name: str
    rate_limit_per_second: float | None
    is_admin: bool = False

    @property
    def account(self) -> int | None:
        """The account whose messages this key may see; None: all (an admin key)."""
        return None if self.is_admin else self.id


class KeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine | None = None) -> None:
        self._sessions = sessions
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}
        self._live = False  # notifications are arriving: cached entries may be kept LIVE_TTL
        # Bumped by every notification: a lookup whose SELECT may predate one caches briefly only.
        self._generation = 0
        self._listener: Listener | None = None
        if engine is not None and engine.dialect.name == "postgresql":
            self._listener = Listener(engine.url.render_as_string(hide_password=False), CHANNEL,
                                      self._notified, self._listening)

    def start(self) -> None:
        if self._listener is not None:
            self._listener.start()

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()

    def _listening(self, live: bool) -> None:
        if live != self._live:
            # Either way what is cached was trusted on notifications that may have been missed.
            self._cache.clear()
        self._live = live
        self._generation += 1

    def _notified(self, payload: str) -> None:
        self._generation += 1
        kind, _, key_id = payload.partition(":")
        if kind == "created":  # a key that was unknown a moment ago may be this one
            self._cache = {d: e for d, e in self._cache.items() if e[1] is not None}
        else:
            self.forget(int(key_id) if key_id.isdigit() else None)

    def forget(self, key_id: int | None) -> None:
        """Drop a key from the cache at once (None: everything)."""
        if key_id is None:
            self._cache.clear()
            return
        self._cache = {d: e for d, e in self._cache.items() if e[1] is None or e[1].id != key_id}

    async def bootstrap(self, keys: Sequence[str], admin_keys: Sequence[str] = ()) -> None:
        """Make sure every key from the environment exists with the role the environment gives it
        (idempotent across replicas; moving a key between the two settings changes its role)."""
        wanted = {hash_key(k): (k, False) for k in keys} | {hash_key(k): (k, True) for k in admin_keys}
        if not wanted:
            return
        async with self._sessions() as s:
            await s.execute(insert_ignore(s, ApiKey), [
                {"name": "env", "key_hash": digest, "prefix": "", "is_admin": admin, "created_at": utcnow()}
                for digest, (_, admin) in wanted.items()
            ])
            for admin in (False, True):
                hashes = [d for d, (_, a) in wanted.items() if a is admin]
                if hashes:
                    await s.execute(update(ApiKey).where(ApiKey.key_hash.in_(hashes), ApiKey.name == "env",
                                                         ApiKey.is_admin.is_not(admin)).values(is_admin=admin))
            await s.commit()

    async def lookup(self, key: str) -> KeyInfo | None:
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        generation = self._generation
        async with self._sessions() as s:
            row = await s.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
        info = KeyInfo(row.id, row.name, row.rate_limit_per_second, row.is_admin) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        trusted = self._live and generation == self._generation
        ttl = NEGATIVE_TTL if info is None else LIVE_TTL if trusted else FALLBACK_TTL
        self._cache[digest] = (now + ttl, info)
        return info

    async def revoke(self, key_id: int) -> bool:
        """Revoke and commit; this process stops accepting the key at once, the others on the NOTIFY."""
        ok = await revoke_key_committed(self._sessions, key_id)
        self.forget(key_id)
        return ok


async def create_key(session: AsyncSession, name: str, rate_limit: float | None = None,
                     admin: bool = False) -> tuple[str, ApiKey]:
    """A new generated key (no commit); its clear text is returned once, only its hash is stored."""
    key = generate_key()
    row = ApiKey(name=name, key_hash=hash_key(key), prefix=shown_prefix(key), rate_limit_per_second=rate_limit,
                 is_admin=admin, created_at=utcnow())
    session.add(row)
    await session.flush()
    await notify(session, CHANNEL, "created:")
    return key, row


async def revoke_key(session: AsyncSession, key_id: int) -> bool:
    """Mark revoked (no commit); every replica is told at this transaction's COMMIT."""
    result = await session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow()))
    ok = bool(getattr(result, "rowcount", 0))
    if ok:
        await notify(session, CHANNEL, f"revoked:{key_id}")
    return ok


async def create_key_committed(sessions: async_sessionmaker[AsyncSession], name: str,
                               rate_limit: float | None = None, admin: bool = False) -> tuple[str, KeyInfo]:
    """`create_key` in a transaction of its own (`smsgw keys create`): the key works once this returns."""
    async with sessions() as s:
        key, row = await create_key(s, name, rate_limit, admin)
        info = KeyInfo(row.id, row.name, row.rate_limit_per_second, row.is_admin)
        await s.commit()  # running gateways drop their cached "unknown key" at this commit (NOTIFY)
    return key, info


async def revoke_key_committed(sessions: async_sessionmaker[AsyncSession], key_id: int) -> bool:
    """`revoke_key` in a transaction of its own (`smsgw keys revoke`); False: no such active key."""
    async with sessions() as s:
        ok = await revoke_key(s, key_id)
        await s.commit()  # running gateways are told at this commit (PostgreSQL NOTIFY)
    return ok


async def list_keys(sessions: async_sessionmaker[AsyncSession]) -> list[ApiKey]:
    """Every key, revoked ones too, oldest first (`smsgw keys list`)."""
    async with sessions() as s:
        return list((await s.scalars(select(ApiKey).order_by(ApiKey.id))).all())
