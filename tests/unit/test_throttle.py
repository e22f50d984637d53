"""The one token bucket (app/domain/throttle.py)."""

from __future__ import annotations

import pytest

from app.domain.throttle import TokenBucket


def test_a_full_bucket_gives_its_capacity_at_once_then_waits_for_the_rate() -> None:
    bucket = TokenBucket(rate=10, now=0.0)
    assert [bucket.take(0.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0.0


def test_an_empty_bucket_starts_with_nothing_and_refills_to_capacity_only() -> None:
    bucket = TokenBucket(rate=2, capacity=3, now=0.0, full=False)
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0] * 3
    assert bucket.take(100.0) > 0


def test_a_rate_of_zero_is_unlimited() -> None:
    bucket = TokenBucket(rate=0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(1000))


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    bucket = TokenBucket(rate=1, capacity=1, now=10.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(5.0) > 0
