"""API keys: stored as SHA-256 hashes (keys are long random tokens, so a fast hash is enough), looked
up through a small in-process cache so authenticating a request costs no database round trip.
`SMSGW_API_KEYS` bootstraps keys at start; `smsgw keys create|list|revoke` manages the others."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.tables import ApiKey, utcnow
from app.db.upsert import insert_ignore

CACHE_SECONDS = 30.0


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    name: str
    rate_limit_per_second: float | None


class KeyStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._cache: dict[str, tuple[float, KeyInfo | None]] = {}

    async def bootstrap(self, keys: list[str]) -> None:
        """Make sure every key from the environment exists (idempotent across replicas)."""
        if not keys:
            return
        async with self._sessions() as s:
            await s.execute(insert_ignore(s, ApiKey), [
                {"name": "env", "key_hash": hash_key(k), "prefix": k[:8], "created_at": utcnow()} for k in keys
            ])
            await s.commit()

    async def lookup(self, key: str) -> KeyInfo | None:
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit and hit[0] > now:
            return hit[1]
        async with self._sessions() as s:
            row = await s.scalar(select(ApiKey).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None)))
        info = KeyInfo(row.id, row.name, row.rate_limit_per_second) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, info)
        return info


async def create_key(session: AsyncSession, name: str, rate_limit: float | None = None) -> tuple[str, ApiKey]:
    key = generate_key()
    row = ApiKey(name=name, key_hash=hash_key(key), prefix=key[:8], rate_limit_per_second=rate_limit,
                 created_at=utcnow())
    session.add(row)
    await session.flush()
    return key, row


async def revoke_key(session: AsyncSession, key_id: int) -> bool:
    result = await session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow()))
    return bool(getattr(result, "rowcount", 0))
