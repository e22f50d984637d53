"""Upstream ids are compared normalised: trimmed, lower-case, and a hex or decimal id without its
leading zeros (`0` stays `0`); anything else keeps its zeros."""

from __future__ import annotations

import pytest

from app.domain.ids import normalise_upstream_id


@pytest.mark.parametrize(("raw", "normal"), [
    ("0A1B", "a1b"), ("  00123 ", "123"), ("000", "0"), ("0", "0"), ("ABC", "abc"), ("", ""),
    ("0x1f", "0x1f"),  # not hex digits only: kept as written (lower-case)
    ("00-12", "00-12"), ("0 1", "0 1"), ("０1", "０1"),  # a full-width zero is no ASCII digit
    ("1000", "1000"),  # trailing zeros stay
])
def test_normalised_upstream_ids(raw: str, normal: str) -> None:
    assert normalise_upstream_id(raw) == normal
