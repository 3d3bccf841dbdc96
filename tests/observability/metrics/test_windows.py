"""RollingWindows: window contents against exact numbers, expiry, caps, rollups, threads."""

from __future__ import annotations

import itertools
import math
import threading

import numpy as np
import orjson
import pytest

from observability.metrics.windows import OTHER_ROUTE, MinuteRollup, RollingWindows

T0 = 1_699_999_980.0  # a multiple of 60: minute boundaries fall on round numbers
ROUTE = "/api/v1/experiments/{key}"


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def window_start(now: float, seconds: int) -> float:
    """Documented coverage: live slot + earlier slots (<= 5 min), else live minute + minutes."""
    if seconds <= 300:
        return math.floor(now / 5) * 5 - (math.ceil(seconds / 5) - 1) * 5
    return math.floor(now / 60) * 60 - (math.ceil(seconds / 60) - 1) * 60


@pytest.fixture(scope="module")
def recorded() -> tuple[RollingWindows, np.ndarray, np.ndarray, np.ndarray, float]:
    """Lognormal latencies, two routes, ~2% 5xx and ~5% 4xx: 50k samples spread over the last
    90 minutes, 50k more over the last 5 minutes and 50k more over the last minute, so every
    window holds roughly 50k samples or more."""
    rng = np.random.default_rng(42)
    n = 50_000
    end = T0 + 5_400
    times = np.sort(
        np.concatenate(
            [
                rng.uniform(T0, end, size=n),
                rng.uniform(end - 300, end, size=n),
                rng.uniform(end - 60, end, size=n),
            ]
        )
    )
    durations = rng.lognormal(mean=-3.0, sigma=1.0, size=times.size)
    statuses = rng.choice([200, 404, 503], size=times.size, p=[0.93, 0.05, 0.02])
    clock = FakeClock()
    windows = RollingWindows(clock=clock)
    for i, (t, d, s) in enumerate(zip(times, durations, statuses, strict=True)):
        clock.t = float(t)
        windows.observe_request("GET" if i % 3 else "POST", ROUTE, int(s), float(d))
        windows.observe("assignment_latency_seconds", float(d) / 10)
        windows.count("assignments_total")
    now = float(times[-1]) + 0.5
    clock.t = now
    return windows, times, durations, statuses, now


