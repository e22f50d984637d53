"""`smsgw serve | migrate | dev | simulate-smsc | send | status | keys` (contract §6).

Over 400 lines because it is the argument table of seven commands; each command's work is a few lines
calling a service (keys: services/api_keys.py) or the HTTP API (send, status)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import sys
import time
from datetime import datetime
from typing import Any

import orjson

DEV_ENV = {
    "SMSGW_BROKER_URL": "embedded",
    "SMSGW_API_KEYS": "dev-key",
    "SMSGW_WEBHOOK_AUTH": "none",
    "SMSGW_LOG_FORMAT": "console",
    # StatusCallbacks to a listener on this machine (refused as SSRF outside development).
    "SMSGW_CALLBACK_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
}
DEV_PROVIDERS = [{"name": "smsc-main", "type": "smpp", "host": "127.0.0.1", "port": 2775,
                  "system_id": "smppclient1", "password": "password", "window": 50}]
DEV_ROUTES = [{"channel": "smpp", "providers": ["smsc-main"]}]


def _settings() -> Any:
    from app.config import Settings

    return Settings()


def _setup_logging(settings: Any) -> None:
    from app.logs import settings_secrets, setup_logging

    setup_logging(settings.log_format, settings.log_level, settings_secrets(settings))


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.db.migrate import upgrade_to_head

    settings = _settings()
    upgrade_to_head(settings.database_url)
    print("database migrated to head")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings()
    _setup_logging(settings)
    from app.api.http_limits import BoundedHttpToolsProtocol, HeadLimits

    BoundedHttpToolsProtocol.limits = HeadLimits.from_settings(settings)
    uvicorn.run("app.main:create_served_app", factory=True, host=args.host or settings.host,
                port=args.port or settings.port, workers=args.workers, loop="uvloop",
                http="app.api.http_limits:BoundedHttpToolsProtocol", timeout_keep_alive=5,
                log_config=None, access_log=False, timeout_graceful_shutdown=15,
                server_header=False,  # no `server: uvicorn` banner naming the stack to whoever asks
                proxy_headers=False)  # nothing reads the client address: no X-Forwarded-* rewrite per request
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """What `make run` starts: SQLite, the embedded broker, and the SMSC simulator as the upstream."""
    for k, v in DEV_ENV.items():
        os.environ.setdefault(k, v)
    if not os.environ.get("SMSGW_CONFIG"):
        providers = [{**DEV_PROVIDERS[0], "port": args.smsc_port}]
        os.environ.setdefault("SMSGW_PROVIDERS", orjson.dumps(providers).decode())
        os.environ.setdefault("SMSGW_ROUTES", orjson.dumps(DEV_ROUTES).decode())
    from app.dev import ports_in_use, serve_dev

    settings = _settings()
    taken = ports_in_use(settings, args.smsc_port)
    for use in taken:  # before anything starts: a half-started gateway is worse than none
        print(f"smsgw dev: {use.host}:{use.port} ({use.what}) is already in use; choose another port: "
              f"{use.change}", file=sys.stderr)
    if taken:
        return 1
    _setup_logging(settings)
    try:
        from app.db.migrate import upgrade_to_head

        upgrade_to_head(settings.database_url)
        return asyncio.run(serve_dev(settings, args.smsc_port))
    except KeyboardInterrupt:  # Ctrl-C before the server took over the signals (migrating, starting)
        print("stopped", flush=True)
        return 130


def cmd_simulate(args: argparse.Namespace) -> int:
    from app.simulator.cli import run

    return int(run(args))


def _client(args: argparse.Namespace) -> Any:
    import httpx

    key = args.api_key or os.environ.get("SMSGW_API_KEY") or "dev-key"
    return httpx.Client(base_url=args.url, headers={"X-API-Key": key}, timeout=60)


FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "canceled"})
RETRIES = 4  # per chunk, on 429/503 and lost connections; the Idempotency-Key makes them safe


def _recipients(args: argparse.Namespace) -> list[str]:
    """`--to` values (each may be comma-separated) and the lines of `--to-file` (`-`: stdin; `#` comments)."""
    out = [n.strip() for arg in args.to or () for n in arg.split(",") if n.strip()]
    if args.to_file:
        with (open(args.to_file, encoding="utf-8") if args.to_file != "-" else contextlib.nullcontext(sys.stdin)) as f:
            out += [n for line in f if (n := line.split("#", 1)[0].strip())]
    return out


def cmd_send(args: argparse.Namespace) -> int:
    try:
        recipients = _recipients(args)
    except OSError as exc:
        print(f"smsgw send: {exc}", file=sys.stderr)
        return 2
    if not recipients:
        print("smsgw send: no recipients (--to NUMBER ... or --to-file FILE)", file=sys.stderr)
        return 2
    fields: dict[str, Any] = {"Body": args.body}
    for field, value in (("From", args.sender), ("channel", args.channel), ("SendAt", args.send_at)):
        if value:
            fields[field] = value
    with _client(args) as client:
        if len(recipients) == 1:
            r = client.post("/msg-client/send", json={"To": recipients[0], **fields})
            print(orjson.dumps(r.json(), option=orjson.OPT_INDENT_2).decode())
            return 0 if r.status_code == 200 else 1
        return _send_bulk(client, recipients, fields, args.chunk, sys.stdout, sys.stderr)


class _Progress:
    """One line on stderr: rewritten in place on a terminal, a new line per chunk otherwise."""

    def __init__(self, total: int, stream: Any) -> None:
        self.total = total
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.sent = 0
        self.refused = 0

    def rate(self) -> float:
        return self.sent / max(time.monotonic() - self.started, 1e-6)

    def update(self) -> None:
        done = self.sent + self.refused
        line = (f"sent {self.sent:,}/{self.total:,} ({done * 100 // self.total}%) {self.rate():,.0f} msg/s, "
                f"{self.refused:,} refused")
        self.stream.write(f"\r{line}\x1b[K" if self.tty else line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line that stays (a refused chunk), above the progress line on a terminal."""
        self.stream.write(f"\r\x1b[K{text}\n" if self.tty else text + "\n")
        self.stream.flush()

    def finish(self, outcome: str) -> None:
        if self.tty:
            self.stream.write("\n")
        unsent = self.total - self.sent - self.refused
        rest = f", {unsent:,} not sent" if unsent else ""
        self.stream.write(f"{outcome}: {self.sent:,} sent, {self.refused:,} refused{rest} of {self.total:,} "
                          f"in {time.monotonic() - self.started:.1f}s ({self.rate():,.0f} msg/s)\n")
        self.stream.flush()


