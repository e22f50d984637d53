"""Line-based TCP control port of the simulator (for out-of-process tests and demos).

One command per line, one reply line each ("OK ...", "ERR ...", or a JSON object for `stats`):

    ping                               -> PONG
    stats                              -> {"submit_sm": 10, "submit_sm_resp": {"ESME_ROK": 10}, ...}
    mo [dc=0|3|8] [concat=none|udh|sar|data_sm] [system_id=ID] <src> <dst> <text...>   -> OK <parts>
    restart-ids <n>                    -> OK      (the message id counter starts again at n)
    drop                               -> OK <connections aborted>
    set <setting> <value>              -> OK      (scalar SimulatorConfig fields, e.g. set reject_rate 0.5)
    outcomes DELIVRD=0.9,UNDELIV=0.1   -> OK
    reset                              -> OK      (clears counters and records)
    quit                               -> closes the control connection
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

from app.simulator.models import RUNTIME_FIELDS, parse_value

if TYPE_CHECKING:
    from app.simulator.server import SmscSimulator

log = logging.getLogger("app.simulator.control")


def parse_weights(spec: str) -> dict[str, float]:
    """"DELIVRD=0.9,UNDELIV=0.1" -> {"DELIVRD": 0.9, "UNDELIV": 0.1}."""
    weights: dict[str, float] = {}
    for item in spec.split(","):
        if item.strip():
            stat, _, weight = item.partition("=")
            weights[stat.strip().upper()] = float(weight) if weight else 1.0
    return weights


class ControlServer:
    def __init__(self, sim: SmscSimulator) -> None:
        self.sim = sim
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._client, host, port, reuse_address=True)
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info("control port listening on %s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while line := await reader.readline():
                command = line.decode("utf-8", "replace").strip()
                if not command:
                    continue
                if command.lower() == "quit":
                    break
                writer.write((await self.execute(command) + "\n").encode("utf-8"))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def execute(self, command: str) -> str:
        verb, _, rest = command.partition(" ")
        verb = verb.lower()
        try:
            if verb == "ping":
                return "PONG"
            if verb == "stats":
                return json.dumps(self.sim.snapshot(), separators=(",", ":"))
            if verb == "drop":
                return f"OK {await self.sim.drop_all()}"
            if verb == "reset":
                self.sim.reset_stats()
                return "OK"
            if verb == "outcomes":
                self.sim.configure(outcomes=parse_weights(rest))
                return "OK"
            if verb == "set":
                name, _, raw = rest.strip().partition(" ")
                if name not in RUNTIME_FIELDS:
                    return f"ERR unknown or read-only setting {name!r}; one of {sorted(RUNTIME_FIELDS)}"
                self.sim.configure(**{name: parse_value(RUNTIME_FIELDS[name], raw.strip())})
                return "OK"
            if verb == "mo":
                return await self._mo(rest)
            if verb == "restart-ids":
                self.sim.restart_ids(int(rest.strip()))
                return "OK"
            return "ERR unknown command (ping, stats, mo, drop, set, outcomes, reset, restart-ids, quit)"
        except (ValueError, TypeError, KeyError) as exc:
            return f"ERR {exc}"

    async def _mo(self, rest: str) -> str:
        options: dict[str, str] = {}
        tokens = rest.split(" ")
        while tokens and "=" in tokens[0]:
            key, _, value = tokens.pop(0).partition("=")
            options[key.lower()] = value
        if len(tokens) < 3:
            return "ERR usage: mo [dc=0|3|8] [concat=none|udh|sar|data_sm] [system_id=ID] <src> <dst> <text>"
        source, dest, text = tokens[0], tokens[1], " ".join(tokens[2:])
        concat = options.get("concat", "none")
        parts = await self.sim.inject_mo(source, dest, text, data_coding=int(options.get("dc", "0")),
                                         concat="none" if concat == "data_sm" else concat,
                                         system_id=options.get("system_id"), data_sm=concat == "data_sm")
        return f"OK {parts}"
