"""Prometheus metrics, one registry per app instance (so tests can build several apps)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.domain.status import ReportCounts

LOOP_LAG_EVERY_SECONDS = 0.25


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_latency = Histogram(
            "smsgw_http_request_duration_seconds", "HTTP request latency", ["method", "route", "status"],
            registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.accepted = Counter("smsgw_messages_accepted_total", "messages accepted by /send", ["channel"],
                                registry=r)
        self.status = Counter("smsgw_message_status_total", "status changes applied", ["status", "provider"],
                              registry=r)
        self.submit_latency = Histogram(
            "smsgw_submit_duration_seconds", "time for an upstream to accept a message", ["provider"],
            registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.submit_errors = Counter("smsgw_submit_errors_total", "submit errors", ["provider", "kind"], registry=r)
        self.resubmits = Counter("smsgw_resubmits_total",
                                 "messages sent again after an unanswered submit (possible duplicates)",
                                 ["provider"], registry=r)
        self.receipts = Counter("smsgw_receipts_total",
                                "status reports: matched to a message, kept (until the id is known), error",
                                ["result"], registry=r)
        self.in_flight = Gauge("smsgw_provider_in_flight", "submits awaiting an answer", ["provider"], registry=r)
        self.provider_up = Gauge("smsgw_provider_up", "binds/connections up", ["provider"], registry=r)
        self.bind_up = Gauge("smsgw_smpp_bind_up", "1 when the SMPP bind is bound", ["provider", "bind"], registry=r)
        self.bind_in_flight = Gauge("smsgw_smpp_bind_in_flight", "submit_sm awaiting their response (the window)",
                                    ["provider", "bind"], registry=r)
        self.outbox_lag = Gauge("smsgw_outbox_lag_seconds", "age of the oldest unpublished outbox row",
                                registry=r)
        self.published = Counter("smsgw_outbox_published_total", "outbox rows published", ["kind"], registry=r)
        # Every step of every request, submit and receipt waits for the loop's turn: a loop whose timers fire
        # late is one whose process is saturated, whatever its CPU figure says (bench/README.md).
        self.loop_lag = Histogram(
            "smsgw_event_loop_lag_seconds", "how late the event loop runs a timer that is due (its turn time)",
            registry=r, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self._http_children: dict[tuple[str, str, int], Histogram] = {}
        self._accepted_children: dict[str, Counter] = {}

    def count_reports(self, counts: ReportCounts, receipts: bool = True) -> None:
        """Record what apply_receipts counted: reports matched / kept for an id not known yet (when
        `receipts`; a kept report applied later is not a new report) and each status change by provider."""
        if receipts:
            self.receipts.labels("matched").inc(counts.matched)
            self.receipts.labels("kept").inc(counts.kept)
        for (status, provider), n in counts.changes.items():
            self.status.labels(status.value, provider).inc(n)

    async def watch_loop(self, every: float = LOOP_LAG_EVERY_SECONDS) -> None:
        """Sample the event loop's lag for as long as it runs: a sleep of `every` seconds, and how much
        later than that it ended (four wake-ups a second: nothing a loaded loop notices)."""
        loop = asyncio.get_running_loop()
        observe = self.loop_lag.observe
        while True:
            due = loop.time() + every
            await asyncio.sleep(every)
            observe(max(0.0, loop.time() - due))

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        # Once per request: the labelled child is looked up in a plain dict, not through labels().
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http_latency.labels(method, route, str(status))
        child.observe(seconds)

    def count_accepted(self, channel: str, messages: int) -> None:
        child = self._accepted_children.get(channel)
        if child is None:
            child = self._accepted_children[channel] = self.accepted.labels(channel)
        child.inc(messages)
