"""Where a StatusCallback may go: the URL parsed and every address its host resolves to checked
(app/domain/netguard.py), at `/send` (services/accept.py) and again before each POST
(events/callbacks.py), which then connects to the address judged here (DNS rebinding)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
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
