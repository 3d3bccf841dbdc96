"""The rendered Alertmanager configuration: current, accepted by amtool, routes by severity
exactly like the embedded Dispatcher, inhibits like the evaluator, and holds no secret."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from experimentation_platform.telemetry import alerts
from observability.alerting.alertmanager_render import (
    PagerDutyReceiver,
    SlackReceiver,
    render_alertmanager_config,
)
from observability.alerting.notifiers import Notification, resolve_receivers
from tests.support.servers import require_binary

ROOT = Path(__file__).resolve().parents[3]
CONFIG_FILE = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def test_committed_config_equals_a_fresh_render() -> None:
    assert CONFIG_FILE.read_text(encoding="utf-8") == alerts.render_alertmanager(), (
        "deploy/alertmanager/alertmanager.yml is stale: re-run render_deploy_files"
    )


def test_amtool_accepts_the_committed_config() -> None:
    amtool = require_binary("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(CONFIG_FILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("severity", ["critical", "high", "medium", "low"])
def test_amtool_routes_like_the_embedded_dispatcher(severity: str) -> None:
    amtool = require_binary("amtool")
    result = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG_FILE}",
            f"severity={severity}",
            "signal=availability",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    notification = Notification(key="k", status="firing", severity=severity, title="t", summary="s")  # type: ignore[arg-type]
    embedded = resolve_receivers(alerts.ROUTES, notification) or ("dashboard",)
    assert result.stdout.strip().split(",") == list(embedded)


def test_amtool_reaches_every_configured_receiver() -> None:
    """Each receiver in the committed file is where some severity goes (by the real amtool):
    no receiver is configured and then never used."""
    amtool = require_binary("amtool")
    reached: set[str] = set()
    for severity in ("critical", "high", "medium", "low"):
        result = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={CONFIG_FILE}",
             f"severity={severity}", "signal=availability"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        reached.update(result.stdout.strip().split(","))
    config = yaml.safe_load(CONFIG_FILE.read_text())
    assert reached == {r["name"] for r in config["receivers"]}
    # critical pages PagerDuty and publishes to the stack's critical topic.
    critical = resolve_receivers(
        alerts.ROUTES,
        Notification(key="k", status="firing", severity="critical", title="t", summary="s"),  # type: ignore[arg-type]
    )
    assert critical == ("pagerduty", "sns")
    sns = next(r for r in config["receivers"] if r["name"] == "sns")["sns_configs"][0]
    assert sns["topic_arn"].endswith(":experimentation-platform-alerts-critical")


def test_grouping_and_inhibition_match_the_evaluator_settings() -> None:
    config = yaml.safe_load(CONFIG_FILE.read_text())
    route = config["route"]
    assert route["group_by"] == list(alerts.BASE_GROUPING.group_by)
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "30s",
        "5m",
        "4h",
    )
    assert config["inhibit_rules"] == [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity=~"high|medium|low"', 'signal=~".+"'],
            "equal": ["signal"],
        }
    ]


def test_no_secret_is_written_literally() -> None:
    config = yaml.safe_load(CONFIG_FILE.read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    pagerduty = receivers["pagerduty"]["pagerduty_configs"][0]
    assert "routing_key" not in pagerduty
    assert pagerduty["routing_key_file"].startswith("/etc/")
    slack = receivers["slack"]["slack_configs"][0]
    assert "api_url" not in slack
    assert slack["api_url_file"].startswith("/etc/")
    email = receivers["email"]["email_configs"][0]
    assert "auth_password" not in email
    assert email["auth_password_file"].startswith("/etc/")
    assert receivers["sns"]["sns_configs"][0]["sigv4"] == {"region": "us-east-1"}
    assert "secret" not in str(receivers["sns"]).lower()


def test_routes_must_name_configured_receivers() -> None:
    with pytest.raises(ValueError, match="not configured"):
        render_alertmanager_config({"critical": ["pagerduty", "opsgenie"]}, [PagerDutyReceiver()])
    with pytest.raises(ValueError, match=r"no route uses: \['pagerduty'\]"):
        render_alertmanager_config({"high": ["slack"]}, [SlackReceiver(), PagerDutyReceiver()])
    config = render_alertmanager_config(
        {"high": ["slack"], "critical": ["pagerduty"]},
        [SlackReceiver(), PagerDutyReceiver(url="http://127.0.0.1:1/pd")],
    )
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["pagerduty"]["pagerduty_configs"][0]["url"] == "http://127.0.0.1:1/pd"
