"""Routing: which providers, in failover order, may carry a message (contract §5 `routes`).

Within a channel the longest matching destination prefix wins; a route without a prefix matches
every destination. The first provider of the route is primary, the rest fail over in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    channel: str
    prefix: str
    providers: tuple[str, ...]


def providers_for(routes: Sequence[Route], channel: str, to: str) -> tuple[str, ...]:
    best: Route | None = None
    for route in routes:
        matches = route.channel == channel and to.startswith(route.prefix)
        if matches and (best is None or len(route.prefix) > len(best.prefix)):
            best = route
    return best.providers if best else ()


def backoff_seconds(attempt: int, base: float, cap: float, jitter: float) -> float:
    """Exponential backoff: base·2^(attempt-1), capped, times a jitter factor in [0.5, 1.0]."""
    delay = min(cap, base * (2.0 ** max(0, attempt - 1)))
    return float(delay * (0.5 + 0.5 * jitter))
