"""Twilio's request signature: known vectors from Twilio's docs, ports, repeated keys, tampering."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from app.domain.twilio_signature import compute_signature, url_variants, validate_signature

# The example in Twilio's security docs and helper-library snippets (twilio-node signature_validation).
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"


def _doc_params(caller: str) -> dict[str, str]:
    return {
        "CallSid": "CA1234567890ABCDE",
        "Caller": caller,
        "Digits": "1234",
        "From": caller,
        "To": "+18005551212",
    }


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("+14158675309", "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
        ("+14158675310", "GvWf1cFY/Q7PnoempGyD5oXAezc="),
    ],
)
def test_twilio_documented_vectors(caller: str, expected: str) -> None:
    assert compute_signature(DOC_TOKEN, DOC_URL, _doc_params(caller)) == expected
    assert validate_signature(DOC_TOKEN, DOC_URL, _doc_params(caller), expected)


def test_parameter_order_does_not_matter() -> None:
    params = _doc_params("+14158675309")
    reversed_params = dict(reversed(list(params.items())))
    assert compute_signature(DOC_TOKEN, DOC_URL, reversed_params) == compute_signature(
        DOC_TOKEN, DOC_URL, params
    )


def test_repeated_keys_append_each_value_in_sorted_order() -> None:
    url = "https://example.com/hook"
    raw = url + "Aa" + "MediaUrl" + "x" + "MediaUrl" + "y" + "Zz"
    expected = base64.b64encode(hmac.new(b"tok", raw.encode(), hashlib.sha1).digest()).decode()
    params = {"Z": "z", "MediaUrl": ["y", "x"], "A": "a"}
    assert compute_signature("tok", url, params) == expected
    assert validate_signature("tok", url, params, expected)


def test_utf8_values_are_signed_as_utf8() -> None:
    url = "http://127.0.0.1:8080/msg-client/receive"
    params = {"Body": "Grüße 👋", "From": "+15551230000"}
    raw = url + "BodyGrüße 👋From+15551230000"
    expected = base64.b64encode(hmac.new(b"s3cret", raw.encode("utf-8"), hashlib.sha1).digest()).decode()
    assert compute_signature("s3cret", url, params) == expected


def test_empty_params_sign_the_url_alone() -> None:
    raw = b"https://example.com/a?b=c"
    expected = base64.b64encode(hmac.new(b"t", raw, hashlib.sha1).digest()).decode()
    assert compute_signature("t", "https://example.com/a?b=c", {}) == expected


def test_wrong_token_url_param_or_signature_is_rejected() -> None:
    params = _doc_params("+14158675309")
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert not validate_signature("54321", DOC_URL, params, good)
    assert not validate_signature(DOC_TOKEN, DOC_URL + "&x=1", params, good)
    assert not validate_signature(DOC_TOKEN, DOC_URL, {**params, "Digits": "1235"}, good)
    assert not validate_signature(DOC_TOKEN, DOC_URL, params, good[:-2] + "A=")
    assert not validate_signature(DOC_TOKEN, DOC_URL, params, "")
    assert not validate_signature("", DOC_URL, params, good)


def test_signature_made_without_port_validates_against_url_with_default_port() -> None:
    params = _doc_params("+14158675309")
    sig = compute_signature(DOC_TOKEN, DOC_URL, params)
    assert validate_signature(DOC_TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", params, sig)


def test_signature_made_with_default_port_validates_against_url_without_port() -> None:
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    sig = compute_signature("tok", "https://example.com:443/cb", params)
    assert validate_signature("tok", "https://example.com/cb", params, sig)
    sig80 = compute_signature("tok", "http://example.com:80/cb", params)
    assert validate_signature("tok", "http://example.com/cb", params, sig80)


def test_explicit_non_default_port_is_signed_as_given() -> None:
    params = {"MessageSid": "SM1"}
    url = "http://127.0.0.1:8080/msg-client/delivery-notification"
    sig = compute_signature("tok", url, params)
    assert validate_signature("tok", url, params, sig)
    other = "http://127.0.0.1:9090/msg-client/delivery-notification"
    assert not validate_signature("tok", other, params, sig)


def test_url_variants() -> None:
    assert url_variants("https://a.example/x?y=1") == ["https://a.example/x?y=1", "https://a.example:443/x?y=1"]
    assert url_variants("http://a.example:80/x") == ["http://a.example:80/x", "http://a.example/x"]
    assert url_variants("http://[::1]:8080/x") == ["http://[::1]:8080/x", "http://[::1]/x"]
    assert url_variants("http://a.example:notaport/x") == ["http://a.example:notaport/x"]
