"""Loopback fakes of the upstream providers' HTTP APIs, byte for byte as their seed documents say.

Test doubles, not part of the shipped package (pyproject ships `app*` only, and nothing under app/
imports them). Tests import them as `fakes.…` (tests/ is on pytest's path, like `conftest`); the
benchmarks, run from the repository root, as `tests.fakes.…`. They listen on 127.0.0.1 only.
"""
