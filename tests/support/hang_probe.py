"""A test that hangs, for tests/static/test_hang_watchdog.py (named on its command line, never collected)."""

import time


def test_hangs_for_a_minute() -> None:
    time.sleep(60)
