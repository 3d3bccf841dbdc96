"""The game day end to end: every scenario against a real `ep serve` process per scenario, demo
traffic on 127.0.0.1, real fault injection, the embedded evaluator with shortened windows
(EP_ALERT_WINDOW_SCALE, configuration only) and a local recording Slack/PagerDuty receiver.

What a user relies on: each of the six injected faults raises an alert within 2 minutes, a
notification arrives, the incident evidence names the affected route or dependency (and the top
error group where the fault raises), and removing the fault resolves the alert with a resolve
notification. CloudWatch unreachable runs against a local moto server; memory pressure against
the instance's own memory budget (EP_MEMORY_BUDGET_MB), whatever the machine's size.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from experimentation_platform.commands import gameday as gameday_command
from experimentation_platform.commands import incident as incident_command
from experimentation_platform.gameday import (
    SCENARIOS,
    GameDayConfig,
    ScenarioResult,
    render_report,
    run_gameday,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gameday")


@pytest.fixture(scope="module")
def results(work: Path) -> dict[str, ScenarioResult]:
    config = GameDayConfig(
        warmup_s=10.0,  # shorter than the CLI's default: the whole run stays near 5 minutes
        detect_timeout_s=110.0,
        resolve_timeout_s=60.0,
        work_dir=work,
    )
    return {r.scenario: r for r in run_gameday(SCENARIOS, config)}


@pytest.mark.timeout(600)
def test_every_scenario_is_detected_explained_and_resolved(
    results: dict[str, ScenarioResult],
) -> None:
    report = render_report(list(results.values()), evidence=False)
    assert {s.name for s in SCENARIOS} == {
        "db-latency",
        "assignment-errors",
        "db-unavailable",
        "cache-unavailable",
        "memory-pressure",
        "cloudwatch-unreachable",
    }
    for scenario in SCENARIOS:
        result = results[scenario.name]
        assert result.detected, f"{scenario.name} not detected\n{report}"
        assert result.time_to_detect_s is not None
        assert result.time_to_detect_s < 120, report
        assert result.detected_alert in scenario.expect
        # The notification arrived at the local receiver, with the alert in it.
        assert result.notification is not None, report
        assert result.notification["receiver"] in ("pagerduty", "slack")
        assert result.detected_alert in json.dumps(result.notification["body"])
        # The evidence names the cause (route or dependency) and, where the fault raises,
        # its error group comes first.
        assert result.cause_named, f"{scenario.name}: cause not named\n{result.evidence_text}"
        if scenario.error_type is not None:
            assert result.error_group_named, result.evidence_text
        # Removal resolves the alert and the receiver hears about it.
        assert result.resolved, report
        assert result.time_to_resolve_s is not None
        assert result.time_to_resolve_s < 60


def test_cloudwatch_and_memory_evidence(results: dict[str, ScenarioResult]) -> None:
    cloud = results["cloudwatch-unreachable"]
    assert cloud.detected_labels.get("dependency") == "cloudwatch"
    assert "dependency" in cloud.cause_named_by["cloudwatch"]
    assert "dependency: cloudwatch" in cloud.evidence_text
    evidence = cloud.evidence or {}
    assert evidence["metric"]["query"] == "gauge cloudwatch_shipping_lag_seconds"
    assert evidence["metric"]["value"] > evidence["metric"]["threshold"]
    memory = results["memory-pressure"]
    # The configuration changes name the fault holding the memory.
    assert "config_changes" in memory.cause_named_by["memory_pressure_mb"]
    assert (memory.evidence or {})["metric"]["value"] > 0.9
    # The ballast was resident while the fault was on and went back to the OS after.
    rss = memory.instance_rss_mb
    assert rss["fault"] - rss["before"] > 400, rss
    assert rss["fault"] - rss["after"] > 400, rss


def test_dependency_evidence_and_secrets(results: dict[str, ScenarioResult]) -> None:
    db = results["db-unavailable"]
    assert db.detected_labels.get("dependency") == "database"
    assert "dependency: database" in db.evidence_text
    assert "OperationalError" in db.evidence_text
    evidence = results["assignment-errors"].evidence or {}
    assert evidence["failing_routes"][0]["route"] == "POST /api/v1/assignments"
    assert "FaultInjectedError" in evidence["error_groups"][0]["type"]
    # A failing request comes with its own log lines, joined by request_id.
    requests = evidence["failing_requests"]
    assert requests
    for request in requests:
        assert request["lines"]
        assert all(line.get("request_id") == request["request_id"] for line in request["lines"])
    # Configuration changes show the injected fault (the platform logs fault_injected).
    changes = [c for c in evidence["config_changes"] if c["event"] == "fault_injected"]
    assert changes
    assert changes[-1]["fields"]["fault"] == "assignment_error_rate"
    # API keys (epk_...) never reach the evidence, in JSON or in text.
    for result in results.values():
        assert "epk_" not in json.dumps(result.evidence or {}) + result.evidence_text


def test_incident_cli_reads_the_instance_database(
    results: dict[str, ScenarioResult], work: Path
) -> None:
    # The instance is gone; its observability database and log files are what `ep incident`
    # reads, exactly as on a machine where the platform runs.
    assert results["db-unavailable"].detected
    var_dir = work / "db-unavailable"
    env = {
        "EP_VAR_DIR": str(var_dir),
        "EP_LOG_DIR": str(var_dir / "log"),
        "EP_DATABASE_URL": "",
        "EP_ERRORS_DATABASE_URL": "",
    }
    app = typer.Typer()
    app.add_typer(incident_command.app, name="incident")
    app.command("gameday")(gameday_command.run)
    runner = CliRunner()
    shown = runner.invoke(app, ["incident", "show", "dependency_not_ready"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "dependency: database" in shown.output
    assert "TOP ERROR GROUPS" in shown.output
    as_json = runner.invoke(app, ["incident", "show", "dependency_not_ready", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["alert"]["alertname"] == "dependency_not_ready"
    assert data["dependencies"] == ["database"]
    missing = runner.invoke(app, ["incident", "show", "no_such_alert"], env=env)
    assert missing.exit_code == 1
    bad = runner.invoke(app, ["gameday", "no-such-scenario"])
    assert bad.exit_code == 2


def test_cloudwatch_scenario_without_moto_says_what_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "moto" else real(name, *a)
    )
    [scenario] = [s for s in SCENARIOS if s.name == "cloudwatch-unreachable"]
    [result] = run_gameday([scenario], GameDayConfig(work_dir=tmp_path))
    assert not result.detected
    assert result.fault_at is None  # nothing was started or injected
    assert "needs a CloudWatch endpoint" in result.notes[0]
    assert "moto[server]" in result.notes[0]
    assert not (tmp_path / scenario.name).exists()
