"""Identifiers: our message ids (Twilio-style `SM…`) and upstream ids with their normalisation.

Upstreams disagree on how they write the same id: an SMSC may answer submit_sm with a hex id and
carry the decimal form in the receipt (or the other way round), pad with zeros, or change case.
Receipt matching therefore compares normalised ids, and converts between bases only as the
provider's `receipt_id_format` says (`receipt_id_candidates`).
"""

from __future__ import annotations

import re
import secrets
from typing import NewType

MessageSid = NewType("MessageSid", str)
UpstreamId = NewType("UpstreamId", str)

# Whether a (normalised, so lower-case) id is all hex / all decimal digits, and not empty.
_HEX_ONLY = re.compile("[0-9a-f]+").fullmatch
_DEC_ONLY = re.compile("[0-9]+").fullmatch


def new_message_sid() -> MessageSid:
    """34 characters like Twilio's: `SM` + 32 hex digits."""
    return MessageSid("SM" + secrets.token_hex(16))


def new_inbound_sid() -> str:
    return "MM" + secrets.token_hex(16)


def normalise_upstream_id(raw: str) -> UpstreamId:
    """Lower-case, trimmed, without leading zeros (but `0` stays `0`)."""
    value = raw.strip().lower()
    if value[:1] == "0" and _HEX_ONLY(value):  # only a leading zero changes anything
        value = value.lstrip("0") or "0"
    return UpstreamId(value)


def alternate_upstream_ids(raw: str) -> list[UpstreamId]:
    """The same id read in the other base: decimal digits as hex and hex digits as decimal.

    Only used when the exact (normalised) id has no match, so a provider that writes decimal
    everywhere never has its ids confused with another message's hex twin.
    """
    value = normalise_upstream_id(raw)
    out: list[UpstreamId] = []
    if _DEC_ONLY(value) and len(value) <= 30:
        out.append(UpstreamId(format(int(value), "x")))
    if _HEX_ONLY(value) and len(value) <= 24:
        dec = str(int(value, 16))
        if dec != value:
            out.append(UpstreamId(dec))
    return [v for v in out if v != value]


RECEIPT_ID_FORMATS = ("same", "hex", "decimal", "auto")


def receipt_id_candidates(raw: str, id_format: str = "same") -> list[UpstreamId]:
    """The submit ids a receipt's id may stand for, best first, by how the provider writes receipts:
    `same` (as the submit response gave it), `hex` (the receipt has in hex the decimal id of the
    submit response), `decimal` (in decimal the hex id), `auto` (the same id, else the other base).
    An id that is not a number in the stated base is taken as it is."""
    value = normalise_upstream_id(raw)
    if id_format == "hex" and _HEX_ONLY(value) and len(value) <= 24:
        return [UpstreamId(str(int(value, 16)))]
    if id_format == "decimal" and _DEC_ONLY(value) and len(value) <= 30:
        return [UpstreamId(format(int(value), "x"))]
    if id_format == "auto":
        return [value, *alternate_upstream_ids(raw)]
    return [value]
