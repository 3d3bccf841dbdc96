"""The rule model: neutral queries evaluated in-process, SLO expansion, templates."""

from __future__ import annotations

import pytest

from observability.alerting.rules import (
    WORKBOOK_WINDOWS,
    CounterIncrease,
    CounterRate,
    ErrorRatio,
    GaugeValue,
    InhibitRule,
    LatencyAbove,
    LatencyQuantile,
    SloRule,
    Stalled,
    ThresholdRule,
    definitions,
    evaluate_definition,
    parse_series_key,
    render_template,
    series_key,
)
from observability.alerting.sources import MinuteStore
from observability.metrics.windows import MinuteRollup
from tests.observability.alerting import T0, rollup


def _store(*rollups_: object) -> MinuteStore:
    store = MinuteStore()
    for r in rollups_:
        store.add(r)  # type: ignore[arg-type]
    return store


def test_series_keys_round_trip_with_sorted_escaped_labels() -> None:
    key = series_key("service_ready", {"dependency": "db", "a": 'we"ird'})
    assert key == 'service_ready{a="we\\"ird",dependency="db"}'
    assert parse_series_key(key) == ("service_ready", {"a": 'we"ird', "dependency": "db"})
    assert series_key("plain") == "plain"
    assert parse_series_key("plain") == ("plain", {})


def test_error_ratio_over_complete_minutes_of_the_window() -> None:
    store = _store(rollup(T0, 100, 0), rollup(T0 + 60, 100, 10), rollup(T0 + 120, 100, 30))
    now = T0 + 180
    assert ErrorRatio(window_s=60).evaluate(store, now) == [({}, 0.3)]
    assert ErrorRatio(window_s=120).evaluate(store, now) == [({}, 0.2)]
    assert ErrorRatio(window_s=180, route="/other").evaluate(store, now) == []  # no traffic
    only_get = ErrorRatio(window_s=180, route="/api/v1/assignments/{experiment_key}", method="GET")
    assert only_get.evaluate(store, now) == [({}, 40 / 300)]


def test_latency_above_counts_slow_requests_from_the_sketches() -> None:
    store = _store(rollup(T0, 200, slow=4, slow_s=0.5), rollup(T0 + 60, 200, slow=0))
    [(_, share)] = LatencyAbove(0.3, window_s=120).evaluate(store, T0 + 120)
    assert share == pytest.approx(4 / 400)
    [(_, none_slow)] = LatencyAbove(0.6, window_s=120).evaluate(store, T0 + 120)
    assert none_slow == 0.0
    [(_, p99)] = LatencyQuantile(0.99, window_s=120).evaluate(store, T0 + 120)
    assert p99 == pytest.approx(0.02, rel=0.02)


def test_latency_above_reads_a_named_distribution() -> None:
    fast, slow = [0.003] * 95, [0.2] * 5
    store = _store(rollup(T0, distributions={"assignment_duration_seconds": fast + slow}))
    query = LatencyAbove(0.05, window_s=60, distribution="assignment_duration_seconds")
    assert query.evaluate(store, T0 + 60) == [({}, pytest.approx(0.05))]


def test_counters_gauges_and_stalled() -> None:
    key = series_key("error_events_total", {"severity": "critical"})
    store = _store(
        rollup(T0, counters={key: 2, "events_ingested_total": 50}),
        rollup(T0 + 60, counters={}, route="POST /api/v1/events"),
    )
    store.add_gauges(
        T0 + 60, {'service_ready{dependency="db"}': 0, 'service_ready{dependency="cache"}': 1}
    )
    now = T0 + 120
    assert CounterIncrease("error_events_total", {"severity": "critical"}, 120).evaluate(
        store, now
    ) == [({}, 2.0)]
    assert CounterRate("error_events_total", {"severity": "critical"}, 120).evaluate(
        store, now
    ) == [({}, 2 / 120)]
    assert CounterIncrease("never_seen_total", window_s=120).evaluate(store, now) == []
    assert GaugeValue("service_ready").evaluate(store, now) == [
        ({"dependency": "cache"}, 1.0),
        ({"dependency": "db"}, 0.0),
    ]
    assert GaugeValue("service_ready", {"dependency": "db"}).evaluate(store, now) == [
        ({"dependency": "db"}, 0.0)
    ]
    stalled = Stalled("events_ingested_total", window_s=60, while_route="/api/v1/events")
    assert stalled.evaluate(store, now) == [({}, 0.0)]  # events posted, nothing ingested
    quiet = Stalled("events_ingested_total", window_s=60, while_route="/nothing")
    assert quiet.evaluate(store, now) == []  # no traffic: never "stalled"


