"""The fleet as a `MetricSource`: windows up to an hour from the buckets every instance
publishes (`observability.fleet.rollups`), merged; longer windows from the per-minute history
(fleet-wide already); gauges from this process (`LiveSource`).

    FleetSource  what the leader's evaluator reads: `begin_round()` reads the last hour of
                 buckets once per round into a `MinuteStore` of `bucket_s` buckets.
    FleetRound   the source for one round (or one dashboard read).
    fleet_view   a range cut into a panel's steps from the fleet's buckets (up to an hour) or
                 the history (beyond), for every instance or one.

A window covers the buckets that ended within it, so the fleet's numbers lag "now" by less
than one bucket plus one publishing period (10 s + 10 s by default); the local windows would
show only this process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from observability.fleet.rollups import FleetRollups
from observability.metrics.history import MetricHistory
from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import MinuteRollup
from observability.query.live import LiveRound, LiveSource, RangeView
from observability.query.minutes import MinuteStore
from observability.query.model import Where
from observability.query.source import CounterTotals, RequestCounts, RouteTotals

__all__ = ["FleetRound", "FleetSource", "fine_store", "fleet_view"]

_WINDOWS_MAX_S = 3600
_MINUTE = 60
_HISTORY_CHUNK_S = 6 * 3600
PUBLISH_LAG_S = 2.0  # instances publish a bucket 0.2 s after it ends (+ a commit under load)


def fine_store(
    buckets: Sequence[MinuteRollup], bucket_s: int, terms: Iterable[object] = ()
) -> MinuteStore:
    """The fleet's buckets (oldest first) as a `MinuteStore` of `bucket_s` buckets."""
    store = MinuteStore(math.inf, math.inf, resolution_s=bucket_s)
    store.prepare(terms)
    for bucket in buckets:
        store.add(bucket)
    return store


class FleetRound:
    """One round's `MetricSource`: request, latency and counter windows up to `max_window_s`
    from the fleet's buckets; longer windows and gauges from this process's `LiveRound`."""

    def __init__(
        self,
        fine: MinuteStore,
        live: LiveRound,
        max_window_s: int = _WINDOWS_MAX_S,
        lag_s: float = PUBLISH_LAG_S,
    ):
        self.fine = fine
        self.live = live
        self.max_window_s = max_window_s
        self.lag_s = lag_s

    def _short(self, window_s: int) -> bool:
        return window_s <= self.max_window_s

    def _at(self, now: float) -> float:
        # A bucket that just ended is complete in the store only once every instance has
        # published after the boundary (at +0.2 s): until then it holds a fraction of a second
        # and a one-bucket window would read ~nothing (an alert would resolve at every edge).
        return now - self.lag_s

    def _fine_window(self, window_s: int) -> int:
        # A window shorter than a bucket (rules at a small EP_ALERT_WINDOW_SCALE) reads the
        # last complete bucket: a narrower cut of it does not exist.
        return max(window_s, self.fine.resolution_s)

    def request_counts(self, window_s: int, now: float, where: Where) -> RequestCounts:
        if self._short(window_s):
            return self.fine.request_counts(self._fine_window(window_s), self._at(now), where)
        return self.live.request_counts(window_s, now, where)

    def latency_above(
        self, threshold_s: float, window_s: int, now: float, where: Where, distribution: str | None
    ) -> tuple[float, float]:
        if self._short(window_s):
            return self.fine.latency_above(
                threshold_s, self._fine_window(window_s), self._at(now), where, distribution
            )
        return self.live.latency_above(threshold_s, window_s, now, where, distribution)

    def latency_sketch(
        self, window_s: int, now: float, where: Where, distribution: str | None
    ) -> QuantileSketch:
        if self._short(window_s):
            return self.fine.latency_sketch(
                self._fine_window(window_s), self._at(now), where, distribution
            )
        return self.live.latency_sketch(window_s, now, where, distribution)

    def counter_totals(self, name: str, window_s: int, now: float) -> CounterTotals:
        if self._short(window_s):
            return self.fine.counter_totals(name, self._fine_window(window_s), self._at(now))
        return self.live.counter_totals(name, window_s, now)

    def route_totals(self, window_s: int, now: float) -> Mapping[str, RouteTotals]:
        if self._short(window_s):
            return self.fine.route_totals(self._fine_window(window_s), self._at(now))
        return self.live.route_totals(window_s, now)

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        return self.live.gauge_values(name, now)

    def reading_rates(self, name: str, window_s: int, now: float) -> Mapping[str, float]:
        return self.live.reading_rates(name, window_s, now)


