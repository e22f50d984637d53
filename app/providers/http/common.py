"""What every HTTP dialect shares: the pooled client, throttling, and keeping secrets out of logs.

These provider APIs carry passwords and keys in query strings, so nothing here ever logs or raises
with a raw URL: `redact()` replaces the value of every secret-looking parameter, and exceptions
from httpx (whose messages include the URL) are re-raised as ProviderErrors with a redacted text.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

import httpx

SECRET_PARAMS = ("password", "pass", "pwd", "auth_token", "token", "api_key", "apikey", "key", "secret")
_SECRET_RE = re.compile(
    r"(?i)(?P<k>(?:^|[?&;\s\"'])(?:" + "|".join(SECRET_PARAMS) + r")=)(?P<v>[^&;\s\"']*)"
)


def redact(text: str, *secrets: str | None) -> str:
    """`text` with secret query parameters and the given secret values replaced by `***`."""
    out = _SECRET_RE.sub(lambda m: m.group("k") + "***", text)
    for s in secrets:
        if s:
            out = out.replace(s, "***")
    return out


def make_client(timeout: float, max_connections: int) -> httpx.AsyncClient:
    """One pooled client per provider: keep-alive connections, explicit timeouts, no redirects."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=False,
        trust_env=False,
    )


class TokenBucket:
    """`rate` acquisitions per second on average, bursts up to `rate` (0 = unlimited)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = max(rate, 1.0)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(max(self.rate, 1.0), self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


class _RedactingFilter(logging.Filter):
    """Strips passwords from httpx's own log lines, which print the full request URL."""

    def __init__(self) -> None:
        super().__init__("")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            return True
        clean = redact(text, *self.secrets)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_LOG_FILTER = _RedactingFilter()
_FILTERED_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2")


def protect_logs(secret: str | None) -> None:
    """Install the redacting filter on httpx's loggers (once) and teach it `secret`."""
    if secret:
        _LOG_FILTER.secrets.add(secret)
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)
