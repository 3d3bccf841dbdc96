"""CloudWatch dashboard bodies: valid per the documented structure, accepted by a moto server,
and naming exactly the metrics the EMF publisher writes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from experimentation_platform.telemetry.dashboards import API_PERFORMANCE, DASHBOARDS
from observability.dashboards.cloudwatch import (
    render_cloudwatch_body,
    render_cloudwatch_dashboard,
    validate_cloudwatch_body,
)
from observability.dashboards.model import Dashboard, Panel
from observability.metrics.emf import EmfPublisher
from observability.metrics.windows import RollingWindows
from observability.query.model import ErrorGroups
from tests.support.servers import MotoServer

NAMESPACE = "ExperimentationPlatform/Test"
DIMS = {"Service": "experimentation-platform"}
OPTIONS: dict[str, Any] = {"namespace": NAMESPACE, "region": "us-east-1", "dimensions": DIMS}


def client(moto: MotoServer) -> Any:
    return boto3.client("cloudwatch", endpoint_url=moto.url, region_name="us-east-1")


@pytest.mark.parametrize("board", DASHBOARDS, ids=lambda b: b.name)
def test_bodies_follow_the_documented_structure(board: Dashboard) -> None:
    body = render_cloudwatch_dashboard(board, **OPTIONS)
    assert validate_cloudwatch_body(body) == []
    texts = [w["properties"]["markdown"] for w in body["widgets"] if w["type"] == "text"]
    for panel in board.panels:  # every explanation reaches the dashboard
        assert any(panel.description in text for text in texts), panel.title


def test_validator_reports_what_cloudwatch_would_reject() -> None:
    body = render_cloudwatch_dashboard(API_PERFORMANCE, **OPTIONS)
    metric = next(w for w in body["widgets"] if w["type"] == "metric")
    metric["x"] = 20  # 20 + 12 > 24 columns
    metric["properties"]["metrics"].append([{"expression": "m9*2", "id": "Bad"}])
    problems = validate_cloudwatch_body(body)
    assert any("24-column grid" in p for p in problems)
    assert any("lowercase letter" in p for p in problems)
    assert any("unknown ids ['m9']" in p for p in problems)


def test_store_only_panels_become_text_widgets() -> None:
    board = Dashboard("t", "T", "d", (Panel("table", "Groups", "what it means", (ErrorGroups(),)),))
    body = render_cloudwatch_dashboard(board, **OPTIONS)
    assert [w["type"] for w in body["widgets"]] == ["text", "text"]
    assert "/ops/errors" in body["widgets"][1]["properties"]["markdown"]


@pytest.mark.integration
def test_moto_accepts_every_dashboard_and_returns_it_unchanged(moto: MotoServer) -> None:
    cw = client(moto)
    prefix = f"ep-{uuid.uuid4().hex[:6]}"
    for board in DASHBOARDS:
        body = render_cloudwatch_body(board, **OPTIONS)
        answer = cw.put_dashboard(DashboardName=f"{prefix}-{board.name}", DashboardBody=body)
        assert answer["DashboardValidationMessages"] == []
        stored = cw.get_dashboard(DashboardName=f"{prefix}-{board.name}")
        assert json.loads(stored["DashboardBody"]) == json.loads(body)
    listed = cw.list_dashboards(DashboardNamePrefix=prefix)["DashboardEntries"]
    assert len(listed) == len(DASHBOARDS)


@pytest.mark.integration
def test_widget_metrics_are_the_metrics_the_emf_publisher_writes(moto: MotoServer) -> None:
    """Publish one minute of EMF (as CloudWatch would extract it) and read every plain metric
    of the API performance widgets back with its widget's namespace, dimensions and stat."""
    minute = (int(datetime.now(UTC).timestamp()) // 60 - 5) * 60
    now = [minute + 1.0]
    windows = RollingWindows(clock=lambda: now[0])
    for i in range(40):
        windows.observe_request("GET", "/hello", 500 if i % 10 == 0 else 200, 0.01 + i / 1000)
        windows.observe_request("POST", "/events", 404 if i % 8 == 0 else 202, 0.02)
    now[0] = minute + 120.0
    rollups = windows.completed_minutes(since=0)
    documents = EmfPublisher(NAMESPACE, DIMS).documents_for_rollup(rollups[0])
    namespace = f"{NAMESPACE}/{uuid.uuid4().hex[:6]}"  # isolated from other tests' data
    cw = client(moto)
    for doc in documents:  # what CloudWatch's EMF extraction does with each document
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        dims = [{"Name": d, "Value": doc[d]} for d in directive["Dimensions"][0]]
        data = [
            {
                "MetricName": m["Name"],
                "Dimensions": dims,
                "Value": float(doc[m["Name"]]),
                "Unit": m["Unit"],
                "Timestamp": datetime.fromtimestamp(minute + 30, UTC),
            }
            for m in directive["Metrics"]
        ]
        cw.put_metric_data(Namespace=namespace, MetricData=data)

    body = render_cloudwatch_dashboard(API_PERFORMANCE, **{**OPTIONS, "namespace": namespace})
    plain_rows = [
        row
        for widget in body["widgets"]
        if widget["type"] == "metric"
        for row in widget["properties"]["metrics"]
        if isinstance(row[0], str)
    ]
    assert len(plain_rows) >= 6  # requests, 5xx, 4xx, p50, p95, p99
    for row in plain_rows:
        ns, name, *pairs = row[:-1]
        dims = [{"Name": pairs[i], "Value": pairs[i + 1]} for i in range(0, len(pairs), 2)]
        result = cw.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "q",
                    "MetricStat": {
                        "Metric": {"Namespace": ns, "MetricName": name, "Dimensions": dims},
                        "Period": 60,
                        "Stat": row[-1]["stat"],
                    },
                }
            ],
            StartTime=datetime.fromtimestamp(minute - 60, UTC),
            EndTime=datetime.fromtimestamp(minute + 120, UTC),
        )["MetricDataResults"][0]
        assert result["Values"], f"{name} {dims}: the widget names a metric nobody publishes"
    requests = [r for r in plain_rows if r[1] == "http_requests_total"]
    assert requests
    assert all(r[2:4] == ["Service", "experimentation-platform"] for r in requests)


