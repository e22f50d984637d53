"""The import-layers contract (pyproject.toml [tool.importlinter]) holds, and bites: each contract
fails on a violation planted in a copy of the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(tree / "pyproject.toml")], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_project_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("where", "planted", "contract"), [
    ("app/domain/planted.py", "import sqlalchemy\n", "domain is pure"),
    ("app/domain/planted.py", "from app.db import tables\n", "domain is pure"),
    ("app/services/planted.py", "from app.api import errors\n", "services never import the web layer"),
    ("app/services/planted.py", "from app.events import stomp_publisher\n", "services never import events or dispatch"),
    ("app/services/planted.py", "import app.dispatch.dispatcher\n", "services never import events or dispatch"),
    ("app/providers/smpp/planted.py", "from app.simulator import server\n", "adapters never import"),
    ("app/dispatch/planted.py", "from app.runtime import Runtime\n", "adapters never import"),
    ("app/api/planted.py", "import app.simulator.server\n", "the simulator is a test tool"),
    ("app/providers/http/planted.py", "from tests.fakes import commpeak\n", "nothing in app imports the test doubles"),
])
def test_a_planted_violation_breaks_its_contract(tree: Path, where: str, planted: str, contract: str) -> None:
    (tree / where).write_text(planted)
    result = _lint(tree)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
