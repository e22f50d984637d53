"""What each kind of upstream can send, and how it counts (bills) the parts of a text (pure).

`/send` answers `Encoding` and `Segments` as the route's provider will send and bill them, and
refuses what the route cannot honour; each provider module names its `Capability` here so that
the answer and the wire never disagree.

    kind      encodings it can be asked for         flash  sender   parts billed (one / each of many)
    smpp      GSM7, UCS2; LATIN1 too where the      yes    optional 160/153, 140/134, 70/67 (GSM 03.40)
              provider says `latin1: true` (the
              SMSC transcodes; never for flash)
    commpeak  none: GSM7 when the text is GSM,      no     required 160/152 (dataCoding 0),
              else UCS2 (seed 000 has no                            140/134 (1–7), 70/67 (8)
              dataCoding parameter)
    bulksms   GSM7, LATIN1, UCS2 (types 0–7)        yes    required 160/153 (flash 140/134:
                                                                    the seed's 140, parts as 8-bit
                                                                    text), 140/134, 70/67 (seed 001)
    websmpp   GSM7 (types 1, 3), UCS2 (2, 4); a     no     required 160/153, 70/67 (seed 002's
              text with & or # only as UCS2 (type                   lengths; its 280 for type 2
              2 hex), the seed restricts them                       is 70 UCS-2 characters in hex)
    twilio    none: GSM7 when the text is GSM,      no     required 160/153, 70/67
              else UCS2 (Twilio chooses)

A length in GSM 03.38 counts septets: an extension character (`[ ] { } | \\ ~ ^ €`) counts two,
as seed 002 says.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.domain.encoding import Encoding, EncodingError, LongMessageMode, choose_encoding, is_gsm7, length_units


class CapabilityError(ValueError):
    """The request asks for something this kind of upstream cannot do; `field` names what."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Capability:
    kind: str
    encodings: frozenset[Encoding]  # what it can be asked to use; empty: it chooses by itself
    flash: bool
    needs_sender: bool
    single: tuple[tuple[Encoding, int], ...]  # units in a message that is not split
    multi: tuple[tuple[Encoding, int], ...]  # units per part once it is split
    flash_gsm7: tuple[int, int] | None = None  # (one, each of many) for GSM7 flash where its document says
    restricted: str = ""  # characters only its UCS-2 form carries
    flash_latin1: bool = True  # False: no class-0 Latin-1 (SMPP data_coding has none)

    def wire_encoding(self, text: str, requested: Encoding | None) -> Encoding:
        """The encoding this upstream will put on the wire for `text`."""
        forced_ucs2 = any(ch in text for ch in self.restricted)
        if not self.encodings:  # the upstream decides: GSM 03.38 when it can, else UCS-2
            chosen = Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2
            if requested is not None and requested is not chosen:
                raise CapabilityError("Encoding", f"{self.kind} chooses the encoding itself and would send "
                                                  f"this text as {chosen.value}, not {requested.value}")
            return chosen
        if requested is not None and requested not in self.encodings:
            names = ", ".join(sorted(e.value.lower() for e in self.encodings))
            raise CapabilityError("Encoding", f"{self.kind} cannot send {requested.value} (it sends {names})")
        if forced_ucs2:
            if requested not in (None, Encoding.UCS2):
                raise CapabilityError("Encoding", f"{self.kind} carries {self.restricted!r} only in UCS2 text")
            return Encoding.UCS2
        try:
            chosen = choose_encoding(text, requested)
        except EncodingError as exc:
            raise CapabilityError("Body", str(exc)) from None
        if chosen not in self.encodings:  # auto picked Latin-1 where the upstream has no Latin-1
            chosen = Encoding.GSM7 if is_gsm7(text) else Encoding.UCS2
        return chosen

    def _limits(self, encoding: Encoding, flash: bool) -> tuple[int, int]:
        if flash and encoding is Encoding.GSM7 and self.flash_gsm7 is not None:
            return self.flash_gsm7
        return dict(self.single)[encoding], dict(self.multi)[encoding]

    def segments(self, text: str, encoding: Encoding, flash: bool = False) -> int:
        """The parts this upstream bills for `text` sent in `encoding`."""
        units = length_units(text, encoding)
        single, per_part = self._limits(encoding, flash)
        return 1 if units <= single else -(-units // per_part)

    def cut(self, text: str, encoding: Encoding, flash: bool = False) -> str:
        """The longest prefix of `text` that fits one message of this upstream (LongMessageMode cut)."""
        limit, _ = self._limits(encoding, flash)
        used = 0
        for i, ch in enumerate(text):  # an escape pair or a surrogate pair is never cut in half
            used += length_units(ch, encoding)
            if used > limit:
                return text[:i]
        return text

    def outgoing(self, text: str, requested: Encoding | None, flash: bool,
                 mode: LongMessageMode) -> tuple[Encoding, int]:
        """(encoding, segments) of what will go out; CapabilityError for what it cannot honour."""
        if flash and not self.flash:
            raise CapabilityError("Flash", f"{self.kind} has no flash (class 0) messages")
        encoding = self.wire_encoding(text, requested)
        if flash and encoding is Encoding.LATIN1 and not self.flash_latin1:
            raise CapabilityError("Encoding", f"{self.kind} has no flash (class 0) Latin-1: use gsm7 or ucs2")
        return encoding, 1 if mode is LongMessageMode.CUT else self.segments(text, encoding, flash)


_GSM_SINGLE = ((Encoding.GSM7, 160), (Encoding.LATIN1, 140), (Encoding.UCS2, 70))
_GSM_MULTI = ((Encoding.GSM7, 153), (Encoding.LATIN1, 134), (Encoding.UCS2, 67))
_ALL = frozenset(Encoding)

SMPP = Capability("smpp", frozenset({Encoding.GSM7, Encoding.UCS2}), flash=True, needs_sender=False,
                  single=_GSM_SINGLE, multi=_GSM_MULTI, flash_latin1=False)
SMPP_LATIN1 = Capability("smpp", _ALL, flash=True, needs_sender=False, single=_GSM_SINGLE, multi=_GSM_MULTI,
                         flash_latin1=False)
COMMPEAK = Capability("commpeak", frozenset(), flash=False, needs_sender=True, single=_GSM_SINGLE,
                      multi=((Encoding.GSM7, 152), (Encoding.LATIN1, 134), (Encoding.UCS2, 67)))
BULKSMS = Capability("bulksms", _ALL, flash=True, needs_sender=True, single=_GSM_SINGLE, multi=_GSM_MULTI,
                     flash_gsm7=(140, 134))
WEBSMPP = Capability("websmpp", frozenset({Encoding.GSM7, Encoding.UCS2}), flash=False, needs_sender=True,
                     single=_GSM_SINGLE, multi=_GSM_MULTI, restricted="&#")
TWILIO = Capability("twilio", frozenset(), flash=False, needs_sender=True, single=_GSM_SINGLE, multi=_GSM_MULTI)

CAPABILITIES: dict[str, Capability] = {c.kind: c for c in (SMPP, COMMPEAK, BULKSMS, WEBSMPP, TWILIO)}