def _refusal(r: Any, part: list[str], first: int) -> str:
    """Why a chunk was refused, naming the recipient when the gateway pointed at one (`To[i]`)."""
    try:
        err = r.json()["error"]
        reason = f"{r.status_code} {err['code']}: {err['message']}"
        where = re.fullmatch(r"To\[(\d+)\]", str(err.get("field") or ""))
        if where and int(where[1]) < len(part):
            reason += f" (recipient {first + int(where[1]) + 1:,}: {part[int(where[1])]})"
        return reason
    except (ValueError, KeyError, TypeError):
        return f"{r.status_code} {r.text[:200]}"


def _post_chunk(client: Any, body: dict[str, Any], key: str) -> Any:
    """POST one chunk; retried on 429/503 and lost connections. Raises httpx.TransportError at the end."""
    import httpx

    for attempt in range(RETRIES + 1):
        try:
            r = client.post("/msg-client/send", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            if attempt == RETRIES:
                raise
            time.sleep(0.5 * 2 ** attempt)
            continue
        if r.status_code not in (429, 503) or attempt == RETRIES:
            return r
        retry_after = r.headers.get("Retry-After", "")
        time.sleep(min(float(retry_after), 30.0) if retry_after.isdigit() else 0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


def _send_bulk(client: Any, recipients: list[str], fields: dict[str, Any], chunk: int, out: Any, err: Any) -> int:
    """Chunks of `chunk` recipients, one request each. stdout: `MessageSid<TAB>To<TAB>Status` per message;
    stderr: the progress line and a summary. 1 if any chunk was refused or could not be sent."""
    import httpx

    progress = _Progress(len(recipients), err)
    run = secrets.token_hex(8)
    outcome = "done"
    try:
        for n, first in enumerate(range(0, len(recipients), chunk), start=1):
            part = recipients[first:first + chunk]
            try:
                r = _post_chunk(client, {"To": part, **fields}, f"smsgw-cli-{run}-{n}")
            except httpx.TransportError as exc:
                progress.note(f"chunk {n} (recipients {first + 1:,}-{first + len(part):,}) not sent: "
                              f"{type(exc).__name__}: {exc}; stopping")
                outcome = "stopped"
                break
            if r.status_code == 200:
                messages = r.json()["Messages"]
                out.write("".join(f"{m['MessageSid']}\t{m['To']}\t{m['Status']}\n" for m in messages))
                out.flush()
                progress.sent += len(messages)
            else:
                progress.refused += len(part)
                progress.note(f"chunk {n} (recipients {first + 1:,}-{first + len(part):,}) refused: "
                              f"{_refusal(r, part, first)}")
            progress.update()
    except KeyboardInterrupt:
        outcome = "interrupted"
    progress.finish(outcome)
    if outcome == "interrupted":
        return 130
    return 0 if progress.sent == len(recipients) else 1


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.watch:
            return _watch(client, args.sid, args.interval, args.timeout, sys.stdout, sys.stderr)
        r = client.get(f"/msg-client/messages/{args.sid}")
    print(orjson.dumps(r.json(), option=orjson.OPT_INDENT_2).decode())
    return 0 if r.status_code == 200 else 1


def _change_line(at: str, status: str, source: str, code: str | None = None, detail: str | None = None) -> str:
    line = f"{at}  {status:<11}  {source}"
    if code:
        line += f"  {code}"
    if detail:
        line += f"  ({detail})"
    return line + "\n"


def _watch(client: Any, sid: str, interval: float, timeout: float, out: Any, err: Any) -> int:
    """Poll until the message reaches a final status, printing each status change (from its history, so
    a change between two polls is shown too). 0 when delivered; 1 otherwise (failed, undelivered,
    canceled, unknown message, timeout)."""
    import httpx

    deadline = time.monotonic() + timeout if timeout > 0 else None
    shown = 0
    last: str | None = None
    last_at: datetime | None = None
    polls = 0
    while True:
        polls += 1
        try:
            r = client.get(f"/msg-client/messages/{sid}")
        except httpx.TransportError as exc:
            if polls == 1:
                err.write(f"smsgw status: {type(exc).__name__}: {exc}\n")
                return 1
            err.write(f"smsgw status: {type(exc).__name__}; polling again\n")
            r = None
        if r is not None:
            if r.status_code != 200:
                err.write(r.text + "\n")
                return 1
            msg = r.json()
            history = [h for h in msg.get("History") or () if h.get("Applied", True)]
            for h in history[shown:]:
                out.write(_change_line(h["At"], h["Status"], h["Source"], h.get("ProviderStatusCode"),
                                       h.get("Detail")))
                last, last_at = h["Status"], datetime.fromisoformat(h["At"])
            shown = max(shown, len(history))
            # A change the history does not record (`sending`): only when newer than its last entry, since
            # the message and its history are read one after the other and may be a change apart.
            updated = datetime.fromisoformat(msg["UpdatedAt"])
            if msg["Status"] != last and (last_at is None or updated > last_at):
                out.write(_change_line(msg["UpdatedAt"], msg["Status"], "-", msg.get("ProviderStatusCode")))
                last, last_at = msg["Status"], updated
            out.flush()
            if msg["Status"] in FINAL_STATUSES:
                return 0 if msg["Status"] == "delivered" else 1
        if deadline is not None and time.monotonic() >= deadline:
            err.write(f"smsgw status: {sid} still {last} after {timeout:g}s\n")
            return 1
        time.sleep(interval)


def cmd_keys(args: argparse.Namespace) -> int:
    return asyncio.run(_keys(args))


async def _keys(args: argparse.Namespace) -> int:
    from app.db.engine import create_engine, session_factory
    from app.services.api_keys import create_key_committed, list_keys, revoke_key_committed

    settings = _settings()
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    try:
        if args.action == "create":
            key, info = await create_key_committed(sessions, args.name or "default", args.rate_limit,
                                                   admin=args.admin)
            role = "admin (sees every account's messages)" if info.is_admin else "account (sees its own messages)"
            print(f"id={info.id} name={info.name} {role}\n{key}\n(store it now: only its hash is kept)")
        elif args.action == "list":
            for k in await list_keys(sessions):
                state = "revoked" if k.revoked_at else "active"
                shown = f"{k.prefix}…" if k.prefix else "-"  # bootstrap keys keep no prefix
                role = "admin" if k.is_admin else "account"
                print(f"{k.id}\t{k.name}\t{shown}\t{role}\t{state}\t{k.created_at.isoformat()}")
        else:
            ok = await revoke_key_committed(sessions, int(args.id))
            print("revoked" if ok else "no such active key")
            return 0 if ok else 1
    finally:
        await engine.dispose()
    return 0


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the service")
    p.add_argument("--host", help="address to listen on (default: SMSGW_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: SMSGW_PORT, 8080)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes, each running the API and the workers (default 1)")
    p.set_defaults(fn=cmd_serve)

    sub.add_parser("migrate", help="upgrade the database to the latest schema").set_defaults(fn=cmd_migrate)

    p = sub.add_parser("dev", help="what `make run` starts: SQLite, embedded broker, SMSC simulator")
    p.add_argument("--smsc-port", type=int, default=2775, help="port of the bundled SMSC simulator (default 2775)")
    p.set_defaults(fn=cmd_dev)

    p = sub.add_parser("simulate-smsc", help="the bundled SMSC simulator")
    from app.simulator.cli import add_arguments

    add_arguments(p)
    p.set_defaults(fn=cmd_simulate)

    for name, fn, helptext in (("send", cmd_send, "send messages through a running gateway; with several "
                                                   "recipients: in chunks, progress on stderr, one "
                                                   "`MessageSid<TAB>To<TAB>Status` line per message on stdout"),
                               ("status", cmd_status, "show a message of a running gateway")):
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.add_argument("--url", default=os.environ.get("SMSGW_URL", "http://127.0.0.1:8080"),
                       help="the gateway's base URL (default: $SMSGW_URL or http://127.0.0.1:8080, what make "
                            "run serves)")
        p.add_argument("--api-key", help="sent as X-API-Key (default: $SMSGW_API_KEY, else dev-key)")
        if name == "send":
            p.add_argument("--to", nargs="+", default=[], metavar="NUMBER",
                           help="one or more recipients, E.164 (the + may be left out only for a valid "
                                "international number); each may be comma-separated")
            p.add_argument("--to-file", metavar="FILE", help="recipients, one per line (`-`: stdin; `#` starts "
                                                             "a comment)")
            p.add_argument("--chunk", type=_positive_int, default=1000,
                           help="recipients per request when sending to several (default 1000)")
            p.add_argument("--body", required=True, help="the text, any Unicode; long texts are segmented")
            p.add_argument("--from", dest="sender", metavar="SENDER",
                           help="sender: up to 15 digits or 11 letters/digits (default: the route's)")
            p.add_argument("--channel", help="route, e.g. smpp or http (default: SMSGW_DEFAULT_CHANNEL, smpp)")
            p.add_argument("--send-at", metavar="TIME",
                           help="schedule: ISO-8601 with offset, at most a year ahead (default: now)")
        else:
            p.add_argument("sid", help="the MessageSid /send answered")
            p.add_argument("--watch", action="store_true",
                           help="poll until a final status, printing each change; exit 0 if delivered")
            p.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
            p.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds (0: never)")
        p.set_defaults(fn=fn)

    p = sub.add_parser("keys", help="manage API keys")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("id", nargs="?")
    p.add_argument("--name")
    p.add_argument("--rate-limit", type=float)
    p.add_argument("--admin", action="store_true", help="create: a key that sees every account's messages")
    p.set_defaults(fn=cmd_keys)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "keys" and args.action == "revoke" and not args.id:
        print("smsgw keys revoke <id>", file=sys.stderr)
        return 2
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