@pytest.mark.parametrize(("label", "seconds"), [("1m", 60), ("5m", 300), ("1h", 3600)])
def test_snapshot_windows_match_exact_numbers(
    recorded: tuple[RollingWindows, np.ndarray, np.ndarray, np.ndarray, float],
    label: str,
    seconds: int,
) -> None:
    windows, times, durations, statuses, now = recorded
    inside = times >= window_start(now, seconds)
    expected = durations[inside]
    snap = windows.snapshot(now)
    assert orjson.loads(orjson.dumps(snap)) == snap  # JSON-ready
    window = snap["windows"][label]
    overall = window["overall"]
    assert overall["requests"] == int(inside.sum())
    assert overall["errors_5xx"] == int((statuses[inside] >= 500).sum())
    assert overall["client_errors_4xx"] == int(((statuses[inside] // 100) == 4).sum())
    assert overall["error_rate"] == pytest.approx(overall["errors_5xx"] / overall["requests"])
    assert overall["rate_per_s"] == pytest.approx(overall["requests"] / window["span_s"])
    for q, key in ((0.5, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        assert overall[key] == pytest.approx(float(np.quantile(expected, q)) * 1000, rel=0.02)
    routes = window["routes"]
    assert set(routes) == {f"GET {ROUTE}", f"POST {ROUTE}"}
    assert sum(r["requests"] for r in routes.values()) == overall["requests"]
    dist = window["distributions"]["assignment_latency_seconds"]
    assert dist["count"] == overall["requests"]
    assert dist["p99_ms"] == pytest.approx(float(np.quantile(expected / 10, 0.99)) * 1000, rel=0.02)
    counter = window["counters"]["assignments_total"]
    assert counter["total"] == overall["requests"]


@pytest.mark.parametrize("seconds", [30, 120, 600, 1800])
def test_query_helpers_for_any_window_length(
    recorded: tuple[RollingWindows, np.ndarray, np.ndarray, np.ndarray, float], seconds: int
) -> None:
    windows, times, durations, _statuses, now = recorded
    inside = times >= window_start(now, seconds)
    stats = windows.request_stats(seconds, now=now)
    assert stats.requests == int(inside.sum())
    assert stats.quantile_ms(0.9) == pytest.approx(
        float(np.quantile(durations[inside], 0.9)) * 1000, rel=0.02
    )
    assert windows.quantile("assignment_latency_seconds", 0.95, seconds, now=now) == (
        pytest.approx(float(np.quantile(durations[inside] / 10, 0.95)), rel=0.02)
    )
    assert windows.counter_total("assignments_total", seconds, now=now) == stats.requests
    assert windows.counter_rate("assignments_total", seconds, now=now) == pytest.approx(
        stats.requests / stats.span_s
    )
    # The covered span is within one slot (fine windows) or one minute (longer ones) of W.
    assert seconds - (5 if seconds <= 300 else 60) <= stats.span_s <= seconds


def test_route_filter_and_route_stats() -> None:
    clock = FakeClock(T0 + 1)
    windows = RollingWindows(clock=clock)
    for status in (200, 200, 500, 404):
        windows.observe_request("GET", "/a", status, 0.010)
    windows.observe_request("POST", "/b", 201, 0.020)
    only_a = windows.request_stats(60, route="GET /a")
    assert (only_a.requests, only_a.errors_5xx, only_a.client_errors_4xx) == (4, 1, 1)
    assert only_a.error_rate == 0.25
    per_route = windows.route_stats(60)
    assert set(per_route) == {"GET /a", "POST /b"}
    assert per_route["POST /b"].p50_ms == pytest.approx(20.0, rel=0.01)


def test_old_slots_expire_as_the_clock_advances() -> None:
    clock = FakeClock(T0 + 1)
    windows = RollingWindows(clock=clock)
    windows.observe_request("GET", "/x", 200, 0.1)
    windows.count("exposures_total", 3)
    windows.observe("flag_evaluation_seconds", 0.002)

    def requests(seconds: int) -> int:
        return windows.request_stats(seconds).requests

    clock.t = T0 + 59
    assert (requests(60), requests(300), requests(3600)) == (1, 1, 1)
    clock.t = T0 + 61
    assert (requests(60), requests(300), requests(3600)) == (0, 1, 1)
    assert windows.counter_total("exposures_total", 60) == 0
    assert windows.counter_total("exposures_total", 300) == 3
    clock.t = T0 + 301
    assert (requests(60), requests(300), requests(3600)) == (0, 0, 1)
    assert windows.quantile("flag_evaluation_seconds", 0.5, 3600) == pytest.approx(0.002, rel=0.01)
    clock.t = T0 + 3601
    assert (requests(60), requests(300), requests(3600)) == (0, 0, 0)
    assert windows.quantile("flag_evaluation_seconds", 0.5, 3600) is None
    snap = windows.snapshot()
    assert snap["windows"]["1h"]["overall"]["p99_ms"] is None
    assert snap["windows"]["1h"]["routes"] == {}


def test_rate_uses_time_since_start_for_a_young_process() -> None:
    clock = FakeClock(T0)
    windows = RollingWindows(clock=clock)
    clock.t = T0 + 10
    for _ in range(20):
        windows.observe_request("GET", "/x", 200, 0.01)
    assert windows.request_stats(60).rate_per_s == pytest.approx(2.0)


def test_route_cap_folds_into_other_and_counts_the_overflow() -> None:
    clock = FakeClock(T0 + 1)
    windows = RollingWindows(clock=clock, max_routes=3)
    for i in range(5):
        for _ in range(2):
            windows.observe_request("GET", f"/r{i}", 200, 0.01)
    clock.t = T0 + 7  # a new slot: the cap is remembered across slots
    windows.observe_request("GET", "/r4", 200, 0.01)
    windows.observe_request("GET", "/r0", 200, 0.01)
    routes = windows.snapshot()["windows"]["1m"]["routes"]
    assert set(routes) == {"GET /r0", "GET /r1", "GET /r2", OTHER_ROUTE}
    assert routes[OTHER_ROUTE]["requests"] == 5
    assert routes["GET /r0"]["requests"] == 3
    assert windows.routes_overflowed == 5
    assert windows.snapshot()["routes_overflowed"] == 5


def test_name_cap_drops_and_counts() -> None:
    windows = RollingWindows(clock=FakeClock(T0 + 1), max_names=2)
    windows.count("a")
    windows.observe("b", 1.0)
    windows.count("c")
    windows.observe("d", 1.0)
    windows.count("a")
    assert windows.names_dropped == 2
    snap = windows.snapshot()["windows"]["1m"]
    assert snap["counters"]["a"]["total"] == 2
    assert set(snap["distributions"]) == {"b"}


def test_completed_minutes_export_and_round_trip() -> None:
    clock = FakeClock(T0)
    windows = RollingWindows(clock=clock)
    for minute in range(3):
        for i in range(10 * (minute + 1)):
            clock.t = T0 + minute * 60 + i
            windows.observe_request("GET", "/x", 500 if i == 0 else 200, 0.05)
            windows.count("conversions_total", 2)
            windows.observe("assignment_latency_seconds", 0.001)
    clock.t = T0 + 150  # inside the third minute: only two minutes are complete
    rollups = windows.completed_minutes(since=0)
    assert [r.minute_start for r in rollups] == [int(T0), int(T0) + 60]
    first = rollups[0]
    assert first.routes["GET /x"].requests == 10
    assert first.routes["GET /x"].status_classes["5xx"] == 1
    assert first.routes["GET /x"].status_classes["2xx"] == 9
    assert first.counters["conversions_total"] == 20
    assert first.routes["GET /x"].latency_sketch().quantile(0.5) == pytest.approx(0.05, rel=0.01)
    restored = MinuteRollup.from_dict(orjson.loads(orjson.dumps(first.to_dict())))
    assert restored == first
    assert windows.completed_minutes(since=T0 + 60) == rollups[1:]
    clock.t = T0 + 185
    assert [r.routes["GET /x"].requests for r in windows.completed_minutes(since=0)] == [10, 20, 30]


def test_no_data_is_lost_when_nobody_reads_for_a_long_time() -> None:
    clock = FakeClock(T0)
    windows = RollingWindows(clock=clock)
    for second in range(0, 20 * 60, 2):  # 20 minutes of writes, no reads: slots get evicted
        clock.t = T0 + second
        windows.observe_request("GET", "/x", 200, 0.01)
    rollups = windows.completed_minutes(since=0)
    assert len(rollups) == 19
    assert all(r.routes["GET /x"].requests == 30 for r in rollups)
    assert windows.request_stats(3600).requests == 600


def test_clock_going_backwards_loses_nothing() -> None:
    clock = FakeClock(T0 + 70)
    windows = RollingWindows(clock=clock)
    windows.observe_request("GET", "/x", 200, 0.01)
    windows.maintain(now=T0 + 130)  # folds the minute of that slot
    clock.t = T0 + 65  # NTP stepped the clock back
    windows.observe_request("GET", "/x", 200, 0.01)
    assert windows.request_stats(3600, now=T0 + 130).requests == 2
    minutes = windows.completed_minutes(since=0, now=T0 + 130)
    assert sum(r.routes["GET /x"].requests for r in minutes) == 2
    assert windows.internal_errors == 0


def test_hot_path_never_raises() -> None:
    calls = itertools.count()

    def clock_that_breaks() -> float:
        if next(calls) > 0:  # fine at construction, broken afterwards
            raise RuntimeError("clock is broken")
        return T0

    windows = RollingWindows(clock=clock_that_breaks)
    windows.observe_request("GET", "/x", 200, 0.01)
    windows.observe("d", 1.0)
    windows.count("c")
    assert windows.internal_errors == 3


def test_bad_read_arguments_raise() -> None:
    windows = RollingWindows(clock=FakeClock(T0))
    with pytest.raises(ValueError, match="window must be"):
        windows.request_stats(7200)
    with pytest.raises(ValueError, match="q must be"):
        windows.quantile("d", 2.0, 60)
    with pytest.raises(ValueError, match="slot_seconds"):
        RollingWindows(slot_seconds=7)


def test_thread_safety_exact_totals() -> None:
    ticks = itertools.count()
    # Every call advances time by 1 ms, so threads race across slot rotations.
    windows = RollingWindows(clock=lambda: T0 + next(ticks) * 0.001)
    threads_n, per_thread = 4, 5_000
    barrier = threading.Barrier(threads_n)

    def work(k: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            windows.observe_request("GET", f"/r{k}", 500 if i % 10 == 0 else 200, 0.01)
            windows.count("exposures_total")
            windows.observe("flag_evaluation_seconds", 0.001)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    total = threads_n * per_thread
    now = T0 + next(ticks) * 0.001
    stats = windows.request_stats(300, now=now)
    assert stats.requests == total
    assert stats.errors_5xx == total // 10
    assert windows.counter_total("exposures_total", 300, now=now) == total
    assert windows.distribution("flag_evaluation_seconds", 300, now=now).count == total
    assert windows.internal_errors == 0