def test_labelled_series_are_searched_not_read_by_a_name_emf_never_writes() -> None:
    """EMF publishes a labelled counter or gauge only under its series keys
    (`ep_exposures_total{experiment="x",variant="a"}`): a widget reading the bare name would stay
    empty, so per-variant and per-severity panels SEARCH the keys (one line per series)."""
    from experimentation_platform.telemetry import names as domain
    from experimentation_platform.telemetry.dashboards import BUSINESS_METRICS, ERROR_TRACKING

    def expressions(board: Dashboard, title: str) -> list[str]:
        body = render_cloudwatch_dashboard(board, **OPTIONS)
        [widget] = [w for w in body["widgets"] if w["properties"].get("title") == title]
        return [row[-1].get("expression", "") for row in widget["properties"]["metrics"]]

    [exposures] = expressions(BUSINESS_METRICS, "Exposures per variant")
    assert exposures.startswith("SEARCH(")
    assert f"MetricName={domain.EXPOSURES} " in exposures
    [total] = expressions(BUSINESS_METRICS, "Conversion events")
    assert total.startswith("SUM(SEARCH(")
    assert f"MetricName={domain.CONVERSION_EVENTS} " in total
    rates = expressions(BUSINESS_METRICS, "Conversion rate per variant")
    assert len(rates) == 5
    assert all("SEARCH(" in e and "'Maximum'" in e for e in rates)
    [open_groups] = expressions(ERROR_TRACKING, "Open vs resolved")
    assert "MetricName=error_groups_open " in open_groups