def test_gauges_go_stale_after_five_minutes() -> None:
    store = MinuteStore()
    store.add_gauges(T0, {"system_cpu_usage_ratio": 0.99})
    assert GaugeValue("system_cpu_usage_ratio").evaluate(store, T0 + 60)
    assert GaugeValue("system_cpu_usage_ratio").evaluate(store, T0 + 600) == []


def test_slo_rule_expands_to_workbook_page_and_ticket() -> None:
    slo = SloRule("api_availability", 0.999, ErrorRatio(), summary="burn {value:.1f}x")
    page, ticket = slo.definitions()
    assert (page.name, page.severity, page.kind) == (
        "api_availability_page",
        "critical",
        "slo_page",
    )
    assert (ticket.name, ticket.severity) == ("api_availability_ticket", "high")
    assert page.labels["slo"] == "api_availability"
    windows = [
        (c[0].expr.sli.window_s, c[1].expr.sli.window_s, c[0].threshold)  # type: ignore[union-attr]
        for c in page.clauses + ticket.clauses
    ]
    assert windows == [(w.long_s, w.short_s, w.burn_rate) for w in WORKBOOK_WINDOWS]
    assert slo.budget == 0.001


def test_slo_burn_needs_both_windows() -> None:
    slo = SloRule("avail", 0.99, ErrorRatio(), summary="s")
    page = slo.definitions()[0]
    # 1 h of 5% errors: every window burns at 5x, below both 14.4x and 6x: nothing.
    store = _store(*(rollup(T0 + 60 * i, 100, 5) for i in range(60)))
    assert evaluate_definition(page, store, T0 + 3600) == {}
    # 20% errors throughout: 20x on both windows -> the page holds, value = long-window burn.
    store = _store(*(rollup(T0 + 60 * i, 100, 20) for i in range(60)))
    [(labels, value, threshold)] = evaluate_definition(page, store, T0 + 3600).values()
    assert (labels, threshold) == ({}, 14.4)
    assert value == pytest.approx(20.0)
    # The burst is over: the long window still burns, the short one does not -> no page.
    store = _store(*(rollup(T0 + 60 * i, 100, 40 if i < 20 else 0) for i in range(60)))
    assert evaluate_definition(page, store, T0 + 3600) == {}


def test_templates_fill_value_threshold_and_labels() -> None:
    text = render_template(
        "{dependency} down: {value:.1%} vs {threshold:g} ({missing})",
        0.123,
        0.1,
        {"dependency": "db"},
    )
    assert text == "db down: 12.3% vs 0.1 ()"
    assert render_template("v={value}", None, None, {}) == "v=n/a"
    slo = SloRule("a", 0.999, ErrorRatio(), summary="{objective} budget {budget} at {value:.0f}x")
    assert slo.definitions()[0].summary == "99.9% budget 0.001 at {value:.0f}x"


def test_rules_validate_names_severities_and_uniqueness() -> None:
    with pytest.raises(ValueError, match="snake_case"):
        ThresholdRule("Bad-Name", ErrorRatio(), ">", 0.1, "high", "s")
    with pytest.raises(ValueError, match="severity"):
        ThresholdRule("ok", ErrorRatio(), ">", 0.1, "urgent", "s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="objective"):
        SloRule("ok", 1.5, ErrorRatio(), summary="s")
    rule = ThresholdRule("dup", ErrorRatio(), ">", 0.1, "high", "s")
    with pytest.raises(ValueError, match="duplicate"):
        definitions([rule, rule])


def test_inhibit_rule_requires_the_equal_labels_on_both_sides() -> None:
    rule = InhibitRule()
    page = {"severity": "critical", "inhibit_key": "avail"}
    assert rule.mutes(page, {"severity": "high", "inhibit_key": "avail"})
    assert not rule.mutes(page, {"severity": "high", "inhibit_key": "latency"})
    assert not rule.mutes(page, {"severity": "high"})
    assert not rule.mutes({"severity": "critical"}, {"severity": "high"})
    assert not rule.mutes(page, {"severity": "critical", "inhibit_key": "avail"})


def test_route_filter_matches_template_and_method() -> None:
    events = rollup(T0, 10, 5, route="POST /api/v1/events")
    both = MinuteRollup(T0, {**events.routes, **rollup(T0, 10, 0).routes}, {}, {})
    store = _store(both)
    assert store.request_counts(60, T0 + 60, "/api/v1/events", "POST") == (10.0, 5.0)
    assert store.request_counts(60, T0 + 60, None, "GET") == (10.0, 0.0)
