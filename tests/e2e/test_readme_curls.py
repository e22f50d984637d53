"""Every `curl` in README.md's shell blocks runs against `smsgw dev` as written (issue #17.2). The
README is parsed, so a curl added later is tested too; only the address is changed (free ports), and
`SM…` becomes the MessageSid of the last /send before it."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
import stomp
from support.dev import ROOT, running_dev

README_URL = "http://127.0.0.1:8080"


def readme_curls(text: str) -> list[str]:
    """The curl commands of the README's ```sh blocks: continuation lines joined, trailing comments cut."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        for command in re.sub(r"\\\n\s*", " ", block).splitlines():
            command = re.sub(r"\s{2,}#.*$", "", command).strip()  # `cmd   # comment`
            if command.startswith("curl "):
                commands.append(command)
    return commands


class Inbound(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.got = threading.Event()

    def on_message(self, frame: Any) -> None:
        self.bodies.append(orjson.loads(frame.body))
        self.got.set()


def test_readme_has_the_curls_this_test_knows() -> None:
    curls = readme_curls((ROOT / "README.md").read_text())
    assert len(curls) >= 10
    assert any("/msg-client/receive" in c and "--data-urlencode From=+" in c for c in curls)
    assert all(c.startswith(f"curl -s {README_URL}/") or c.startswith(("curl -s '", "curl -s -X")) for c in curls)


def test_every_readme_curl_works_against_smsgw_dev(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("curl is missing")
    curls = readme_curls((ROOT / "README.md").read_text())
    with running_dev(tmp_path) as dev:
        consumer = stomp.Connection([("127.0.0.1", dev.broker_port)])
        inbound = Inbound()
        consumer.set_listener("inbound", inbound)
        consumer.connect(wait=True)
        consumer.subscribe("/queue/inbound-sms", 1)
        sid = None
        for command in curls:
            if "SM…" in command:
                assert sid is not None, f"no /send before {command}"
                command = command.replace("SM…", sid)
            command = command.replace(README_URL, dev.base_url) + " -w '\\n%{http_code}'"
            r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
            body, _, code = r.stdout.rpartition("\n")
            assert r.returncode == 0 and code == "200", (command, r.stdout, r.stderr)
            if "/msg-client/send" in command:
                sid = orjson.loads(body)["MessageSid"]
        assert inbound.got.wait(10)
        consumer.disconnect()
    # The + of a form-encoded number survives (a bare + in a form body is a space).
    [sms] = inbound.bodies
    assert (sms["From"], sms["To"], sms["Body"]) == ("+96170999888", "+96170000001", "Hi"), sms
