"""The running process as a `MetricSource`: rolling windows at the live edge, minutes behind
them, gauges read live, and range views for panels.

    LiveSource   a window the rolling windows still hold (up to an hour, ending now or a few
                 minutes ago: their 5 s slots last 6 minutes, their minutes 70) is read from
                 them, live partial minute included. Anything else (longer windows, the past)
                 comes from a `MinuteStore` kept up to date from `MetricHistory` every
                 `refresh_s`, or, without a history, from the windows' own complete minutes.
                 Gauges come from a callable returning {series key: value}; every reading is
                 remembered for an hour (curves, rates of cumulative values).
    LiveRound    the source for one evaluation round: the gauges callable runs at most once
                 (the platform's gauges query the database and ping its dependencies).
    RangeView    one time range cut into a panel's steps, as a `MinuteStore` whose buckets are
                 the steps: from the windows' minutes up to an hour (a live point may follow),
                 from the history beyond.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from observability.metrics.history import MetricHistory, slow_count
from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import RollingWindows
from observability.query.minutes import MinuteStore
from observability.query.model import Where, parse_series_key, route_key, series_key
from observability.query.source import (
    CounterTotals,
    GaugeTimeline,
    RequestCounts,
    RouteTotals,
    name_of,
    route_matches,
)

__all__ = ["LiveRound", "LiveSource", "RangeView"]

_MINUTE = 60
_WINDOWS_MAX_S = 3600
_FINE_S = 355  # 5 s slots are kept 6 minutes: a short window must start within them
_ROLLUP_S = 69 * 60  # minute rollups are kept 70 minutes
_HISTORY_CHUNK_S = 6 * 3600  # history is read in chunks: memory stays bounded on 7-day ranges
_VIEW_CACHE = 4


@dataclass
class RangeView:
    """A range cut into `step` buckets ending at `end` (a minute boundary)."""

    store: MinuteStore
    start: float
    end: float
    step: int
    live_edge: bool  # from this process's windows: a live point at "now" belongs after it
    notes: list[str] = field(default_factory=list)

    def times(self) -> list[float]:
        """The end of every step, oldest first (a step's value covers the step before it)."""
        count = max(0, round((self.end - self.start) / self.step))
        return [self.start + self.step * (k + 1) for k in range(count)]


class LiveSource:
    """The running process's view; implements `MetricSource`."""

    def __init__(
        self,
        windows: RollingWindows | None = None,
        *,
        history: MetricHistory | None = None,
        gauges: Callable[[], Mapping[str, float]] | None = None,
        store: MinuteStore | None = None,
        refresh_s: float = 30.0,
        clock: Callable[[], float] | None = None,
        instance: str | None = None,
        gauge_interval_s: float = 5.0,
        memory_s: float = _WINDOWS_MAX_S + 120.0,
    ) -> None:
        self.windows = windows
        self.history = history
        self.store = store or MinuteStore()
        self.instance = instance  # added to gauge series read live (as a scrape would)
        self.readings = GaugeTimeline()
        self.gauge_errors = 0
        self._gauges = gauges
        self._refresh_s = refresh_s
        self._clock = clock or (windows.clock if windows is not None else time.time)
        self._gauge_interval_s = gauge_interval_s
        self._memory_s = memory_s
        self._refreshed_at = -math.inf
        self._step_started: float | None = None  # when the latest reading's step began
        self._lock = threading.Lock()
        # Refreshing from the history reads a database: under a lock of its own, so reading
        # remembered gauges never waits behind a slow store.
        self._refresh_lock = threading.Lock()
        self._views: dict[tuple[int, int, int], tuple[float, RangeView]] = {}

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def prepare(self, terms: object) -> None:
        """Latency thresholds the rules ask about: counted as minutes reach the store."""
        self.store.prepare(terms)  # type: ignore[arg-type]

    # -- which data answers a window ------------------------------------------------------
    def _live(self, window_s: int, now: float) -> bool:
        if self.windows is None or window_s > _WINDOWS_MAX_S:
            return False
        current = self._clock()
        if now > current + 1.0:
            return False
        horizon = _FINE_S if window_s <= 300 else _ROLLUP_S
        return now - window_s >= current - horizon

    def _past(self) -> MinuteStore:
        with self._refresh_lock:
            current = self._clock()
            if current - self._refreshed_at >= self._refresh_s:
                self._refreshed_at = current
                self._refresh(current)
        return self.store

    def _refresh(self, current: float) -> None:
        until = current // _MINUTE * _MINUTE
        last = self.store.last_minute
        start = until - self.store.retention_s if last is None else last + _MINUTE
        if self.history is not None:
            for lo in _chunks(start, until):
                hi = min(lo + _HISTORY_CHUNK_S, until)
                for rollup in self.history.rollups(lo, hi):
                    self.store.add(rollup)
                for minute, values in sorted(self.history.gauges(lo, hi).items()):
                    self.store.add_gauges(minute, values)
        elif self.windows is not None:
            for rollup in self.windows.completed_minutes(since=start, now=current):
                self.store.add(rollup)

    # -- requests and latency -------------------------------------------------------------
    def request_counts(self, window_s: int, now: float, where: Where) -> RequestCounts:
        if not self._live(window_s, now):
            return self._past().request_counts(window_s, now, where)
        assert self.windows is not None
        exact = route_key(where)
        if not where or exact is not None:
            s = self.windows.request_stats(window_s, route=exact, now=now)
            return RequestCounts(s.requests, s.client_errors_4xx, s.errors_5xx, s.span_s)
        n = e4 = e5 = 0.0
        span = float(window_s)
        for key, s in self.windows.route_stats(window_s, now=now).items():
            span = s.span_s
            if route_matches(key, where):
                n += s.requests
                e4 += s.client_errors_4xx
                e5 += s.errors_5xx
        return RequestCounts(n, e4, e5, span)

    def _sketch(
        self, window_s: int, now: float, where: Where, distribution: str | None
    ) -> QuantileSketch:
        assert self.windows is not None
        if distribution is not None:
            return self.windows.distribution(distribution, window_s, now=now)
        exact = route_key(where)
        if not where or exact is not None:
            return self.windows.request_stats(window_s, route=exact, now=now).latency
        merged = QuantileSketch()
        for key, s in self.windows.route_stats(window_s, now=now).items():
            if route_matches(key, where) and s.latency.compatible(merged):
                merged.merge(s.latency)
        return merged

    def latency_above(
        self, threshold_s: float, window_s: int, now: float, where: Where, distribution: str | None
    ) -> tuple[float, float]:
        if not self._live(window_s, now):
            return self._past().latency_above(threshold_s, window_s, now, where, distribution)
        data = self._sketch(window_s, now, where, distribution).to_dict()
        return float(slow_count(data, threshold_s)), float(data["count"])

    def latency_sketch(
        self, window_s: int, now: float, where: Where, distribution: str | None
    ) -> QuantileSketch:
        if not self._live(window_s, now):
            return self._past().latency_sketch(window_s, now, where, distribution)
        return self._sketch(window_s, now, where, distribution)

    def route_totals(self, window_s: int, now: float) -> Mapping[str, RouteTotals]:
        if not self._live(window_s, now):
            return self._past().route_totals(window_s, now)
        assert self.windows is not None
        return {
            key: RouteTotals(s.requests, s.client_errors_4xx, s.errors_5xx, s.rate_per_s, s.latency)
            for key, s in self.windows.route_stats(window_s, now=now).items()
        }

    # -- counters and gauges --------------------------------------------------------------
    def counter_totals(self, name: str, window_s: int, now: float) -> CounterTotals:
        if not self._live(window_s, now):
            return self._past().counter_totals(name, window_s, now)
        assert self.windows is not None
        totals, span = self.windows.counter_totals(window_s, now=now)
        return CounterTotals({k: v for k, v in totals.items() if name_of(k) == name}, span)

    def _is_now(self, now: float) -> bool:
        return now >= self._clock() - 1.0

    def read_gauges(self) -> dict[str, float]:
        """Call the gauges callable once and remember the reading (raises what it raises)."""
        if self._gauges is None:
            return {}
        values = self._with_instance({k: float(v) for k, v in self._gauges().items()})
        self._remember(self._clock(), values)
        return values

    def sample_gauges(self) -> dict[str, float]:
        """`read_gauges`, but a failure is counted and gives {} (a page must not break)."""
        try:
            return self.read_gauges()
        except Exception:  # a broken collector costs the gauge panels, not the caller
            self.gauge_errors += 1
            return {}

    def _remember(self, t: float, values: Mapping[str, float]) -> None:
        with self._lock:
            # At most one reading per step, the freshest. The step starts when its reading was
            # added: measured from the last (replaced) reading instead, reads closer together
            # than a step (a dashboard refreshing every 2 s) would replace one reading forever.
            start = self._step_started
            if start is not None and 0 <= t - start < self._gauge_interval_s:
                self.readings.replace_last(t, values)
            else:
                self.readings.add(t, values)
                self._step_started = t
            self.readings.prune(t - self._memory_s)

    def _with_instance(self, values: dict[str, float]) -> dict[str, float]:
        if self.instance is None:
            return values
        out: dict[str, float] = {}
        for key, value in values.items():
            parsed = parse_series_key(key)
            if parsed is None or "instance" in parsed[1]:
                out[key] = value
            else:
                out[series_key(parsed[0], {**parsed[1], "instance": self.instance})] = value
        return out

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        if self._gauges is not None and self._is_now(now):
            return _series_of(self.read_gauges(), name)
        return self._remembered_or_stored(name, now)

    def _remembered_or_stored(self, name: str, now: float) -> Mapping[str, float]:
        with self._lock:
            first = self.readings.first
            if first is not None and first <= now:
                return self.readings.latest(name, now)
        return self._past().gauge_values(name, now)

    def remembered(self, name: str, now: float) -> dict[str, float]:
        """The latest remembered reading of every series of `name` at or before `now`: memory
        only, never a fresh read of the gauges nor the store (incident evidence while a
        dependency the gauges ping is slow)."""
        with self._lock:
            return self.readings.latest(name, now)

    def reading_rates(self, name: str, window_s: int, now: float) -> Mapping[str, float]:
        # The remembered readings when two of them fall in the window (a process up for less
        # than the window still has a rate), else the stored minutes.
        with self._lock:
            rates = self.readings.rates(name, window_s, now)
        if rates or self.history is None:
            return rates
        return self._past().reading_rates(name, window_s, now)

    def begin_round(self, *, read_now: bool = False) -> LiveRound:
        """This source for one evaluation round: the gauges are read at most once (lazily,
        or at once with `read_now`: a failure is then counted and kept for the round)."""
        round_ = LiveRound(self)
        if read_now and self._gauges is not None:
            try:
                round_._values = self.read_gauges()
            except Exception as exc:  # every gauge read of the round sees it
                self.gauge_errors += 1
                round_._error = exc
        return round_

    # -- range views ----------------------------------------------------------------------
    def view(self, range_s: int, step_s: int, now: float | None = None) -> RangeView:
        """`range_s` up to the last complete minute, in buckets of `step_s` (both multiples
        of 60). Up to an hour from the windows (this process); beyond from the history (every
        instance); without a history, the windows' last hour and a note saying so."""
        now = self._clock() if now is None else now
        end = int(now // _MINUTE * _MINUTE)
        key = (range_s, step_s, end)
        with self._lock:
            cached = self._views.get(key)
            if cached is not None and self._clock() - cached[0] < self._refresh_s:
                return cached[1]
        store = MinuteStore(math.inf, math.inf, resolution_s=step_s, anchor=end)
        start = end - range_s
        notes: list[str] = []
        live_edge = False
        if self.windows is not None and (range_s <= _WINDOWS_MAX_S or self.history is None):
            if range_s > _WINDOWS_MAX_S:
                notes.append("no history store: showing the last hour")
            for rollup in self.windows.completed_minutes(since=start, now=now):
                store.add(rollup)
            with self._lock:
                for t, values in self.readings.between(start - 360, now):
                    store.add_gauges(t, values)
            live_edge = True
        elif self.history is not None:
            for lo in _chunks(start, end):
                hi = min(lo + _HISTORY_CHUNK_S, end)
                for rollup in self.history.rollups(lo, hi):
                    store.add(rollup)
            for minute, values in sorted(self.history.gauges(start - 360, end).items()):
                store.add_gauges(minute, values)
        else:
            notes.append("no rolling windows and no history store")
        view = RangeView(store, float(start), float(end), step_s, live_edge, notes)
        with self._lock:
            self._views[key] = (self._clock(), view)
            while len(self._views) > _VIEW_CACHE:
                self._views.pop(next(iter(self._views)))
        return view


def _chunks(start: float, end: float) -> range:
    return range(int(start), int(end), _HISTORY_CHUNK_S)


def _series_of(values: Mapping[str, float], name: str) -> dict[str, float]:
    return {k: v for k, v in values.items() if name_of(k) == name}


class LiveRound:
    """A `LiveSource` for one evaluation round; implements `MetricSource`.

    The gauges callable runs on the first live gauge read of the round (a round without gauge
    rules costs nothing); a failure is kept and raised to every gauge rule of the round,
    without calling again."""

    def __init__(self, live: LiveSource) -> None:
        self._live = live
        self._values: dict[str, float] | None = None
        self._error: Exception | None = None

    def request_counts(self, window_s: int, now: float, where: Where) -> RequestCounts:
        return self._live.request_counts(window_s, now, where)

    def latency_above(
        self, threshold_s: float, window_s: int, now: float, where: Where, distribution: str | None
    ) -> tuple[float, float]:
        return self._live.latency_above(threshold_s, window_s, now, where, distribution)

    def latency_sketch(
        self, window_s: int, now: float, where: Where, distribution: str | None
    ) -> QuantileSketch:
        return self._live.latency_sketch(window_s, now, where, distribution)

    def counter_totals(self, name: str, window_s: int, now: float) -> CounterTotals:
        return self._live.counter_totals(name, window_s, now)

    def reading_rates(self, name: str, window_s: int, now: float) -> Mapping[str, float]:
        return self._live.reading_rates(name, window_s, now)

    def route_totals(self, window_s: int, now: float) -> Mapping[str, RouteTotals]:
        return self._live.route_totals(window_s, now)

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        live = self._live
        if live._gauges is None or not live._is_now(now):
            return live.gauge_values(name, now)
        if self._error is not None:
            raise self._error
        if self._values is None:
            try:
                self._values = live.read_gauges()
            except Exception as exc:
                self._error = exc
                raise
        return _series_of(self._values, name)
