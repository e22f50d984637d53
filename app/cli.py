"""`smsgw serve | migrate | dev | simulate-smsc | send | status | keys` (contract §6)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import orjson

DEV_ENV = {
    "SMSGW_BROKER_URL": "embedded",
    "SMSGW_API_KEYS": "dev-key",
    "SMSGW_WEBHOOK_AUTH": "none",
    "SMSGW_LOG_FORMAT": "console",
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
    uvicorn.run("app.main:create_app", factory=True, host=args.host or settings.host,
                port=args.port or settings.port, workers=args.workers, loop="uvloop", http="httptools",
                log_config=None, access_log=False, timeout_graceful_shutdown=15)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """What `make run` starts: SQLite, the embedded broker, and the SMSC simulator as the upstream."""
    for k, v in DEV_ENV.items():
        os.environ.setdefault(k, v)
    if not os.environ.get("SMSGW_CONFIG"):
        providers = [{**DEV_PROVIDERS[0], "port": args.smsc_port}]
        os.environ.setdefault("SMSGW_PROVIDERS", orjson.dumps(providers).decode())
        os.environ.setdefault("SMSGW_ROUTES", orjson.dumps(DEV_ROUTES).decode())
    settings = _settings()
    _setup_logging(settings)
    from app.db.migrate import upgrade_to_head

    upgrade_to_head(settings.database_url)
    return asyncio.run(_dev(settings, args))


async def _dev(settings: Any, args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app
    from app.simulator.server import SimulatorConfig, SmscSimulator

    sim = SmscSimulator(SimulatorConfig(host="127.0.0.1", port=args.smsc_port))
    await sim.start()
    print(f"SMSC simulator on 127.0.0.1:{sim.port} (smppclient1/password)", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.host, port=settings.port,
                                           log_config=None, access_log=False))
    print(f"smsgw on http://{settings.host}:{settings.port}  API key: dev-key  "
          f"reports: stomp://127.0.0.1:61613 /queue/{settings.delivery_report_queue}", flush=True)
    try:
        await server.serve()
    finally:
        await sim.stop()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from app.simulator.cli import run

    return int(run(args))


def _client(args: argparse.Namespace) -> Any:
    import httpx

    key = args.api_key or os.environ.get("SMSGW_API_KEY") or "dev-key"
    return httpx.Client(base_url=args.url, headers={"X-API-Key": key}, timeout=60)


def cmd_send(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"To": args.to if len(args.to) > 1 else args.to[0], "Body": args.body}
    for field, value in (("From", args.sender), ("channel", args.channel), ("SendAt", args.send_at)):
        if value:
            body[field] = value
    with _client(args) as client:
        r = client.post("/msg-client/send", json=body)
    print(orjson.dumps(r.json(), option=orjson.OPT_INDENT_2).decode())
    return 0 if r.status_code == 200 else 1


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        r = client.get(f"/msg-client/messages/{args.sid}")
    print(orjson.dumps(r.json(), option=orjson.OPT_INDENT_2).decode())
    return 0 if r.status_code == 200 else 1


def cmd_keys(args: argparse.Namespace) -> int:
    return asyncio.run(_keys(args))


async def _keys(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from app.db.engine import create_engine, session_factory
    from app.db.tables import ApiKey
    from app.services.api_keys import create_key, revoke_key

    settings = _settings()
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as s:
            if args.action == "create":
                key, row = await create_key(s, args.name or "default", args.rate_limit)
                await s.commit()
                print(f"id={row.id} name={row.name}\n{key}\n(store it now: only its hash is kept)")
            elif args.action == "list":
                for k in (await s.scalars(select(ApiKey).order_by(ApiKey.id))).all():
                    state = "revoked" if k.revoked_at else "active"
                    print(f"{k.id}\t{k.name}\t{k.prefix}…\t{state}\t{k.created_at.isoformat()}")
            else:
                ok = await revoke_key(s, int(args.id))
                await s.commit()
                print("revoked" if ok else "no such active key")
                return 0 if ok else 1
    finally:
        await engine.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description="SMS gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=1, help="processes (each runs the API and the workers)")
    p.set_defaults(fn=cmd_serve)

    sub.add_parser("migrate", help="upgrade the database to the latest schema").set_defaults(fn=cmd_migrate)

    p = sub.add_parser("dev", help="what `make run` starts: SQLite, embedded broker, SMSC simulator")
    p.add_argument("--smsc-port", type=int, default=2775)
    p.set_defaults(fn=cmd_dev)

    p = sub.add_parser("simulate-smsc", help="the bundled SMSC simulator")
    from app.simulator.cli import add_arguments

    add_arguments(p)
    p.set_defaults(fn=cmd_simulate)

    for name, fn, helptext in (("send", cmd_send, "send a test message through a running gateway"),
                               ("status", cmd_status, "show a message of a running gateway")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--url", default=os.environ.get("SMSGW_URL", "http://127.0.0.1:8080"))
        p.add_argument("--api-key")
        if name == "send":
            p.add_argument("--to", required=True, nargs="+")
            p.add_argument("--body", required=True)
            p.add_argument("--from", dest="sender")
            p.add_argument("--channel")
            p.add_argument("--send-at")
        else:
            p.add_argument("sid")
        p.set_defaults(fn=fn)

    p = sub.add_parser("keys", help="manage API keys")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("id", nargs="?")
    p.add_argument("--name")
    p.add_argument("--rate-limit", type=float)
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