class FleetSource:
    """The leader's evaluator source (see module docstring). The evaluator reads it a round at
    a time (`begin_round`); a single question outside a round reads the store for itself."""

    def __init__(self, rollups: FleetRollups, live: LiveSource) -> None:
        self.rollups = rollups
        self.live = live
        self._terms: list[object] = []

    def prepare(self, terms: Iterable[object]) -> None:
        self._terms = list(terms)
        self.live.prepare(self._terms)

    def begin_round(self) -> FleetRound:
        now = self.live.clock()
        bucket = self.rollups.bucket_s
        buckets = self.rollups.read(now - _WINDOWS_MAX_S - 2 * bucket, now + bucket)
        return FleetRound(fine_store(buckets, bucket, self._terms), self.live.begin_round())

    # -- MetricSource, one question at a time ----------------------------------------------
    def request_counts(self, window_s: int, now: float, where: Where) -> RequestCounts:
        return self.begin_round().request_counts(window_s, now, where)

    def latency_above(
        self, threshold_s: float, window_s: int, now: float, where: Where, distribution: str | None
    ) -> tuple[float, float]:
        return self.begin_round().latency_above(threshold_s, window_s, now, where, distribution)

    def latency_sketch(
        self, window_s: int, now: float, where: Where, distribution: str | None
    ) -> QuantileSketch:
        return self.begin_round().latency_sketch(window_s, now, where, distribution)

    def counter_totals(self, name: str, window_s: int, now: float) -> CounterTotals:
        return self.begin_round().counter_totals(name, window_s, now)

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        return self.live.gauge_values(name, now)

    def reading_rates(self, name: str, window_s: int, now: float) -> Mapping[str, float]:
        return self.live.reading_rates(name, window_s, now)

    def route_totals(self, window_s: int, now: float) -> Mapping[str, RouteTotals]:
        return self.begin_round().route_totals(window_s, now)


def fleet_view(
    rollups: FleetRollups,
    history: MetricHistory | None,
    range_s: int,
    step_s: int,
    now: float,
    instance: str | None = None,
) -> tuple[RangeView, MinuteStore]:
    """(the range in `step_s` buckets, the last hour in fine buckets) for the fleet or one
    instance. Up to an hour both come from the fleet's buckets (the view has a live edge: the
    fine store answers the last step up to now); beyond, the view comes from the history."""
    bucket = rollups.bucket_s
    end = int(now // _MINUTE * _MINUTE)
    start = end - range_s
    recent = rollups.read(now - _WINDOWS_MAX_S - 2 * bucket, now + bucket, instance)
    fine = fine_store(recent, bucket)
    store = MinuteStore(math.inf, math.inf, resolution_s=step_s, anchor=end)
    notes: list[str] = []
    if range_s <= _WINDOWS_MAX_S:
        for rollup in recent:
            if start <= rollup.minute_start < end:
                store.add(rollup)
        return RangeView(store, float(start), float(end), step_s, True, notes), fine
    if history is None:
        notes.append("no history store: showing the last hour")
    else:
        for lo in range(start, end, _HISTORY_CHUNK_S):  # chunks: bounded memory on 7 days
            for rollup in history.rollups(lo, min(lo + _HISTORY_CHUNK_S, end), instance):
                store.add(rollup)
        for minute, values in sorted(history.gauges(start - 360, end).items()):
            store.add_gauges(minute, values)
    return RangeView(store, float(start), float(end), step_s, False, notes), fine
