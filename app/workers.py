"""The background side of a gateway process, owned by the lifespan: providers (binds), the receipt
sink, the dispatcher, the status poller, the outbox publishers, and the embedded broker in dev."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

from app.dispatch.dispatcher import Dispatcher
from app.dispatch.poller import StatusPoller
from app.events.callbacks import CallbackSender
from app.events.stomp_publisher import OutboxPublisher
from app.metrics import Metrics
from app.providers.base import Provider
from app.providers.registry import build_providers
from app.runtime import Runtime
from app.services.sink import DbReportSink

log = logging.getLogger("smsgw.workers")


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


class Workers:
    def __init__(self, ctx: Runtime) -> None:
        self.ctx = ctx
        self.metrics: Metrics = ctx.metrics
        metrics = ctx.metrics
        self.owner = owner_id()
        self.providers: dict[str, Provider] = build_providers(ctx.settings)
        self.broker: Any = None
        self.publisher: OutboxPublisher | None = None
        self.callbacks: CallbackSender | None = None
        self.sink = DbReportSink(ctx.sessions, ctx.settings, metrics, on_commit=self.wake_publishers)
        self.dispatcher = Dispatcher(ctx.sessions, ctx.settings, self.providers, metrics, self.owner,
                                     on_outbox=self.wake_publishers)
        self.poller = StatusPoller(ctx.sessions, ctx.settings, self.providers, on_commit=self.wake_publishers,
                                   metrics=metrics)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        settings = self.ctx.settings
        if settings.broker_url.strip().startswith("embedded"):
            from app.events.dev_broker import EmbeddedBroker

            # `embedded` listens on 127.0.0.1:61613; `embedded://127.0.0.1:PORT` picks another port.
            _, _, port = settings.broker_url.strip().rpartition(":")
            password = settings.broker_password.get_secret_value() if settings.broker_password else None
            self.broker = EmbeddedBroker("127.0.0.1", int(port) if port.isdigit() else 61613,
                                         login=settings.broker_user, passcode=password)
            await self.broker.start()
            settings = settings.model_copy(update={"broker_url": f"stomp://127.0.0.1:{self.broker.port}"})
        self.sink.start()
        for name, provider in self.providers.items():
            try:
                await provider.start(self.sink)
            except Exception:  # one upstream down must not stop the gateway: it rebinds on its own
                log.exception("provider %s failed to start", name)
        self.publisher = OutboxPublisher(self.ctx.sessions, settings, self.owner)
        self.callbacks = CallbackSender(self.ctx.sessions, settings, self.owner)
        self._tasks = [
            asyncio.create_task(self.publisher.run(), name="outbox-publisher"),
            asyncio.create_task(self.callbacks.run(), name="callback-sender"),
            asyncio.create_task(self.poller.run(), name="status-poller"),
        ]
        self.dispatcher.start()
        self.ctx.accept_batcher.hand_off = self.dispatcher  # new messages go straight to it

    async def stop(self) -> None:
        self.ctx.accept_batcher.hand_off = None
        await self.dispatcher.stop()
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.stop()
        await self.sink.stop()
        for stopper in (self.publisher, self.callbacks):
            if stopper is not None:
                with contextlib.suppress(Exception):
                    await stopper.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.broker is not None:
            await self.broker.stop()

    def wake_dispatcher(self) -> None:
        self.dispatcher.wake()

    def wake_publishers(self) -> None:
        for p in (self.publisher, self.callbacks):
            if p is not None:
                p.notify()

    async def health(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        for name, p in self.providers.items():
            st = p.state()
            checks[f"provider:{name}"] = {"ok": p.is_available(), "connected": st.connected,
                                          "sessions_up": st.sessions_up, "in_flight": st.in_flight}
        if self.publisher is not None:
            lag = await self.publisher.lag_seconds()
            connected = self.publisher.connected
            checks["broker"] = {"ok": connected, "connected": connected}
            checks["outbox"] = {"ok": True, "lag_seconds": lag}
        return checks

    async def refresh_metrics(self) -> None:
        for name, p in self.providers.items():
            st = p.state()
            self.metrics.in_flight.labels(name).set(st.in_flight)
            self.metrics.provider_up.labels(name).set(st.sessions_up if st.type == "smpp" else int(st.connected))
            if st.type == "smpp":
                for bind, info in st.detail.items():
                    self.metrics.bind_up.labels(name, bind).set(int(bool(info.get("bound"))))
                    self.metrics.bind_in_flight.labels(name, bind).set(int(info.get("in_flight", 0)))
        if self.publisher is not None:
            lag = await self.publisher.lag_seconds()
            self.metrics.outbox_lag.set(lag or 0.0)
