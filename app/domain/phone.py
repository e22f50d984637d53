"""Destination and sender rules (contract §2): E.164 destinations, numeric or alphanumeric senders."""

from __future__ import annotations

import re

import phonenumbers

MAX_SENDER_DIGITS = 15
MAX_SENDER_ALNUM = 11
_ALNUM_SENDER = re.compile(r"^[A-Za-z0-9 .\-_&]+$")
_NUMBER_CHARS = re.compile(r"^\+?[0-9 ()\-.]+$")


class PhoneError(ValueError):
    pass


def normalise_e164(raw: str, default_region: str | None = None) -> str:
    """`raw` as E.164 with a leading `+`; the `+` is optional on input (contract §2).

    Numbers without `+` are read as international unless a default region is configured, in which
    case a national number of that region is accepted too. Letters, and numbers that no numbering
    plan can have, are refused.
    """
    value = raw.strip()
    if not value:
        raise PhoneError("empty phone number")
    if not _NUMBER_CHARS.match(value):
        raise PhoneError(f"{raw!r} is not a phone number")
    digits = re.sub(r"[^0-9]", "", value)
    if not 3 <= len(digits) <= 15:
        raise PhoneError(f"{raw!r} is not an E.164 number (3 to 15 digits)")
    candidates = ["+" + digits] if value.startswith("+") or default_region is None else [value, "+" + digits]
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, None if candidate.startswith("+") else default_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    raise PhoneError(f"{raw!r} is not a possible E.164 number")


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
