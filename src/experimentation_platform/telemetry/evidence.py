"""Incident evidence read from what a running platform leaves behind (no server needed): the
alert state, error groups and per-minute history in the observability store, and the JSON log
files. `ep incident show` and the game day use it; a running instance serves the live
variant (`Observability.evidence`, with its rolling windows) at /api/v1/ops/incidents/{alert}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from experimentation_platform.settings import Settings
from experimentation_platform.telemetry.alerts import BASE_RULES
from experimentation_platform.telemetry.wiring import CHANGE_EVENTS
from observability.alerting.rules import Rule, definitions
from observability.alerting.scaling import scale_rules
from observability.alerting.state import AlertInstance
from observability.incident import DependencySignal, IncidentEvidence, gather_evidence
from observability.incident.signals import default_signals
from observability.logsearch import LogSearch
from observability.masking import default_masker
from observability.store import ObservabilityStore

__all__ = ["DEPENDENCY_SIGNALS", "stored_alerts", "stored_evidence"]

# The platform's dependencies as its readiness probes name them (app.py): the database and
# the configuration cache; the running instance derives the same from its probes.
READINESS_PROBES = ("database", "cache")
DEPENDENCY_SIGNALS: tuple[DependencySignal, ...] = default_signals(READINESS_PROBES)


def stored_alerts(settings: Settings) -> dict[str, AlertInstance]:
    """The alerts the platform's evaluator last stored, by key."""
    store = ObservabilityStore.open(settings.resolved_observability_database_url)
    try:
        store.alerts.create_schema()
        alerts, _ = store.alerts.load()
        return alerts
    finally:
        store.dispose()


def stored_evidence(
    settings: Settings,
    alert: AlertInstance,
    *,
    route_stats: Mapping[str, Mapping[str, Any]] | None = None,
    rules: Sequence[Rule] | None = None,
    now: float | None = None,
) -> IncidentEvidence:
    """Evidence for `alert` from the store and log files. `rules` default to the platform's at
    this process's EP_ALERT_WINDOW_SCALE; pass an instance's when it runs at another scale."""
    if rules is None:
        rules = scale_rules(BASE_RULES, settings.alert_window_scale)
    store = ObservabilityStore.open(settings.resolved_observability_database_url)
    try:
        return gather_evidence(
            alert,
            definitions=definitions(rules),
            history=store.history,
            dependency_signals=DEPENDENCY_SIGNALS,
            route_stats=route_stats,
            errors=store.errors,
            logs=LogSearch(settings.log_dir, settings.log_file_stem),
            config_events=CHANGE_EVENTS,
            mask=default_masker().mask,
            now=now,
        )
    finally:
        store.dispose()
