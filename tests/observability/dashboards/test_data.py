"""The built-in UI's data source: numbers computed from real RollingWindows, a real
MetricHistory and a real ErrorStore, per time range."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from experimentation_platform.telemetry import names as domain
from experimentation_platform.telemetry.dashboards import DASHBOARDS
from observability.dashboards.data import DashboardData, registry_values
from observability.errors import ErrorStore, ErrorTracker
from observability.metrics import names
from observability.metrics.history import MetricHistory
from observability.metrics.windows import RollingWindows

T0 = 1_800_000_000.0  # a minute boundary


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def panel(data: dict[str, Any], slug: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in data["panels"] if p["slug"] == slug)
    assert "error" not in found, found
    return found


def at(found: dict[str, Any], label: str | None = None) -> dict[float, Any]:
    """time -> value of one series of a time-series panel (the first when no label given)."""
    column = next(s for s in found["series"] if label is None or s["label"] == label)
    return dict(zip(found["time"], column["values"], strict=True))


def history(tmp_path: Path, windows: RollingWindows | None = None) -> MetricHistory:
    store = MetricHistory(sa.create_engine(f"sqlite:///{tmp_path / 'h.db'}"), instance="a")
    store.create_schema()
    if windows is not None:
        store.record(windows.completed_minutes(since=0))
    return store


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def windows(clock: Clock) -> RollingWindows:
    w = RollingWindows(clock=clock)
    # Three complete minutes: 60, 120 and 180 requests; every tenth a 500, a slow route.
    for minute, n in enumerate((60, 120, 180)):
        for i in range(n):
            clock.t = T0 + minute * 60 + i * 60 / n
            w.observe_request("GET", "/fast", 500 if i % 10 == 0 else 200, 0.010)
            w.observe_request("GET", "/slow", 200, 0.400)
            w.count(f'{domain.ASSIGNMENTS}{{outcome="assigned"}}')
    clock.t = T0 + 3 * 60 + 1
    return w


def test_request_panels_follow_the_minutes_recorded(windows: RollingWindows, clock: Clock) -> None:
    data = DashboardData(DASHBOARDS, windows=windows, clock=clock).dashboard(
        "api-performance", "15m"
    )
    rate = panel(data, "request-rate")
    # One point per minute of the range (a minute's value at its end), then the live one.
    assert rate["time"][:-1] == [T0 + 180 - 60 * k for k in range(15)][::-1]
    assert rate["time"][-1] == clock.t
    per_minute = at(rate)
    assert [per_minute[T0 + 60 * k] for k in (1, 2, 3)] == [2.0, 4.0, 6.0]  # (fast + slow) / 60 s
    assert per_minute[T0] == 0.0  # before the traffic: nothing flowed
    errors = at(panel(data, "server-errors-5xx"))
    assert [errors[T0 + 60 * k] for k in (1, 2, 3)] == pytest.approx([0.05, 0.05, 0.05])
    assert errors[T0] is None  # no requests: no error ratio (not zero)
    latency = panel(data, "latency-p50-p95-p99")
    assert at(latency, "p99")[T0 + 60] == pytest.approx(0.4, rel=0.02)
    top = panel(data, "top-endpoints-by-latency")["table"]
    assert top["rows"][0][0] == "GET /slow"
    assert top["link"] == "route"
    by_errors = panel(data, "top-endpoints-by-errors")["table"]["rows"]
    assert [r[0] for r in by_errors] == ["GET /fast"]  # routes without 5xx are left out


def test_labelled_counters_split_by_label(windows: RollingWindows, clock: Clock) -> None:
    data = DashboardData(DASHBOARDS, windows=windows, clock=clock).dashboard(
        "business-metrics", "15m"
    )
    series = panel(data, "assignment-rate")["series"]
    assert [s["label"] for s in series] == ["assigned"]
    assigned = at(panel(data, "assignment-rate"), "assigned")
    assert [assigned[T0 + 60 * k] for k in (1, 2, 3)] == [1.0, 2.0, 3.0]


def test_gauges_are_read_live_and_cumulative_ones_become_rates(clock: Clock) -> None:
    readings = iter([0.0, 1_000.0, 3_000.0])
    current = {"sent": 0.0}

    def gauges() -> dict[str, float]:
        return {
            names.SYSTEM_CPU: 0.25,
            f'{names.SYSTEM_DISK}{{mount="/"}}': 0.9,
            f'{names.SYSTEM_NETWORK}{{direction="sent"}}': current["sent"],
            f'{names.SERVICE_READY}{{dependency="db"}}': 0.0,
        }

    data = DashboardData(
        DASHBOARDS, windows=RollingWindows(clock=clock), gauges=gauges, clock=clock
    )
    for _ in range(2):
        clock.t += 10
        current["sent"] = next(readings) + 1_000.0
        data.sample_gauges()
    board = data.dashboard("system-health", "15m")
    assert panel(board, "disk-usage")["stats"] == [{"label": "/", "value": 0.9}]
    network = panel(board, "network-i-o")["series"]
    assert network[0]["label"] == "sent"
    assert 100.0 in network[0]["values"]  # 1,000 bytes over 10 s
    ready = panel(board, "readiness-per-instance")["table"]
    assert ready["columns"] == ["instance", "dependency", "ready"]
    assert ready["rows"] == [["local", "db", 0.0]]


def test_long_ranges_read_the_history_store(
    windows: RollingWindows, clock: Clock, tmp_path: Path
) -> None:
    store = history(tmp_path, windows)
    board = DashboardData(DASHBOARDS, windows=windows, history=store, clock=clock).dashboard(
        "api-performance", "24h"
    )
    assert board["step"] == 900
    assert board["notes"] == []
    rate = panel(board, "request-rate")
    assert len(rate["time"]) == 96  # one point per 15 minutes, no live point from history
    assert sum(v or 0 for v in rate["series"][0]["values"]) * 900 == pytest.approx(720)
    top = panel(board, "top-endpoints-by-traffic")["table"]["rows"]
    assert [row[0] for row in top] == ["GET /fast", "GET /slow"]
    assert top[0][1] == 360

    without = DashboardData(DASHBOARDS, windows=windows, clock=clock).dashboard(
        "api-performance", "7d"
    )
    assert without["notes"] == ["no history store: showing the last hour"]
    assert sum(v or 0 for v in panel(without, "request-rate")["series"][0]["values"]) > 0
    store.engine.dispose()


def test_a_failing_source_breaks_its_panels_not_the_page(
    windows: RollingWindows, clock: Clock, tmp_path: Path
) -> None:
    class Broken(MetricHistory):
        def rollups(self, start: float, end: float) -> Any:
            raise ConnectionError("history down")

    def gauges() -> dict[str, float]:
        raise OSError("psutil failed")

    broken = Broken(sa.create_engine(f"sqlite:///{tmp_path / 'b.db'}"))
    broken.create_schema()
    data = DashboardData(DASHBOARDS, windows=windows, history=broken, gauges=gauges, clock=clock)
    board = data.dashboard("api-performance", "24h")
    failed = [p["slug"] for p in board["panels"] if "error" in p]
    assert failed == [p["slug"] for p in board["panels"]]  # every panel reads the history
    assert board["notes"] == ["history unavailable (ConnectionError)"]
    assert data.panel_errors == len(failed)
    health = data.dashboard("system-health", "1h")
    assert data.gauge_errors >= 2  # at construction and at this read
    assert [p["slug"] for p in health["panels"] if "error" in p] == [
        "cpu-usage",
        "memory-usage",
        "disk-usage",
        "network-i-o",
        "event-loop-lag",
        "dependencies-database-pool-in-use",
        "dependencies-readiness-check-latency",
        "readiness-per-instance",
        "instances",
    ]
    api = data.dashboard("api-performance", "1h")  # the windows still answer the last hour
    assert not [p for p in api["panels"] if "error" in p]
    with pytest.raises(ValueError, match="range must be"):
        data.dashboard("api-performance", "2d")
    broken.engine.dispose()


def test_error_panels_read_the_error_store(tmp_path: Path, clock: Clock) -> None:
    store = ErrorStore.from_url(f"sqlite:///{tmp_path / 'e.db'}")
    store.create_schema()
    with ErrorTracker(store) as tracker:
        for i in range(3):
            try:
                raise ValueError(f"bad input {i}")
            except ValueError as exc:
                tracker.capture(exc, {"request_id": f"req-{i}", "route": "/events"})
        try:
            raise TimeoutError("slow db")
        except TimeoutError as exc:
            tracker.capture(exc, {"request_id": "req-t"})
        tracker.flush()
    timeout_group = next(g for g in store.list_groups() if g.type == "TimeoutError")
    store.resolve(timeout_group.fingerprint)
    clock.t = timeout_group.last_seen.timestamp() + 30
    data = DashboardData(DASHBOARDS, windows=RollingWindows(clock=clock), errors=store, clock=clock)
    board = data.dashboard("error-tracking", "1h")
    top = panel(board, "top-error-groups")["table"]
    assert top["rows"][0][0] == "ValueError"
    assert top["rows"][0][3] == 3
    by_status = {x["label"]: x["value"] for x in panel(board, "open-vs-resolved")["stats"]}
    assert by_status["open"] == 1
    assert by_status["resolved"] == 1
    assert panel(board, "mean-resolution-time")["stats"][0]["value"] is not None
    trend = panel(board, "error-rate-trend")["series"][0]["values"]
    assert sum(v or 0 for v in trend) == 4
    detail = data.error_group(top["keys"][0])
    assert detail is not None
    assert {o["request_id"] for o in detail["occurrences"]} == {"req-0", "req-1", "req-2"}
    store.dispose()


def test_registry_values_reads_labelled_samples() -> None:
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    Gauge(names.SERVICE_READY, "r", ["dependency"], registry=registry).labels("db").set(1)
    Gauge("unrelated", "u", registry=registry).set(5)
    assert registry_values(registry, [names.SERVICE_READY]) == {
        f'{names.SERVICE_READY}{{dependency="db"}}': 1.0
    }


def test_long_ranges_from_the_real_metric_history(
    windows: RollingWindows, clock: Clock, tmp_path: Path
) -> None:
    store = history(tmp_path, windows)
    store.record_gauges(T0, {names.SYSTEM_CPU: 0.5, f'{names.SYSTEM_DISK}{{mount="/"}}': 0.7})
    data = DashboardData(
        DASHBOARDS,
        windows=windows,
        history=store,
        clock=clock,
        gauges=lambda: {names.SYSTEM_CPU: 0.4},
    )
    board = data.dashboard("api-performance", "6h")
    rate = panel(board, "request-rate")["series"][0]["values"]
    assert sum(v or 0 for v in rate) * 300 == pytest.approx(720)  # every request recorded
    slowest = panel(board, "top-endpoints-by-latency")["table"]["rows"][0]
    assert slowest[0] == "GET /slow"
    assert slowest[3] == pytest.approx(400, rel=0.02)
    health = data.dashboard("system-health", "6h")
    cpu = panel(health, "cpu-usage")["series"][0]["values"]
    assert 0.5 in cpu  # the recorded minute
    assert panel(health, "disk-usage")["stats"] == []  # a gauge stat is the current reading
    assignments = panel(data.dashboard("business-metrics", "24h"), "assignment-rate")["series"]
    assert sum(v or 0 for v in assignments[0]["values"]) * 900 == pytest.approx(360)
    store.engine.dispose()
