"""Terms evaluated over a MinuteStore: complete minutes with prefix sums, or a panel's steps."""

from __future__ import annotations

import pytest

from observability.metrics.windows import MinuteRollup
from observability.query.evaluate import instant, series
from observability.query.minutes import MinuteStore
from observability.query.model import (
    CounterIncrease,
    CounterRate,
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    Ratio,
    RequestRate,
    Stalled,
    series_key,
)
from tests.observability.alerting import ROUTE, T0, rollup

GET = {"method": "GET", "route": "/api/v1/assignments/{experiment_key}"}


def _store(*rollups_: MinuteRollup, resolution_s: int = 60, anchor: int = 0) -> MinuteStore:
    store = MinuteStore(resolution_s=resolution_s, anchor=anchor)
    for r in rollups_:
        store.add(r)
    return store


def test_error_ratio_over_complete_minutes_of_the_window() -> None:
    store = _store(rollup(T0, 100, 0), rollup(T0 + 60, 100, 10), rollup(T0 + 120, 100, 30))
    now = T0 + 180
    assert instant(ErrorRatio(window_s=60), store, now) == [({}, 0.3)]
    assert instant(ErrorRatio(window_s=120), store, now) == [({}, 0.2)]
    assert instant(ErrorRatio(where={"route": "/other"}, window_s=180), store, now) == []
    assert instant(ErrorRatio(where=GET, window_s=180), store, now) == [({}, 40 / 300)]
    assert instant(ErrorRatio(window_s=60), store, now + 60) == []  # no traffic, no ratio
    assert instant(RequestRate(window_s=180), store, now) == [({}, 300 / 180)]


def test_client_errors_are_counted_apart_from_server_errors() -> None:
    minute = rollup(T0, 100, 5)
    minute.routes[ROUTE].status_classes["4xx"] = 20
    store = _store(minute)
    assert instant(ErrorRatio("4xx", window_s=60), store, T0 + 60) == [({}, 0.2)]
    assert instant(ErrorRatio("5xx", window_s=60), store, T0 + 60) == [({}, 0.05)]


def test_latency_above_counts_slow_requests_from_the_sketches() -> None:
    store = _store(rollup(T0, 200, slow=4, slow_s=0.5), rollup(T0 + 60, 200, slow=0))
    [(_, share)] = instant(LatencyAbove(0.3, window_s=120), store, T0 + 120)
    assert share == pytest.approx(4 / 400)
    assert instant(LatencyAbove(0.6, window_s=120), store, T0 + 120) == [({}, 0.0)]
    [(_, p99)] = instant(LatencyQuantile(0.99, window_s=120), store, T0 + 120)
    assert p99 == pytest.approx(0.02, rel=0.02)


def test_a_prepared_threshold_survives_the_sketches_being_dropped() -> None:
    store = MinuteStore(raw_retention_s=600)
    store.prepare([LatencyAbove(0.3, window_s=3600)])
    for i in range(30):
        store.add(rollup(T0 + 60 * i, 100, slow=10 if i < 5 else 0, slow_s=0.5))
    now = T0 + 30 * 60
    [(_, share)] = instant(LatencyAbove(0.3, window_s=1800), store, now)
    assert share == pytest.approx(50 / 3000)
    # The sketches of the first minutes are gone: an unprepared threshold sees only the rest.
    [(_, late)] = instant(LatencyAbove(0.4, window_s=1800), store, now)
    assert late == 0.0


def test_latency_above_reads_a_named_distribution() -> None:
    fast, slow = [0.003] * 95, [0.2] * 5
    store = _store(rollup(T0, distributions={"assignment_duration_seconds": fast + slow}))
    term = LatencyAbove(0.05, window_s=60, distribution="assignment_duration_seconds")
    assert instant(term, store, T0 + 60) == [({}, pytest.approx(0.05))]


def test_counters_split_by_labels_and_keep_quiet_series_at_zero() -> None:
    assigned = series_key("assignments_total", {"outcome": "assigned", "experiment": "a"})
    skipped = series_key("assignments_total", {"outcome": "not_running", "experiment": "a"})
    store = _store(
        rollup(T0, counters={assigned: 6, skipped: 2}),
        rollup(T0 + 60, counters={assigned: 3}),
    )
    now = T0 + 120
    by_outcome = CounterIncrease("assignments_total", by=("outcome",), window_s=120)
    assert instant(by_outcome, store, now) == [
        ({"outcome": "assigned"}, 9.0),
        ({"outcome": "not_running"}, 2.0),
    ]
    last_minute = CounterIncrease("assignments_total", {"outcome": "not_running"}, window_s=60)
    assert instant(last_minute, store, now) == [({}, 0.0)]  # seen before, quiet now
    assert instant(CounterRate("assignments_total", window_s=120), store, now) == [({}, 11 / 120)]
    assert instant(CounterIncrease("never_seen_total", window_s=120), store, now) == []


