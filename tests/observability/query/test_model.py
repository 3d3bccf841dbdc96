"""The query terms: validation names the bad field, one spelling of filters and windows."""

from __future__ import annotations

import pickle

import pytest

from observability.query.model import (
    BurnRate,
    CounterIncrease,
    CounterRate,
    ErrorBreakdown,
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    Ratio,
    RequestRate,
    Stalled,
    TopRoutes,
    metric_names,
    parse_series_key,
    route_filter,
    route_key,
    series_key,
    with_window,
)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LatencyQuantile(1.5), r"LatencyQuantile\.q: must be in \(0, 1\)"),
        (lambda: LatencyAbove(0), r"LatencyAbove\.threshold_s: must be a positive number"),
        (lambda: ErrorRatio("3xx"), r"ErrorRatio\.status_class: must be '4xx' or '5xx'"),  # type: ignore[arg-type]
        (lambda: CounterRate("assignments-total"), r"CounterRate\.name: invalid metric name"),
        (lambda: GaugeValue("x", by=("bad-label",), agg="max"), r"GaugeValue\.by: invalid label"),
        (lambda: GaugeValue("x", by=("a",)), r"GaugeValue\.by: splitting needs an agg"),
        (lambda: GaugeValue("x", agg="median"), r"GaugeValue\.agg: must be one of"),  # type: ignore[arg-type]
        (lambda: RequestRate({"status": "500"}), r"RequestRate\.where: label 'status' is not one"),
        (lambda: ErrorRatio(window_s=0), r"ErrorRatio\.window_s: must be a whole number"),
        (lambda: CounterIncrease("c", by="experiment"), r"CounterIncrease\.by: must be a tuple"),  # type: ignore[arg-type]
        (lambda: Ratio("a", "b c"), r"Ratio\.denominator: invalid metric name"),
        (lambda: Stalled("e", requests_where={"x": "1"}), r"Stalled\.requests_where: label 'x'"),
        (lambda: BurnRate(ErrorRatio(), 1.5), r"BurnRate\.budget: must be in \(0, 1\)"),
        (lambda: TopRoutes("requests", limit=0), r"TopRoutes\.limit: must be between 1 and 100"),
        (lambda: ErrorBreakdown("colour"), r"ErrorBreakdown\.by: must be type, severity"),  # type: ignore[arg-type]
        (
            lambda: LatencyQuantile(0.5, {"bad-label": "x"}, distribution="d_seconds"),
            r"LatencyQuantile\.where: invalid label name 'bad-label'",
        ),
    ],
)
def test_a_bad_term_names_its_field(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_labels_are_display_only_and_have_defaults() -> None:
    assert LatencyQuantile(0.99).label == "p99"
    assert LatencyQuantile(0.999).label == "p99.9"
    assert ErrorRatio("4xx").label == "4xx ratio"
    assert RequestRate(label="traffic") == RequestRate()  # evaluation ignores the label


def test_where_is_frozen_sorted_hashable_and_picklable() -> None:
    term = CounterIncrease("c_total", {"b": "2", "a": "1"}, window_s=60)
    assert list(term.where) == ["a", "b"]
    with pytest.raises(TypeError, match="immutable"):
        term.where["c"] = "3"  # type: ignore[index]
    with pytest.raises(TypeError, match="immutable"):
        term.where.update(c="3")  # type: ignore[attr-defined]
    assert {term: 1}[CounterIncrease("c_total", {"a": "1", "b": "2"}, window_s=60)] == 1
    again = pickle.loads(pickle.dumps(term))  # noqa: S301 - our own bytes: rules go to workers
    assert again == term
    with pytest.raises(TypeError, match="immutable"):
        again.where["c"] = "3"  # type: ignore[index]


def test_windows_can_be_replaced_without_touching_the_rest() -> None:
    burn = BurnRate(LatencyAbove(0.3, window_s=300), 0.01)
    longer = with_window(burn, 3600)
    assert longer.sli == LatencyAbove(0.3, window_s=3600)
    assert longer.budget == 0.01
    gauge = GaugeValue("g")
    assert with_window(gauge, 60) is gauge  # gauges have no window


def test_routes_and_series_keys() -> None:
    assert route_filter("GET /experiments/{key}") == {
        "method": "GET",
        "route": "/experiments/{key}",
    }
    assert route_filter("/x") == {"route": "/x"}
    assert route_key({"method": "GET", "route": "/x"}) == "GET /x"
    assert route_key({"route": "/x"}) is None
    key = series_key("service_ready", {"dependency": "db", "a": 'we"ird'})
    assert key == 'service_ready{a="we\\"ird",dependency="db"}'
    assert parse_series_key(key) == ("service_ready", {"a": 'we"ird', "dependency": "db"})
    assert parse_series_key('a{x="1", y="two words"}') == ("a", {"x": "1", "y": "two words"})
    assert parse_series_key("a{broken") is None
    assert parse_series_key("a{x=1}") is None


def test_metric_names_of_terms() -> None:
    assert metric_names(Ratio("conv_total", "exp_total")) == {"conv_total", "exp_total"}
    assert metric_names(BurnRate(LatencyAbove(0.05, distribution="a_seconds"), 0.01)) == {
        "a_seconds"
    }
    assert metric_names(RequestRate()) == set()
