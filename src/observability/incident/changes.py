"""What changed: the incident window against a baseline window before it, ranked by change.

    baseline ...........|since| incident ........................|now
    [since - B, since]         [max(since, now - 5 min), now] (live: partial slots included)

Routes (p95 and 5xx ratio) and dependency signals (a `DependencySignal`: a window-less query
term such as the database's statement p95) are evaluated by `observability.query` over both
windows through one `MetricSource` (the rolling windows while they hold the moment, stored
minutes further back). A row's `score` is its rise relative to the baseline (floored so that
0 -> 1 ms is not infinite); rows that did not rise by their signal's minimum are not changes.
`onset` is when a changed signal first crossed halfway from its baseline to its incident
value, read in short steps: "since when" for the headline and for telling new error groups
from those that predate the incident.

Why hand-written: the comparison joins the toolkit's own query model and windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from observability.metrics.sketch import QuantileSketch
from observability.query.evaluate import instant
from observability.query.live import LiveSource
from observability.query.model import (
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    MetricTerm,
    Where,
)
from observability.query.source import CounterTotals, MetricSource, RequestCounts, RouteTotals

__all__ = [
    "Change",
    "DependencySignal",
    "MemoryFirst",
    "Windows",
    "compare_dependencies",
    "compare_routes",
    "comparison_windows",
    "onset",
]

Unit = Literal["ms", "ratio", "s", "per_s", "state"]

_RECENT_S = 300  # the incident side: at most the last 5 minutes (live, not diluted)
_MIN_BASELINE_S = 60
_MAX_BASELINE_S = 3600
_ROUTE_MIN_REQUESTS = 3  # fewer requests in a window say nothing about a p95
_ROUTE_LATENCY_MIN_MS = 20.0
_ROUTE_ERRORS_MIN = 0.02
# Relative change is divided by at least this much of the unit: 0 -> 3 ms is not "infinite".
_FLOOR: dict[str, float] = {"ms": 1.0, "ratio": 0.01, "s": 1.0, "per_s": 0.1, "state": 1.0}


@dataclass(frozen=True)
class DependencySignal:
    """One measure of a dependency: `term` without a window (the evidence sets it), shown in
    `unit` (latency terms answer seconds and are shown in ms); `worse` says which way hurts;
    a move smaller than `min_change` (in the shown unit) is not a change."""

    dependency: str  # "database", "cache", "cloudwatch"
    measure: str  # "statement p95"
    term: MetricTerm
    unit: Unit = "ms"
    worse: Literal["up", "down"] = "up"
    min_change: float = 0.0


@dataclass(frozen=True)
class Change:
    """One measure before and during the incident; `score` ranks the rows (bigger: changed
    more for the worse), `changed` says the move passed the signal's minimum."""

    subject: str  # a dependency or "METHOD /route"
    measure: str
    unit: str
    before: float | None
    after: float | None
    score: float
    changed: bool
    onset: float | None = None  # epoch seconds: when it started to move
    samples_before: int | None = None
    samples_after: int | None = None

    def describe(self) -> str:
        """'database statement p95 4 ms -> 503 ms' (the caller adds 'since ...')."""
        return (
            f"{self.subject} {self.measure} {show(self.before, self.unit)} \u2192 "
            f"{show(self.after, self.unit)}"
        )


@dataclass(frozen=True)
class Windows:
    """The two windows compared (epoch seconds) and the step onsets are read in."""

    baseline_start: float
    baseline_end: float
    incident_start: float
    incident_end: float
    step_s: int
    alert_start: float | None = None  # when the alert's condition began to hold

    @property
    def baseline_s(self) -> int:
        return max(1, round(self.baseline_end - self.baseline_start))

    @property
    def incident_s(self) -> int:
        return max(1, round(self.incident_end - self.incident_start))


