"""Which StatusCallback URLs the gateway may POST to: pure rules, no I/O (resolution is the caller's).

A callback URL is the caller's, but the POST comes from inside our network: without these rules an API
key could make the gateway talk to the database port, the cloud metadata service or an intranet
admin page (SSRF). A URL is refused when it carries userinfo, or when its host is, or resolves to, an
address that is not public, unless the operator allowed that network (`SMSGW_CALLBACK_ALLOW_NETWORKS`).

Numeric hosts are read the way the C resolver reads them (`inet_aton`): `2130706433`, `0x7f000001`,
`0177.1` and `127.1` are all 127.0.0.1, so each is judged as the address it is, not as a name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_CALLBACK_URL = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Refused unless allowed, on top of whatever `ipaddress` does not call global (a belt to its braces:
# its tables have changed between Python versions).
_BLOCKED: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
    "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "64:ff9b:1::/48", "100::/64",
    "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPAT = ipaddress.ip_network("::/96")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class CallbackRefused(ValueError):
    """The URL is not one the gateway will POST to; the message says why."""


class CallbackUnresolved(CallbackRefused):
    """The host does not resolve (now): nothing to judge, and nothing to connect to."""


@dataclass(frozen=True, slots=True)
class CallbackTarget:
    scheme: str
    host: str  # as written, lower case, without brackets or a trailing dot
    port: int
    path: str  # path and query, at least "/"
    address: IPAddress | None  # the host when it is a numeric address (any spelling); None for a name

    @property
    def default_port(self) -> bool:
        return self.port == (443 if self.scheme == "https" else 80)


def parse_networks(raw: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """`10.0.0.0/8, 127.0.0.1` → networks; raises ValueError on a bad entry."""
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(ipaddress.ip_network(i.strip(), strict=False) for i in items if i.strip())


def _ipv4_number(host: str) -> ipaddress.IPv4Address | None:
    """`inet_aton`'s reading of a host made of 1–4 numeric labels; None if it is not one."""
    labels = host.split(".")
    if not 1 <= len(labels) <= 4 or not all(_NUMERIC_LABEL.fullmatch(x) for x in labels):
        return None
    values: list[int] = []
    for label in labels:
        if label[:2].lower() == "0x":
            values.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not all(c in "01234567" for c in label):
                raise CallbackRefused(f"invalid numeric host {host!r}")
            values.append(int(label, 8))
        else:
            values.append(int(label))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise CallbackRefused(f"invalid numeric host {host!r}")
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def host_address(host: str) -> IPAddress | None:
    """The address a URL host denotes when it is numeric, in any spelling; None when it is a name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise CallbackRefused(f"invalid IPv6 host {host!r}") from None
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        # A host whose last label is a number is an address or nothing (as browsers read it).
        address = _ipv4_number(host)
        if address is None:
            raise CallbackRefused(f"invalid numeric host {host!r}")
        return address
    return None


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64 or (address in _V4_COMPAT and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_allowed(address: IPAddress, allow: Sequence[IPNetwork] = ()) -> bool:
    """Public, or inside a network the operator allowed. An IPv6 spelling of an IPv4 address (mapped,
    compatible, 6to4, Teredo, NAT64) is judged as that IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
    if any(address in n for n in allow if n.version == address.version):
        return True
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            return is_allowed(inner, allow)
    if address.is_multicast or not address.is_global:
        return False
    return not any(address in n for n in _BLOCKED if n.version == address.version)


def parse_callback_url(raw: str) -> CallbackTarget:
    """The static checks (scheme, length, userinfo, host syntax); raises CallbackRefused."""
    url = raw.strip()
    if len(url) > MAX_CALLBACK_URL:
        raise CallbackRefused(f"StatusCallback is longer than {MAX_CALLBACK_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number or out of range
        raise CallbackRefused("StatusCallback must be an http(s) URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise CallbackRefused("StatusCallback must be an http(s) URL")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise CallbackRefused("StatusCallback must not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host or any(c.isspace() or c in "\\%" for c in host.split("%", 1)[0]):
        raise CallbackRefused("StatusCallback has no valid host")
    scheme = parts.scheme.lower()
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return CallbackTarget(scheme, host, port or (443 if scheme == "https" else 80), path, host_address(host))


def check_addresses(target: CallbackTarget, addresses: Sequence[IPAddress],
                    allow: Sequence[IPNetwork] = ()) -> IPAddress:
    """The address to connect to: every one the host resolves to must be allowed (a name that also
    resolves to a private address is refused, whichever one a connect would pick)."""
    if not addresses:
        raise CallbackUnresolved(f"StatusCallback host {target.host!r} does not resolve")
    for address in addresses:
        if not is_allowed(address, allow):
            where = "is" if target.address is not None else f"resolves to {address}, which is"
            raise CallbackRefused(f"StatusCallback host {target.host!r} {where} not a public address")
    return addresses[0]


def is_local_name(host: str) -> bool:
    """`localhost` and `*.localhost` are loopback whatever a resolver says (RFC 6761)."""
    return host in _LOCAL_NAMES or host.endswith(".localhost")
