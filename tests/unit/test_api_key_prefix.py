"""What `keys list` may show of a key (issue 12 item 9): a prefix of generated keys only, at most a
quarter of the key; nothing of a key the operator chose."""

from __future__ import annotations

from app.services.api_keys import KeyInfo, generate_key, shown_prefix


def test_generated_keys_show_at_most_a_quarter() -> None:
    for _ in range(100):
        key = generate_key()
        shown = shown_prefix(key)
        assert key.startswith(shown) and shown.startswith("sk_")
        assert 0 < len(shown) * 4 <= len(key)


def test_chosen_keys_show_nothing() -> None:
    for key in ("dev-key", "test-key-0123456789", "sk_short", "mysecretvalue" * 4, ""):
        assert shown_prefix(key) == ""


def test_admin_keys_see_every_account() -> None:
    assert KeyInfo(7, "crm", None).account == 7
    assert KeyInfo(8, "ops", None, is_admin=True).account is None