class MemoryFirst:
    """A `MetricSource` for evidence: requests, latencies and counters from `source`, gauges
    from the remembered readings of `gauges` (the evaluator's: never a fresh read, which may
    ping the slow dependency, nor a wait behind its store); without `gauges`, `source`'s."""

    def __init__(self, source: LiveSource, gauges: LiveSource | None = None) -> None:
        self.source = source
        self.gauges = gauges

    def request_counts(self, window_s: int, now: float, where: Where) -> RequestCounts:
        return self.source.request_counts(window_s, now, where)

    def latency_above(
        self, threshold_s: float, window_s: int, now: float, where: Where, distribution: str | None
    ) -> tuple[float, float]:
        return self.source.latency_above(threshold_s, window_s, now, where, distribution)

    def latency_sketch(
        self, window_s: int, now: float, where: Where, distribution: str | None
    ) -> QuantileSketch:
        return self.source.latency_sketch(window_s, now, where, distribution)

    def counter_totals(self, name: str, window_s: int, now: float) -> CounterTotals:
        return self.source.counter_totals(name, window_s, now)

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        if self.gauges is None:
            return self.source.gauge_values(name, now)
        return self.gauges.remembered(name, now)

    def reading_rates(self, name: str, window_s: int, now: float) -> Mapping[str, float]:
        return {} if self.gauges is not None else self.source.reading_rates(name, window_s, now)

    def route_totals(self, window_s: int, now: float) -> Mapping[str, RouteTotals]:
        return self.source.route_totals(window_s, now)


def comparison_windows(
    since: float, now: float, *, live: bool, alert_start: float | None = None
) -> Windows:
    """The incident side is the recent part of [since, now]; the baseline as long (at least a
    minute) and ending where the evidence window opens. `live`: 5 s steps (rolling windows),
    else minute steps (stored history)."""
    start = max(since, now - _RECENT_S)
    length = min(max(now - start, _MIN_BASELINE_S), _MAX_BASELINE_S)
    return Windows(since - length, since, start, now, 5 if live else 60, alert_start)


def show(value: float | None, unit: str) -> str:
    """A value in its unit, for a person."""
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "ratio":
        return f"{value:.1%}"
    if unit == "s":
        return f"{value:.0f} s"
    if unit == "per_s":
        return f"{value:.2g}/s"
    return f"{value:g}"


def _shown(term: MetricTerm, value: float, unit: str) -> float:
    latency = isinstance(term, LatencyQuantile | LatencyAbove) and unit == "ms"
    return value * 1000.0 if latency else value


def _value(
    source: MetricSource, term: MetricTerm, unit: str, at: float, window_s: int
) -> float | None:
    """The term over the window ending at `at`; the worst series when it splits into several."""
    values = [v for _, v in instant(term, source, at, window_s=window_s) if not math.isnan(v)]
    if not values:
        return None
    return _shown(term, max(values), unit)


def _score(before: float | None, after: float | None, unit: str, worse: str) -> float:
    if after is None or (before is None and worse == "down"):
        return 0.0  # a fall from an unknown level is no evidence
    base = before if before is not None else 0.0
    rise = (after - base) if worse == "up" else (base - after)
    return rise / max(abs(base), _FLOOR.get(unit, 1.0))


def compare_dependencies(
    source: MetricSource, signals: Sequence[DependencySignal], windows: Windows
) -> list[Change]:
    """Every signal before and during the incident, the most changed first (a signal with no
    value in either window is not measured here, e.g. CloudWatch lag without shipping)."""
    rows: list[Change] = []
    for signal in signals:
        before, after = _both(source, signal.term, signal.unit, windows)
        if before is None and after is None:
            continue
        score = _score(before, after, signal.unit, signal.worse)
        moved = _moved(before, after, signal.worse)
        changed = score >= 0.5 and moved >= max(signal.min_change, 1e-12)
        when = onset(source, signal.term, signal.unit, windows, before, after) if changed else None
        rows.append(
            Change(
                signal.dependency, signal.measure, signal.unit, before, after, score, changed, when
            )
        )
    return sorted(rows, key=lambda r: (not r.changed, -r.score))


def _both(
    source: MetricSource, term: MetricTerm, unit: str, windows: Windows
) -> tuple[float | None, float | None]:
    if isinstance(term, GaugeValue):
        # A gauge is a reading, not a window: its last reading before the incident, and the
        # latest remembered one (never a fresh read: the platform's gauges ping dependencies,
        # which is what may be slow right now).
        before = _value(source, term, unit, windows.baseline_end, windows.baseline_s)
        if before is None and windows.alert_start is not None:
            before = _first_reading(source, term, unit, windows)
        after = _value(source, term, unit, windows.incident_end - 2.0, windows.incident_s)
        return before, after
    before = _value(source, term, unit, windows.baseline_end, windows.baseline_s)
    after = _value(source, term, unit, windows.incident_end, windows.incident_s)
    return before, after


