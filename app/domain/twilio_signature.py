"""Twilio's `X-Twilio-Signature` for form-encoded POSTs (pure; no framework).

The signature is base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 ...)) where the
URL is the full URL Twilio requested (scheme, host, port if any, path and query string) and the
POST parameters are sorted by name; a name given several times contributes each of its values, in
sorted order. JSON bodies (signed through a `bodySHA256` query parameter) are not covered here.

Twilio's helper libraries accept a signature computed over the URL with or without its port,
because proxies and Twilio itself disagree on whether `:443`/`:80` is part of it; `validate_signature`
does the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else sorted(value)


def compute_signature(auth_token: str, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    """The `X-Twilio-Signature` Twilio sends for a POST of `params` to `url`."""
    parts = [url]
    for name in sorted(params):
        for value in _values(params[name]):
            parts.append(name)
            parts.append(value)
    mac = hmac.new(auth_token.encode("utf-8"), "".join(parts).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def url_variants(url: str) -> list[str]:
    """`url` as given, without its port, and with the scheme's default port (as Twilio's libraries)."""
    out = [url]
    try:
        split = urlsplit(url)
        port = split.port
    except ValueError:
        return out
    host = split.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    userinfo = split.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    if port is not None:
        out.append(urlunsplit(split._replace(netloc=prefix + host)))
    else:
        default = _DEFAULT_PORTS.get(split.scheme.lower())
        if default is not None:
            out.append(urlunsplit(split._replace(netloc=f"{prefix}{host}:{default}")))
    return out


def validate_signature(
    auth_token: str, url: str, params: Mapping[str, str | Sequence[str]], signature: str
) -> bool:
    """True when `signature` is Twilio's signature of this request under `auth_token` (constant time)."""
    if not auth_token or not signature:
        return False
    expected = signature.strip().encode("utf-8")
    ok = False
    for candidate in url_variants(url):
        computed = compute_signature(auth_token, candidate, params).encode("ascii")
        # Compare every variant, so the time taken does not depend on which one matched.
        ok |= hmac.compare_digest(computed, expected)
    return ok