def test_ratio_of_two_counters_per_group() -> None:
    def key(name: str, variant: str) -> str:
        return series_key(name, {"experiment": "e", "variant": variant})

    store = _store(
        rollup(
            T0,
            counters={
                key("exposures_total", "a"): 10,
                key("exposures_total", "b"): 10,
                key("conversions_total", "a"): 2,
            },
        )
    )
    term = Ratio("conversions_total", "exposures_total", by=("variant",), window_s=60)
    assert instant(term, store, T0 + 60) == [({"variant": "a"}, 0.2), ({"variant": "b"}, 0.0)]


def test_gauges_stalled_and_staleness() -> None:
    store = _store(
        rollup(T0, counters={"events_ingested_total": 50}),
        rollup(T0 + 60, counters={}, route="POST /api/v1/events"),
    )
    store.add_gauges(
        T0 + 60, {'service_ready{dependency="db"}': 0, 'service_ready{dependency="cache"}': 1}
    )
    now = T0 + 120
    assert instant(GaugeValue("service_ready"), store, now) == [
        ({"dependency": "cache"}, 1.0),
        ({"dependency": "db"}, 0.0),
    ]
    assert instant(GaugeValue("service_ready", agg="min"), store, now) == [({}, 0.0)]
    assert instant(GaugeValue("service_ready", {"dependency": "db"}), store, now) == [
        ({"dependency": "db"}, 0.0)
    ]
    assert instant(GaugeValue("service_ready"), store, T0 + 60 + 400) == []  # stale
    posting = {"method": "POST", "route": "/api/v1/events"}
    stalled = Stalled("events_ingested_total", window_s=60, requests_where=posting)
    assert instant(stalled, store, now) == [({}, 0.0)]  # events posted, nothing ingested
    quiet = Stalled("events_ingested_total", window_s=60, requests_where={"route": "/nothing"})
    assert instant(quiet, store, now) == []  # no traffic: never "stalled"


def test_buckets_of_a_step_hold_the_same_numbers_as_their_minutes() -> None:
    minutes = [
        rollup(T0 + 60 * i, 100 + i, i % 7, slow=i % 3, slow_s=0.5, counters={"c_total": i})
        for i in range(30)
    ]
    by_minute = _store(*minutes)
    end = T0 + 30 * 60
    by_five = _store(*minutes, resolution_s=300, anchor=end)
    times = [end - 300 * k for k in range(6)][::-1]
    for term in (
        ErrorRatio(),
        RequestRate(),
        LatencyAbove(0.3),
        CounterIncrease("c_total"),
        LatencyQuantile(0.5),
    ):
        [(_, coarse)] = series(term, by_five, times, 300)
        fine = [instant(term, by_minute, t, 300)[0][1] for t in times]
        assert [t for t, _ in coarse] == times
        accuracy = 0.02 if isinstance(term, LatencyQuantile) else 1e-9  # a merged sketch
        assert [v for _, v in coarse] == pytest.approx(fine, rel=accuracy), term


def test_a_repeated_or_older_minute_is_ignored() -> None:
    store = _store(rollup(T0, 100, 10), rollup(T0, 100, 90), rollup(T0 - 60, 100, 100))
    assert instant(ErrorRatio(window_s=120), store, T0 + 60) == [({}, 0.1)]


def test_sums_asked_before_any_minute_arrives_grow_with_the_minutes() -> None:
    store = MinuteStore()
    store.prepare([LatencyAbove(0.3, window_s=120)])
    assert instant(ErrorRatio(window_s=120), store, T0) == []  # nothing yet
    assert instant(LatencyAbove(0.3, window_s=120), store, T0) == []
    store.add(rollup(T0, 100, 10, slow=5, slow_s=0.5))
    store.add(rollup(T0 + 60, 100, 30))
    assert instant(ErrorRatio(window_s=120), store, T0 + 120) == [({}, 0.2)]
    assert instant(LatencyAbove(0.3, window_s=120), store, T0 + 120) == [({}, pytest.approx(0.025))]


def test_a_window_holds_the_latest_complete_minutes_between_boundaries() -> None:
    store = _store(rollup(T0, 100, 10), rollup(T0 + 60, 100, 30))
    # Half a minute after a boundary the last minute is still the latest complete one: a
    # 60 s window (evaluated every 30 s) never falls between two minutes.
    assert instant(ErrorRatio(window_s=60), store, T0 + 120) == [({}, 0.3)]
    assert instant(ErrorRatio(window_s=60), store, T0 + 150) == [({}, 0.3)]
    assert instant(ErrorRatio(window_s=120), store, T0 + 150) == [({}, 0.2)]
    assert instant(ErrorRatio(window_s=60), store, T0 + 180) == []  # the next one is missing
