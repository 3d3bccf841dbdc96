"""Fleet-wide data: every instance publishes its recent buckets to the shared store; the
leader's rules and every dashboard read the fleet's totals (exact counts, merged sketches),
or one instance's when asked; the response says which. On SQLite and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.rules import ThresholdRule
from observability.dashboards.data import DashboardData
from observability.dashboards.model import Dashboard, Panel
from observability.fleet.registry import InstanceRegistry
from observability.fleet.rollups import FleetPublisher, FleetRollups
from observability.fleet.salvage import LostMinutes
from observability.metrics.windows import RollingWindows
from observability.query.fleet import FleetSource
from observability.query.live import LiveSource
from observability.query.model import CounterIncrease, ErrorRatio, LatencyQuantile
from observability.store import ObservabilityStore
from tests.support.platform import postgres_database

T0 = 1_800_000_000.0  # a minute boundary
BOARD = Dashboard(
    "fleet",
    "Fleet",
    "what the fleet did",
    (
        Panel("stat", "Assignments", "assignments over the range", (CounterIncrease("assigned"),)),
        Panel("stat", "Errors", "5xx ratio over the range", (ErrorRatio(),)),
        Panel("timeseries", "p99", "slowest requests", (LatencyQuantile(0.99),)),
    ),
)


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObservabilityStore]:
    if request.param == "sqlite":
        opened = ObservabilityStore.open(f"sqlite:///{tmp_path / 'observability.db'}")
        opened.migrate()
        yield opened
        opened.dispose()
    else:
        with postgres_database() as url:
            opened = ObservabilityStore.open(url)
            opened.migrate()
            yield opened
            opened.dispose()


class Member:
    """One instance: its windows, its publisher (on a shared test clock)."""

    def __init__(self, store: ObservabilityStore, name: str, clock: Clock) -> None:
        self.windows = RollingWindows(clock=clock)
        self.rollups = FleetRollups(store.engine, service="svc", instance=name, clock=clock)
        self.publisher = FleetPublisher(self.windows, self.rollups, clock=clock)

    def traffic(self, ok: int, failed: int, latency_s: float, assigned: int) -> None:
        for _ in range(ok):
            self.windows.observe_request("GET", "/x", 200, latency_s)
        for _ in range(failed):
            self.windows.observe_request("GET", "/x", 500, latency_s)
        self.windows.count("assigned", assigned)


def _stat(data: dict[str, Any], slug: str) -> float:
    panel = next(p for p in data["panels"] if p["slug"] == slug)
    assert "error" not in panel, panel
    return float(panel["stats"][0]["value"])


def test_buckets_are_merged_across_instances_and_can_be_read_per_instance(
    store: ObservabilityStore,
) -> None:
    clock = Clock(T0 + 1)
    a, b = Member(store, "a", clock), Member(store, "b", clock)
    a.traffic(ok=20, failed=0, latency_s=0.01, assigned=20)
    b.traffic(ok=5, failed=5, latency_s=2.0, assigned=10)
    clock.t = T0 + 12  # the first 10 s bucket is complete
    a.publisher.publish_once()
    b.publisher.publish_once()
    merged = a.rollups.read(T0, T0 + 20)
    assert [r.minute_start for r in merged] == [T0]
    route = merged[0].routes["GET /x"]
    assert route.requests == 30
    assert route.status_classes["5xx"] == 5
    assert merged[0].counters == {"assigned": 30.0}
    assert route.latency_sketch().quantile(0.99) == pytest.approx(2.0, rel=0.02)
    only_b = a.rollups.read(T0, T0 + 20, instance="b")
    assert only_b[0].routes["GET /x"].requests == 10
    assert a.rollups.instances(T0) == ["a", "b"]
    # Publishing the same bucket again replaces it (the live bucket is re-sent until complete).
    b.publisher.publish_once()
    assert a.rollups.read(T0, T0 + 20)[0].routes["GET /x"].requests == 30


def test_the_dashboards_show_the_fleet_by_default_and_one_instance_when_asked(
    store: ObservabilityStore,
) -> None:
    clock = Clock(T0 + 1)
    a, b = Member(store, "a", clock), Member(store, "b", clock)
    a.traffic(ok=100, failed=0, latency_s=0.01, assigned=100)
    b.traffic(ok=40, failed=10, latency_s=0.5, assigned=50)
    clock.t = T0 + 75  # past the minute: every bucket complete
    a.publisher.publish_once()
    b.publisher.publish_once()
    data = DashboardData(
        [BOARD], windows=a.windows, history=store.history, instance="a", clock=clock,
        fleet=a.rollups,
    )  # fmt: skip
    fleet = data.dashboard("fleet", "15m")
    assert fleet["instance"] == "all"
    assert fleet["instances"] == ["a", "b"]
    assert _stat(fleet, "assignments") == 150  # A's 100 + B's 50, served by A
    assert _stat(fleet, "errors") == pytest.approx(10 / 150)
    one = data.dashboard("fleet", "15m", instance="b")
    assert one["instance"] == "b"
    assert _stat(one, "assignments") == 50
    assert _stat(one, "errors") == pytest.approx(10 / 50)
    assert _stat(data.dashboard("fleet", "1h", instance="a"), "assignments") == 100
    # Without a fleet (one process on SQLite): its own windows, as before, and it says "all".
    alone = DashboardData([BOARD], windows=a.windows, instance="a", clock=clock)
    solo = alone.dashboard("fleet", "15m", instance="b")
    assert solo["instance"] == "all"
    assert solo["instances"] == ["a"]
    assert _stat(solo, "assignments") == 100


def test_the_leader_fires_on_the_fleets_errors_that_no_instance_sees_alone(
    store: ObservabilityStore,
) -> None:
    clock = Clock(T0 + 1)
    a, b = Member(store, "a", clock), Member(store, "b", clock)
    rule = ThresholdRule(
        "fleet_errors",
        expr=ErrorRatio(window_s=60),
        comparison=">",
        threshold=0.2,
        severity="high",
        summary="{value:.0%} of the fleet's requests fail",
    )
    # The leader A serves only good requests; B fails 60% of its own: 25% of the fleet's.
    a.traffic(ok=42, failed=0, latency_s=0.01, assigned=0)
    b.traffic(ok=12, failed=18, latency_s=0.01, assigned=0)
    clock.t = T0 + 21
    a.publisher.publish_once()
    b.publisher.publish_once()
    local = Evaluator([rule], LiveSource(a.windows, clock=clock), clock=clock)
    fleet = Evaluator(
        [rule],
        FleetSource(a.rollups, LiveSource(a.windows, clock=clock)),
        clock=clock,
        config=EvaluatorConfig(log_transitions=False),
    )
    local.evaluate_once()
    fleet.evaluate_once()
    assert local.active_alerts() == []  # A alone sees no error at all
    firing = fleet.active_alerts()
    assert [(x["alertname"], x["state"]) for x in firing] == [("fleet_errors", "firing")]
    assert firing[0]["summary"] == "25% of the fleet's requests fail"


def test_a_window_shorter_than_a_bucket_reads_the_last_complete_bucket(
    store: ObservabilityStore,
) -> None:
    clock = Clock(T0 + 1)
    a = Member(store, "a", clock)
    a.traffic(ok=2, failed=8, latency_s=0.01, assigned=0)
    clock.t = T0 + 17  # 7 s into the next bucket: a 3 s window would cover no bucket start
    a.publisher.publish_once()
    rule = ThresholdRule(
        "short", expr=ErrorRatio(window_s=3), comparison=">", threshold=0.5, severity="high",
        summary="{value:.0%}",
    )  # fmt: skip
    fleet = Evaluator([rule], FleetSource(a.rollups, LiveSource(a.windows, clock=clock)))
    fleet.evaluate_once(clock.t)
    assert [x["summary"] for x in fleet.active_alerts()] == ["80%"]


def test_settled_buckets_are_merged_once_and_recent_ones_read_again(
    store: ObservabilityStore,
) -> None:
    clock = Clock(T0 + 1)
    a, b = Member(store, "a", clock), Member(store, "b", clock)
    for _ in range(12):  # two minutes of buckets, both instances publishing every 10 s
        a.traffic(ok=10, failed=0, latency_s=0.01, assigned=1)
        b.traffic(ok=5, failed=1, latency_s=0.2, assigned=1)
        clock.t += 10
        a.publisher.publish_once()
        b.publisher.publish_once()
    first = a.rollups.read(clock.t - 3600, clock.t + 10)
    assert sum(r.routes["GET /x"].requests for r in first) == 12 * 16
    assert len(a.rollups._settled) >= 5  # the older buckets are kept merged
    # B's current bucket grows; a re-read shows it (recent buckets are read again)...
    b.traffic(ok=7, failed=0, latency_s=0.2, assigned=0)
    b.publisher.publish_once()
    again = a.rollups.read(clock.t - 3600, clock.t + 10)
    assert sum(r.routes["GET /x"].requests for r in again) == 12 * 16 + 7
    # ...and the cached answer is the one a fresh reader merges from the rows.
    fresh = FleetRollups(store.engine, service="svc", instance="z", clock=clock)
    assert [r.to_dict() for r in again] == [
        r.to_dict() for r in fresh._read(clock.t - 3600, clock.t + 10, None)
    ]


def test_a_graceful_stop_publishes_the_partial_bucket(store: ObservabilityStore) -> None:
    clock = Clock(T0 + 1)
    a = Member(store, "a", clock)
    a.publisher.publish_once()
    a.traffic(ok=3, failed=1, latency_s=0.01, assigned=2)  # after the last publish
    clock.t = T0 + 4  # mid-bucket: nothing would publish it before the next boundary
    a.publisher.stop()
    stored = a.rollups.read(T0, T0 + 10, instance="a")
    assert stored[0].routes["GET /x"].requests == 4
    assert stored[0].counters == {"assigned": 2.0}


def test_a_lost_instances_last_minutes_reach_the_history_once(store: ObservabilityStore) -> None:
    clock = Clock(T0 + 1)
    b = Member(store, "b", clock)
    beats = InstanceRegistry(store.engine, instance="b", service="svc", heartbeat_s=1, clock=clock)
    watcher = InstanceRegistry(
        store.engine, instance="a", service="svc", heartbeat_s=1, clock=clock
    )
    store.history.record(b.windows.completed_minutes(since=0))  # nothing recorded yet
    for _ in range(9):  # 90 s of traffic, published every 10 s, never recorded per minute
        b.traffic(ok=9, failed=1, latency_s=0.05, assigned=1)
        beats.beat()
        clock.t += 10
        b.publisher.publish_once()
    beats.beat()
    recovery = LostMinutes(watcher, b.rollups, store.history, clock=clock)
    recovery.run()
    assert recovery.recovered == 0  # b is still up: its own recorder will write its minutes
    clock.t += 5  # kill -9: no more heartbeats; lost after three missed beats
    recovery.run()
    minutes = store.history.rollups(T0, T0 + 180, instance="b")
    assert [m.minute_start for m in minutes] == [T0, T0 + 60]
    assert sum(m.routes["GET /x"].requests for m in minutes) == 90
    assert sum(m.routes["GET /x"].status_classes["5xx"] for m in minutes) == 9
    recovery.run()  # later rounds write nothing more: the history holds each request once
    assert recovery.recovered == 2
    again = store.history.rollups(T0, T0 + 180, instance="b")
    assert sum(m.routes["GET /x"].requests for m in again) == 90


def test_a_bucket_is_read_only_once_its_instances_published_it_after_it_ended(
    store: ObservabilityStore,
) -> None:
    clock = Clock(T0 + 1)
    a = Member(store, "a", clock)
    a.traffic(ok=2, failed=8, latency_s=0.01, assigned=0)
    clock.t = T0 + 10.2  # bucket T0 published complete, bucket T0+10 published (empty) too
    a.publisher.publish_once()
    a.traffic(ok=2, failed=8, latency_s=0.01, assigned=0)  # bucket T0+10, not yet published
    clock.t = T0 + 20.05  # T0+10 has ended; its publish after the boundary is due at +0.2 s
    rule = ThresholdRule(
        "short", expr=ErrorRatio(window_s=10), comparison=">", threshold=0.5, severity="high",
        summary="{value:.0%}",
    )  # fmt: skip
    fleet = Evaluator([rule], FleetSource(a.rollups, LiveSource(a.windows, clock=clock)))
    fleet.evaluate_once(clock.t)
    assert [x["summary"] for x in fleet.active_alerts()] == ["80%"]  # not "nothing happened"
