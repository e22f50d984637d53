"""Bundled SMPP 3.4 SMSC simulator (pure asyncio) and a reusable minimal PDU codec (`app.providers.smpp.pdu`)."""

from app.simulator.models import SimulatorConfig, SimulatorStats, SubmitRecord, SubmitRule
from app.simulator.server import SmscSimulator

__all__ = ["SimulatorConfig", "SimulatorStats", "SmscSimulator", "SubmitRecord", "SubmitRule"]