def _first_reading(
    source: MetricSource, term: MetricTerm, unit: str, windows: Windows
) -> float | None:
    """No reading before the evidence window (a process younger than it): the first one
    taken before the alert's condition began to hold, second by second."""
    assert windows.alert_start is not None
    t = windows.baseline_end
    while t < windows.alert_start - 1.0:
        t += 1.0
        value = _value(source, term, unit, t, 1)
        if value is not None:
            return value
    return None


def _moved(before: float | None, after: float | None, worse: str) -> float:
    if after is None:
        return 0.0
    base = before or 0.0
    return (after - base) if worse == "up" else (base - after)


def onset(
    source: MetricSource,
    term: MetricTerm,
    unit: str,
    windows: Windows,
    before: float | None,
    after: float | None,
) -> float | None:
    """The start of the first step (from the baseline's end on) whose short window crossed
    halfway from `before` to `after`; None when no step did (or nothing to cross)."""
    if after is None:
        return None
    halfway = ((before or 0.0) + after) / 2.0
    step = windows.step_s
    window = 2 * step
    t = windows.baseline_end + step
    end = windows.incident_end
    worse_up = after >= (before or 0.0)
    while t <= end + 1e-9:
        at = t - 2.0 if isinstance(term, GaugeValue) else t
        value = _value(source, term, unit, at, window)
        if value is not None and (value >= halfway if worse_up else value <= halfway):
            return t - step
        t += step
    return None


def compare_routes(
    source: MetricSource, windows: Windows, *, top: int, prefer: str = "p95"
) -> tuple[list[Change], list[tuple[str, float, float, float | None, float | None]]]:
    """Routes whose p95 or 5xx ratio rose most (rising rows only), and every route's incident
    numbers (route, requests, 5xx, p95 ms, p99 ms) for the slowest/failing lists.

    A row's `score` is what the rise cost users: extra seconds waited (p95 rise x requests)
    or extra failed requests (5xx ratio rise x requests), so a route failing 3 of 3 calls
    does not outrank one failing 18 of 55. The two measures do not compare: the `prefer`red
    one (the alert's kind) comes first."""
    after = source.route_totals(windows.incident_s, windows.incident_end)
    before = source.route_totals(windows.baseline_s, windows.baseline_end)
    rows: list[Change] = []
    current: list[tuple[str, float, float, float | None, float | None]] = []
    for route, now in after.items():
        p95 = _ms(now.latency.quantile(0.95))
        current.append((route, now.requests, now.errors_5xx, p95, _ms(now.latency.quantile(0.99))))
        if now.requests < _ROUTE_MIN_REQUESTS:
            continue
        then = before.get(route)
        enough = then is not None and then.requests >= _ROUTE_MIN_REQUESTS
        p95_then = _ms(then.latency.quantile(0.95)) if then is not None and enough else None
        if p95 is not None and p95_then is not None and p95 - p95_then >= _ROUTE_LATENCY_MIN_MS:
            score = (p95 - p95_then) / 1000 * now.requests
            rows.append(_route_change(route, "p95", "ms", p95_then, p95, score, then, now))
        ratio = now.errors_5xx / now.requests
        ratio_then = then.errors_5xx / then.requests if then is not None and enough else 0.0
        if ratio - ratio_then >= _ROUTE_ERRORS_MIN:
            score = (ratio - ratio_then) * now.requests
            rows.append(
                _route_change(route, "5xx ratio", "ratio", ratio_then, ratio, score, then, now)
            )
    rows.sort(key=lambda r: (r.measure != prefer, -r.score))
    return rows[:top], current


def _route_change(
    route: str,
    measure: str,
    unit: str,
    before: float | None,
    after: float,
    score: float,
    then: object,
    now: object,
) -> Change:
    return Change(
        route,
        measure,
        unit,
        before,
        after,
        score,
        True,
        samples_before=int(getattr(then, "requests", 0)) if then is not None else 0,
        samples_after=int(getattr(now, "requests", 0)),
    )


def route_term(route: str, measure: str) -> MetricTerm:
    """The query term of one route's measure (for its onset)."""
    method, _, template = route.partition(" ")
    where: Mapping[str, str] = {"method": method, "route": template} if template else {}
    if measure == "p95":
        return LatencyQuantile(0.95, where=where)
    return ErrorRatio("5xx", where=where)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0
