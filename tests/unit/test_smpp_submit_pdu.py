"""submit_sm building (pure): the concatenation reference and the relative validity period."""

from __future__ import annotations

from app.config import SmppProviderConfig
from app.domain.encoding import Encoding, LongMessageMode
from app.domain.ids import MessageSid
from app.domain.messages import OutboundMessage
from app.providers.smpp.pdu import Tag, int_value
from app.providers.smpp.submit import StatusClasses, build_parts, relative_validity

CONFIG = SmppProviderConfig(name="p", system_id="x", password="y")  # type: ignore[arg-type]


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
    cfg = SmppProviderConfig(name="p", system_id="x", password="y", temporary_errors=["0x45", 11])  # type: ignore[arg-type, list-item]
    assert cfg.temporary_errors == [0x45, 11]
