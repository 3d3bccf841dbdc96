"""Terms as PromQL: one renderer for rule files and Grafana panels, every expression accepted
by promtool (the real Prometheus parser)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from observability.alerting.prometheus_render import to_yaml
from observability.query.model import (
    BurnRate,
    CounterIncrease,
    CounterRate,
    ErrorBreakdown,
    ErrorGroups,
    ErrorRatio,
    ErrorResolution,
    ErrorTrend,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    Ratio,
    RequestRate,
    SeriesFrom,
    Stalled,
    TopRoutes,
    Unsupported,
)
from observability.query.promql import PromContext, format_duration, promql
from tests.support.servers import require_binary

GRAFANA = PromContext(
    rate_window="$__rate_interval",
    range_window="$__range",
    matchers=('instance=~"$instance"',),
    http_matchers=('route=~"$route"',),
)
GET_X = {"method": "GET", "route": "/x"}


def test_rule_terms_render_with_their_own_windows() -> None:
    assert promql(ErrorRatio(where=GET_X, window_s=300)) == (
        '(sum(rate(http_requests_total{method="GET", route="/x", status_class="5xx"}[5m]))'
        ' or vector(0)) / sum(rate(http_requests_total{method="GET", route="/x"}[5m]))'
    )
    assert promql(
        LatencyAbove(0.05, window_s=3600, distribution="assignment_duration_seconds")
    ) == (
        '1 - (sum(rate(assignment_duration_seconds_bucket{le="0.05"}[1h]))'
        " / sum(rate(assignment_duration_seconds_count[1h])))"
    )
    assert promql(
        LatencyQuantile(0.95, {"operation": "select"}, 300, "db_query_duration_seconds")
    ) == (
        "histogram_quantile(0.95, sum by (le) "
        '(rate(db_query_duration_seconds_bucket{operation="select"}[5m])))'
    )
    assert promql(BurnRate(LatencyAbove(0.3, window_s=300), 0.01)) == (
        '(1 - (sum(rate(http_request_duration_seconds_bucket{le="0.3"}[5m]))'
        " / sum(rate(http_request_duration_seconds_count[5m])))) / 0.01"
    )
    assert promql(Stalled("events_total", 900, requests_where={"route": "/e"})) == (
        "(sum(increase(events_total[15m])) or vector(0)) and on()"
        ' (sum(rate(http_requests_total{route="/e"}[15m])) > 0)'
    )
    assert promql(CounterIncrease("e_total", {"severity": "critical"}, window_s=300)) == (
        'sum(increase(e_total{severity="critical"}[5m]))'
    )
    assert promql(GaugeValue("service_ready")) == "service_ready"


def test_panel_terms_take_the_dashboard_windows_and_filters() -> None:
    assert promql(RequestRate(), GRAFANA) == (
        'sum(rate(http_requests_total{instance=~"$instance", route=~"$route"}[$__rate_interval]))'
    )
    one_route = promql(LatencyQuantile(0.99, GET_X), GRAFANA)
    assert 'route=~"$route"' not in one_route  # a term with its own route keeps it
    assert 'method="GET", route="/x"' in one_route
    assert promql(CounterIncrease("c_total", by=("a",)), GRAFANA) == (
        'sum by (a) (increase(c_total{instance=~"$instance"}[$__range]))'
    )
    assert promql(GaugeValue("disk", by=("mount",), agg="max"), GRAFANA) == (
        'max by (mount) (disk{instance=~"$instance"})'
    )


@pytest.mark.parametrize(
    "term",
    [ErrorGroups(), ErrorResolution(), SeriesFrom("deploys")],
    ids=lambda t: type(t).__name__,
)
def test_store_terms_have_no_promql(term: object) -> None:
    with pytest.raises(Unsupported, match="no PromQL"):
        promql(term)  # type: ignore[arg-type]


def test_a_rule_term_without_a_window_says_so() -> None:
    with pytest.raises(Unsupported, match=r"CounterRate\.window_s"):
        promql(CounterRate("c_total"))


def test_durations() -> None:
    assert [format_duration(s) for s in (90, 300, 3600, 259200)] == ["90s", "5m", "1h", "3d"]


EVERY_TERM = [
    RequestRate(GET_X),
    ErrorRatio("4xx"),
    LatencyQuantile(0.95, {"route": "/x"}),
    LatencyAbove(0.3),
    CounterRate("assignments_total", by=("outcome",)),
    CounterIncrease("errors_total", {"severity": "critical"}),
    GaugeValue("service_ready", by=("dependency",), agg="min"),
    GaugeValue("service_ready"),
    Ratio("conversions_total", "exposures_total", by=("experiment", "variant")),
    Stalled("events_total", window_s=900, requests_where=GET_X),
    BurnRate(ErrorRatio(), 0.001),
    TopRoutes("requests"),
    TopRoutes("latency"),
    TopRoutes("errors"),
    ErrorTrend(),
    ErrorBreakdown("severity"),
    ErrorBreakdown("status"),
]


def test_promtool_parses_every_term(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    concrete = PromContext(rate_window="1m", range_window="1h", matchers=('instance=~".*"',))
    rules = [{"record": f"term:{i}", "expr": promql(t, concrete)} for i, t in enumerate(EVERY_TERM)]
    path = tmp_path / "terms.yml"
    path.write_text(to_yaml({"groups": [{"name": "terms", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(EVERY_TERM)} rules found" in result.stdout
