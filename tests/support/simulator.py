"""The bundled SMSC simulator in the test's own event loop, on an ephemeral loopback port.

`start_simulator(**settings)` runs one for a block; the `sim` fixture (tests/conftest.py) runs one per
test, its settings taken from the test's `simulator` mark:

    pytestmark = pytest.mark.simulator(dest_rules={}, reject_dest_rules={})
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from app.simulator import SimulatorConfig, SmscSimulator

# Receipts quickly enough for a test to wait on, late enough to come after the submit is recorded.
DEFAULTS: dict[str, Any] = {"port": 0, "receipt_delay": 0.02}


@asynccontextmanager
async def start_simulator(**settings: Any) -> AsyncIterator[SmscSimulator]:
    """A started simulator with DEFAULTS overridden by `settings` (SimulatorConfig fields); stopped after."""
    simulator = SmscSimulator(SimulatorConfig(**{**DEFAULTS, **settings}))
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()
