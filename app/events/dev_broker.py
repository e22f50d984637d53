"""The embedded STOMP broker `make run` uses instead of ActiveMQ (`SMSGW_BROKER_URL=embedded`).

A real STOMP 1.0–1.2 endpoint on 127.0.0.1 that any STOMP client can send to and subscribe to:
CONNECT/STOMP, SEND (with RECEIPT), BEGIN/COMMIT/ABORT transactions, SUBSCRIBE (ack auto, client,
client-individual), queue browsing the way ActiveMQ does it (`browser: true`, ended by a MESSAGE with
`browser: end`, selectors of the forms `prop = 'v'` and `prop IN ('v', ...)`), ACK/NACK,
UNSUBSCRIBE, DISCONNECT. Queues are FIFO and keep messages until a consumer takes them; competing
consumers share a queue round-robin; unacknowledged messages go back to the queue when their
consumer leaves. Frames split across TCP reads are reassembled. Messages live in memory only:
this broker is for development, production uses ActiveMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from collections import deque
from dataclasses import dataclass, field

from app.events.stomp_frames import encode_frame, parse_frames

log = logging.getLogger("smsgw.broker")

@dataclass
class Message:
    id: str
    destination: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Subscription:
    client: Client
    id: str
    destination: str
    ack: str
    unacked: dict[str, Message] = field(default_factory=dict)


_SELECTOR = re.compile(r"^\s*([A-Za-z_$][\w$]*)\s*(?:=\s*('(?:[^']|'')*')|IN\s*\((.*)\))\s*$", re.I | re.S)
_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def parse_selector(selector: str) -> tuple[str, set[str]] | None:
    """`prop = 'v'` or `prop IN ('a', 'b')` as (prop, values); None for anything else."""
    m = _SELECTOR.match(selector)
    if m is None:
        return None
    literals = m.group(2) if m.group(2) is not None else m.group(3)
    return m.group(1), {v.replace("''", "'") for v in _LITERAL.findall(literals)}


class Client:
    def __init__(self, broker: EmbeddedBroker, writer: asyncio.StreamWriter) -> None:
        self.broker = broker
        self.writer = writer
        self.subs: dict[str, Subscription] = {}
        self.transactions: dict[str, list[Message]] = {}
        self.connected = False

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 61613, login: str | None = None,
                 passcode: str | None = None) -> None:
        self.host = host
        self.port = port
        # With a login set (SMSGW_BROKER_USER/PASSWORD), a CONNECT without those credentials is refused,
        # as ActiveMQ with authentication refuses it.
        self.credentials = (login, passcode or "") if login else None
        self.queues: dict[str, deque[Message]] = {}
        self.subs: dict[str, list[Subscription]] = {}
        self._rr: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        # Each connection's task, ended by stop(): a task still reading when the loop closes would be
        # cancelled by asyncio.run, and asyncio 3.11 logs that as "Exception in callback" (issue #17).
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.stats = {"connections": 0, "sent": 0, "delivered": 0, "acked": 0}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("embedded STOMP broker on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._conns.values()):
                writer.close()  # the connection's read ends, and its task with it
            if self._conns:
                await asyncio.wait(list(self._conns), timeout=2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def queue_depth(self, name: str) -> int:
        return len(self.queues.get(self._dest(name), ()))

    @staticmethod
    def _dest(name: str) -> str:
        return name if name.startswith("/") else f"/queue/{name}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = Client(self, writer)
        self.stats["connections"] += 1
        task = asyncio.current_task()
        if task is not None:
            self._conns[task] = writer
        buffer = bytearray()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buffer += chunk
                for command, headers, body in parse_frames(buffer):
                    if not self._handle(client, command, headers, body):
                        await writer.drain()
                        return
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._drop(client)
            writer.close()
            if task is not None:
                self._conns.pop(task, None)

    def _handle(self, c: Client, command: str, h: dict[str, str], body: bytes) -> bool:
        if command in ("CONNECT", "STOMP"):
            if self.credentials is not None and (h.get("login"), h.get("passcode", "")) != self.credentials:
                c.send(encode_frame("ERROR", {"message": "authentication failed"}))
                return False
            c.connected = True
            c.send(encode_frame("CONNECTED", {"version": "1.2" if "1.2" in h.get("accept-version", "1.0") else "1.0",
                                       "heart-beat": "0,0", "server": "smsgw-embedded"}))
        elif not c.connected and self.credentials is not None:
            c.send(encode_frame("ERROR", {"message": "not connected"}))
            return False
        elif command == "SEND":
            dest = self._dest(h.get("destination", ""))
            extra = {k: v for k, v in h.items() if k not in ("destination", "receipt", "transaction")}
            sent = Message(f"m-{next(self._ids)}", dest, extra, body)
            if "transaction" in h:
                if h["transaction"] not in c.transactions:
                    c.send(encode_frame("ERROR", {"message": f"unknown transaction {h['transaction']!r}"}))
                    return False
                c.transactions[h["transaction"]].append(sent)
            else:
                self._enqueue(sent)
        elif command == "BEGIN":
            c.transactions[h.get("transaction", "")] = []
        elif command in ("COMMIT", "ABORT"):
            pending = c.transactions.pop(h.get("transaction", ""), None)
            if pending is None:
                c.send(encode_frame("ERROR", {"message": f"unknown transaction {h.get('transaction', '')!r}"}))
                return False
            for queued in pending if command == "COMMIT" else ():
                self._enqueue(queued)
        elif command == "SUBSCRIBE" and h.get("browser") == "true":
            self._browse(c, h)
        elif command == "SUBSCRIBE":
            dest = self._dest(h.get("destination", ""))
            sub = Subscription(c, h.get("id", "0"), dest, h.get("ack", "auto"))
            c.subs[sub.id] = sub
            self.subs.setdefault(dest, []).append(sub)
            self._pump(dest)
        elif command == "UNSUBSCRIBE":
            gone = c.subs.pop(h.get("id", ""), None)
            if gone is not None:
                self._remove(gone)
        elif command in ("ACK", "NACK"):
            mid = h.get("id") or h.get("message-id", "")
            for sub in c.subs.values():
                msg = sub.unacked.pop(mid, None)
                if msg is not None:
                    if command == "NACK":
                        self.queues.setdefault(msg.destination, deque()).appendleft(msg)
                    self.stats["acked"] += 1
                    self._pump(sub.destination)
        elif command == "DISCONNECT":
            if "receipt" in h:
                c.send(encode_frame("RECEIPT", {"receipt-id": h["receipt"]}))
            return False
        else:
            c.send(encode_frame("ERROR", {"message": f"unsupported command {command!r}"}))
            return False
        if "receipt" in h:
            c.send(encode_frame("RECEIPT", {"receipt-id": h["receipt"]}))
        return True

    def _browse(self, c: Client, h: dict[str, str]) -> None:
        """Send a copy of every queued message that matches the selector, then the `browser: end` marker."""
        dest, sub_id = self._dest(h.get("destination", "")), h.get("id", "0")
        wanted = parse_selector(h["selector"]) if h.get("selector") else None
        if h.get("selector") and wanted is None:
            c.send(encode_frame("ERROR", {"message": f"unsupported selector {h['selector']!r}"}))
            return
        for msg in self.queues.get(dest, ()):
            if wanted is None or msg.headers.get(wanted[0]) in wanted[1]:
                headers = {**msg.headers, "destination": dest, "message-id": msg.id, "subscription": sub_id}
                c.send(encode_frame("MESSAGE", headers, msg.body))
        c.send(encode_frame("MESSAGE", {"browser": "end", "destination": dest, "message-id": "0",
                                        "subscription": sub_id}))

    def _enqueue(self, msg: Message) -> None:
        self.stats["sent"] += 1
        self.queues.setdefault(msg.destination, deque()).append(msg)
        self._pump(msg.destination)

    def _pump(self, dest: str) -> None:
        queue, subs = self.queues.get(dest), self.subs.get(dest)
        while queue and subs:
            ready = [s for s in subs if len(s.unacked) < 1000]
            if not ready:
                return
            sub = ready[self._rr.get(dest, 0) % len(ready)]
            self._rr[dest] = self._rr.get(dest, 0) + 1
            msg = queue.popleft()
            headers = {**msg.headers, "destination": msg.destination, "message-id": msg.id, "subscription": sub.id}
            if sub.ack != "auto":
                headers["ack"] = msg.id
                sub.unacked[msg.id] = msg
            sub.client.send(encode_frame("MESSAGE", headers, msg.body))
            self.stats["delivered"] += 1

    def _remove(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self.subs.get(sub.destination, []).remove(sub)
        if sub.unacked:
            q = self.queues.setdefault(sub.destination, deque())
            for msg in reversed(list(sub.unacked.values())):
                q.appendleft(msg)
            sub.unacked.clear()
        self._pump(sub.destination)

    def _drop(self, client: Client) -> None:
        for sub in list(client.subs.values()):
            self._remove(sub)
        client.subs.clear()
