"""submit_sm building (pure): the concatenation reference, the relative validity period, the source address."""

from __future__ import annotations

import pytest

from app.config import SmppProviderConfig
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid
from app.domain.messages import OutboundMessage
from app.providers.smpp.pdu import Tag, int_value
from app.providers.smpp.submit import StatusClasses, build_parts, relative_validity, source_address

CONFIG = SmppProviderConfig(name="p", system_id="x", password="y")


def message(mode: LongMessageMode, validity: int | None = None) -> OutboundMessage:
    return OutboundMessage(sid=MessageSid("SM1"), to="+4477001100", sender="Acme", body="x" * 300,
                           encoding=Encoding.GSM7, long_message_mode=mode, validity_period=validity)


def test_sar_reference_carries_all_16_bits_and_udh_the_low_8() -> None:
    sar = build_parts(message(LongMessageMode.SPLIT_SAR), CONFIG, 0xBEEF)
    assert [int_value(tlvs[Tag.SAR_MSG_REF_NUM]) for _, tlvs in sar] == [0xBEEF, 0xBEEF]
    assert [len(tlvs[Tag.SAR_MSG_REF_NUM]) for _, tlvs in sar] == [2, 2]
    udh = build_parts(message(LongMessageMode.SPLIT), CONFIG, 0xBEEF)
    assert [fields["short_message"][:6] for fields, _ in udh] == [bytes((5, 0, 3, 0xEF, 2, 1)),
                                                                 bytes((5, 0, 3, 0xEF, 2, 2))]


@pytest.mark.parametrize(("sender", "expected"), [
    ("+96170123456", (1, 1, "96170123456")),  # international
    ("70123456", (0, 1, "70123456")),  # digits without +: unknown type of number
    ("Acme", (5, 0, "Acme")),  # alphanumeric
    (None, (5, 0, "Dflt")),  # the provider's default_from
])
def test_source_address_type_follows_the_sender_and_submit_sm_and_query_sm_agree(
        sender: str | None, expected: tuple[int, int, str]) -> None:
    cfg = SmppProviderConfig(name="p", system_id="x", password="y", default_from="Dflt")
    assert source_address(sender, cfg) == expected
    fields, _ = build_parts(OutboundMessage(sid=MessageSid("SM1"), to="+4477001100", sender=sender, body="hi",
                                            encoding=Encoding.GSM7, long_message_mode=LongMessageMode.SPLIT),
                            cfg, 1)[0]
    assert (fields["source_addr_ton"], fields["source_addr_npi"], fields["source_addr"]) == expected


def test_configured_ton_and_npi_win_over_the_guess() -> None:
    cfg = SmppProviderConfig(name="p", system_id="x", password="y", source_ton=2, source_npi=9)
    assert source_address("+96170123456", cfg) == (2, 9, "96170123456")


def test_relative_validity_is_capped_at_99_years_instead_of_overflowing() -> None:
    assert relative_validity(3600) == "000000010000000R"
    year = 365 * 86400
    assert relative_validity(99 * year) == "990000000000000R"
    assert relative_validity(100 * year) == "991130235959000R"  # 16 characters, every field two digits
    assert relative_validity(10**12) == "991130235959000R"
    parts = build_parts(message(LongMessageMode.SPLIT, validity=150 * year), CONFIG, 1)
    assert {len(fields["validity_period"]) for fields, _ in parts} == {16}


def test_temporary_statuses_follow_kannel_and_the_provider_extends_them() -> None:
    plain = StatusClasses.for_provider([])
    assert {s for s in range(0x100) if plain.is_temporary(s)} == {0x04, 0x08, 0x14, 0x58, 0x64}
    assert StatusClasses.for_provider([0x45]).is_temporary(0x45) and not plain.is_temporary(0x45)
    assert StatusClasses.throttles(0x58) and StatusClasses.throttles(0x14) and not StatusClasses.throttles(0x08)
    assert StatusClasses.needs_rebind(0x04)


def test_temporary_errors_setting_accepts_hex_strings() -> None:
    cfg = SmppProviderConfig(name="p", system_id="x", password="y", temporary_errors=["0x45", 11])
    assert cfg.temporary_errors == [0x45, 11]
