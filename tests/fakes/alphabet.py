"""GSM 03.38 (3GPP TS 23.038) as the fakes check texts against it: the default alphabet and the
extension table, written out here rather than taken from the gateway, so that a fake does not share
the gateway's reading."""

GSM = frozenset("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€\f")
LATIN1 = frozenset(chr(i) for i in range(256))
