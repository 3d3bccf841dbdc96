"""`ep incident show ALERT [--json]`: the evidence for a firing alert, from a terminal.

Reads what the running platform writes: alert state, error groups and per-minute metric
history in the observability database (EP_ERRORS_DATABASE_URL or the default under
EP_VAR_DIR), and the JSON log files in EP_LOG_DIR. Rolling windows live inside the server
process, so the curve and routes come from minute history here; `instance_evidence` is the
in-process variant (live windows) behind `GET /api/v1/ops/incidents/{alert}` and the
`/ops/incidents/{alert}` page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final

import orjson
import typer

from experimentation_platform.commands.failures import database_step
from experimentation_platform.instrumentation import Instrumentation
from experimentation_platform.observe import Observability
from experimentation_platform.settings import Settings, SettingsError, load_settings
from experimentation_platform.telemetry import names as domain
from observability.alerting.evaluator import Evaluator
from observability.alerting.rules import AlertDefinition, Rule, definitions
from observability.alerting.state import AlertInstance, StateStore
from observability.errors import ErrorStore
from observability.incident import IncidentEvidence, gather_evidence
from observability.logsearch import LogSearch
from observability.masking import default_masker
from observability.metrics import names
from observability.metrics.history import MetricHistory
from observability.runmarker import UNCLEAN_SHUTDOWN_DETECTED
from observability.terminal import safe_data, safe_json

__all__ = [
    "CONFIG_EVENTS",
    "alert_links",
    "app",
    "find_alert",
    "instance_evidence",
    "platform_evidence",
    "show",
]

# The platform's log events that change behaviour: shown as "recent configuration changes".
CONFIG_EVENTS: Final = (
    domain.EXPERIMENT_STATUS_CHANGED,
    domain.FLAG_CHANGED,
    "fault_injected",  # experimentation_platform/faults.py
    "fault_cleared",
    names.SERVICE_STARTED,
    UNCLEAN_SHUTDOWN_DETECTED,  # a restart after a crash (observability/runmarker.py)
)

app = typer.Typer(help="Incident evidence for alerts.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Incident evidence for alerts (a group, so `ep incident show` keeps its name)."""


_STATE_ORDER = {"firing": 0, "pending": 1, "resolved": 2, "inactive": 3}


def find_alert(alerts: Mapping[str, AlertInstance], wanted: str) -> AlertInstance | None:
    """The alert whose key or name is `wanted`: firing before pending before resolved, then
    the most recent."""
    matches = [a for a in alerts.values() if wanted in (a.key, a.name)]
    if not matches:
        return None
    return min(
        matches,
        key=lambda a: (_STATE_ORDER.get(a.state, 9), -(a.fired_at or a.active_since or 0.0)),
    )


def platform_evidence(
    settings: Settings,
    alert: AlertInstance,
    *,
    route_stats: Mapping[str, Mapping[str, Any]] | None = None,
    rules: Sequence[Rule] | None = None,
    now: float | None = None,
) -> IncidentEvidence:
    """Evidence from the platform's observability database and log files (no server needed).

    `rules` default to the ones this process sees (EP_ALERT_WINDOW_SCALE included); pass the
    instance's when it runs at another scale.
    """
    from experimentation_platform.telemetry import alerts

    store = ErrorStore.from_url(settings.resolved_errors_database_url)
    try:
        return gather_evidence(
            alert,
            definitions=definitions(alerts.RULES if rules is None else rules),
            history=MetricHistory(store.engine),
            route_stats=route_stats,
            errors=store,
            logs=LogSearch(settings.log_dir, settings.log_file_stem),
            config_events=CONFIG_EVENTS,
            mask=default_masker().mask,
            now=now,
        )
    finally:
        store.dispose()


def instance_evidence(
    alert: str,
    *,
    evaluator: Evaluator,
    settings: Settings,
    observability: Observability,
    instruments: Instrumentation,
) -> dict[str, Any] | None:
    """Evidence for `alert` (name or key) from inside a running instance: its evaluator's
    alerts and rules, live rolling windows, error store and log files. JSON-ready, with the
    alert's runbook and dashboard links under "links"; None when the instance knows no such
    alert. One body for the JSON endpoint and the /ops incident page."""
    found = find_alert(evaluator.alert_instances(), alert)
    if found is None:
        return None
    observability.logs.flush(1.0)  # the failing requests just happened: lines may be queued
    evidence = gather_evidence(
        found,
        definitions=evaluator.definitions,
        windows=instruments.windows,
        history=instruments.history,
        errors=observability.errors.store,
        logs=LogSearch(settings.log_dir, settings.log_file_stem),
        config_events=CONFIG_EVENTS,
        mask=observability.masker.mask,
    )
    result = evidence.to_dict()
    definition = next((d for d in evaluator.definitions if d.name == found.name), None)
    result["links"] = alert_links(
        definition,
        runbook_base_url=evaluator.config.runbook_base_url,
        dashboard_base_url=evaluator.config.dashboard_base_url,
    )
    return result


def alert_links(
    definition: AlertDefinition | None, *, runbook_base_url: str, dashboard_base_url: str
) -> dict[str, str | None]:
    """The runbook section and dashboard of an alert, built as its notifications build them."""
    if definition is None:
        return {"runbook": None, "dashboard": None}
    runbook = f"{runbook_base_url}#{definition.runbook}" if definition.runbook else None
    dashboard = definition.dashboard
    if dashboard and "://" not in dashboard and dashboard_base_url:
        dashboard = dashboard_base_url.rstrip("/") + "/" + dashboard.lstrip("/")
    return {"runbook": runbook, "dashboard": dashboard or None}


@app.command("show")
def show(
    alert: Annotated[str, typer.Argument(help="alert name (e.g. error_rate_spike) or key")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
) -> None:
    """Evidence for ALERT: the breached metric and its curve, failing and slow routes, top
    error groups, sample failing requests with their log lines, recent configuration changes."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    store = ErrorStore.from_url(settings.resolved_errors_database_url)
    try:
        with database_step(settings.resolved_errors_database_url, "EP_ERRORS_DATABASE_URL"):
            state = StateStore(store.engine)
            state.create_schema()
            known, _ = state.load()
    finally:
        store.dispose()
    found = find_alert(known, alert)
    if found is None:
        names = sorted({a.name for a in known.values() if a.state != "inactive"})
        hint = f" (known: {', '.join(names)})" if names else " (no alert is pending or firing)"
        typer.echo(f"error: no alert {alert!r}{hint}", err=True)
        raise typer.Exit(1)
    evidence = platform_evidence(settings, found)
    # Log lines, error messages and label values quote client input: escaped for a terminal.
    if as_json:
        text = orjson.dumps(evidence.to_dict(), option=orjson.OPT_NON_STR_KEYS).decode()
        typer.echo(safe_json(text))
    else:
        typer.echo(safe_data(evidence).render_text(), nl=False)
