"""EMF documents checked against the specification's structure and limits.

The checker below is written from the CloudWatch EMF specification, independently of
``observability.metrics.emf`` (it imports none of its constants or validators):
- the root holds ``_aws`` = {"Timestamp": ms since epoch, "CloudWatchMetrics": [MetricDirective]};
- a MetricDirective has exactly Namespace (string), Dimensions (array of DimensionSets, each an
  array of at most 30 dimension keys, each key a root member with a string value) and Metrics
  (array of at most 100 MetricDefinitions);
- a MetricDefinition has Name (required), Unit and StorageResolution (1 or 60) optional;
- each metric name refers to a root member holding a number or an array of at most 100 numbers.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from observability.metrics.emf import (
    EmfMetric,
    EmfPublisher,
    build_emf_documents,
    render_emf_lines,
)
from observability.metrics.windows import RollingWindows

# CloudWatch's unit list, as given in the CloudWatch API reference (MetricDatum.Unit).
SPEC_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip
TS = 1_700_000_000_000
NS = "ExperimentationPlatform"


def assert_valid_emf(doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(doc))  # must survive a plain JSON round trip
    aws = doc["_aws"]
    assert set(aws) == {"Timestamp", "CloudWatchMetrics"}
    assert isinstance(aws["Timestamp"], int)
    assert not isinstance(aws["Timestamp"], bool)
    directives = aws["CloudWatchMetrics"]
    assert isinstance(directives, list)
    assert directives
    all_names: list[str] = []
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str)
        assert directive["Namespace"]
        assert isinstance(directive["Dimensions"], list)
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list)
            assert len(dimension_set) <= 30
            for key in dimension_set:
                assert isinstance(doc[key], str)
        metrics = directive["Metrics"]
        assert isinstance(metrics, list)
        assert len(metrics) <= 100
        for definition in metrics:
            assert set(definition) <= {"Name", "Unit", "StorageResolution"}
            assert isinstance(definition["Name"], str)
            assert definition["Name"]
            if "Unit" in definition:
                assert definition["Unit"] in SPEC_UNITS
            if "StorageResolution" in definition:
                assert definition["StorageResolution"] in (1, 60)
            value = doc[definition["Name"]]
            if isinstance(value, list):
                assert 1 <= len(value) <= 100
                assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            else:
                assert isinstance(value, int | float)
                assert not isinstance(value, bool)
            all_names.append(definition["Name"])
    assert len(all_names) <= 100
    assert len(all_names) == len(set(all_names))


def values_by_name(docs: list[dict[str, Any]]) -> Counter[tuple[str, float]]:
    seen: Counter[tuple[str, float]] = Counter()
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            for definition in directive["Metrics"]:
                value = doc[definition["Name"]]
                for v in value if isinstance(value, list) else [value]:
                    seen[(definition["Name"], v)] += 1
    return seen


def test_single_document_shape() -> None:
    docs = build_emf_documents(
        NS,
        {"Service": "ep", "Environment": "prod"},
        [
            EmfMetric("http_requests_total", 42, "Count"),
            EmfMetric("latency", [1.5, 2.5], "Milliseconds", storage_resolution=1),
        ],
        TS,
        properties={"instance": "i-1"},
    )
    assert len(docs) == 1
    doc = docs[0]
    assert_valid_emf(doc)
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == NS
    assert directive["Dimensions"] == [["Service", "Environment"]]
    assert doc["_aws"]["Timestamp"] == TS
    assert (doc["Service"], doc["Environment"], doc["instance"]) == ("ep", "prod", "i-1")
    assert doc["http_requests_total"] == 42
    assert doc["latency"] == [1.5, 2.5]
    by_name = {m["Name"]: m for m in directive["Metrics"]}
    assert by_name["latency"]["Unit"] == "Milliseconds"
    assert by_name["latency"]["StorageResolution"] == 1


def test_250_metrics_split_into_three_documents() -> None:
    metrics = [EmfMetric(f"m{i}", float(i), "Count") for i in range(250)]
    docs = build_emf_documents(NS, {"Service": "ep"}, metrics, TS, {"note": "x"})
    assert len(docs) == 3
    for doc in docs:
        assert_valid_emf(doc)
        assert doc["Service"] == "ep"
        assert doc["note"] == "x"
        assert doc["_aws"]["Timestamp"] == TS
    assert values_by_name(docs) == Counter({(f"m{i}", float(i)): 1 for i in range(250)})


def test_metric_with_250_values_split_into_three_documents() -> None:
    values = [float(v) for v in range(250)]
    docs = build_emf_documents(NS, {"Service": "ep"}, [EmfMetric("lat", values, "Seconds")], TS)
    assert len(docs) == 3
    for doc in docs:
        assert_valid_emf(doc)
    assert [len(d["lat"]) for d in docs] == [100, 100, 50]
    assert values_by_name(docs) == Counter({("lat", v): 1 for v in values})


def test_mixed_overflow_keeps_every_value_exactly_once() -> None:
    metrics = [EmfMetric(f"c{i}", i, "Count") for i in range(150)]
    metrics.append(EmfMetric("big", list(range(1000, 1230)), "Milliseconds"))
    docs = build_emf_documents(NS, {}, metrics, TS)
    for doc in docs:
        assert_valid_emf(doc)
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    expected = Counter({(f"c{i}", i): 1 for i in range(150)})
    expected.update({("big", v): 1 for v in range(1000, 1230)})
    assert values_by_name(docs) == expected


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(min_value=-(10**6), max_value=10**6), min_size=1, max_size=260),
        min_size=1,
        max_size=230,
    )
)
def test_split_property(value_lists: list[list[int]]) -> None:
    metrics = [EmfMetric(f"m{i}", values, "Count") for i, values in enumerate(value_lists)]
    docs = build_emf_documents(NS, {"Service": "ep"}, metrics, TS)
    for doc in docs:
        assert_valid_emf(doc)
    expected: Counter[tuple[str, float]] = Counter()
    for i, values in enumerate(value_lists):
        expected.update((f"m{i}", v) for v in values)
    assert values_by_name(docs) == expected


def test_same_name_twice_is_concatenated() -> None:
    docs = build_emf_documents(
        NS, {}, [EmfMetric("x", 1, "Count"), EmfMetric("x", [2, 3], "Count")], TS
    )
    assert docs[0]["x"] == [1, 2, 3]


def test_thirty_dimensions_is_the_limit() -> None:
    thirty = {f"d{i}": "v" for i in range(30)}
    (doc,) = build_emf_documents(NS, thirty, [EmfMetric("x", 1)], TS)
    assert_valid_emf(doc)
    with pytest.raises(ValueError, match="at most 30"):
        build_emf_documents(NS, {**thirty, "d30": "v"}, [EmfMetric("x", 1)], TS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": [EmfMetric("x", 1, "Furlongs")]}, "invalid unit"),
        ({"metrics": [EmfMetric("", 1)]}, "non-empty"),
        ({"metrics": [EmfMetric("  ", 1)]}, "non-empty"),
        ({"metrics": [EmfMetric("x", [])]}, "no values"),
        ({"metrics": [EmfMetric("x", float("nan"))]}, "finite"),
        ({"metrics": [EmfMetric("x", 1, storage_resolution=5)]}, "StorageResolution"),
        ({"metrics": [EmfMetric("Service", 1)]}, "clashes"),
        ({"metrics": [EmfMetric("x", 1, "Count"), EmfMetric("x", 1, "Seconds")]}, "twice"),
        ({"namespace": ""}, "namespace"),
        ({"namespace": "bad\nname"}, "invalid namespace"),
        ({"namespace": "AWS/EC2"}, "reserved"),
        ({"timestamp_ms": 1.5}, "timestamp_ms"),
        ({"dimensions": {"Service": ""}}, "non-empty string value"),
        ({"properties": {"_aws": 1}}, "reserved"),
    ],
)
def test_bad_input_raises_a_clear_value_error(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "namespace": NS,
        "dimensions": {"Service": "ep"},
        "metrics": [EmfMetric("x", 1)],
        "timestamp_ms": TS,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_emf_documents(**args)


def test_no_metrics_gives_no_documents() -> None:
    assert build_emf_documents(NS, {"Service": "ep"}, [], TS) == []


def test_render_lines_are_one_json_object_each() -> None:
    metrics = [EmfMetric(f"m{i}", i, "Count") for i in range(120)]
    lines = render_emf_lines(NS, {"Service": "ep"}, metrics, TS)
    assert len(lines) == 2
    docs = [json.loads(line) for line in lines]
    assert all("\n" not in line for line in lines)
    assert docs == build_emf_documents(NS, {"Service": "ep"}, metrics, TS)


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_publisher_turns_a_minute_rollup_into_valid_lines() -> None:
    t0 = 1_699_999_980.0  # a minute boundary
    clock = FakeClock(t0)
    windows = RollingWindows(clock=clock)
    durations = np.random.default_rng(1).lognormal(-3.0, 1.0, size=2_000)
    for i, d in enumerate(durations):
        clock.t = t0 + i * 0.025  # 50 s of traffic inside the first minute
        route = "/api/v1/experiments/{key}" if i % 2 else "/api/v1/flags/{key}/evaluate"
        windows.observe_request("GET", route, 503 if i % 50 == 0 else 200, float(d))
        windows.observe("assignment_latency_seconds", float(d) / 10)
        windows.count("assignments_total")
    clock.t = t0 + 61
    (rollup,) = windows.completed_minutes(since=0)

    publisher = EmfPublisher(NS, {"Service": "ep", "Environment": "test"})
    lines = publisher.lines_for_rollup(rollup, extra_counters={"log_events_dropped_total": 3})
    docs = [json.loads(line) for line in lines]
    for doc in docs:
        assert_valid_emf(doc)
        assert doc["_aws"]["Timestamp"] == int(t0) * 1000
        assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NS
    overall, *per_route = docs
    assert overall["http_requests_total"] == 2_000
    assert overall["http_requests_5xx_total"] == 40
    assert overall["assignments_total"] == 2_000
    assert overall["log_events_dropped_total"] == 3
    assert overall["assignment_latency_seconds_count"] == 2_000
    assert overall["http_request_duration_p99"] == pytest.approx(
        float(np.quantile(durations, 0.99)) * 1000, rel=0.02
    )
    assert {d["Route"] for d in per_route} == {
        "GET /api/v1/experiments/{key}",
        "GET /api/v1/flags/{key}/evaluate",
    }
    assert sum(d["http_requests_total"] for d in per_route) == 2_000
    for doc in per_route:
        assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
            ["Service", "Environment", "Route"]
        ]


def test_publisher_skips_and_counts_what_emf_cannot_carry() -> None:
    clock = FakeClock(1_699_999_980.0)
    windows = RollingWindows(clock=clock)
    windows.observe_request("GET", "/caf\u00e9/{id}", 200, 0.01)  # non-ASCII dimension value
    windows.observe_request("GET", "/ok", 200, 0.01)
    clock.t += 60
    publisher = EmfPublisher(NS, {"Service": "ep"})
    docs = publisher.documents_for_rollup(windows.completed_minutes(since=0)[0])
    assert [d.get("Route") for d in docs] == [None, "GET /ok"]
    assert docs[0]["http_requests_total"] == 2
    assert publisher.documents_skipped == 1


def test_publisher_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="namespace"):
        EmfPublisher("")
    with pytest.raises(ValueError, match="counter units"):
        EmfPublisher(NS, counter_units={"x": "Parsecs"})


def test_gauges_read_this_minute_go_with_the_last_minute_only() -> None:
    """Dashboard gauges (open error groups, per-variant conversion rates) reach CloudWatch:
    once per recorded round, with the newest minute, under their series keys."""
    t0 = 1_699_999_980.0
    clock = FakeClock(t0)
    windows = RollingWindows(clock=clock)
    windows.count('exposures_total{experiment="x",variant="a"}')
    clock.t = t0 + 60
    windows.count('exposures_total{experiment="x",variant="a"}')
    clock.t = t0 + 121
    rollups = windows.completed_minutes(since=0)
    assert len(rollups) == 2
    gauges = {'error_groups_open{severity="medium"}': 2.0, "not_a_number": float("nan")}
    lines = EmfPublisher(NS, {"Service": "ep"}).lines_for_rollups(rollups, gauges)
    docs = [json.loads(line) for line in lines]
    for doc in docs:
        assert_valid_emf(doc)
    carrying = [d for d in docs if 'error_groups_open{severity="medium"}' in d]
    assert [d["_aws"]["Timestamp"] for d in carrying] == [int(t0 + 60) * 1000]
    assert carrying[0]['error_groups_open{severity="medium"}'] == 2.0
    assert all("not_a_number" not in d for d in docs)
