"""LiveSource: the rolling windows at the live edge, minutes behind them, gauges read live and
remembered, and range views cut into a panel's steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from observability.metrics.history import MetricHistory
from observability.metrics.windows import RollingWindows
from observability.query.evaluate import instant, series
from observability.query.live import LiveSource
from observability.query.model import (
    CounterRate,
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    RequestRate,
)
from tests.observability.alerting import T0, rollup


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _traffic(windows: RollingWindows, clock: Clock, minutes: int, fail_every: int) -> None:
    """One request a second for `minutes`, every `fail_every`-th a 500, from clock.t on."""
    start = clock.t
    for i in range(minutes * 60):
        clock.t = start + i
        status = 500 if fail_every and i % fail_every == 0 else 200
        windows.observe_request("GET", "/x", status, 0.01)


def test_the_live_edge_includes_the_partial_minute() -> None:
    clock = Clock(T0)
    windows = RollingWindows(clock=clock)
    _traffic(windows, clock, 1, 0)
    clock.t = T0 + 60 + 20
    for _ in range(20):
        windows.observe_request("GET", "/x", 500, 0.01)  # 20 failures in the current minute
    source = LiveSource(windows)
    [(_, ratio)] = instant(ErrorRatio(window_s=60), source, clock.t)
    assert ratio == pytest.approx(20 / (20 + 40), abs=0.05)  # the last ~60 s: 40 ok + 20 bad


def test_the_past_comes_from_complete_minutes_once_the_slots_are_gone() -> None:
    clock = Clock(T0)
    windows = RollingWindows(clock=clock)
    _traffic(windows, clock, 10, 10)  # ten minutes at 10% errors
    _traffic(windows, clock, 10, 0)  # then ten healthy ones
    source = LiveSource(windows)
    # 15 minutes ago the 5 s slots are long gone: the windows' complete minutes answer.
    [(_, then)] = instant(ErrorRatio(window_s=120), source, T0 + 300)
    assert then == pytest.approx(0.1)
    [(_, now)] = instant(ErrorRatio(window_s=120), source, clock.t)
    assert now == 0.0


def test_gauges_are_read_live_remembered_and_labelled_with_the_instance() -> None:
    clock = Clock(T0)
    sent = {"v": 0.0}
    source = LiveSource(
        RollingWindows(clock=clock),
        gauges=lambda: {'network_bytes_total{direction="sent"}': sent["v"], "cpu": 0.5},
        instance="api-1",
    )
    for step in range(13):  # a reading every 5 s, 1,000 bytes more each time
        clock.t = T0 + 5 * step
        sent["v"] = 1000.0 * step
        assert instant(GaugeValue("cpu"), source, clock.t) == [({"instance": "api-1"}, 0.5)]
    rate = CounterRate("network_bytes_total", by=("direction",), window_s=60)
    assert instant(rate, source, clock.t) == [({"direction": "sent"}, pytest.approx(200.0))]
    # A window longer than the readings: from the first reading inside it (30 s of them).
    [(_, early)] = instant(
        CounterRate("network_bytes_total", by=("direction",), window_s=120), source, T0 + 30
    )
    assert early == pytest.approx(200.0)
    # Ten seconds ago, from the remembered readings:
    assert instant(GaugeValue("cpu"), source, clock.t - 10) == [({"instance": "api-1"}, 0.5)]


def test_readings_closer_than_a_step_still_keep_one_per_step() -> None:
    """A dashboard refreshing every 2 s reads the gauges more often than the 5 s step: each
    step keeps its freshest reading, and the steps go on (rates of cumulative values need
    two of them)."""
    clock = Clock(T0)
    sent = {"v": 0.0}
    source = LiveSource(
        RollingWindows(clock=clock),
        gauges=lambda: {'network_bytes_total{direction="sent"}': sent["v"]},
    )
    for step in range(31):  # every 2 s for a minute, 100 bytes a second
        clock.t = T0 + 2 * step
        sent["v"] = 200.0 * step
        source.read_gauges()
    assert len(source.readings) >= 10
    rate = CounterRate("network_bytes_total", by=("direction",), window_s=30)
    assert instant(rate, source, clock.t) == [({"direction": "sent"}, pytest.approx(100.0))]


def test_a_view_of_the_last_hour_holds_this_process_minutes() -> None:
    clock = Clock(T0)
    windows = RollingWindows(clock=clock)
    _traffic(windows, clock, 5, 4)
    clock.t += 1
    view = LiveSource(windows).view(900, 60)
    assert view.live_edge
    assert view.notes == []
    times = view.times()
    assert len(times) == 15
    assert times[-1] == view.end == T0 + 300
    [(_, points)] = series(ErrorRatio(), view.store, times, 60)
    assert [v for _, v in points][-5:] == [0.25] * 5
    assert [v for _, v in points][:10] == [None] * 10  # before the traffic: no ratio
    [(_, rates)] = series(RequestRate(), view.store, times, 60)
    assert [v for _, v in rates][-5:] == [1.0] * 5


def test_a_longer_view_reads_the_history_in_steps(tmp_path: Path) -> None:
    history = MetricHistory(sa.create_engine(f"sqlite:///{tmp_path / 'h.db'}"))
    history.create_schema()
    history.record([rollup(T0 + 60 * i, 60, 6 if i >= 300 else 0) for i in range(360)])
    history.record_gauges(T0 + 60 * 359, {"cpu": 0.7})
    now = T0 + 360 * 60 + 5
    windows = RollingWindows(clock=lambda: now)
    source = LiveSource(windows, history=history)
    view = source.view(6 * 3600, 300)
    assert not view.live_edge
    [(_, points)] = series(ErrorRatio(), view.store, view.times(), 300)
    assert [v for _, v in points][-12:] == pytest.approx([0.1] * 12)
    assert [v for _, v in points][:60] == [0.0] * 60
    [(_, total)] = instant(RequestRate(), view.store, view.end, 6 * 3600)
    assert total == pytest.approx(1.0)
    assert instant(GaugeValue("cpu"), view.store, view.end) == [({}, 0.7)]
    # Without a history the same range shows the windows' last hour and says so.
    assert LiveSource(windows).view(6 * 3600, 300).notes == [
        "no history store: showing the last hour"
    ]
    history.engine.dispose()


def test_a_young_process_rates_its_own_readings_before_the_stored_minutes(
    tmp_path: Path,
) -> None:
    history = MetricHistory(sa.create_engine(f"sqlite:///{tmp_path / 'h.db'}"))
    history.create_schema()
    for minute in range(5):  # another instance's counter, reset in between: no stored rate
        history.record_gauges(T0 + 60 * minute, {"bytes_total": 9000.0 - 1000 * minute})
    clock = Clock(T0 + 300)
    sent = {"v": 0.0}
    source = LiveSource(
        RollingWindows(clock=clock), history=history, gauges=lambda: {"bytes_total": sent["v"]}
    )
    for step in range(3):  # 10 s of readings, 500 bytes a second
        clock.t = T0 + 300 + 5 * step
        sent["v"] = 2500.0 * step
        source.read_gauges()
    rate = CounterRate("bytes_total", window_s=60)
    assert instant(rate, source, clock.t) == [({}, pytest.approx(500.0))]
    history.engine.dispose()


def test_a_named_distribution_is_read_per_label_set_or_as_its_total() -> None:
    # The database instrumentation records the total and one series per operation.
    clock = Clock(T0)
    windows = RollingWindows(clock=clock)
    for _ in range(90):
        windows.observe("db_query_duration_seconds", 0.004)
        windows.observe('db_query_duration_seconds{operation="select"}', 0.004)
    for _ in range(10):
        windows.observe("db_query_duration_seconds", 0.5)
        windows.observe('db_query_duration_seconds{operation="update"}', 0.5)
    clock.t = T0 + 10
    source = LiveSource(windows)
    name = "db_query_duration_seconds"
    [(_, select_p99)] = instant(
        LatencyQuantile(0.99, {"operation": "select"}, 60, name), source, clock.t
    )
    [(_, update_p50)] = instant(
        LatencyQuantile(0.5, {"operation": "update"}, 60, name), source, clock.t
    )
    [(_, total_p95)] = instant(
        LatencyQuantile(0.95, window_s=60, distribution=name), source, clock.t
    )
    assert select_p99 == pytest.approx(0.004, rel=0.02)
    assert update_p50 == pytest.approx(0.5, rel=0.02)
    assert total_p95 == pytest.approx(0.5, rel=0.02)  # the slowest 10% are the updates
    slow = LatencyAbove(0.1, {"operation": "select"}, 60, name)
    assert instant(slow, source, clock.t) == [({}, 0.0)]
    assert instant(LatencyQuantile(0.5, {"operation": "delete"}, 60, name), source, clock.t) == []
