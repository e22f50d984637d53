"""How much /send may hand the dispatcher: its start rate, measured only while messages wait, and the
budget that follows from it (app/dispatch/start_rate.py)."""

from __future__ import annotations

import pytest

from app.dispatch.start_rate import INITIAL_HANDOFF, SMOOTHING, StartRate, handoff_budget


def test_no_rate_until_a_quarter_second_with_a_backlog_has_passed_then_a_second_each() -> None:
    r = StartRate()
    r.started(100, 0.0, backlogged=True)
    r.started(100, 0.2, backlogged=True)
    assert r.per_second is None
    r.started(100, 0.25, backlogged=True)  # closes the first quarter second: 200 started in it
    assert r.per_second == pytest.approx(800.0)
    r.started(300, 0.75, backlogged=True)
    assert r.per_second == pytest.approx(800.0)  # later estimates each take a whole second
    r.started(0, 1.25, backlogged=True)
    assert r.per_second == pytest.approx((1 - SMOOTHING) * 800 + SMOOTHING * 400)


def test_seconds_without_a_backlog_do_not_count() -> None:
    r = StartRate()
    for t in range(10):  # an idle gateway starting what arrives, 5 a second
        r.started(5, float(t), backlogged=False)
    assert r.per_second is None
    r.started(1000, 10.0, backlogged=True)
    r.started(0, 11.0, backlogged=False)  # the backlog drained
    assert r.per_second == pytest.approx(1000.0)
    for t in range(12, 20):
        r.started(5, float(t), backlogged=False)
    assert r.per_second == pytest.approx(1000.0)  # kept through the idle spell


def test_the_rate_moves_part_way_towards_each_new_second() -> None:
    r = StartRate()
    r.started(1000, 0.0, backlogged=True)
    r.started(100, 1.0, backlogged=True)
    assert r.per_second == pytest.approx(1000.0)
    r.started(0, 2.0, backlogged=True)  # a slow second: 100
    assert r.per_second == pytest.approx((1 - SMOOTHING) * 1000 + SMOOTHING * 100)


def test_a_stalled_spell_counts_as_slow() -> None:
    r = StartRate()
    r.started(500, 0.0, backlogged=True)
    r.started(0, 1.0, backlogged=True)
    r.started(0, 11.0, backlogged=True)  # nothing started for 10 s while messages waited
    assert r.per_second == pytest.approx((1 - SMOOTHING) * 500 + SMOOTHING * 0)


def test_the_budget_is_six_tenths_of_a_lease_of_starts_within_the_window_and_the_cap() -> None:
    assert handoff_budget(None, 200, 60.0, 100_000) == INITIAL_HANDOFF
    assert handoff_budget(None, 200, 60.0, 10) == 10
    assert handoff_budget(2000.0, 200, 60.0, 100_000) == 72_000
    assert handoff_budget(2000.0, 200, 60.0, 50_000) == 50_000
    assert handoff_budget(5.0, 200, 60.0, 100_000) == 400  # never below the window
