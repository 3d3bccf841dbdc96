"""The rule model over the query terms: SLO expansion, multi-window burn rates, templates,
validation. (The terms' own evaluation is tested in tests/observability/query.)"""

from __future__ import annotations

import pytest

from observability.alerting.grouping import InhibitRule
from observability.alerting.rules import (
    WORKBOOK_WINDOWS,
    SloRule,
    ThresholdRule,
    definitions,
    evaluate_definition,
)
from observability.alerting.templates import render_template
from observability.query.minutes import MinuteStore
from observability.query.model import BurnRate, ErrorRatio, GaugeValue, LatencyAbove
from tests.observability.alerting import T0, rollup


def _store(*rollups_: object) -> MinuteStore:
    store = MinuteStore()
    for r in rollups_:
        store.add(r)  # type: ignore[arg-type]
    return store


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
    burns = [(c[0].expr, c[1].expr, c[0].threshold) for c in page.clauses + ticket.clauses]
    assert all(isinstance(b, BurnRate) for long, short, _ in burns for b in (long, short))
    windows = [(long.window_s, short.window_s, factor) for long, short, factor in burns]
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


def test_a_latency_slo_counts_slow_requests_against_its_budget() -> None:
    slo = SloRule("latency", 0.99, LatencyAbove(0.3), summary="s")
    page = slo.definitions()[0]
    store = _store(*(rollup(T0 + 60 * i, 100, slow=30, slow_s=0.5) for i in range(60)))
    [(_, value, _)] = evaluate_definition(page, store, T0 + 3600).values()
    assert value == pytest.approx(30.0, rel=0.01)  # 30% slow / 1% budget


def test_a_gauge_rule_fires_once_per_series_that_breaches() -> None:
    rule = ThresholdRule("not_ready", GaugeValue("service_ready"), "<", 1, "critical", "s")
    store = MinuteStore()
    store.add_gauges(T0, {'service_ready{dependency="db"}': 0, 'service_ready{dependency="c"}': 1})
    [definition] = rule.definitions()
    active = evaluate_definition(definition, store, T0 + 30)
    assert [labels for labels, _, _ in active.values()] == [{"dependency": "db"}]


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


def test_rules_validate_names_severities_windows_and_uniqueness() -> None:
    with pytest.raises(ValueError, match="snake_case"):
        ThresholdRule("Bad-Name", ErrorRatio(window_s=60), ">", 0.1, "high", "s")
    with pytest.raises(ValueError, match="severity"):
        ThresholdRule("ok", ErrorRatio(window_s=60), ">", 0.1, "urgent", "s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="objective"):
        SloRule("ok", 1.5, ErrorRatio(), summary="s")
    # A rule has no panel to lend it a window: its term must carry one.
    with pytest.raises(ValueError, match=r"window_s: a rule's ErrorRatio needs a window"):
        ThresholdRule("ok", ErrorRatio(), ">", 0.1, "high", "s")
    with pytest.raises(ValueError, match="not a metric term"):
        ThresholdRule("ok", "rate(x[5m])", ">", 0.1, "high", "s")  # type: ignore[arg-type]
    rule = ThresholdRule("dup", ErrorRatio(window_s=60), ">", 0.1, "high", "s")
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
