"""A gateway process settles its heap once it has started (app/runtime.py settle_heap): what is alive
then is frozen out of the collector's reach and the collector runs less often. Checked in a process of
its own, since it happens once per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import asyncio, gc, sys
from app.config import Settings
from app.main import create_app
from app.runtime import GC_THRESHOLDS

async def main() -> None:
    assert gc.get_freeze_count() == 0 and gc.get_threshold() != GC_THRESHOLDS
    for _ in range(2):
        app = create_app(Settings(database_url=sys.argv[1]), start_workers=False)
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
            assert frozen > 10_000, frozen  # the imported modules, the app, its engine
            assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold()
    assert gc.get_freeze_count() == frozen  # the second start froze nothing more
    print("settled", frozen)

asyncio.run(main())
"""


def test_a_started_gateway_freezes_its_heap_once(sqlite_url: str) -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE, sqlite_url], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("settled ")
