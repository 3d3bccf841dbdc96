"""Complete minutes, or buckets of a panel's step, with prefix sums: a `MetricSource`.

Any window sum is two lookups in a prefix-sum list built lazily per question, so 3-day
burn-rate windows cost the same as 5-minute ones (backtests replay weeks of minutes through
it). A window of `W` seconds ending at `now` covers the buckets that ended within
`(now - W, now]`: the latest complete ones, lagging `now` by less than a bucket; a store
answers windows that are multiples of its resolution.

Latency thresholds named in advance (`prepare`) are counted as each minute arrives; the
sketches themselves are kept `raw_retention_s` (quantiles, late thresholds, route tables).

Why hand-written: no library answers "burn rate over 3 days" from in-process rollups.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from observability.metrics.history import slow_count
from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import MinuteRollup
from observability.query.model import BurnRate, LatencyAbove, Where, latency_series
from observability.query.source import (
    CounterTotals,
    GaugeTimeline,
    RequestCounts,
    RouteTotals,
    name_of,
    route_matches,
)

__all__ = ["MinuteStore"]

_MINUTE = 60
_WhereKey = tuple[tuple[str, str], ...]
_LatencyKey = tuple[float, _WhereKey, str | None]
_Sketch = dict[str, Any] | QuantileSketch  # a minute's dict, or a merged bucket's sketch


def _where_key(where: Where) -> _WhereKey:
    return tuple(sorted(where.items()))


def _sketch(value: _Sketch) -> QuantileSketch:
    return value if isinstance(value, QuantileSketch) else QuantileSketch.from_dict(value)


def _as_dict(value: _Sketch) -> dict[str, Any]:
    return value.to_dict() if isinstance(value, QuantileSketch) else value


def _merge_into(store: dict[str, _Sketch], key: str, data: dict[str, Any]) -> None:
    current = store.get(key)
    if current is None:
        store[key] = data
        return
    merged = QuantileSketch.from_dict(current) if isinstance(current, dict) else current
    incoming = QuantileSketch.from_dict(data)
    if merged.compatible(incoming):
        merged.merge(incoming)
    store[key] = merged


class _Bucket:
    """One minute (or one step) of facts."""

    __slots__ = ("counters", "dists", "last_minute", "routes", "sketches", "slow", "start")

    def __init__(self, start: int, rollup: MinuteRollup) -> None:
        self.start = start
        self.last_minute = int(rollup.minute_start)
        self.routes: dict[str, tuple[int, int, int]] = {
            k: (r.requests, r.status_classes.get("4xx", 0), r.status_classes.get("5xx", 0))
            for k, r in rollup.routes.items()
        }
        self.counters: dict[str, float] = dict(rollup.counters)
        self.slow: dict[_LatencyKey, tuple[float, float]] = {}
        # Sketches until `raw_retention_s`; None once dropped.
        self.sketches: dict[str, _Sketch] | None = {k: r.latency for k, r in rollup.routes.items()}
        self.dists: dict[str, _Sketch] | None = dict(rollup.distributions)

    def merge(self, rollup: MinuteRollup) -> None:
        self.last_minute = int(rollup.minute_start)
        for key, r in rollup.routes.items():
            n, e4, e5 = self.routes.get(key, (0, 0, 0))
            classes = r.status_classes
            self.routes[key] = (
                n + r.requests,
                e4 + classes.get("4xx", 0),
                e5 + classes.get("5xx", 0),
            )
            if self.sketches is not None:
                _merge_into(self.sketches, key, r.latency)
        for name, value in rollup.counters.items():
            self.counters[name] = self.counters.get(name, 0.0) + value
        if self.dists is not None:
            for name, data in rollup.distributions.items():
                _merge_into(self.dists, name, data)

    def slow_counts(self, key: _LatencyKey) -> tuple[float, float]:
        """(slow, total) from the bucket's sketches; HTTP totals are request counts (the sketch
        may sample)."""
        threshold, where_items, distribution = key
        where = dict(where_items)
        if distribution is not None:
            data = (self.dists or {}).get(distribution)
            if data is None:
                return (0.0, 0.0)
            sketch = _as_dict(data)
            if not sketch.get("count"):
                return (0.0, 0.0)
            return (float(slow_count(sketch, threshold)), float(sketch["count"]))
        slow = total = 0.0
        for route, (requests, _, _) in self.routes.items():
            if not requests or not route_matches(route, where):
                continue
            data = (self.sketches or {}).get(route)
            if data is not None:
                sketch = _as_dict(data)
                count = sketch.get("count") or 0
                if count:
                    slow += requests * slow_count(sketch, threshold) / count
            total += requests
        return (slow, total)


def _counter(key: str) -> Callable[[_Bucket], tuple[float, ...]]:
    def fn(facts: _Bucket) -> tuple[float, ...]:
        return (facts.counters.get(key, 0.0),)

    return fn


def _latency_keys(term: object) -> Iterable[_LatencyKey]:
    if isinstance(term, BurnRate):
        term = term.sli
    if isinstance(term, LatencyAbove):
        where, distribution = latency_series(term)
        yield (term.threshold_s, _where_key(where), distribution)


class MinuteStore:
    """Buckets of `resolution_s` seconds (a minute by default) fed with complete minutes in
    order; implements `MetricSource`. Buckets start at `anchor + k * resolution_s`. A store
    of sub-minute buckets is fed with rollups of that width (`minute_start` = their start)."""

    def __init__(
        self,
        retention_s: float = 3 * 86400 + 3600,
        raw_retention_s: float = 2 * 3600,
        *,
        resolution_s: int = _MINUTE,
        anchor: int = 0,
    ) -> None:
        # Sub-minute buckets (a divisor of 60) hold the fleet's recent rollups (10 s).
        if resolution_s <= 0 or (resolution_s % _MINUTE and _MINUTE % resolution_s):
            raise ValueError("resolution_s must be a divisor or a multiple of 60")
        self.retention_s = retention_s
        self.raw_retention_s = raw_retention_s
        self.resolution_s = resolution_s
        self.anchor = int(anchor)
        self.gauges = GaugeTimeline(stale_s=300 + resolution_s)
        self._lock = threading.RLock()
        self._starts: list[int] = []
        self._facts: list[_Bucket] = []
        self._cums: dict[tuple[Any, ...], list[tuple[float, ...]]] = {}
        self._latency: set[_LatencyKey] = set()
        self._counter_names: dict[str, set[str]] = {}  # name -> series keys ever seen

    @property
    def last_minute(self) -> int | None:
        return self._facts[-1].last_minute if self._facts else None

    def prepare(self, terms: Iterable[object]) -> None:
        """Learn which latency thresholds the terms ask about (counted as minutes arrive)."""
        with self._lock:
            for term in terms:
                self._latency.update(_latency_keys(term))

    def _bucket_start(self, minute: int) -> int:
        return self.anchor + (minute - self.anchor) // self.resolution_s * self.resolution_s

    # -- feeding ------------------------------------------------------------------------
    def add(self, rollup: MinuteRollup, gauges: Mapping[str, float] | None = None) -> None:
        """Append one complete minute. Minutes arrive in order; a repeated or older one is
        ignored (its gauges are still kept)."""
        minute = int(rollup.minute_start)
        with self._lock:
            if gauges:
                self.add_gauges(minute, gauges)
            for series in rollup.counters:
                name = name_of(series)
                if name is not None:
                    self._counter_names.setdefault(name, set()).add(series)
            start = self._bucket_start(minute)
            last = self._facts[-1] if self._facts else None
            if last is not None and (minute <= last.last_minute or start < last.start):
                return
            if last is not None and last.start == start:
                minute_only = _Bucket(start, rollup)
                counted: dict[_LatencyKey, tuple[float, float]] = {}
                for key in self._latency:
                    s, t = last.slow.get(key, (0.0, 0.0))
                    ds, dt = minute_only.slow_counts(key)
                    counted[key] = (s + ds, t + dt)
                last.merge(rollup)
                last.slow = counted  # thresholds counted lazily are recounted when asked
                for cum in self._cums.values():  # the last bucket changed: rebuild its sums
                    if len(cum) > len(self._facts):
                        cum.pop()
            else:
                bucket = _Bucket(start, rollup)
                for key in self._latency:
                    bucket.slow[key] = bucket.slow_counts(key)
                self._starts.append(start)
                self._facts.append(bucket)
            self._prune(minute)

    def add_gauges(self, t: float, values: Mapping[str, float]) -> None:
        with self._lock:
            self.gauges.add(float(t), values)

    def _prune(self, newest: int) -> None:
        raw_limit = newest - self.raw_retention_s
        for facts in reversed(self._facts):
            if facts.start + self.resolution_s <= raw_limit:
                if facts.sketches is None:
                    break
                facts.sketches = None
                facts.dists = None
        limit = newest - self.retention_s
        # Trim in chunks: slicing every list is O(n), so only once it is worth it.
        if self._starts and self._starts[0] < limit - 3600:
            cut = bisect.bisect_left(self._starts, limit)
            del self._starts[:cut]
            del self._facts[:cut]
            for key, cum in self._cums.items():
                self._cums[key] = cum[cut:]
            self.gauges.prune(limit)

    # -- prefix sums --------------------------------------------------------------------
    def _bounds(self, window_s: int, now: float) -> tuple[int, int]:
        # The buckets that ended within (now - window, now]: the latest complete ones, so a
        # 60 s window read half a minute after a boundary still holds a whole minute.
        lo = bisect.bisect_right(self._starts, now - window_s - self.resolution_s)
        hi = bisect.bisect_right(self._starts, now - self.resolution_s)
        return lo, hi

    def _sums(
        self,
        key: tuple[Any, ...],
        fn: Callable[[_Bucket], tuple[float, ...]],
        width: int,
        window_s: int,
        now: float,
    ) -> tuple[float, ...]:
        """Sums of `fn`'s `width` values over the window's buckets, from prefix sums kept per
        `key` (built up to the newest bucket on each call)."""
        with self._lock:
            cum = self._cums.get(key)
            if cum is None:
                cum = self._cums[key] = [(0.0,) * width]
            last = cum[-1]
            for facts in self._facts[len(cum) - 1 :]:
                last = tuple(a + b for a, b in zip(last, fn(facts), strict=True))
                cum.append(last)
            lo, hi = self._bounds(window_s, now)
            if hi <= lo:
                return (0.0,) * width
            return tuple(b - a for a, b in zip(cum[lo], cum[hi], strict=True))

    def _window(self, window_s: int, now: float) -> list[_Bucket]:
        with self._lock:
            lo, hi = self._bounds(window_s, now)
            return self._facts[lo:hi]

    # -- MetricSource -------------------------------------------------------------------
    def request_counts(self, window_s: int, now: float, where: Where) -> RequestCounts:
        def counts(f: _Bucket) -> tuple[float, ...]:
            n = e4 = e5 = 0
            for key, (requests, client, server) in f.routes.items():
                if route_matches(key, where):
                    n += requests
                    e4 += client
                    e5 += server
            return (float(n), float(e4), float(e5))

        n, e4, e5 = self._sums(("req", _where_key(where)), counts, 3, window_s, now)
        return RequestCounts(n, e4, e5, float(window_s))

    def latency_above(
        self, threshold_s: float, window_s: int, now: float, where: Where, distribution: str | None
    ) -> tuple[float, float]:
        key: _LatencyKey = (threshold_s, _where_key(where), distribution)

        def counts(f: _Bucket) -> tuple[float, ...]:
            found = f.slow.get(key)
            if found is None:
                found = f.slow_counts(key) if f.sketches is not None else (0.0, 0.0)
                f.slow[key] = found
            return found

        slow, total = self._sums(("slow", *key), counts, 2, window_s, now)
        return slow, total

    def latency_sketch(
        self, window_s: int, now: float, where: Where, distribution: str | None
    ) -> QuantileSketch:
        merged = QuantileSketch()
        for facts in self._window(window_s, now):
            if distribution is not None:
                parts = [v for k, v in (facts.dists or {}).items() if k == distribution]
            else:
                parts = [v for k, v in (facts.sketches or {}).items() if route_matches(k, where)]
            for data in parts:
                sketch = _sketch(data)
                if sketch.compatible(merged):
                    merged.merge(sketch)
                elif merged.count == 0:
                    merged = sketch.copy()
        return merged

    def counter_totals(self, name: str, window_s: int, now: float) -> CounterTotals:
        with self._lock:
            keys = sorted(self._counter_names.get(name, ()))
        totals = {key: self._sums(("ctr", key), _counter(key), 1, window_s, now)[0] for key in keys}
        return CounterTotals(totals, float(window_s))

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        with self._lock:
            return self.gauges.latest(name, now)

    def reading_rates(self, name: str, window_s: int, now: float) -> Mapping[str, float]:
        with self._lock:
            return self.gauges.rates(name, window_s, now)

    def route_totals(self, window_s: int, now: float) -> Mapping[str, RouteTotals]:
        counts: dict[str, list[float]] = {}
        sketches: dict[str, QuantileSketch] = {}
        for facts in self._window(window_s, now):
            for key, (n, e4, e5) in facts.routes.items():
                entry = counts.setdefault(key, [0.0, 0.0, 0.0])
                entry[0] += n
                entry[1] += e4
                entry[2] += e5
                data = (facts.sketches or {}).get(key)
                if data is None:
                    continue
                sketch = _sketch(data)
                if key not in sketches:
                    sketches[key] = sketch.copy()
                elif sketches[key].compatible(sketch):
                    sketches[key].merge(sketch)
        return {
            key: RouteTotals(n, e4, e5, n / window_s, sketches.get(key) or QuantileSketch())
            for key, (n, e4, e5) in sorted(counts.items())
        }
