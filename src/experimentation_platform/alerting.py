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
from observability.alerting.sources import LiveSource
from observability.alerting.state import StateStore
from observability.logging import get_logger
from observability.masking.audit import AuditFinding, LogAuditor
from observability.metrics import names

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
    auditor: LogAuditor | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(5.0):
                self.feed.sync()

        self._thread = threading.Thread(target=loop, name="alert-feed", daemon=True)
        self._thread.start()
        self.evaluator.start()
        if self.auditor is not None:
            self.auditor.start()

    def stop(self) -> None:
        self._stop.set()
        if self.auditor is not None:
            self.auditor.stop()
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

    auditor = _auditor(settings, observability, instruments)

    def audit_findings() -> dict[str, float]:
        # The rule counts findings of any detector (/metrics keeps the detector label).
        found = sum(auditor.found.values()) if auditor is not None else 0
        return {names.LOG_AUDIT_FINDINGS: float(found)}

    feed = CounterFeed(instruments.windows, [errors_by_severity, log_drops, audit_findings])
    return Alerting(evaluator=evaluator, silences=silences, feed=feed, auditor=auditor)


_audit_log = get_logger("observability.masking.audit")


def _report_findings(findings: list[AuditFinding]) -> None:
    # Where and which detector, never the value: the line itself is the evidence to fix.
    for finding in findings[:100]:
        _audit_log.error(
            "log_audit_finding",
            source=finding.source,
            line_number=finding.line,
            field=finding.field,
            detector=finding.detector,
        )


def _auditor(
    settings: Settings, observability: Observability, instruments: Instrumentation
) -> LogAuditor | None:
    """The periodic audit of this instance's stored logs and error store (see
    docs/logging-standards.md); None when EP_LOG_AUDIT_INTERVAL_SECONDS is 0."""
    if settings.log_audit_interval_seconds <= 0:
        return None
    return LogAuditor(
        settings.log_dir if settings.log_to_file else None,
        settings.log_file_stem,
        store_engine=observability.errors.store.engine,
        registry=instruments.registry,
        interval=settings.log_audit_interval_seconds,
        masker=observability.masker,
        on_findings=_report_findings,
    )
