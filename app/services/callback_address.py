"""Where a StatusCallback may go: the URL parsed and every address its host resolves to checked
(app/domain/netguard.py), at `/send` (services/accept.py) and again before each POST
(events/callbacks.py), which then connects to the address judged here (DNS rebinding).

`/send` asks `ResolveCache` (ACCEPT_RESOLUTIONS): a name resolved in the last RESOLVE_CACHE_SECONDS is
judged on those addresses, without a lookup (a thread hop and a DNS query per request, when every
request names the same callback). The POST resolves afresh: what /send judged from the cache is
judged again on what the name resolves to then."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from app.domain.netguard import (
    CallbackTarget,
    IPAddress,
    IPNetwork,
    check_addresses,
    is_local_name,
    parse_callback_url,
)

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


RESOLVE_CACHE_SECONDS = 30.0
RESOLVE_CACHE_NAMES = 1024


class ResolveCache:
    """`resolver`'s answers, kept for `ttl` seconds per (host, port), for at most `size` names (the least
    recently used goes first). A name that did not resolve is not kept: it is asked again next time."""

    def __init__(self, resolver: Resolver = resolve, ttl: float = RESOLVE_CACHE_SECONDS,
                 size: int = RESOLVE_CACHE_NAMES, clock: Callable[[], float] = time.monotonic) -> None:
        self._resolver = resolver
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._answers: OrderedDict[tuple[str, int], tuple[float, list[IPAddress]]] = OrderedDict()

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        key = (host, port)
        now = self._clock()
        kept = self._answers.get(key)
        if kept is not None and kept[0] > now:
            self._answers.move_to_end(key)
            return list(kept[1])
        addresses = await self._resolver(host, port)
        if addresses:
            self._answers[key] = (now + self._ttl, list(addresses))
            self._answers.move_to_end(key)
            while len(self._answers) > self._size:
                self._answers.popitem(last=False)
        else:
            self._answers.pop(key, None)
        return addresses


ACCEPT_RESOLUTIONS = ResolveCache()  # /send's, for the whole process


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
