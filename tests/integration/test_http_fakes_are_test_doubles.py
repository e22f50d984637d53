"""The provider fakes are test doubles: they live in tests/fakes, nothing the package ships imports
them, and the benchmark still reaches them from the repository root."""

from __future__ import annotations

import ast
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_nothing_under_app_imports_the_fakes() -> None:
    assert not (ROOT / "app" / "fakes").exists()
    offenders = []
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if "fakes" in n.split(".")]
    assert offenders == []


async def test_the_benchmark_imports_the_fake_from_the_repository_root() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import bench.fake_provider, tests.fakes.commpeak as c; print(c.__name__)",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "tests.fakes.commpeak"
