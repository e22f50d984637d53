"""/send's cache of StatusCallback host lookups (app/services/callback_address.py ResolveCache): one
lookup per name and TTL, not one per request; names that do not resolve are asked again."""

from __future__ import annotations

import ipaddress

import pytest

from app.domain.netguard import CallbackRefused, IPAddress
from app.services.callback_address import ResolveCache, check_callback


class Dns:
    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append((host, port))
        return [ipaddress.ip_address(self.answers[host])] if host in self.answers else []


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_name_is_looked_up_once_per_ttl() -> None:
    dns, clock = Dns({"crm.example.com": "93.184.216.34"}), Clock()
    cache = ResolveCache(dns, ttl=30, clock=clock)
    for _ in range(3):
        assert await cache("crm.example.com", 443) == [ipaddress.ip_address("93.184.216.34")]
    assert dns.asked == [("crm.example.com", 443)]
    await cache("crm.example.com", 8443)  # another port is another entry
    clock.now += 31
    dns.answers["crm.example.com"] = "93.184.216.35"
    assert await cache("crm.example.com", 443) == [ipaddress.ip_address("93.184.216.35")]
    assert dns.asked == [("crm.example.com", 443), ("crm.example.com", 8443), ("crm.example.com", 443)]


async def test_a_name_that_does_not_resolve_is_asked_again_and_the_oldest_names_go_first() -> None:
    dns = Dns({})
    cache = ResolveCache(dns, size=2, clock=Clock())
    assert await cache("later.example.com", 443) == []
    dns.answers.update({"later.example.com": "93.184.216.34", "b.example.com": "93.184.216.35",
                        "c.example.com": "93.184.216.36"})
    assert await cache("later.example.com", 443) != []
    await cache("b.example.com", 443)
    await cache("c.example.com", 443)  # the third name: the least recently used one goes
    await cache("b.example.com", 443)
    await cache("later.example.com", 443)
    assert [h for h, _ in dns.asked] == ["later.example.com", "later.example.com", "b.example.com",
                                         "c.example.com", "later.example.com"]


async def test_a_cached_inside_address_is_refused_as_a_fresh_one() -> None:
    cache = ResolveCache(Dns({"intranet.example.com": "10.1.2.3"}), clock=Clock())
    for _ in range(2):
        with pytest.raises(CallbackRefused):
            await check_callback("https://intranet.example.com/cb", [], cache)
