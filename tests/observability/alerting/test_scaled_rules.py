"""Shortened windows (EP_ALERT_WINDOW_SCALE) scale thresholds that are durations with them, so a
game day sees a CloudWatch backlog in seconds; ratios and counts stay as they are, and the
deploy renderings keep the production values."""

from __future__ import annotations

import pytest
import yaml

from experimentation_platform.telemetry import alerts
from observability.alerting.rules import ThresholdRule, definitions, evaluate_definition
from observability.alerting.scaling import MIN_SCALED_DURATION_THRESHOLD_S, scale_rules
from observability.query.minutes import MinuteStore
from observability.query.model import GaugeValue
from tests.observability.alerting import T0


def _rule(rules: tuple[object, ...], name: str) -> ThresholdRule:
    found = next(r for r in rules if getattr(r, "name", None) == name)
    assert isinstance(found, ThresholdRule)
    return found


def _fires(rule: ThresholdRule, gauges: dict[str, float]) -> bool:
    store = MinuteStore()
    store.add_gauges(T0, gauges)
    [definition] = rule.definitions()
    return bool(evaluate_definition(definition, store, T0 + 30))


def test_the_shipping_lag_threshold_follows_the_scale_down_to_its_floor() -> None:
    base = _rule(alerts.BASE_RULES, "log_shipping_lag")
    assert base.threshold_is_duration
    assert (base.threshold, base.for_seconds) == (300, 300)
    half = _rule(scale_rules(alerts.BASE_RULES, 0.5), "log_shipping_lag")
    assert (half.threshold, half.for_seconds) == (150, 150)
    gameday = _rule(scale_rules(alerts.BASE_RULES, 0.01), "log_shipping_lag")
    # 3 s would be normal lag (the shipper batches for 1 s): the floor keeps it a backlog.
    assert gameday.threshold == MIN_SCALED_DURATION_THRESHOLD_S == 30
    assert gameday.for_seconds == 3
    assert scale_rules(alerts.BASE_RULES, 1.0) is alerts.BASE_RULES


def test_a_scaled_rule_sees_a_backlog_the_production_rule_waits_for() -> None:
    lag = {"cloudwatch_shipping_lag_seconds": 45.0}
    base = _rule(alerts.BASE_RULES, "log_shipping_lag")
    gameday = _rule(scale_rules(alerts.BASE_RULES, 0.01), "log_shipping_lag")
    assert _fires(gameday, lag)
    assert not _fires(base, lag)
    assert not _fires(gameday, {"cloudwatch_shipping_lag_seconds": 2.0})  # steady state


def test_thresholds_that_are_not_durations_never_scale() -> None:
    scaled = scale_rules(alerts.BASE_RULES, 0.01)
    for before, after in zip(alerts.BASE_RULES, scaled, strict=True):
        if isinstance(before, ThresholdRule) and not before.threshold_is_duration:
            assert isinstance(after, ThresholdRule)
            assert after.threshold == before.threshold, before.name
    durations = [r.name for r in alerts.BASE_RULES if getattr(r, "threshold_is_duration", False)]
    assert durations == ["log_shipping_lag"]


@pytest.mark.parametrize(("threshold", "expected"), [(20.0, 20.0), (600.0, 60.0)])
def test_a_duration_below_the_floor_keeps_its_own_value(threshold: float, expected: float) -> None:
    rule = ThresholdRule(
        name="queue_age",
        expr=GaugeValue("queue_oldest_age_seconds"),
        comparison=">",
        threshold=threshold,
        threshold_is_duration=True,
        severity="low",
        summary="queue {value:.0f}s old",
    )
    [scaled] = scale_rules((rule,), 0.1)
    assert isinstance(scaled, ThresholdRule)
    assert scaled.threshold == expected


def test_deploy_renderings_keep_the_production_threshold() -> None:
    rendered = yaml.safe_load(alerts.render_prometheus_rules())
    [lag] = [
        rule
        for group in rendered["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "log_shipping_lag"
    ]
    assert lag["expr"].endswith("> 300")
    assert lag["for"] == "5m"
    assert lag["labels"]["dependency"] == "cloudwatch"
    [alarm] = [a for a in alerts.cloudwatch_alarms() if "log_shipping_lag" in a["AlarmName"]]
    assert alarm["Threshold"] == 300


def test_process_memory_rule_watches_the_budget_share() -> None:
    rule = _rule(alerts.BASE_RULES, "process_memory_high")
    assert (rule.threshold, rule.for_seconds, rule.severity) == (0.9, 600, "high")
    assert rule.labels["signal"] == "saturation"
    assert {d.name for d in definitions(alerts.BASE_RULES)} >= {"process_memory_high"}
    assert _fires(rule, {"process_memory_usage_ratio": 0.95})
    assert not _fires(rule, {"process_memory_usage_ratio": 0.5})
