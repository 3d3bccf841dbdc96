"""The backtest: the platform's rules meet the bars on a shortened horizon, a naive rule does
not, and the simulation is deterministic for a seed."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from experimentation_platform.commands import alerts as alerts_cli
from experimentation_platform.telemetry import alerts
from observability.alerting.backtest import Simulation, run_backtest
from observability.alerting.evaluator import EvaluatorConfig
from observability.alerting.rules import ThresholdRule
from observability.query.model import ErrorRatio

PLATFORM = EvaluatorConfig(
    grouping=alerts.BASE_GROUPING, inhibit_rules=alerts.INHIBIT_RULES, log_transitions=False
)


def test_platform_rules_meet_the_bars_over_a_week() -> None:
    report = run_backtest(alerts.BASE_RULES, weeks=1, seed=7, config=PLATFORM)
    assert report.bars() == {
        "no missed incidents": True,
        "< 1 false page per week": True,
        "median fast-burn detection < 5 min": True,
        "< 5 false alarms per week": True,
    }, report.to_markdown()
    kinds = {r.incident.kind for r in report.incidents}
    assert kinds == {
        "fast_burn",
        "slow_burn",
        "latency_regression",
        "dependency_outage",
        "error_spike",
    }
    assert "| fast_burn | 1 | 0 |" in report.to_markdown()


def test_a_naive_threshold_pages_on_benign_noise() -> None:
    naive = ThresholdRule(
        "any_errors", ErrorRatio(window_s=60), ">", 0.01, "critical", "errors above 1%"
    )
    report = run_backtest([naive], weeks=1, seed=7, step_s=60)
    assert report.rules["any_errors"].false_alarms > 0
    assert report.false_pages_per_week >= 1
    assert not report.passed()


def test_the_simulation_is_seeded() -> None:
    one, two, other = Simulation(0.5, 3), Simulation(0.5, 3), Simulation(0.5, 4)
    assert one.incidents == two.incidents
    assert one.noise == two.noise
    t = one.start + 3600
    assert one.minute(t) == two.minute(t)
    assert (one.incidents, one.noise) != (other.incidents, other.noise)


def test_ep_alerts_backtest_prints_the_report_and_exits_by_the_bars() -> None:
    result = CliRunner().invoke(alerts_cli.app, ["backtest", "--weeks", "0.25"])
    report = run_backtest(alerts.BASE_RULES, 0.25, 7, 30, config=PLATFORM)
    # The same report but for how long it took to run.
    elapsed = re.compile(r"\([0-9.]+ s to run")
    assert elapsed.sub("", result.stdout) == elapsed.sub("", report.to_markdown())
    assert result.stdout.startswith("Backtest: 0.25 weeks")
    assert result.exit_code == (0 if report.passed() else 1)
