"""`ep gameday SCENARIO|all [--start | --base-url URL --admin-key KEY] [--json]`: inject faults,
measure detection, notification, evidence against a baseline, and resolve; a control scenario
must stay quiet (see docs/gameday.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from experimentation_platform.gameday import (
    SCENARIOS,
    GameDayConfig,
    json_lines,
    render_report,
    run_gameday,
    scenarios_named,
)

__all__ = ["run"]


def run(
    scenarios: Annotated[
        list[str] | None,
        typer.Argument(
            help="all, or one or more of: " + ", ".join(s.name for s in SCENARIOS),
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        bool, typer.Option("--start", help="start a fresh local instance per scenario (default)")
    ] = False,
    base_url: Annotated[
        str | None, typer.Option(help="target a running instance (EP_FAULT_INJECTION=true)")
    ] = None,
    admin_key: Annotated[
        str | None, typer.Option(envvar="EP_GAMEDAY_ADMIN_KEY", help="admin key of --base-url")
    ] = None,
    scale: Annotated[
        float, typer.Option(min=0.001, max=1.0, help="EP_ALERT_WINDOW_SCALE of started instances")
    ] = 0.01,
    warmup: Annotated[
        float,
        typer.Option(min=0, max=600, help="seconds of traffic first (>= the longest page window)"),
    ] = 40,
    rate: Annotated[float, typer.Option(min=1, max=200, help="requests per second")] = 20,
    detect_timeout: Annotated[float, typer.Option(min=5, max=1800)] = 120,
    resolve_timeout: Annotated[float, typer.Option(min=5, max=1800)] = 90,
    control_watch: Annotated[
        float, typer.Option(min=5, max=1800, help="seconds the control must stay quiet")
    ] = 60,
    work_dir: Annotated[
        Path | None, typer.Option(help="keep instances' data and logs here (default: temp)")
    ] = None,
    postgres: Annotated[
        str | None,
        typer.Option(
            envvar="EP_GAMEDAY_POSTGRES_DSN",
            help="admin DSN of a PostgreSQL on this machine that may create databases "
            "(db-network-latency runs its instance on a fresh one, behind a slow proxy)",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per scenario, one per line")
    ] = False,
    show_evidence: Annotated[bool, typer.Option("--evidence/--no-evidence")] = True,
) -> None:
    """Run game day scenarios and print the report. Exit 1 unless every scenario passed: each
    fault detected, notified, its cause named by evidence against the baseline, resolved; the
    control quiet (no alert, no evidence); every scenario actually run."""
    if base_url and start:
        raise typer.BadParameter("use either --start or --base-url", param_hint="--start")
    if base_url and not admin_key:
        raise typer.BadParameter("--base-url needs --admin-key", param_hint="--admin-key")
    try:
        chosen = scenarios_named(scenarios or ["all"])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="SCENARIOS") from None
    config = GameDayConfig(
        scale=scale,
        warmup_s=warmup,
        rate_per_second=rate,
        detect_timeout_s=detect_timeout,
        resolve_timeout_s=resolve_timeout,
        control_watch_s=control_watch,
        base_url=base_url.rstrip("/") if base_url else None,
        admin_key=admin_key,
        work_dir=work_dir,
        postgres_dsn=postgres,
        on_event=lambda text: typer.echo(text, err=True),
    )
    results = run_gameday(chosen, config)
    if as_json:
        typer.echo(json_lines(results), nl=False)
    else:
        typer.echo(render_report(results, evidence=show_evidence), nl=False)
    if not all(r.passed for r in results):
        raise typer.Exit(1)
