"""`ep incident show ALERT [--json]`: the evidence for a firing alert, from a terminal.

Reads what the running platform writes (the observability store and the JSON log files):
rolling windows live inside the server process, so the curve and routes come from the
per-minute history here (`GET /api/v1/ops/incidents/{alert}` answers from live windows)."""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from experimentation_platform.commands.failures import database_step
from experimentation_platform.settings import SettingsError, load_settings
from experimentation_platform.telemetry.evidence import stored_alerts, stored_evidence
from observability.alerting.state import find_alert
from observability.terminal import safe_data, safe_json

__all__ = ["app", "show"]

app = typer.Typer(rich_markup_mode=None, help="Incident evidence for alerts.", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Incident evidence for alerts (a group, so `ep incident show` keeps its name)."""


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
    url = settings.resolved_observability_database_url
    with database_step(url, "EP_OBSERVABILITY_DATABASE_URL"):
        known = stored_alerts(settings)
    found = find_alert(known, alert)
    if found is None:
        names = sorted({a.name for a in known.values() if a.state != "inactive"})
        hint = f" (known: {', '.join(names)})" if names else " (no alert is pending or firing)"
        typer.echo(f"error: no alert {alert!r}{hint}", err=True)
        raise typer.Exit(1)
    evidence = stored_evidence(settings, found)
    # Log lines, error messages and label values quote client input: escaped for a terminal.
    if as_json:
        text = orjson.dumps(evidence.to_dict(), option=orjson.OPT_NON_STR_KEYS).decode()
        typer.echo(safe_json(text))
    else:
        typer.echo(safe_data(evidence).render_text(), nl=False)
