"""Text the database can hold."""

from __future__ import annotations


def storable(text: str) -> bool:
    """False for text PostgreSQL cannot store: NUL characters, and lone surrogates (JSON `"\\ud800"`)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
