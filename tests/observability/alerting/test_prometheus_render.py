"""The rendered Prometheus rules: committed file current, `promtool check rules` and
`promtool test rules` with unit tests of the platform's alerts (round numbers: promtool compares
annotation text exactly)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from experimentation_platform.telemetry import alerts
from observability.alerting.prometheus_render import go_template, to_yaml
from tests.support.servers import require_binary

ROOT = Path(__file__).resolve().parents[3]
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules.yml"
RUNBOOK = alerts.runbook_url()
BOARDS = alerts.dashboard_url()


def test_committed_rules_equal_a_fresh_render() -> None:
    assert RULES_FILE.read_text(encoding="utf-8") == alerts.render_prometheus_rules(), (
        "deploy/prometheus/rules.yml is stale: run "
        "python -c 'from pathlib import Path; from experimentation_platform.telemetry.alerts "
        'import render_deploy_files; render_deploy_files(Path("."))\''
    )


def test_yaml_emitter_output_parses_back_to_the_same_data() -> None:
    data = {"a": [{"b": 'it\'s "quoted"', "c": 1.5, "d": True}], "e": {}, "f": "two\nlines"}
    assert yaml.safe_load(to_yaml(data)) == data


def test_templates_become_go_templates() -> None:
    assert go_template("{value:.1%} {value:.2f} {value} {threshold:g} {dependency}", 0.25) == (
        '{{ $value | humanizePercentage }} {{ printf "%.2f" $value }} {{ $value | humanize }}'
        " 0.25 {{ $labels.dependency }}"
    )


def test_promtool_accepts_the_committed_rules() -> None:
    promtool = require_binary("promtool")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def _alert(name: str, labels: dict[str, str], summary: str, board: str, **extra: str) -> dict:
    annotations = {
        "summary": summary,
        "runbook_url": f"{RUNBOOK}#{extra.pop('runbook', name)}",
        "dashboard_url": f"{BOARDS}/{board}",
        **extra,
    }
    return {"exp_labels": {"service": "api", **labels}, "exp_annotations": annotations}


UNIT_TESTS = {
    "rule_files": [str(RULES_FILE)],
    "evaluation_interval": "1m",
    "tests": [
        {
            # Half of all requests fail for 70 minutes: a 500x burn pages (1h and 5m windows).
            "interval": "1m",
            "input_series": [
                {"series": 'http_requests_total{status_class="5xx"}', "values": "0+60x70"},
                {"series": 'http_requests_total{status_class="2xx"}', "values": "0+60x70"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "65m",
                    "alertname": "api_availability_page",
                    "exp_alerts": [
                        _alert(
                            "api_availability_page",
                            {
                                "severity": "critical",
                                "signal": "availability",
                                "slo": "api_availability",
                            },
                            "API availability: error budget burning at 500.0x (over 14.4x)",
                            "api-performance",
                            runbook="api_availability",
                            description=(
                                "The share of 5xx responses would exhaust the 99.9% "
                                "availability SLO's 30-day error budget (0.001 of requests) "
                                "early if it continues."
                            ),
                        )
                    ],
                },
                {
                    "eval_time": "65m",
                    "alertname": "error_rate_spike",
                    "exp_alerts": [
                        _alert(
                            "error_rate_spike",
                            {"severity": "critical", "signal": "availability"},
                            "5xx ratio 50% for 7 minutes (threshold 6%)",
                            "api-performance",
                            description=(
                                "More than 6% of requests have failed for 7 minutes: longer "
                                "than any burst the service shrugs off. See the error groups "
                                "for the cause."
                            ),
                        )
                    ],
                },
                # Half failing is not "most requests": the outage page stays quiet.
                {"eval_time": "65m", "alertname": "error_rate_outage", "exp_alerts": []},
            ],
        },
        {
            # Nine requests in ten fail: the outage page after 2 minutes, before the spike
            # page's 7 (the ticket is inhibited by neither here: promtool does not inhibit).
            "interval": "1m",
            "input_series": [
                {"series": 'http_requests_total{status_class="5xx"}', "values": "0+90x20"},
                {"series": 'http_requests_total{status_class="2xx"}', "values": "0+10x20"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "4m",
                    "alertname": "error_rate_outage",
                    "exp_alerts": [
                        _alert(
                            "error_rate_outage",
                            {"severity": "critical", "signal": "availability"},
                            "90% of requests fail (threshold 50% for 2 minutes)",
                            "api-performance",
                            description=(
                                "Most requests fail: an outage, not a burst. A dependency down?"
                            ),
                        )
                    ],
                },
                {"eval_time": "4m", "alertname": "error_rate_spike", "exp_alerts": []},
            ],
        },
        {
            # A quarter of the requests slower than 300 ms: the latency SLO pages at 25x.
            "interval": "1m",
            "input_series": [
                {"series": 'http_request_duration_seconds_bucket{le="0.3"}', "values": "0+90x70"},
                {"series": "http_request_duration_seconds_count", "values": "0+120x70"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "65m",
                    "alertname": "api_latency_page",
                    "exp_alerts": [
                        _alert(
                            "api_latency_page",
                            {"severity": "critical", "signal": "latency", "slo": "api_latency"},
                            "API latency: requests over 300 ms burn the budget at 25.0x",
                            "api-performance",
                            runbook="api_latency",
                            description=(
                                "More than 1% of requests take longer than 300 ms (99% SLO); "
                                "the error budget burns at 25.0x the sustainable rate."
                            ),
                        )
                    ],
                }
            ],
        },
        {
            # The database stops answering at minute 2; `for: 6m` -> firing at minute 8.
            "interval": "1m",
            "input_series": [
                {"series": 'service_ready{dependency="database"}', "values": "1 1 0x10"},
                {"series": 'service_ready{dependency="cache"}', "values": "1x12"},
            ],
            "alert_rule_test": [
                {"eval_time": "7m", "alertname": "dependency_not_ready", "exp_alerts": []},
                {
                    "eval_time": "9m",
                    "alertname": "dependency_not_ready",
                    "exp_alerts": [
                        _alert(
                            "dependency_not_ready",
                            {
                                "severity": "critical",
                                "signal": "dependencies",
                                "dependency": "database",
                            },
                            "Dependency database not ready for over 6 minutes",
                            "system-health",
                            description=(
                                "The readiness probe of database fails; requests that need it fail."
                            ),
                        )
                    ],
                },
            ],
        },
        {
            # Clients keep posting events; nothing is ingested -> stalled. Other routes alone
            # never count as "requests flow".
            "interval": "1m",
            "input_series": [
                {"series": "ep_events_ingested_total", "values": "0+0x30"},
                {
                    "series": 'http_requests_total{method="POST",route="/api/v1/events",'
                    'status_class="2xx"}',
                    "values": "0+10x30",
                },
            ],
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "event_ingestion_stalled",
                    "exp_alerts": [
                        _alert(
                            "event_ingestion_stalled",
                            {"severity": "high", "signal": "ingestion"},
                            "No events ingested for 15 minutes while clients keep posting them",
                            "business-metrics",
                            description=(
                                "POST /api/v1/events receives traffic but ep_events_ingested_total "
                                "is flat."
                            ),
                        )
                    ],
                }
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {"series": "ep_events_ingested_total", "values": "0+20x30"},
                {
                    "series": 'http_requests_total{method="POST",route="/api/v1/events",'
                    'status_class="2xx"}',
                    "values": "0+10x30",
                },
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "event_ingestion_stalled", "exp_alerts": []}
            ],
        },
        {
            "interval": "1m",
            "input_series": [
                {
                    "series": 'ep_experiment_sample_ratio_mismatch{experiment="checkout"}',
                    "values": "1x10",
                },
                {
                    "series": 'ep_experiment_sample_ratio_mismatch{experiment="home"}',
                    "values": "0x10",
                },
                {"series": 'system_disk_usage_ratio{mount="/data"}', "values": "0.9x20"},
            ],
            "alert_rule_test": [
                {
                    "eval_time": "6m",
                    "alertname": "sample_ratio_mismatch",
                    "exp_alerts": [
                        _alert(
                            "sample_ratio_mismatch",
                            {
                                "severity": "medium",
                                "signal": "experiments",
                                "experiment": "checkout",
                            },
                            "Sample-ratio mismatch on experiment checkout",
                            "business-metrics",
                            description=(
                                "Observed assignment counts deviate from the configured split "
                                "(chi-squared)."
                            ),
                        )
                    ],
                },
                {
                    "eval_time": "11m",
                    "alertname": "disk_saturation",
                    "exp_alerts": [
                        _alert(
                            "disk_saturation",
                            {"severity": "high", "signal": "saturation", "mount": "/data"},
                            "Disk /data at 90% (threshold 85%)",
                            "system-health",
                        )
                    ],
                },
            ],
        },
    ],
}


def test_promtool_unit_tests_of_the_platform_alerts(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    tests = tmp_path / "alerts_test.yml"
    tests.write_text(yaml.safe_dump(UNIT_TESTS, sort_keys=False), encoding="utf-8")
    result = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("name", ["api_availability", "api_latency", "assignment_latency"])
def test_every_slo_window_is_a_recording_rule(name: str) -> None:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    recorded = {
        r["record"]
        for g in groups
        for r in g["rules"]
        if "record" in r and r["labels"]["slo"] == name
    }
    assert recorded == {
        f"slo:sli_error:ratio_rate{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    }
