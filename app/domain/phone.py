"""Destination and sender rules (contract §2): E.164 destinations, numeric or alphanumeric senders."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import phonenumberutil as _util
from phonenumbers.phonemetadata import PhoneMetadata

MAX_SENDER_DIGITS = 15
MAX_SENDER_ALNUM = 11
_ALNUM_SENDER = re.compile(r"^[A-Za-z0-9 .\-_&]+$")
_NUMBER_CHARS = re.compile(r"^\+?[0-9 ()\-.]+$")
_NOT_DIGIT = re.compile(r"[^0-9]")


class PhoneError(ValueError):
    pass


def normalise_e164(raw: str, default_region: str | None = None) -> str:
    """`raw` as E.164 with a leading `+`; the `+` is optional on input (contract §2).

    With a `+`, any number a numbering plan can have (possible length) is accepted. Without one, a
    configured default region also accepts that region's national numbers; with no default region the
    digits must be a valid international number as written (issue #17: a local `70123456` must not
    go out as `+70123456`). Letters are refused.
    """
    value = raw.strip()
    if not value:
        raise PhoneError("empty phone number")
    if not _NUMBER_CHARS.match(value):
        raise PhoneError(f"{raw!r} is not a phone number")
    plain = value[1:] if value[0] == "+" else value  # the usual spelling: digits only (ASCII, by the check above)
    digits = plain if plain.isdigit() else _NOT_DIGIT.sub("", value)
    if not 3 <= len(digits) <= 15:
        raise PhoneError(f"{raw!r} is not an E.164 number (3 to 15 digits)")
    if value.startswith("+"):
        parsed = _parse_international(digits)
        if parsed is not None and phonenumbers.is_possible_number(parsed):
            return _e164(parsed)
        raise PhoneError(f"{raw!r} is not a possible E.164 number")
    if default_region is None:
        parsed = _parse_international(digits)
        if parsed is not None and phonenumbers.is_valid_number(parsed):
            return _e164(parsed)
        raise PhoneError(f"{raw!r} is not a valid international number: write it with its country code "
                         f"and a leading + (e.g. +96170123456), or set SMSGW_DEFAULT_COUNTRY (e.g. LB) to "
                         f"accept national numbers")
    for candidate, region in ((value, default_region), ("+" + digits, None)):
        parsed = _parse(candidate, region)
        if parsed is not None and phonenumbers.is_possible_number(parsed):
            return _e164(parsed)
    raise PhoneError(f"{raw!r} is not a possible number, national ({default_region}) or international")


def _parse(candidate: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(candidate, region)
    except phonenumbers.NumberParseException:
        return None


_NOT_POSSIBLE_LOCAL = (_util.ValidationResult.TOO_SHORT, _util.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
                       _util.ValidationResult.INVALID_LENGTH)


def _parse_international(digits: str) -> phonenumbers.PhoneNumber | None:
    """`phonenumbers.parse("+" + digits, None)` (None where it raises), for ASCII digits only: the steps
    of parse that such a string takes, without those it skips (finding the number in free text, RFC
    3966, extensions, Unicode digits, letters), which were half of its 20 µs. A string this does not
    settle goes to parse itself; tests/unit/test_phone_parse.py compares the two on every country code."""
    cc, national = _util._extract_country_code(digits)
    if cc == 0 or len(national) < _util._MIN_LENGTH_FOR_NSN:
        return _parse("+" + digits, None)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(cc, _util.region_code_for_country_code(cc))
    if metadata is not None:
        _carrier, stripped, _ = _util._maybe_strip_national_prefix_carrier_code(national, metadata)
        if _util._test_number_length(stripped, metadata) not in _NOT_POSSIBLE_LOCAL:
            national = stripped
    if not _util._MIN_LENGTH_FOR_NSN <= len(national) <= _util._MAX_LENGTH_FOR_NSN:
        return _parse("+" + digits, None)
    number = phonenumbers.PhoneNumber(country_code=cc)
    _util._set_italian_leading_zeros_for_phone_number(national, number)
    number.national_number = int(national)
    return number


def _e164(parsed: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def split_recipients(value: str | list[str]) -> list[str]:
    """`To` as one number, a list, or a comma-separated string."""
    items = value if isinstance(value, list) else value.split(",")
    return [item.strip() for item in items if item.strip()]


def validate_sender(raw: str) -> str:
    """Numeric up to 15 digits (a leading + allowed), or alphanumeric up to 11 characters."""
    value = raw.strip()
    if not value:
        raise PhoneError("From is empty")
    numeric = value[1:] if value.startswith("+") else value
    if numeric.isdigit() and numeric.isascii():
        if len(numeric) > MAX_SENDER_DIGITS:
            raise PhoneError(f"a numeric sender has at most {MAX_SENDER_DIGITS} digits")
        return value
    if len(value) > MAX_SENDER_ALNUM:
        raise PhoneError(f"an alphanumeric sender has at most {MAX_SENDER_ALNUM} characters")
    if not value.isascii() or not _ALNUM_SENDER.match(value):
        raise PhoneError("an alphanumeric sender may use A-Z, a-z, 0-9, space and . - _ &")
    return value
