"""The shortcut for `+digits` numbers (app/domain/phone.py `_parse_international`) gives exactly what
`phonenumbers.parse("+" + digits, None)` gives, for every country calling code: national prefixes,
Italian leading zeros, carrier codes, lengths from 3 to 15 digits, unknown and zero-led codes."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from app.domain import phone


def _by_parse(digits: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse("+" + digits, None)
    except phonenumbers.NumberParseException:
        return None


def _samples() -> list[str]:
    rng = random.Random(15)
    out: list[str] = []
    for cc in sorted(COUNTRY_CODE_TO_REGION_CODE):
        for _ in range(40):
            # National parts that start the way national prefixes, trunk codes and carrier codes do.
            lead = rng.choice(["", "0", "00", "8", "9", "1", "01", "80", "15", "0" * rng.randint(1, 6)])
            rest = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 13)))
            digits = (str(cc) + lead + rest)[:15]
            if len(digits) >= 3:
                out.append(digits)
    out += ["".join(rng.choice("0123456789") for _ in range(rng.randint(3, 15))) for _ in range(5_000)]
    out += ["000", "0123456", "999", "28123456", "80012345678"]  # zero-led, unassigned codes
    return out


def test_the_shortcut_parses_as_phonenumbers_does() -> None:
    samples = _samples()
    assert len(samples) > 10_000
    for digits in samples:
        assert phone._parse_international(digits) == _by_parse(digits), digits


@pytest.mark.parametrize(("raw", "e164"), [
    ("+4402071234567", "+442071234567"),  # the UK trunk 0 after the country code goes
    ("+390612345678", "+390612345678"),  # Italy keeps its leading 0
    ("+96170123456", "+96170123456"),
    ("+1 (555) 001-1234", "+15550011234"),
])
def test_international_numbers_are_normalised(raw: str, e164: str) -> None:
    assert phone.normalise_e164(raw) == e164


@pytest.mark.parametrize("raw", ["+999123456", "+0123456", "+12"])
def test_impossible_international_numbers_are_refused(raw: str) -> None:
    with pytest.raises(phone.PhoneError):
        phone.normalise_e164(raw)
