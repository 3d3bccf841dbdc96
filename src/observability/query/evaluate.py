"""Evaluating terms over a `MetricSource`: one value per series at an instant (alert
conditions, numbers and tables on panels, incident evidence), or at many instants (time-series
panels, evidence curves).

    instant(term, source, now, window_s=None) -> [(labels, value), ...]
    series(term, source, times, window_s=None) -> [(labels, [(t, value | None), ...]), ...]
    top_routes(term, source, now, window_s) -> [RouteRow, ...]

A term's own `window_s` wins; `window_s` here is the window for terms without one (a panel's
step or range). A value at `t` always describes the window ending at `t`, so a panel point and
an alert condition over the same window and data are the same number.

What a series is: the labels of the `by` split (or every series of a gauge without `agg`);
`{}` for a single value. No traffic means no error ratio and no latency (not zero); a counter
that has series but did not move is 0; a counter never counted by the windows is read from
cumulative values among the gauges (network bytes), as a rate between readings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple, TypeAlias

from observability.query.model import (
    BurnRate,
    CounterIncrease,
    CounterRate,
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    MetricTerm,
    Ratio,
    RequestRate,
    Stalled,
    TopRoutes,
    Unsupported,
    Where,
    latency_series,
    parse_series_key,
)
from observability.query.source import MetricSource

__all__ = ["Point", "RouteRow", "Sample", "Series", "instant", "labels_key", "series", "top_routes"]

Sample: TypeAlias = tuple[dict[str, str], float]
Point: TypeAlias = tuple[float, float | None]
Series: TypeAlias = tuple[dict[str, str], list[Point]]
LabelsKey: TypeAlias = tuple[tuple[str, str], ...]


def labels_key(labels: Mapping[str, str]) -> LabelsKey:
    return tuple(sorted(labels.items()))


def _window(term: object, window_s: int | None) -> int:
    own = getattr(term, "window_s", None)
    window = own if own is not None else window_s
    if window is None:
        raise ValueError(f"{type(term).__name__}.window_s: no window (set one or pass window_s)")
    return int(window)


def _matching(values: Mapping[str, float], where: Where) -> list[tuple[dict[str, str], float]]:
    out = []
    for key, value in values.items():
        parsed = parse_series_key(key)
        if parsed is None:
            continue
        labels = parsed[1]
        if all(labels.get(k) == v for k, v in where.items()):
            out.append((labels, value))
    return out


def _aggregate(values: list[float], agg: str) -> float:
    if agg == "max":
        return max(values)
    if agg == "min":
        return min(values)
    if agg == "avg":
        return sum(values) / len(values)
    return sum(values)


def _split(
    matched: list[tuple[dict[str, str], float]], by: Sequence[str], agg: str = "sum"
) -> list[Sample]:
    groups: dict[LabelsKey, list[float]] = {}
    for labels, value in matched:
        group = {label: labels[label] for label in by if label in labels}
        groups.setdefault(labels_key(group), []).append(value)
    return [(dict(key), _aggregate(vs, agg)) for key, vs in sorted(groups.items())]


def instant(
    term: MetricTerm, source: MetricSource, now: float, window_s: int | None = None
) -> list[Sample]:
    """The term's value per series over the window ending at `now`."""
    if isinstance(term, BurnRate):
        return [(labels, v / term.budget) for labels, v in instant(term.sli, source, now, window_s)]
    if isinstance(term, GaugeValue):
        matched = _matching(source.gauge_values(term.name, now), term.where)
        if term.agg is None:
            return sorted(matched, key=lambda item: labels_key(item[0]))
        return _split(matched, term.by, term.agg)
    window = _window(term, window_s)
    if isinstance(term, RequestRate):
        counts = source.request_counts(window, now, term.where)
        return [({}, counts.requests / counts.span_s if counts.span_s > 0 else 0.0)]
    if isinstance(term, ErrorRatio):
        counts = source.request_counts(window, now, term.where)
        bad = counts.errors_5xx if term.status_class == "5xx" else counts.errors_4xx
        return [({}, bad / counts.requests)] if counts.requests > 0 else []
    if isinstance(term, LatencyQuantile):
        sketch = source.latency_sketch(window, now, *latency_series(term))
        value = sketch.quantile(term.q)
        return [] if value is None else [({}, value)]
    if isinstance(term, LatencyAbove):
        slow, total = source.latency_above(term.threshold_s, window, now, *latency_series(term))
        return [({}, slow / total)] if total > 0 else []
    if isinstance(term, CounterIncrease):
        totals = source.counter_totals(term.name, window, now)
        return _split(_matching(totals.totals, term.where), term.by)
    if isinstance(term, CounterRate):
        totals = source.counter_totals(term.name, window, now)
        if totals.totals:
            span = totals.span_s if totals.span_s > 0 else float(window)
            rates = {k: v / span for k, v in totals.totals.items()}
        else:  # never counted: a cumulative value among the gauges (network bytes)
            rates = dict(source.reading_rates(term.name, window, now))
        return _split(_matching(rates, term.where), term.by)
    if isinstance(term, Ratio):
        numerator, denominator = term.parts()
        tops = {labels_key(k): v for k, v in instant(numerator, source, now, window)}
        return [
            (labels, tops.get(labels_key(labels), 0.0) / below)
            for labels, below in instant(denominator, source, now, window)
            if below > 0
        ]
    if isinstance(term, Stalled):
        traffic = source.request_counts(window, now, term.requests_where)
        if traffic.requests <= 0:
            return []
        totals = source.counter_totals(term.name, window, now)
        return [({}, sum(v for _, v in _matching(totals.totals, term.where)))]
    raise Unsupported(f"{type(term).__name__} is not a metric term the evaluator computes")


def series(
    term: MetricTerm, source: MetricSource, times: Sequence[float], window_s: int | None = None
) -> list[Series]:
    """`instant` at each of `times`: one list of points per series (None where it had no
    value), series sorted by their labels."""
    found: dict[LabelsKey, list[float | None]] = {}
    for i, t in enumerate(times):
        for labels, value in instant(term, source, t, window_s):
            found.setdefault(labels_key(labels), [None] * len(times))[i] = value
    return [
        (dict(key), list(zip(times, values, strict=True))) for key, values in sorted(found.items())
    ]


class RouteRow(NamedTuple):
    route: str  # "METHOD /template"
    requests: float
    rate_per_s: float
    p95_ms: float | None
    errors_5xx: float


def top_routes(
    term: TopRoutes, source: MetricSource, now: float, window_s: int | None = None
) -> list[RouteRow]:
    """The routes ranked as `term.by` says, highest first; only routes with traffic (and, by
    errors, only routes with 5xx responses)."""
    window = _window(term, window_s)
    rows = []
    for route, totals in source.route_totals(window, now).items():
        if totals.requests <= 0:
            continue
        if term.by == "errors" and totals.errors_5xx <= 0:
            continue
        p95 = totals.latency.quantile(0.95)
        rows.append(
            RouteRow(
                route,
                totals.requests,
                totals.rate_per_s,
                None if p95 is None else p95 * 1000.0,
                totals.errors_5xx,
            )
        )

    def rank(row: RouteRow) -> float:
        if term.by == "latency":
            return row.p95_ms or 0.0
        return row.errors_5xx if term.by == "errors" else row.requests

    return sorted(rows, key=lambda r: (-rank(r), r.route))[: term.limit]
