"""The embedded evaluator over a LiveSource reads the gauges once per round, not once per rule:
the platform's gauges query the database and ping its dependencies, so every extra read costs
a round seconds when the database is slow."""

from __future__ import annotations

from collections.abc import Mapping

from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.rules import ThresholdRule
from observability.metrics.windows import RollingWindows
from observability.query.live import LiveSource
from observability.query.model import ErrorRatio, GaugeValue
from tests.observability.alerting import T0


def _gauge_rule(name: str, gauge: str, comparison: str, threshold: float) -> ThresholdRule:
    return ThresholdRule(
        name=name,
        expr=GaugeValue(gauge),
        comparison=comparison,  # type: ignore[arg-type]
        threshold=threshold,
        severity="high",
        summary=name,
    )


GAUGE_RULES = [
    _gauge_rule("dependency_not_ready", "service_ready", "<", 1),
    _gauge_rule("experiments_srm", "experiments_srm_detected", ">", 0),
    _gauge_rule("too_many_running", "experiments_by_status", ">", 100),
]
ERRORS = ThresholdRule(
    name="error_rate_spike",
    expr=ErrorRatio(window_s=60),
    comparison=">",
    threshold=0.1,
    severity="high",
    summary="errors",
)


class CountingGauges:
    """The gauges callable: returns `values` and counts how often it was called."""

    def __init__(self, values: Mapping[str, float]) -> None:
        self.values = dict(values)
        self.calls = 0
        self.fail = False

    def __call__(self) -> Mapping[str, float]:
        self.calls += 1
        if self.fail:
            raise ConnectionError("database unreachable")
        return dict(self.values)


def _evaluator(rules: list[ThresholdRule], gauges: CountingGauges) -> Evaluator:
    source = LiveSource(RollingWindows(clock=lambda: float(T0)), gauges=gauges)
    return Evaluator(
        rules, source, config=EvaluatorConfig(log_transitions=False), clock=lambda: float(T0)
    )


def _firing(evaluator: Evaluator) -> set[str]:
    return {a["alertname"] for a in evaluator.active_alerts() if a["state"] == "firing"}


HEALTHY = {
    'service_ready{dependency="database"}': 1.0,
    'service_ready{dependency="cache"}': 1.0,
    "experiments_srm_detected": 0.0,
    'experiments_by_status{status="running"}': 3.0,
}


def test_one_gauge_read_per_round_and_a_fresh_one_each_round() -> None:
    gauges = CountingGauges(HEALTHY)
    evaluator = _evaluator([*GAUGE_RULES, ERRORS], gauges)

    evaluator.evaluate_once(T0)
    assert gauges.calls == 1  # three gauge rules, one read
    assert _firing(evaluator) == set()

    gauges.values['service_ready{dependency="cache"}'] = 0.0
    gauges.values["experiments_srm_detected"] = 2.0
    evaluator.evaluate_once(T0 + 30)
    assert gauges.calls == 2
    assert _firing(evaluator) == {"dependency_not_ready", "experiments_srm"}
    [cache] = [a for a in evaluator.active_alerts() if a["alertname"] == "dependency_not_ready"]
    assert cache["labels"]["dependency"] == "cache"

    gauges.values = dict(HEALTHY)
    evaluator.evaluate_once(T0 + 60)
    assert gauges.calls == 3
    assert _firing(evaluator) == set()
    assert evaluator.rule_failures == 0


def test_a_failed_gauge_read_fails_each_gauge_rule_without_reading_again() -> None:
    gauges = CountingGauges(HEALTHY)
    evaluator = _evaluator([*GAUGE_RULES, ERRORS], gauges)
    gauges.fail = True

    result = evaluator.evaluate_once(T0)
    assert gauges.calls == 1
    assert sorted(result.errors) == sorted(r.name for r in GAUGE_RULES)  # ERRORS still ran
    assert evaluator.rule_failures == 3

    gauges.fail = False  # the next round tries again
    assert evaluator.evaluate_once(T0 + 30).errors == []
    assert gauges.calls == 2


def test_a_round_without_gauge_rules_does_not_read_the_gauges() -> None:
    gauges = CountingGauges(HEALTHY)
    evaluator = _evaluator([ERRORS], gauges)
    evaluator.evaluate_once(T0)
    evaluator.evaluate_once(T0 + 30)
    assert gauges.calls == 0


def test_the_live_source_outside_a_round_reads_current_gauges() -> None:
    gauges = CountingGauges(HEALTHY)
    source = LiveSource(RollingWindows(clock=lambda: float(T0)), gauges=gauges)
    assert source.gauge_values("experiments_srm_detected", T0) == {"experiments_srm_detected": 0.0}
    gauges.values["experiments_srm_detected"] = 1.0
    assert source.gauge_values("experiments_srm_detected", T0) == {"experiments_srm_detected": 1.0}
    assert gauges.calls == 2
