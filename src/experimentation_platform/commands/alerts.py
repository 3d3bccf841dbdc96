"""`ep alerts list|silence|silences|expire|render|backtest`: alerting from a terminal.

`list`, `silence` and `expire` work on the observability database the running platform uses
(it re-reads silences every few seconds, so a silence set here takes effect at once);
`backtest --history` replays the per-minute history stored there. The backtests run the
production rules (`BASE_RULES`, whatever EP_ALERT_WINDOW_SCALE says)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

import typer
from sqlalchemy import Engine

from experimentation_platform.commands.failures import database_step
from experimentation_platform.settings import load_settings
from observability.alerting.backtest import RuleSet, replay_history, run_backtest, run_seeds
from observability.alerting.evaluator import EvaluatorConfig
from observability.alerting.rules import ThresholdRule
from observability.alerting.scoring import BacktestReport, seeds_markdown, tradeoff_markdown
from observability.alerting.silences import Matcher, SilenceStore
from observability.alerting.simulation import Profile, profile_markdown
from observability.alerting.state import StateStore
from observability.metrics.history import MetricHistory
from observability.store import ObservabilityStore
from observability.terminal import safe_text

app = typer.Typer(
    rich_markup_mode=None,
    help="Alerts: list, silence, render rules, backtest.",
    no_args_is_help=True,
)


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
def render(
    root: Annotated[Path, typer.Option(help="repository root")] = Path("."),
    base_url: Annotated[
        str, typer.Option(help="the instances' public base URL (runbook and dashboard links)")
    ] = "http://127.0.0.1:8000",
) -> None:
    """Write deploy/prometheus/rules.yml and deploy/alertmanager/alertmanager.yml."""
    from experimentation_platform.telemetry.alerts import render_deploy_files

    for path in render_deploy_files(root, base_url):
        typer.echo(f"wrote {path}")


# The rules were tuned on these seeds; docs/alerting.md reports the others (never tuned on).
TUNING_SEEDS: Final = (1, 2, 3)
REPORT_SEEDS: Final = (7, 11, 23, 42, 99)
REPORT_WEEKS: Final = 4.0
# What the sustained-error page's hold costs: each variant is that rule alone, held longer.
TRADEOFF_RULE: Final = "error_rate_spike"
TRADEOFF_HOLDS_MIN: Final = (0, 2, 4, 5, 6, 7, 8, 10)
DOCS_SECTION: Final = "backtest"


def _platform() -> RuleSet:
    from experimentation_platform.telemetry import alerts

    config = EvaluatorConfig(
        grouping=alerts.BASE_GROUPING, inhibit_rules=alerts.INHIBIT_RULES, log_transitions=False
    )
    return alerts.BASE_RULES, config


def _tradeoff_sets() -> dict[str, RuleSet]:
    rules, config = _platform()
    [rule] = [r for r in rules if isinstance(r, ThresholdRule) and r.name == TRADEOFF_RULE]
    return {
        f"`{TRADEOFF_RULE}` held {minutes} min": (
            (replace(rule, for_seconds=minutes * 60),),
            config,
        )
        for minutes in TRADEOFF_HOLDS_MIN
    }


def backtest_section(
    seeds: tuple[int, ...] = REPORT_SEEDS, weeks: float = REPORT_WEEKS
) -> tuple[str, dict[int, BacktestReport]]:
    """The generated part of docs/alerting.md: the platform's rules over `seeds`, and what the
    sustained-error page's hold trades (false pages against fast-burn detection)."""
    results = run_seeds({"platform": _platform(), **_tradeoff_sets()}, seeds, weeks)
    platform = {seed: sets["platform"] for seed, sets in results.items()}
    curves = {name: [results[seed][name] for seed in seeds] for name in _tradeoff_sets()}
    text = (
        f"The platform's rules, {weeks:g} weeks per seed, evaluated every 30 s; seeds "
        f"{', '.join(map(str, seeds))} (the rules were tuned on seeds "
        f"{', '.join(map(str, TUNING_SEEDS))}).\n\n"
        + seeds_markdown(list(platform.values()))
        + f"\nThe hold of `{TRADEOFF_RULE}` (alone, same seeds and weeks): false pages "
        "against fast-burn detection.\n\n" + tradeoff_markdown(curves, "fast_burn")
    )
    return text, platform


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"


def read_section(path: Path, name: str) -> str:
    """The text between a generated section's markers in `path`."""
    begin, end = _markers(name)
    text = path.read_text(encoding="utf-8")
    return text[text.index(begin) + len(begin) : text.index(end)].strip("\n") + "\n"


def write_section(path: Path, name: str, body: str) -> None:
    begin, end = _markers(name)
    text = path.read_text(encoding="utf-8")
    head, rest = text[: text.index(begin) + len(begin)], text[text.index(end) :]
    path.write_text(f"{head}\n{body.strip()}\n{rest}", encoding="utf-8")


def _print(data: object, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, indent=2) if as_json else text.rstrip())


@app.command("backtest")
def backtest(
    weeks: Annotated[float, typer.Option(min=0.1, max=12)] = REPORT_WEEKS,
    seed: Annotated[int, typer.Option(help="one simulated run")] = 7,
    seeds: Annotated[
        str | None, typer.Option(help="several runs, e.g. 7,11,23,42,99 (two at a time)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document")] = False,
    history: Annotated[
        bool, typer.Option("--history", help="replay the stored per-minute history instead")
    ] = False,
    days: Annotated[float, typer.Option(min=0.01, max=7, help="--history: how far back")] = 7,
    docs: Annotated[
        Path | None, typer.Option(help="write the simulation and the seeds' table into the file")
    ] = None,
) -> None:
    """Replay simulated weeks (or, with --history, the stored minutes of the last days)
    through the real evaluator: missed incidents, false pages and alarms per week, detection
    times, every alert episode. Exit 1 if a simulated run misses a bar."""
    rules, config = _platform()
    if history:
        engine = _engine()
        try:
            end = time.time()
            report = replay_history(
                rules, MetricHistory(engine), end - days * 86400, end, config=config
            )
        finally:
            engine.dispose()
        _print(report.to_dict(), as_json, report.to_markdown())
        return
    if seeds is not None or docs is not None:
        chosen = tuple(int(x) for x in seeds.split(",")) if seeds else REPORT_SEEDS
        text, reports = backtest_section(chosen, weeks)
        if docs is not None:
            write_section(docs, "simulation", profile_markdown(Profile()))
            write_section(docs, DOCS_SECTION, text)
        _print([r.to_dict() for r in reports.values()], as_json, text)
        raise typer.Exit(0 if all(r.passed() for r in reports.values()) else 1)
    single = run_backtest(rules, weeks, seed, config=config)
    _print(single.to_dict(), as_json, single.to_markdown())
    raise typer.Exit(0 if single.passed() else 1)
