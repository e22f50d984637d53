"""How fast this dispatcher starts messages when it has more than it can start at once: what bounds
how many /send may hand it (Dispatcher.room).

A handed-over message must be started within 3/4 of its lease. One still waiting at 5/8 of it is leased
again (the dispatcher's renewal, an UPDATE: one row version) or, should that fail, given back at 3/4 (an
UPDATE) and claimed again (another). A message left in the database costs a claim (one row version) too,
so the dispatcher takes what it starts before renewals begin, in 0.6 of a lease at the rate it has
measured: a misjudged rate then costs what a claim would have, no more.

Only seconds with a backlog count (messages were waiting when the second ended): an idle dispatcher
starts what arrives, which says nothing of what it could start. The estimate is a moving average of
those seconds, so one slow second (a rebind, a throttle) moves it only part way.
"""

from __future__ import annotations

SMOOTHING = 0.3  # the weight of the newest backlogged second
# The first estimate comes from a quarter second: a burst at start-up would otherwise meet
# INITIAL_HANDOFF for a whole second (at 20,000 accepts a second, most of a 100,000-message burst).
FIRST_WINDOW = 0.25
# What may be handed over before a rate is known (the fixed bound of earlier versions).
INITIAL_HANDOFF = 20_000
# What is started in this share of the lease may be handed over: short of 5/8, where renewals begin.
SHARE_OF_LEASE = 0.6


def handoff_budget(rate: float | None, capacity: int, lease_seconds: float, cap: int) -> int:
    """How many messages a dispatcher may hold at once, handed over or in flight: what it starts in 0.6 of
    a lease at `rate` (INITIAL_HANDOFF before it has one), never less than its window (2 × `capacity`)
    nor more than `cap` (`dispatch_handoff_max`)."""
    if rate is None:
        return min(cap, INITIAL_HANDOFF)
    return min(cap, max(2 * capacity, int(rate * SHARE_OF_LEASE * lease_seconds)))


class StartRate:
    def __init__(self) -> None:
        self.per_second: float | None = None  # None until a backlogged second was seen
        self._since: float | None = None  # loop time the current second began
        self._started = 0
        self._backlogged = False  # as the last call left it: the state the current second ends in

    def started(self, n: int, now: float, backlogged: bool) -> None:
        """`n` messages started at `now`; `backlogged`: others are still waiting to start."""
        if self._since is None:
            self._since = now
        elapsed = now - self._since
        if elapsed >= (1.0 if self.per_second is not None else FIRST_WINDOW):
            if self._backlogged:
                rate = self._started / elapsed
                self.per_second = rate if self.per_second is None else \
                    (1 - SMOOTHING) * self.per_second + SMOOTHING * rate
            self._since, self._started = now, 0
        self._started += n
        self._backlogged = backlogged
