"""A small app wired like the platform: middleware -> RollingWindows, request logs into a
MemorySink, unhandled exceptions into a real ErrorStore on SQLite, and the ops UI on top.
Shared by the web tests and the browser test."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, HTTPException

from experimentation_platform.telemetry import names as domain
from experimentation_platform.telemetry.dashboards import DASHBOARDS
from observability.asgi import ObservabilityMiddleware, RequestRecord
from observability.dashboards.data import DashboardData
from observability.errors import ErrorStore, ErrorTracker, Fingerprinter, TrackerConfig
from observability.logging import (
    LoggingConfig,
    LogPipeline,
    MemorySink,
    RequestLogObserver,
    configure_logging,
    get_logger,
)
from observability.metrics import names
from observability.metrics.history import MetricHistory
from observability.metrics.windows import RollingWindows
from observability.web.ui import build_ops_ui, static_token_check, token_auth

TOKEN = "ops-test-admin-key-7f3a"


def system_gauges() -> dict[str, float]:
    """What the platform's system collector would hand the UI (values are plausible, fixed-ish)."""
    t = time.time()
    return {
        names.SYSTEM_CPU: 0.2 + 0.1 * random.random(),
        names.SYSTEM_MEMORY: 0.55,
        f'{names.SYSTEM_DISK}{{mount="/"}}': 0.61,
        f'{names.SYSTEM_NETWORK}{{direction="sent"}}': 1_000_000 + 5000 * t % 1e6,
        f'{names.SYSTEM_NETWORK}{{direction="received"}}': 2_000_000 + 8000 * t % 1e6,
        names.EVENT_LOOP_LAG: 0.002,
        f'{names.SERVICE_READY}{{dependency="database"}}': 1.0,
        f'{names.SERVICE_READY}{{dependency="cache"}}': 1.0,
        f'{names.INSTANCE_UP}{{instance="test-1"}}': 1.0,
        # Always exported (reason="none", 0) by the telemetry collector before any drop.
        f'{names.LOG_EVENTS_DROPPED}{{reason="none"}}': 0.0,
        f'{domain.EXPERIMENTS}{{status="running"}}': 3.0,
        f'{domain.EXPERIMENTS}{{status="draft"}}': 1.0,
        f'{domain.SAMPLE_RATIO_MISMATCH}{{experiment="checkout-button"}}': 0.0,
        f'{domain.SAMPLE_RATIO_MISMATCH}{{experiment="pricing-page"}}': 1.0,
    }


class Boom(RuntimeError):
    pass


@dataclass
class Stack:
    app: FastAPI
    windows: RollingWindows
    store: ErrorStore
    tracker: ErrorTracker
    sink: MemorySink
    pipeline: LogPipeline
    data: DashboardData
    alerts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def close(self) -> None:
        if isinstance(self.data.history, MetricHistory):
            self.data.history.engine.dispose()
        self.tracker.close()
        self.pipeline.close()
        self.store.dispose()


def business_counts(windows: RollingWindows) -> None:
    """What the platform counts per assignment/flag/event (labels in Prometheus text form)."""
    windows.count(f'{domain.ASSIGNMENTS}{{outcome="assigned"}}', 3)
    windows.count(f'{domain.ASSIGNMENTS}{{outcome="not_running"}}', 1)
    windows.count(f'{domain.FLAG_EVALUATIONS}{{result="on"}}', 4)
    windows.count(f'{domain.FLAG_EVALUATIONS}{{result="off"}}', 2)
    for variant, exposures, conversions in (("control", 5, 1), ("treatment", 5, 2)):
        labels = f'experiment="checkout-button",variant="{variant}"'
        windows.count(f"{domain.EXPOSURES}{{{labels}}}", exposures)
        windows.count(f"{domain.CONVERSION_EVENTS}{{{labels}}}", conversions)


def backfill(windows_clock: list[float], windows: RollingWindows, minutes: int = 20) -> None:
    """Write `minutes` of past traffic by moving the windows' clock forward from the past."""
    now = time.time()
    for m in range(minutes, 0, -1):
        for k in range(12):  # one write burst every 5 s of the past minute
            windows_clock[0] = now - m * 60 + k * 5
            for _ in range(5):
                windows.observe_request("GET", "/hello", 200, random.uniform(0.002, 0.03))
            windows.observe_request("GET", "/slow", 200, random.uniform(0.1, 0.3))
            if k % 4 == 0:
                windows.observe_request("GET", "/boom", 500, 0.004)
                windows.observe_request("GET", "/missing", 404, 0.001)
            business_counts(windows)
    windows_clock[0] = 0.0  # back to real time


