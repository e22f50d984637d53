"""The cheap body check of the lean /send (app/api/send_body.py) decides exactly as the pydantic model:
the same SendCommand for every body it takes, the same 400 (code, field, message) for every body it
refuses — over hand-picked shapes and over generated ones mixing every JSON type in every field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.api import send_body
from app.api.errors import from_validation
from app.api.schemas import SendRequest
from app.domain.commands import SendCommand
from app.errors import BadRequest

FIELDS = ("To", "Body", "From", "channel", "SendAt", "ValidityPeriod", "Encoding", "LongMessageMode", "Flash",
          "StatusCallback")


def _pydantic(data: Any) -> SendCommand | tuple[str, str | None, str]:
    try:
        return SendCommand(**SendRequest.model_validate(data).model_dump())
    except ValidationError as exc:
        err = from_validation(exc.errors())
        return err.code, err.field, err.message


def _lean(data: Any) -> SendCommand | tuple[str, str | None, str]:
    try:
        return send_body.command_from(data)
    except BadRequest as err:
        return err.code, err.field, err.message


BODIES: list[Any] = [
    {"To": "+96170123456", "Body": "Hello"},
    {"To": "+96170123456", "Body": "Hello", "From": "Acme", "channel": "smpp", "Flash": True, "ValidityPeriod": 60},
    {"To": ["+96170123456", "+96171123456"], "Body": "x", "SendAt": "2026-12-01T09:00:00+02:00"},
    {"To": [], "Body": ""}, {"To": "1,2", "Body": "x", "Unknown": {"a": 1}},
    {"To": "+96170123456", "Body": "x", "ValidityPeriod": 60.0},
    {"To": "+96170123456", "Body": "x", "ValidityPeriod": 60.5},
    {"To": "+96170123456", "Body": "x", "ValidityPeriod": "60"},
    {"To": "+96170123456", "Body": "x", "ValidityPeriod": True},
    {"To": "+96170123456", "Body": "x", "Flash": "true"}, {"To": "+96170123456", "Body": "x", "Flash": 1},
    {"To": "+96170123456", "Body": "x", "Flash": None}, {"To": "+96170123456", "Body": "x", "From": None},
    {"To": "+96170123456", "Body": "x\x00"}, {"To": "+96170123456", "Body": "\ud800"},
    {"To": ["+96170123456", "\x00"], "Body": "x"}, {"To": ["+96170123456", 2], "Body": "x"},
    {"To": 96170123456, "Body": "x"}, {"To": None, "Body": "x"}, {"Body": "x"}, {"To": "+96170123456"}, {},
    {"To": "+96170123456", "Body": 5}, {"To": "+96170123456", "Body": "x", "channel": 5},
    {"To": "+96170123456", "Body": "x", "StatusCallback": ["http://a"]},
    [], [1], None, 1, "text", True,
]


@pytest.mark.parametrize("data", BODIES)
def test_the_cheap_check_decides_as_the_model_on_hand_picked_bodies(data: Any) -> None:
    assert _lean(data) == _pydantic(data)


def test_the_common_body_takes_the_cheap_path() -> None:
    assert send_body.fast_command({"To": "+96170123456", "Body": "Hello", "From": "Acme"}) == SendCommand(
        To="+96170123456", Body="Hello", From="Acme")
    assert send_body.fast_command({"To": "+96170123456", "Body": "x", "ValidityPeriod": "60"}) is None


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12), st.sampled_from(["+96170123456", "60", "true", "x\x00", "\ud800", "", "auto"]),
    st.lists(st.one_of(st.text(max_size=6), st.integers(), st.none(), st.just("\x00")), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*FIELDS, "extra"]), _VALUES, max_size=len(FIELDS) + 1))
def test_the_cheap_check_decides_as_the_model_on_generated_bodies(data: dict[str, Any]) -> None:
    assert _lean(data) == _pydantic(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({"To": st.one_of(st.text(max_size=15), st.lists(st.text(max_size=15), max_size=3)),
                              "Body": st.text(max_size=30)},
                             optional={k: _VALUES for k in FIELDS[2:]}))
def test_the_cheap_check_decides_as_the_model_on_mostly_valid_bodies(data: dict[str, Any]) -> None:
    assert _lean(data) == _pydantic(data)
