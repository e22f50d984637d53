"""`smsgw keys create | list | revoke` against a real database, and what the API does with those keys:
a created key sends, a revoked one is refused with 401 (contract §2). The commands run in-process
(`app.cli.main`), as the console script does."""

from __future__ import annotations

import asyncio
import re

import pytest
from conftest import api_settings, running_app

from app.cli import main


def smsgw_keys(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["keys", *args])
    out, err = capsys.readouterr()
    return code, out, err


async def send_with(db_url: str, key: str) -> list[int]:
    """/send with `key` as X-API-Key, then as a Bearer token (the client's default X-API-Key left empty)."""
    async with running_app(api_settings(db_url)) as client:
        return [(await client.post("/msg-client/send", json={"To": "+96170123456", "Body": "from the CRM"},
                                   headers=h)).status_code
                for h in ({"X-API-Key": key}, {"X-API-Key": "", "Authorization": f"Bearer {key}"})]


def test_created_key_sends_and_revoked_key_is_401(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMSGW_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("SMSGW_CONFIG", raising=False)
    code, out, _ = smsgw_keys(capsys, "create", "--name", "crm")
    assert code == 0
    head, key, note = out.splitlines()
    key_id = re.fullmatch(r"id=(\d+) name=crm account \(sees its own messages\)", head)
    assert key_id and key.startswith("sk_") and len(key) > 40 and "only its hash is kept" in note
    _, listed, _ = smsgw_keys(capsys, "list")
    assert re.search(rf"^{key_id[1]}\tcrm\t{re.escape(key[:8])}…\taccount\tactive\t", listed, re.M), listed
    assert key not in listed  # only the prefix is shown: the key itself is not stored
    assert asyncio.run(send_with(sqlite_url, key)) == [200, 200]

    assert smsgw_keys(capsys, "revoke", key_id[1])[:2] == (0, "revoked\n")
    assert smsgw_keys(capsys, "revoke", key_id[1])[:2] == (1, "no such active key\n")
    _, listed, _ = smsgw_keys(capsys, "list")
    assert re.search(rf"^{key_id[1]}\tcrm\t.*\taccount\trevoked\t", listed, re.M), listed
    assert asyncio.run(send_with(sqlite_url, key)) == [401, 401]


def test_keys_revoke_without_an_id_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = smsgw_keys(capsys, "revoke")
    assert code == 2 and "smsgw keys revoke <id>" in err
