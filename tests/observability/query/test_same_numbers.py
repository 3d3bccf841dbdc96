"""One evaluator: an alert condition, a dashboard panel and incident evidence over the same data
give the same number."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from experimentation_platform.telemetry.dashboards import DASHBOARDS
from observability.alerting.rules import ThresholdRule, evaluate_definition
from observability.alerting.state import AlertInstance
from observability.dashboards.data import DashboardData
from observability.incident import gather_evidence
from observability.metrics.history import MetricHistory
from observability.metrics.windows import RollingWindows
from observability.query.live import LiveSource
from observability.query.minutes import MinuteStore
from observability.query.model import ErrorRatio, LatencyQuantile
from tests.observability.alerting import T0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def traffic() -> tuple[RollingWindows, Clock]:
    """Twenty minutes, two requests a second; minute m fails every (m % 5 + 2)-th request."""
    clock = Clock(T0)
    windows = RollingWindows(clock=clock)
    for m in range(20):
        for i in range(120):
            clock.t = T0 + 60 * m + i / 2
            failing = i % (m % 5 + 2) == 0
            windows.observe_request("GET", "/x", 500 if failing else 200, 0.01 + (i % 10) / 100)
    clock.t = T0 + 20 * 60 + 10
    return windows, clock


def _rule_value(rule: ThresholdRule, source: object, now: float) -> float:
    [definition] = rule.definitions()
    [(_, value, _)] = evaluate_definition(definition, source, now).values()  # type: ignore[arg-type]
    return value


def test_a_panel_point_is_the_rule_value_over_the_same_minute(
    traffic: tuple[RollingWindows, Clock],
) -> None:
    windows, clock = traffic
    data = DashboardData(DASHBOARDS, windows=windows, clock=clock)
    board = data.dashboard("api-performance", "15m")
    found = next(p for p in board["panels"] if p["slug"] == "server-errors-5xx")
    points = dict(zip(found["time"], found["series"][0]["values"], strict=True))
    # The rule the backtest and the history replay run: over complete minutes.
    store = MinuteStore()
    for rollup in windows.completed_minutes(since=0):
        store.add(rollup)
    spike = ThresholdRule("spike", ErrorRatio(window_s=60), ">", 0.0, "high", "s")
    minute_ends = [T0 + 60 * m for m in range(7, 21)]
    for t in minute_ends:
        assert points[t] == pytest.approx(_rule_value(spike, store, t))
    # Different minutes really differ: the comparison is not of constants.
    assert len({round(points[t], 6) for t in minute_ends}) == 5
    # The live point is the rule evaluated now by the embedded evaluator's source.
    assert points[clock.t] == pytest.approx(_rule_value(spike, LiveSource(windows), clock.t))


def test_a_history_panel_point_is_the_rule_value_over_the_same_step(
    traffic: tuple[RollingWindows, Clock], tmp_path: Path
) -> None:
    windows, clock = traffic
    history = MetricHistory(sa.create_engine(f"sqlite:///{tmp_path / 'h.db'}"))
    history.create_schema()
    history.record(windows.completed_minutes(since=0))
    data = DashboardData(DASHBOARDS, windows=windows, history=history, clock=clock)
    board = data.dashboard("api-performance", "6h")
    latency = next(p for p in board["panels"] if p["slug"] == "latency-p50-p95-p99")
    p95 = next(s for s in latency["series"] if s["label"] == "p95")
    points = {t: v for t, v in zip(latency["time"], p95["values"], strict=True) if v is not None}
    assert len(points) == 4  # the four 5-minute steps with traffic
    store = MinuteStore()
    for rollup in history.rollups(0, clock.t):
        store.add(rollup)
    slow = ThresholdRule("slow", LatencyQuantile(0.95, window_s=300), ">", 0.0, "high", "s")
    for t, value in points.items():
        assert value == pytest.approx(_rule_value(slow, store, t))
    history.engine.dispose()


def test_the_incident_curve_is_the_rule_value_at_each_point(
    traffic: tuple[RollingWindows, Clock],
) -> None:
    windows, clock = traffic
    rule = ThresholdRule("spike", ErrorRatio(window_s=120), ">", 0.0, "high", "s")
    alert = AlertInstance("spike|", "spike", "spike", "high", {}, state="firing")
    alert.active_since = clock.t - 30
    evidence = gather_evidence(alert, definitions=rule.definitions(), windows=windows, now=clock.t)
    assert evidence.metric is not None
    curve = [p for p in evidence.metric.curve if p.value is not None]
    assert len(curve) >= 10
    live = LiveSource(windows)
    for point in curve:
        assert point.value == pytest.approx(_rule_value(rule, live, point.t))
