"""What the evaluator reads: the `MetricSource` protocol, its result types, and the timeline of
gauge readings the sources share.

A source answers questions about a window of `window_s` seconds ending at `now`:

    request_counts(window_s, now, where)     requests, 4xx and 5xx (HTTP, `where` on method/route)
    latency_above(threshold_s, ...)          (observations slower than it, all observations)
    latency_sketch(window_s, now, ...)       the merged latency sketch (quantiles)
    counter_totals(name, window_s, now)      every series of a counter with its increase
    gauge_values(name, now)                  the latest value of every series (stale after 5 min)
    reading_rates(name, window_s, now)       per-second rates of cumulative values read as gauges
    route_totals(window_s, now)              per-route requests, errors and latency (tables)

Two sources implement it: `MinuteStore` (complete minutes, or buckets of a panel's step, with
prefix sums) and `LiveSource` (the rolling windows for the live edge, a `MinuteStore` behind
them for the past and for windows over an hour).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from observability.metrics.sketch import QuantileSketch
from observability.query.model import Where, parse_series_key

__all__ = [
    "GAUGE_STALE_S",
    "CounterTotals",
    "GaugeTimeline",
    "MetricSource",
    "RequestCounts",
    "RouteTotals",
    "name_of",
    "route_matches",
]

GAUGE_STALE_S = 300  # like Prometheus: a series not seen for 5 minutes is gone


class RequestCounts(NamedTuple):
    requests: float
    errors_4xx: float
    errors_5xx: float
    span_s: float  # seconds the window actually covers (rates divide by it)


class CounterTotals(NamedTuple):
    totals: dict[str, float]  # series key -> increase over the window (0 when quiet)
    span_s: float


class RouteTotals(NamedTuple):
    requests: float
    errors_4xx: float
    errors_5xx: float
    rate_per_s: float
    latency: QuantileSketch


class MetricSource(Protocol):
    """The reads the evaluator makes; windows end at `now` and look back `window_s`."""

    def request_counts(self, window_s: int, now: float, where: Where) -> RequestCounts: ...

    def latency_above(
        self, threshold_s: float, window_s: int, now: float, where: Where, distribution: str | None
    ) -> tuple[float, float]: ...

    def latency_sketch(
        self, window_s: int, now: float, where: Where, distribution: str | None
    ) -> QuantileSketch: ...

    def counter_totals(self, name: str, window_s: int, now: float) -> CounterTotals: ...

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]: ...

    def reading_rates(self, name: str, window_s: int, now: float) -> Mapping[str, float]: ...

    def route_totals(self, window_s: int, now: float) -> Mapping[str, RouteTotals]: ...


def route_matches(key: str, where: Where) -> bool:
    """Does a windows route key ("GET /x") match `where` (method and/or route)? A key
    without a method ("__other__", the overflow bucket) is a route of its own."""
    method, sep, route = key.partition(" ")
    if not sep:
        method, route = "", key
    wanted_method = where.get("method")
    wanted_route = where.get("route")
    return (wanted_method is None or wanted_method == method) and (
        wanted_route is None or wanted_route == route
    )


@functools.lru_cache(maxsize=8192)
def name_of(key: str) -> str | None:
    """The metric name of a series key (cached: keys repeat every minute)."""
    parsed = parse_series_key(key)
    return None if parsed is None else parsed[0]


class GaugeTimeline:
    """Gauge readings over time ({series key: value} per reading), oldest first, grouped by
    metric name so a read looks at one metric's series only.

    Answers "the latest value of each series at t" (a series older than `stale_s` is gone) and
    "the per-second rate of a cumulative value between t - window and t"."""

    def __init__(self, stale_s: float = GAUGE_STALE_S) -> None:
        self.stale_s = stale_s
        self._times: list[float] = []
        self._values: list[dict[str, dict[str, float]]] = []  # name -> {series key: value}

    def __len__(self) -> int:
        return len(self._times)

    @property
    def first(self) -> float | None:
        return self._times[0] if self._times else None

    @property
    def last(self) -> float | None:
        return self._times[-1] if self._times else None

    @staticmethod
    def _grouped(values: Mapping[str, float]) -> dict[str, dict[str, float]]:
        grouped: dict[str, dict[str, float]] = {}
        for key, value in values.items():
            name = name_of(key)
            if name is not None:
                grouped.setdefault(name, {})[key] = float(value)
        return grouped

    @staticmethod
    def _merge(into: dict[str, dict[str, float]], more: dict[str, dict[str, float]]) -> None:
        for name, series in more.items():
            into.setdefault(name, {}).update(series)

    def replace_last(self, t: float, values: Mapping[str, float]) -> None:
        """Replace the newest reading (readings closer than a step keep only the freshest)."""
        self._times[-1] = t
        self._values[-1] = self._grouped(values)

    def between(self, start: float, end: float) -> list[tuple[float, dict[str, float]]]:
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        return [
            (t, {k: v for series in grouped.values() for k, v in series.items()})
            for t, grouped in zip(self._times[lo:hi], self._values[lo:hi], strict=True)
        ]

    def add(self, t: float, values: Mapping[str, float]) -> None:
        reading = self._grouped(values)
        if self._times and t == self._times[-1]:
            self._merge(self._values[-1], reading)
        elif not self._times or t > self._times[-1]:
            self._times.append(t)
            self._values.append(reading)
        else:  # late: keep the timeline sorted
            i = bisect.bisect_left(self._times, t)
            if i < len(self._times) and self._times[i] == t:
                self._merge(self._values[i], reading)
            else:
                self._times.insert(i, t)
                self._values.insert(i, reading)

    def prune(self, before: float) -> None:
        cut = bisect.bisect_left(self._times, before)
        if cut:
            del self._times[:cut]
            del self._values[:cut]

    def _latest_with_time(self, name: str, now: float) -> dict[str, tuple[float, float]]:
        found: dict[str, tuple[float, float]] = {}
        i = bisect.bisect_right(self._times, now) - 1
        while i >= 0 and self._times[i] >= now - self.stale_s:
            for key, value in self._values[i].get(name, {}).items():
                if key not in found:
                    found[key] = (self._times[i], value)
            i -= 1
        return found

    def latest(self, name: str, now: float) -> dict[str, float]:
        """The latest value of every series of `name` at or before `now`, not stale."""
        return {key: value for key, (_, value) in self._latest_with_time(name, now).items()}

    def rates(self, name: str, window_s: int, now: float) -> dict[str, float]:
        """Per-second increase of cumulative series over the window: from the reading at its
        start (or the first one inside it) to the latest; a decrease (a restart) gives no
        value, nor does a single reading."""
        after = self._latest_with_time(name, now)
        before = self._latest_with_time(name, now - window_s)
        missing = set(after) - set(before)
        i = bisect.bisect_right(self._times, now - window_s)
        while missing and i < len(self._times) and self._times[i] <= now:
            series = self._values[i].get(name, {})
            for key in [k for k in missing if k in series]:
                before[key] = (self._times[i], series[key])
                missing.discard(key)
            i += 1
        out: dict[str, float] = {}
        for key, (t1, v1) in after.items():
            if key not in before:
                continue
            t0, v0 = before[key]
            if t1 > t0 and v1 >= v0:
                out[key] = (v1 - v0) / (t1 - t0)
        return out
