"""The event loop's lag (`smsgw_event_loop_lag_seconds`): how late a due timer runs. A loop blocked for
80 ms shows a sample of at least that; an idle one, samples near zero."""

from __future__ import annotations

import asyncio
import contextlib
import time

from app.metrics import Metrics


def _samples(metrics: Metrics) -> tuple[float, float]:
    """(count, sum) of the lag histogram."""
    count = total = 0.0
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == "smsgw_event_loop_lag_seconds_count":
                count = s.value
            elif s.name == "smsgw_event_loop_lag_seconds_sum":
                total = s.value
    return count, total


def _hold_the_loop(seconds: float) -> None:
    """A callback that keeps the loop from doing anything else: its timers come due and wait."""
    time.sleep(seconds)


async def _watched(metrics: Metrics, seconds: float, block: float = 0.0) -> None:
    task = asyncio.create_task(metrics.watch_loop(every=0.01))
    try:
        await asyncio.sleep(seconds / 2)
        if block:
            asyncio.get_running_loop().call_soon(_hold_the_loop, block)
        await asyncio.sleep(seconds / 2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_idle_loop_runs_its_timers_on_time() -> None:
    metrics = Metrics()
    await _watched(metrics, 0.2)
    count, total = _samples(metrics)
    assert count >= 5
    assert total / count < 0.02


async def test_a_blocked_loop_shows_how_long_it_was_blocked() -> None:
    metrics = Metrics()
    await _watched(metrics, 0.2, block=0.08)
    count, total = _samples(metrics)
    assert count >= 5
    assert total >= 0.07  # the sample that was due during the block came that much late
    bucket = {s.labels["le"]: s.value for f in metrics.registry.collect() for s in f.samples
              if s.name == "smsgw_event_loop_lag_seconds_bucket"}
    assert bucket["0.05"] < count  # one sample lies above 50 ms