def seed_errors(tracker: ErrorTracker, store: ErrorStore) -> None:
    """Two captured errors before the app starts: one still open, one already resolved."""
    for exc, rid in ((KeyError("variant"), "seed-req-1"), (TimeoutError("db pool"), "seed-req-2")):
        try:
            raise exc
        except Exception as caught:
            tracker.capture(caught, {"request_id": rid, "route": "/assignments", "method": "POST"})
    tracker.flush()
    for group in store.list_groups(status="open"):
        if group.type.endswith("TimeoutError"):
            store.resolve(group.fingerprint)


def make_stack(tmp_path: Path, *, history: bool = False) -> Stack:
    # The windows start 20 minutes in the past so backfilled traffic has its real span.
    offset = [time.time() - 20 * 60 - 1]

    def clock() -> float:
        return offset[0] or time.time()

    windows = RollingWindows(clock=clock)
    sink = MemorySink()
    pipeline = configure_logging(LoggingConfig(directory=None, stdout=False), extra_sinks=[sink])
    store = ErrorStore.from_url(f"sqlite:///{tmp_path / 'errors.db'}")
    store.create_schema()
    tracker = ErrorTracker(
        store, fingerprinter=Fingerprinter(["tests"]), config=TrackerConfig(linger_seconds=0.01)
    )
    backfill(offset, windows)
    seed_errors(tracker, store)
    metric_history: MetricHistory | None = None
    if history:  # the real per-minute store, fed with the backfilled minutes
        metric_history = MetricHistory(
            sa.create_engine(f"sqlite:///{tmp_path / 'history.db'}"), instance="test-1"
        )
        metric_history.create_schema()
        metric_history.record(windows.completed_minutes(since=0))
        for minute in range(20):
            metric_history.record_gauges(time.time() - minute * 60, system_gauges())
    data = DashboardData(
        DASHBOARDS,
        windows=windows,
        history=metric_history,
        errors=store,
        gauges=system_gauges,
        instance="test-1",
        gauge_interval_s=0.5,
    )

    def to_windows(record: RequestRecord) -> None:
        windows.observe_request(record.method, record.route, record.status, record.duration_s)
        business_counts(windows)

    def to_errors(record: RequestRecord) -> None:
        if record.exception is not None:
            ctx = record.context
            tracker.capture(
                record.exception,
                {"request_id": ctx.request_id, "route": record.route, "method": record.method},
            )

    app = FastAPI()
    log = get_logger("tests.app")

    @app.get("/hello")
    def hello() -> dict[str, str]:
        log.info("hello_served")
        return {"hello": "world"}

    @app.get("/slow")
    def slow() -> dict[str, str]:
        time.sleep(0.05)
        return {"slow": "yes"}

    @app.get("/boom")
    def boom() -> None:
        log.warning("about_to_fail", step="charge")
        raise Boom("card processor unavailable")

    @app.get("/missing")
    def missing() -> None:
        raise HTTPException(404)

    alerts: dict[str, list[dict[str, Any]]] = {
        "firing": [
            {"name": "HighErrorRate", "severity": "page", "state": "firing", "since": "12:01:00",
             "summary": "5xx ratio above 5% for 5 minutes"},
        ],
        "pending": [
            {"name": "SlowAssignments", "severity": "ticket", "state": "pending",
             "since": "12:04:30", "summary": "assignment p99 above 100 ms"},
        ],
        "silences": [
            {"id": "s-1", "matchers": "alertname=DiskFilling", "created_by": "ops",
             "comment": "resize scheduled", "ends_at": "18:00"},
        ],
        "notifications": [
            {"at": "12:01:02", "alert": "HighErrorRate", "receiver": "pagerduty",
             "status": "delivered"},
        ],
    }  # fmt: skip

    def log_lookup(request_id: str) -> list[Mapping[str, Any]]:
        return [e for e in list(sink.events) if e.get("request_id") == request_id]

    app.include_router(
        build_ops_ui(
            data,
            auth=token_auth(static_token_check(TOKEN)),
            log_lookup=log_lookup,
            alerts_provider=lambda: alerts,
        )
    )
    app.add_middleware(
        ObservabilityMiddleware, observers=[to_windows, to_errors, RequestLogObserver()]
    )
    return Stack(app, windows, store, tracker, sink, pipeline, data, alerts)
