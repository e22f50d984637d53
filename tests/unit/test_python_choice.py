"""scripts/python.sh: the interpreter `make` builds .venv with."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "python.sh"


def _run(path: str) -> str:
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=True,
                          env={"PATH": path}).stdout.strip()


def test_it_names_a_python_311_that_can_make_a_virtualenv() -> None:
    chosen = _run("/usr/local/bin:/usr/bin:/bin")
    probe = subprocess.run([chosen, "-c", "import sys, venv, ensurepip; print(sys.version_info[:2])"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "(3, 11)"


def test_the_distributions_build_comes_first(tmp_path: Path) -> None:
    # A python3.11 earlier on PATH (as pyenv's shims are) does not win over Debian's /usr/bin/python3.11,
    # which `make test` machines have (python3.11-venv included).
    shim = tmp_path / "python3.11"
    shim.write_text("#!/bin/sh\nexit 0\n")
    shim.chmod(0o755)
    assert _run(f"{tmp_path}:/usr/bin:/bin") == "/usr/bin/python3.11"
