"""app/db/bulk.py's JSON payload (the rows of one `UPDATE … FROM json_to_recordset` / INSERT)."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import orjson
import pytest
from sqlalchemy import Table

from app.db.bulk import _payload
from app.db.tables import Message, utcnow

MESSAGE = cast(Table, Message.__table__)  # a declarative class's __table__ is typed FromClause


def test_rows_go_as_one_json_array_with_their_zones() -> None:
    now = utcnow()
    rows = [{"sid": "SM1", "updated_at": now, "sent_at": None}, {"sid": "SM2", "updated_at": now, "sent_at": now}]
    assert orjson.loads(_payload(MESSAGE, rows, ("sid", "updated_at", "sent_at"))) == [
        {"sid": "SM1", "updated_at": now.isoformat(), "sent_at": None},
        {"sid": "SM2", "updated_at": now.isoformat(), "sent_at": now.isoformat()}]


def test_a_naive_datetime_in_any_row_is_refused() -> None:
    now = utcnow()
    rows = [{"sid": "SM1", "sent_at": now}, {"sid": "SM2", "sent_at": datetime(2026, 12, 4, 3, 0)}]
    with pytest.raises(ValueError, match=r"naive datetime given to a UTC column \(message.sent_at\)"):
        _payload(MESSAGE, rows, ("sid", "sent_at"))
