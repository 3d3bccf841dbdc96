"""Metric sources the in-process evaluator reads: minute prefix sums, live windows, history.

    MinuteStore   complete minutes in memory with prefix sums: any window sum is two lookups,
                  so 3-day burn-rate windows cost the same as 5-minute ones (backtests replay
                  weeks of minutes through it).
    LiveSource    windows <= 1 h from `RollingWindows` (this process, 5 s resolution); longer
                  windows from a `MinuteStore` kept up to date from `MetricHistory`; gauges
                  from a callable returning {series key: value}, read once per evaluation
                  round (`begin_round`).

Why hand-written: no library answers "burn rate over 3 days" from in-process rollups.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from observability.alerting.rules import (
    AlertDefinition,
    BurnRate,
    LatencyAbove,
    Query,
    parse_series_key,
)
from observability.metrics.history import MetricHistory, slow_count
from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import MinuteRollup, RollingWindows

__all__ = ["LiveRound", "LiveSource", "MinuteStore"]

_MINUTE = 60
_GAUGE_STALE_S = 300  # like Prometheus: a series not seen for 5 minutes is gone
_LatencyKey = tuple[float, str | None, str | None, str | None]


def _route_matches(key: str, route: str | None, method: str | None) -> bool:
    m, _, r = key.partition(" ")
    return (route is None or r == route) and (method is None or m == method)


@dataclass
class _Minute:
    minute: int
    routes: dict[str, tuple[int, int]]  # "METHOD route" -> (requests, 5xx)
    counters: dict[str, float]
    slow: dict[_LatencyKey, tuple[float, float]] = field(default_factory=dict)
    rollup: MinuteRollup | None = None  # the sketches; dropped after `raw_retention_s`


def _latency_keys(query: Query) -> Iterable[_LatencyKey]:
    if isinstance(query, BurnRate):
        query = query.sli
    if isinstance(query, LatencyAbove):
        yield (query.threshold_s, query.route, query.method, query.distribution)


class MinuteStore:
    """Complete minutes with lazily built prefix sums; implements `MetricSource`.

    Latency thresholds named by the rules (`prepare`) are counted when a minute arrives; the
    sketches themselves are kept only `raw_retention_s` (quantiles and late thresholds).
    """

    def __init__(
        self, retention_s: int = 3 * 86400 + 3600, raw_retention_s: int = 2 * 3600
    ) -> None:
        self.retention_s = retention_s
        self.raw_retention_s = raw_retention_s
        self._lock = threading.RLock()
        self._minutes: list[int] = []
        self._facts: list[_Minute] = []
        self._cums: dict[tuple[Any, ...], list[float]] = {}
        self._latency: set[_LatencyKey] = set()
        self._gauges: dict[str, tuple[int, float]] = {}

    @property
    def last_minute(self) -> int | None:
        return self._minutes[-1] if self._minutes else None

    def prepare(self, definitions: Iterable[AlertDefinition]) -> None:
        """Learn which latency thresholds the rules ask about (counted on arrival)."""
        with self._lock:
            for d in definitions:
                for clause in d.clauses:
                    for condition in clause:
                        self._latency.update(_latency_keys(condition.expr))

    # -- feeding ------------------------------------------------------------------------
    def add(self, rollup: MinuteRollup, gauges: Mapping[str, float] | None = None) -> None:
        """Append one complete minute (minutes must arrive in order; older ones are ignored)."""
        minute = int(rollup.minute_start)
        with self._lock:
            if gauges:
                self.add_gauges(minute, gauges)
            if self._minutes and minute <= self._minutes[-1]:
                return
            facts = _Minute(
                minute,
                {k: (r.requests, r.status_classes.get("5xx", 0)) for k, r in rollup.routes.items()},
                dict(rollup.counters),
                rollup=rollup,
            )
            for key in self._latency:
                facts.slow[key] = _slow(rollup, key)
            self._minutes.append(minute)
            self._facts.append(facts)
            self._prune(minute)

    def add_gauges(self, minute: float, values: Mapping[str, float]) -> None:
        with self._lock:
            for key, value in values.items():
                self._gauges[key] = (int(minute), float(value))

    def _prune(self, newest: int) -> None:
        raw_limit = newest - self.raw_retention_s
        for facts in reversed(self._facts):
            if facts.minute < raw_limit:
                if facts.rollup is None:
                    break
                facts.rollup = None
        limit = newest - self.retention_s
        # Trim in chunks: slicing every list is O(n), so only once it is worth it.
        if self._minutes[0] < limit - 3600:
            cut = bisect.bisect_left(self._minutes, limit)
            del self._minutes[:cut]
            del self._facts[:cut]
            for key, cum in self._cums.items():
                self._cums[key] = cum[cut:]

    # -- prefix sums ------------------------------------------------------------------------
    def _sum(
        self, key: tuple[Any, ...], fn: Callable[[_Minute], float], window_s: int, now: float
    ) -> float:
        with self._lock:
            cum = self._cums.get(key)
            if cum is None:
                cum = self._cums[key] = [0.0]
            for facts in self._facts[len(cum) - 1 :]:
                cum.append(cum[-1] + fn(facts))
            lo = bisect.bisect_left(self._minutes, now - window_s)
            hi = bisect.bisect_right(self._minutes, now - _MINUTE)
            return cum[hi] - cum[lo] if hi > lo else 0.0

    def _window(self, window_s: int, now: float) -> list[_Minute]:
        with self._lock:
            lo = bisect.bisect_left(self._minutes, now - window_s)
            hi = bisect.bisect_right(self._minutes, now - _MINUTE)
            return self._facts[lo:hi]

    # -- MetricSource -------------------------------------------------------------------
    def request_counts(
        self, window_s: int, now: float, route: str | None, method: str | None
    ) -> tuple[float, float]:
        def requests(f: _Minute) -> float:
            return sum(n for k, (n, _) in f.routes.items() if _route_matches(k, route, method))

        def errors(f: _Minute) -> float:
            return sum(e for k, (_, e) in f.routes.items() if _route_matches(k, route, method))

        return (
            self._sum(("req", route, method), requests, window_s, now),
            self._sum(("5xx", route, method), errors, window_s, now),
        )

    def latency_above(
        self,
        threshold_s: float,
        window_s: int,
        now: float,
        route: str | None,
        method: str | None,
        distribution: str | None,
    ) -> tuple[float, float]:
        key: _LatencyKey = (threshold_s, route, method, distribution)

        def part(f: _Minute, index: int) -> float:
            counts = f.slow.get(key)
            if counts is None:
                counts = _slow(f.rollup, key) if f.rollup is not None else (0.0, 0.0)
                f.slow[key] = counts
            return counts[index]

        return (
            self._sum(("slow", *key), lambda f: part(f, 0), window_s, now),
            self._sum(("obs", *key), lambda f: part(f, 1), window_s, now),
        )

    def latency_quantile(
        self,
        q: float,
        window_s: int,
        now: float,
        route: str | None,
        method: str | None,
        distribution: str | None,
    ) -> float | None:
        merged = QuantileSketch()
        for facts in self._window(window_s, now):
            if facts.rollup is None:
                continue
            for data in _sketches(facts.rollup, route, method, distribution):
                sketch = QuantileSketch.from_dict(data)
                if sketch.compatible(merged):
                    merged.merge(sketch)
                elif merged.count == 0:
                    merged = sketch
        return merged.quantile(q)

    def counter_increase(self, key: str, window_s: int, now: float) -> float | None:
        seen = self._sum(("seen", key), lambda f: 1.0 if key in f.counters else 0.0, window_s, now)
        if seen == 0 and not self._ever_seen(key):
            return None
        return self._sum(("ctr", key), lambda f: f.counters.get(key, 0.0), window_s, now)

    def _ever_seen(self, key: str) -> bool:
        with self._lock:
            cum = self._cums.get(("seen", key))
            return cum is not None and cum[-1] > 0

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        with self._lock:
            return {
                key: value
                for key, (minute, value) in self._gauges.items()
                if parse_series_key(key)[0] == name and minute >= now - _GAUGE_STALE_S - _MINUTE
            }


def _sketches(
    rollup: MinuteRollup, route: str | None, method: str | None, distribution: str | None
) -> list[dict[str, Any]]:
    if distribution is not None:
        data = rollup.distributions.get(distribution)
        return [data] if data is not None else []
    return [r.latency for k, r in rollup.routes.items() if _route_matches(k, route, method)]


def _slow(rollup: MinuteRollup | None, key: _LatencyKey) -> tuple[float, float]:
    """(slow, total) for one minute. HTTP totals are request counts (the sketch may sample)."""
    if rollup is None:
        return (0.0, 0.0)
    threshold, route, method, distribution = key
    if distribution is not None:
        data = rollup.distributions.get(distribution)
        if not data or not data.get("count"):
            return (0.0, 0.0)
        return (float(slow_count(data, threshold)), float(data["count"]))
    slow = total = 0.0
    for k, r in rollup.routes.items():
        if not _route_matches(k, route, method) or not r.requests:
            continue
        count = r.latency.get("count") or 0
        if count:
            slow += r.requests * slow_count(r.latency, threshold) / count
        total += r.requests
    return (slow, total)


class LiveSource:
    """The running process's view: rolling windows for <= 1 h, history beyond, live gauges."""

    def __init__(
        self,
        windows: RollingWindows | None = None,
        *,
        history: MetricHistory | None = None,
        gauges: Callable[[], Mapping[str, float]] | None = None,
        store: MinuteStore | None = None,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.windows = windows
        self.history = history
        self.store = store or MinuteStore()
        self._gauges = gauges
        self._refresh_s = refresh_s
        self._clock = clock
        self._refreshed_at = -float("inf")
        self._lock = threading.Lock()

    def prepare(self, definitions: Iterable[AlertDefinition]) -> None:
        self.store.prepare(definitions)

    def _long(self, now: float) -> MinuteStore:
        if self.history is None:
            return self.store
        with self._lock:
            if self._clock() - self._refreshed_at >= self._refresh_s:
                self._refreshed_at = self._clock()
                last = self.store.last_minute
                start = now - self.store.retention_s if last is None else last + _MINUTE
                for rollup in self.history.rollups(start, now // _MINUTE * _MINUTE):
                    self.store.add(rollup)
        return self.store

    def _short(self, window_s: int) -> bool:
        return self.windows is not None and window_s <= 3600

    def request_counts(
        self, window_s: int, now: float, route: str | None, method: str | None
    ) -> tuple[float, float]:
        if not self._short(window_s):
            return self._long(now).request_counts(window_s, now, route, method)
        assert self.windows is not None
        if route is None and method is None:
            stats = self.windows.request_stats(window_s, now=now)
            return float(stats.requests), float(stats.errors_5xx)
        total = errors = 0.0
        for key, stats in self.windows.route_stats(window_s, now=now).items():
            if _route_matches(key, route, method):
                total += stats.requests
                errors += stats.errors_5xx
        return total, errors

    def _sketch(
        self, window_s: int, now: float, route: str | None, method: str | None, dist: str | None
    ) -> QuantileSketch:
        assert self.windows is not None
        if dist is not None:
            return self.windows.distribution(dist, window_s, now=now)
        if route is None and method is None:
            return self.windows.request_stats(window_s, now=now).latency
        merged: QuantileSketch | None = None
        for key, stats in self.windows.route_stats(window_s, now=now).items():
            if _route_matches(key, route, method):
                if merged is None:
                    merged = stats.latency.copy()
                else:
                    merged.merge(stats.latency)
        return merged or QuantileSketch()

    def latency_above(
        self,
        threshold_s: float,
        window_s: int,
        now: float,
        route: str | None,
        method: str | None,
        distribution: str | None,
    ) -> tuple[float, float]:
        if not self._short(window_s):
            return self._long(now).latency_above(
                threshold_s, window_s, now, route, method, distribution
            )
        data = self._sketch(window_s, now, route, method, distribution).to_dict()
        return float(slow_count(data, threshold_s)), float(data["count"])

    def latency_quantile(
        self,
        q: float,
        window_s: int,
        now: float,
        route: str | None,
        method: str | None,
        distribution: str | None,
    ) -> float | None:
        if not self._short(window_s):
            return self._long(now).latency_quantile(q, window_s, now, route, method, distribution)
        return self._sketch(window_s, now, route, method, distribution).quantile(q)

    def counter_increase(self, key: str, window_s: int, now: float) -> float | None:
        if not self._short(window_s):
            return self._long(now).counter_increase(key, window_s, now)
        assert self.windows is not None
        return self.windows.counter_total(key, window_s, now=now)

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        if self._gauges is None:
            return self.store.gauge_values(name, now)
        return _series_of(self._gauges(), name)

    def begin_round(self) -> LiveRound:
        """This source for one evaluation round: every gauge rule of the round shares one
        collection of the gauges (the evaluator calls this at the start of each round)."""
        return LiveRound(self, self._gauges)


def _series_of(values: Mapping[str, float], name: str) -> dict[str, float]:
    return {k: v for k, v in values.items() if parse_series_key(k)[0] == name}


class LiveRound:
    """A `LiveSource` for one evaluation round; implements `MetricSource`.

    Windows are read from the live source as usual. The gauges callable runs at most once per
    round: the platform's gauges query the database and ping its dependencies, so calling it
    once per gauge rule made a round take seconds when the database was slow. It runs on the
    first gauge read (a round without gauge rules costs nothing); a failure is kept and raised
    to every gauge rule of the round, without calling again.
    """

    def __init__(self, live: LiveSource, collect: Callable[[], Mapping[str, float]] | None) -> None:
        self._live = live
        self._collect = collect
        self._gauges: Mapping[str, float] | None = None
        self._error: Exception | None = None

    def request_counts(
        self, window_s: int, now: float, route: str | None, method: str | None
    ) -> tuple[float, float]:
        return self._live.request_counts(window_s, now, route, method)

    def latency_above(
        self,
        threshold_s: float,
        window_s: int,
        now: float,
        route: str | None,
        method: str | None,
        distribution: str | None,
    ) -> tuple[float, float]:
        return self._live.latency_above(threshold_s, window_s, now, route, method, distribution)

    def latency_quantile(
        self,
        q: float,
        window_s: int,
        now: float,
        route: str | None,
        method: str | None,
        distribution: str | None,
    ) -> float | None:
        return self._live.latency_quantile(q, window_s, now, route, method, distribution)

    def counter_increase(self, key: str, window_s: int, now: float) -> float | None:
        return self._live.counter_increase(key, window_s, now)

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        if self._collect is None:
            return self._live.store.gauge_values(name, now)
        if self._error is not None:
            raise self._error
        if self._gauges is None:
            try:
                self._gauges = dict(self._collect())
            except Exception as exc:
                self._error = exc
                raise
        return _series_of(self._gauges, name)
