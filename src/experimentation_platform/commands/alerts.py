"""`ep alerts list|silence|silences|expire|render|backtest`: alerting from a terminal.

`list`, `silence` and `expire` work on the observability database the running platform uses
(it re-reads silences every few seconds, so a silence set here takes effect at once)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from experimentation_platform.commands.failures import database_step
from experimentation_platform.settings import load_settings
from observability.alerting.silences import Matcher, SilenceStore
from observability.alerting.state import StateStore
from observability.store import ObservabilityStore
from observability.terminal import safe_text

app = typer.Typer(help="Alerts: list, silence, render rules, backtest.", no_args_is_help=True)


def _engine() -> Engine:
    url = load_settings().resolved_observability_database_url
    engine = ObservabilityStore.open(url).engine
    with database_step(url, "EP_OBSERVABILITY_DATABASE_URL"), engine.connect():
        pass  # unreachable: one line naming the setting, not a traceback per command
    return engine


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else f"{datetime.fromtimestamp(stamp, UTC):%Y-%m-%d %H:%M:%S}Z"


@app.command("list")
def list_alerts(
    all_states: Annotated[bool, typer.Option("--all", help="inactive ones too")] = False,
) -> None:
    """Firing and pending alerts, most severe first."""
    engine = _engine()
    store = StateStore(engine)
    store.create_schema()
    alerts, _ = store.load()
    engine.dispose()
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    shown = [a for a in alerts.values() if all_states or a.state in ("firing", "pending")]
    if not shown:
        typer.echo("no firing or pending alerts")
        return
    for alert in sorted(shown, key=lambda a: (order.get(a.severity, 9), a.name)):
        muted = f" (muted: {', '.join(alert.muted_by)})" if alert.muted_by else ""
        typer.echo(
            safe_text(
                f"{alert.state.upper():<8} {alert.severity:<9} {alert.name:<28} since "
                f"{_when(alert.fired_at or alert.active_since)}  {alert.summary}{muted}"
            )
        )


@app.command("silence")
def silence(
    matchers: Annotated[list[str], typer.Argument(help="e.g. alertname=api_latency_page")],
    author: Annotated[str, typer.Option(help="who silences")],
    reason: Annotated[str, typer.Option(help="why (shown on the alerts page)")],
    duration: Annotated[str, typer.Option(help="30m, 2h, 1d")] = "1h",
) -> None:
    """Silence alerts matching every MATCHER (name=value, name!=value, name=~regex)."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if duration[-1:] not in units or not duration[:-1].isdigit():
        raise typer.BadParameter("use 30m, 2h or 1d", param_hint="--duration")
    try:
        parsed = [Matcher.parse(m) for m in matchers]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="MATCHERS") from None
    engine = _engine()
    store = SilenceStore(engine)
    store.create_schema()
    created = store.create(
        parsed,
        author=author,
        reason=reason,
        duration_s=int(duration[:-1]) * units[duration[-1]],
    )
    engine.dispose()
    typer.echo(f"silence {created.id} until {_when(created.ends_at)}")


@app.command("silences")
def silences(all_silences: Annotated[bool, typer.Option("--all")] = False) -> None:
    """Active silences (or all, with --all)."""
    engine = _engine()
    store = SilenceStore(engine)
    store.create_schema()
    items = store.list(include_expired=all_silences)
    engine.dispose()
    if not items:
        typer.echo("no silences")
    for item in items:
        matchers = ",".join(f"{m.name}{m.op}{m.value}" for m in item.matchers)
        state = "active" if item.ends_at > time.time() else "expired"
        typer.echo(
            safe_text(
                f"{item.id}  {state:<8} until {_when(item.ends_at)}  {matchers}  "
                f"by {item.author}: {item.reason}"
            )
        )


@app.command("expire")
def expire(silence_id: str) -> None:
    """End a silence now."""
    engine = _engine()
    store = SilenceStore(engine)
    store.create_schema()
    ended = store.expire(silence_id)
    engine.dispose()
    if not ended:
        typer.echo(f"error: no active silence {silence_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"silence {silence_id} expired")


@app.command("render")
def render(root: Annotated[Path, typer.Option(help="repository root")] = Path(".")) -> None:
    """Write deploy/prometheus/rules.yml and deploy/alertmanager/alertmanager.yml."""
    from experimentation_platform.telemetry.alerts import render_deploy_files

    for path in render_deploy_files(root):
        typer.echo(f"wrote {path}")


@app.command("backtest")
def backtest(
    weeks: Annotated[float, typer.Option(min=0.1, max=12)] = 4,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Replay a seeded 4-week simulation through the real evaluator and report false alarms,
    missed incidents and detection times per rule (exit 1 if a bar is not met)."""
    from experimentation_platform.telemetry import alerts
    from observability.alerting.backtest import report_main
    from observability.alerting.evaluator import EvaluatorConfig

    config = EvaluatorConfig(
        grouping=alerts.BASE_GROUPING, inhibit_rules=alerts.INHIBIT_RULES, log_transitions=False
    )
    raise typer.Exit(report_main(alerts.BASE_RULES, config, weeks=weeks, seed=seed))
