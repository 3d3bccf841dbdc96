"""The embedded alert evaluator: the platform's rules (telemetry/alerts.py) evaluated in
process over the rolling windows and the per-minute history, notified through the shared
dispatcher, state and silences in the observability database (they survive a restart)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from experimentation_platform.instrumentation import Instrumentation
from experimentation_platform.observe import Observability
from experimentation_platform.settings import Settings
from experimentation_platform.telemetry import alerts
from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.silences import SilenceStore
from observability.alerting.state import StateStore
from observability.metrics import names
from observability.query.live import LiveSource

__all__ = ["Alerting", "build_alerting"]


@dataclass
class CounterFeed:
    """Copies cumulative counters kept elsewhere (the error tracker, the log pipeline) into
    the rolling windows as increments, so embedded rules can see them."""

    windows: Any
    sources: list[Callable[[], Mapping[str, float]]]
    _last: dict[str, float] = field(default_factory=dict)

    def sync(self) -> None:
        for source in self.sources:
            for key, total in source().items():
                delta = total - self._last.get(key, 0.0)
                if delta > 0:
                    self.windows.count(key, delta)
                self._last[key] = total


@dataclass
class Alerting:
    evaluator: Evaluator
    silences: SilenceStore
    feed: CounterFeed
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(5.0):
                self.feed.sync()

        self._thread = threading.Thread(target=loop, name="alert-feed", daemon=True)
        self._thread.start()
        self.evaluator.start()

    def stop(self) -> None:
        self._stop.set()
        self.evaluator.stop()
        if self._thread is not None:
            self._thread.join(5)


def build_alerting(
    settings: Settings, observability: Observability, instruments: Instrumentation
) -> Alerting:
    engine = observability.errors.store.engine
    state = StateStore(engine)
    state.create_schema()
    silences = SilenceStore(engine)
    silences.create_schema()
    source = LiveSource(
        instruments.windows,
        history=instruments.history,
        gauges=lambda: instruments._gauges() if instruments._gauges else {},
    )
    evaluator = Evaluator(
        alerts.RULES,
        source,
        dispatcher=observability.dispatcher,
        config=EvaluatorConfig(
            interval_s=settings.alert_interval_seconds,
            grouping=alerts.GROUPING,
            inhibit_rules=alerts.INHIBIT_RULES,
            runbook_base_url=alerts.RUNBOOK_URL,
            dashboard_base_url=f"{settings.base_url}/ops/dashboards",
            evidence_url_template=f"{settings.base_url}/ops/incidents/{{alertname}}",
        ),
        state_store=state,
        silences=silences,
    )

    def errors_by_severity() -> dict[str, float]:
        return {
            f'{names.ERROR_EVENTS}{{severity="{severity}"}}': float(count)
            for severity, count in observability.errors.by_severity.items()
        }

    def log_drops() -> dict[str, float]:
        return {names.LOG_EVENTS_DROPPED: float(sum(observability.logs.dropped.values()))}

    feed = CounterFeed(instruments.windows, [errors_by_severity, log_drops])
    return Alerting(evaluator=evaluator, silences=silences, feed=feed)
