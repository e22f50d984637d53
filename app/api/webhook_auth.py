"""Authentication of the upstream webhooks (`/receive`, `/delivery-notification`), `SMSGW_WEBHOOK_AUTH`.

Modes, comma-separated; a request passes when any one of them accepts it:
- `twilio-signature`: `X-Twilio-Signature` made with the `auth_token` of any configured Twilio provider
  over `public_url` + path (+ query) and the form fields (Twilio's algorithm);
- `basic:<user>:<pass>`: HTTP basic auth;
- `token:<value>`: `Authorization: Bearer <value>` or `X-Webhook-Token: <value>`;
- `none`: no check, for development only (must be the only mode, and it is logged at start).
Comparisons are constant-time. No credentials at all → 401; credentials that fail → 403.

`check` returns the name of the Twilio provider whose `auth_token` signed the request, when that is
what passed: a status it reports then applies only to that provider's messages (one account's
callbacks cannot move another provider's messages). Basic and token credentials are the operator's
own and scope nothing.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.requests import Request

from app.config import HttpProviderConfig, Settings
from app.domain.twilio_signature import validate_signature
from app.errors import Forbidden, Unauthorized


class WebhookAuthConfigError(ValueError):
    pass


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(frozen=True)
class WebhookAuth:
    allow_any: bool = False
    twilio_tokens: tuple[tuple[str, str], ...] = ()  # (provider name, auth_token)
    twilio_enabled: bool = False
    basic: tuple[tuple[str, str], ...] = ()
    tokens: tuple[str, ...] = field(default=())

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookAuth:
        modes = settings.webhook_auth_modes()
        if not modes:
            raise WebhookAuthConfigError("SMSGW_WEBHOOK_AUTH is empty; set `none` explicitly for development")
        if ("none", "") in modes:
            if len(modes) > 1:
                raise WebhookAuthConfigError("`none` cannot be combined with other webhook auth modes")
            return cls(allow_any=True)
        basic: list[tuple[str, str]] = []
        tokens: list[str] = []
        twilio = False
        for kind, rest in modes:
            if kind == "twilio-signature":
                twilio = True
            elif kind == "basic" and ":" in rest:
                user, _, password = rest.partition(":")
                basic.append((user, password))
            elif kind == "token" and rest:
                tokens.append(rest)
            else:
                raise WebhookAuthConfigError(f"unknown webhook auth mode {kind!r}")
        twilio_tokens = tuple(
            (p.name, p.auth_token.get_secret_value()) for p in settings.providers
            if isinstance(p, HttpProviderConfig) and p.dialect == "twilio" and p.auth_token is not None
        )
        return cls(False, twilio_tokens, twilio, tuple(basic), tuple(tokens))

    def check(self, request: Request, form: Mapping[str, str | list[str]], public_url: str) -> str | None:
        """The Twilio provider whose signature passed, or None when another mode passed. Raises
        Unauthorized (nothing presented) or Forbidden (presented, wrong)."""
        if self.allow_any:
            return None
        presented = False
        signature = request.headers.get("x-twilio-signature")
        if self.twilio_enabled and signature is not None:
            presented = True
            url = public_url.rstrip("/") + request.url.path
            if request.url.query:
                url += "?" + request.url.query
            signed = [name for name, t in self.twilio_tokens if validate_signature(t, url, form, signature)]
            if signed:
                # Two providers with one auth_token are one Twilio account; the first one configured
                # stands for it.
                return signed[0]
        authz = request.headers.get("authorization", "")
        if self.basic and authz.lower().startswith("basic "):
            presented = True
            try:
                user, _, password = base64.b64decode(authz[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user = password = ""
            # Check every pair, so the time taken does not tell which user exists.
            ok = [(_eq(user, u) & _eq(password, p)) for u, p in self.basic]
            if any(ok):
                return None
        if self.tokens:
            bearer = authz[7:].strip() if authz.lower().startswith("bearer ") else None
            for value in (bearer, request.headers.get("x-webhook-token")):
                if value is not None:
                    presented = True
                    if any([_eq(value, t) for t in self.tokens]):
                        return None
        if presented:
            raise Forbidden("webhook authentication failed", code="webhook_auth_failed")
        raise Unauthorized("webhook authentication required", code="webhook_auth_required")
