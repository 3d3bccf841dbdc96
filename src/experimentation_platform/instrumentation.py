"""Metrics for the platform: Prometheus instruments, rolling windows, per-minute history,
CloudWatch EMF, the /metrics endpoint and the built-in operations UI at /ops.

Built once per process by `app.py` (through `build_instrumentation`), after logging and error
tracking (observe.py), and attached to the platform's database and cache.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from experimentation_platform.container import Platform
from experimentation_platform.observe import Observability, instance_id
from experimentation_platform.settings import Settings
from experimentation_platform.telemetry import names as domain
from experimentation_platform.telemetry.metrics import PlatformMetrics, PlatformStateCollector
from observability.asgi import RequestRecord
from observability.logging import get_logger
from observability.metrics import names
from observability.metrics.emf import EmfPublisher
from observability.metrics.history import MetricHistory
from observability.metrics.prometheus import CacheMetrics, HttpMetrics, build_registry
from observability.metrics.sqlalchemy import SlowQuery, instrument_engine
from observability.metrics.system import RuntimeMetrics
from observability.metrics.telemetry import TelemetryCollector
from observability.metrics.windows import RollingWindows

__all__ = ["Instrumentation", "build_instrumentation"]

log = get_logger("experimentation_platform.instrumentation")

# Routes whose traffic is the operator's, not the product's: kept out of the windows (and so
# out of the API dashboards and SLO alerts), still counted in Prometheus for what they cost.
OPERATOR_PREFIXES = ("/ops", "/metrics", "/health")

DASHBOARD_GAUGES = (
    names.SYSTEM_CPU,
    names.SYSTEM_MEMORY,
    names.SYSTEM_DISK,
    names.SYSTEM_NETWORK,
    names.LOG_EVENTS_DROPPED,  # a counter sampled like network bytes (System health panel)
    names.EVENT_LOOP_LAG,
    names.PROCESS_MEMORY,
    names.SERVICE_READY,
    domain.EXPERIMENTS,
    domain.SAMPLE_RATIO_MISMATCH,
    "experiment_conversion_rate",
    names.CLOUDWATCH_LAG,
)


@dataclass
class Instrumentation:
    registry: CollectorRegistry
    windows: RollingWindows
    http: HttpMetrics
    cache: CacheMetrics
    platform: PlatformMetrics
    runtime: RuntimeMetrics
    history: MetricHistory
    emf: EmfPublisher | None
    state: PlatformStateCollector | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _minute_thread: threading.Thread | None = None
    _gauges: Callable[[], dict[str, float]] | None = None

    def observe_request(self, record: RequestRecord) -> None:
        """Request observer: every product request into the rolling windows."""
        route = record.route
        # The path too: /metrics is a mounted app, so its route reads as unmatched.
        if route.startswith(OPERATOR_PREFIXES) or record.path.startswith(OPERATOR_PREFIXES):
            return
        self.windows.observe_request(record.method, route, record.status, record.duration_s)

    async def start(self) -> None:
        await self.runtime.start()
        if self.state is not None:
            self.state.start()
        self._minute_thread = threading.Thread(
            target=self._minute_loop, name="metrics-minute", daemon=True
        )
        self._minute_thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self.state is not None:
            self.state.stop()
        await self.runtime.stop()
        if self._minute_thread is not None:
            await asyncio.to_thread(self._minute_thread.join, 5)
        self.persist_minutes()  # the last complete minutes are not lost at shutdown

    # --- once a minute: history, gauges, EMF ----------------------------------------------
    _last_minute: float = 0.0
    _emf_sink: Callable[[list[tuple[str, int, str]]], None] | None = None

    def persist_minutes(self) -> int:
        rollups = self.windows.completed_minutes(since=self._last_minute)
        if not rollups:
            return 0
        self.history.record(rollups)
        self._last_minute = max(r.minute_start for r in rollups) + 60
        if self._gauges is not None:
            self.history.record_gauges(rollups[-1].minute_start, self._gauges())
        if self.emf is not None and self._emf_sink is not None:
            lines = self.emf.lines_for_rollups(rollups)
            stamp = int(time.time() * 1000)
            self._emf_sink([("services", stamp, line) for line in lines])
        return len(rollups)

    def _minute_loop(self) -> None:
        last_prune = 0.0
        while not self._stop.wait(15.0):
            try:
                self.persist_minutes()
                if time.time() - last_prune > 3600:
                    self.history.prune(time.time() - 7 * 86400)
                    last_prune = time.time()
            except Exception as exc:  # a failed write is retried next round, never fatal
                log.warning("metrics_history_failed", error=type(exc).__name__)


def _state_snapshot(platform: Platform) -> dict[str, Any]:
    by_status = platform.experiments.count_by_status()
    results: dict[str, Any] = {}
    rows, _ = platform.experiments.list(0, 200, "running")
    for row in rows:
        result = platform.events.results(row.key, None)
        results[row.key] = {
            "mismatch": result["sample_ratio_mismatch"]["mismatch"],
            "rates": {v["key"]: v["conversion_rate"] for v in result["variants"]},
        }
    return {"by_status": by_status, "results": results, "at": time.time()}


def _readiness(platform: Platform) -> Callable[[], dict[str, bool]]:
    def ready() -> dict[str, bool]:
        status = {}
        for name, probe in (("database", platform.db.ping), ("cache", platform.cache.ping)):
            try:
                probe()
                status[name] = True
            except Exception:
                status[name] = False
        return status

    return ready


def build_instrumentation(settings: Settings, observability: Observability) -> Instrumentation:
    registry = build_registry()
    windows = RollingWindows()
    http = HttpMetrics(registry)
    history = MetricHistory(observability.errors.store.engine, instance=instance_id(settings))
    history.create_schema()
    emf = (
        EmfPublisher(settings.cloudwatch_namespace, {"Service": "experimentation-platform"})
        if observability.shipper is not None
        else None
    )
    registry.register(
        TelemetryCollector(
            lambda: observability.logs,
            errors=observability.errors,
            dispatcher=observability.dispatcher,
            shipper=observability.shipper,
        )
    )
    instruments = Instrumentation(
        registry=registry,
        windows=windows,
        http=http,
        cache=CacheMetrics(registry),
        platform=PlatformMetrics(registry, windows),
        runtime=RuntimeMetrics(
            registry,
            disk_paths=[str(settings.var_dir)],
            memory_budget=settings.resolved_memory_budget_bytes,
        ),
        history=history,
        emf=emf,
    )
    if observability.shipper is not None:
        instruments._emf_sink = observability.shipper.submit_many
    return instruments


def attach_platform(instruments: Instrumentation, platform: Platform, settings: Settings) -> None:
    """What needs the platform's parts: query timing, pool and state gauges."""

    def slow(query: SlowQuery) -> None:
        log.warning(
            "slow_query",
            statement=query.statement,
            operation=query.operation,
            duration_ms=round(query.duration_s * 1000, 1),
        )

    instrument_engine(
        platform.db.engine,
        instruments.registry,
        slow_query_seconds=settings.slow_query_seconds,
        on_slow_query=slow,
    )
    instruments.state = PlatformStateCollector(
        lambda: _state_snapshot(platform), _readiness(platform)
    )
    instruments.registry.register(instruments.state)

    def gauges() -> dict[str, float]:
        from observability.dashboards.data import registry_values

        return dict(registry_values(instruments.registry, list(DASHBOARD_GAUGES)))

    instruments._gauges = gauges
