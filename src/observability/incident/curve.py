"""The metric that breached, for incident evidence: the alert's rule term in words
(`describe_query`) and its curve, re-evaluated by `observability.query` at earlier moments over
the rolling windows (5 s steps while they hold the moment, memory only) or `MetricHistory`
minutes (further back, longer windows, or when no windows are at hand)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from observability.alerting.rules import AlertDefinition
from observability.alerting.state import AlertInstance
from observability.metrics.history import MetricHistory
from observability.metrics.windows import RollingWindows
from observability.query.evaluate import instant
from observability.query.live import LiveSource
from observability.query.minutes import MinuteStore
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
    series_key,
    window_of,
    with_window,
)
from observability.query.source import MetricSource

__all__ = ["CurvePoint", "MetricEvidence", "describe_query", "metric_evidence", "window_or_none"]

_HOUR = 3600
_MINUTE = 60
_MAX_POINTS = 60


@dataclass(frozen=True)
class CurvePoint:
    t: float
    value: float | None


@dataclass(frozen=True)
class MetricEvidence:
    query: str  # what the rule computes, in words
    comparison: str
    threshold: float | None
    value: float | None  # what the evaluator saw last
    window_s: int | None
    resolution_s: int
    curve: list[CurvePoint] = field(default_factory=list)


def window_or_none(expr: MetricTerm | None) -> int | None:
    return None if expr is None else window_of(expr)


def describe_query(expr: MetricTerm) -> str:
    """A rule's term in words, e.g. 'burn rate of 5xx ratio over 36s (budget 0.001)'."""
    if isinstance(expr, BurnRate):
        return f"burn rate of {describe_query(expr.sli)} (budget {expr.budget:g})"
    seconds = window_of(expr)
    window = f"{seconds}s" if seconds is not None else "the panel's range"
    where = ""
    if isinstance(expr, RequestRate | ErrorRatio | LatencyQuantile | LatencyAbove) and expr.where:
        parts = (expr.where.get("method"), expr.where.get("route"))
        where = " on " + " ".join(v for v in parts if v)
    if isinstance(expr, RequestRate):
        return f"request rate{where} over {window}"
    if isinstance(expr, ErrorRatio):
        return f"{expr.status_class} ratio{where} over {window}"
    if isinstance(expr, LatencyAbove):
        what = expr.distribution or "request latency"
        return f"share of {what}{where} above {expr.threshold_s * 1000:g} ms over {window}"
    if isinstance(expr, LatencyQuantile):
        what = expr.distribution or "request latency"
        return f"p{expr.q * 100:g} of {what}{where} over {window}"
    if isinstance(expr, CounterIncrease):
        return f"increase of {series_key(expr.name, expr.where)} over {window}"
    if isinstance(expr, CounterRate):
        return f"rate of {series_key(expr.name, expr.where)} over {window}"
    if isinstance(expr, Ratio):
        return f"{expr.numerator} / {expr.denominator} over {window}"
    if isinstance(expr, Stalled):
        return f"increase of {series_key(expr.name, expr.where)} over {window} while requests flow"
    return f"gauge {series_key(expr.name, expr.where)}"


def _widen(expr: MetricTerm, minimum: int) -> MetricTerm:
    """Minute data cannot answer a window shorter than a couple of minutes: widen it."""
    window = window_of(expr)
    if window is None or window >= minimum:
        return expr
    widened: MetricTerm = with_window(expr, minimum)
    return widened


def metric_evidence(
    alert: AlertInstance,
    definition: AlertDefinition,
    windows: RollingWindows | None,
    history: MetricHistory | None,
    *,
    start: float,
    now: float,
) -> tuple[MetricEvidence, list[str]]:
    """The rule's first condition: its query in words, value, threshold and curve over
    [start, now]; and notes on what the curve lacks."""
    notes: list[str] = []
    condition = definition.clauses[0][0]
    expr = condition.expr
    window_s = window_of(expr)
    reach = max(window_s or 0, 2 * _MINUTE)
    # Only the minutes the curve needs: a store fed from history for [start - reach, now].
    store = MinuteStore(retention_s=now - start + reach + 2 * _MINUTE)
    store.prepare([expr])
    curve: list[CurvePoint] = []
    resolution = _MINUTE
    if windows is None and history is None:
        notes.append("metric curve: no rolling windows and no metric history")
    elif isinstance(expr, GaugeValue):
        if history is not None:
            source = LiveSource(history=history, store=store, clock=lambda: now)
            curve = _evaluated_curve(source, expr, alert.labels, start, now, _MINUTE)
        else:
            notes.append("metric curve: gauges have no history here (current only)")
    elif windows is not None and (window_s or 0) <= _HOUR:
        # Steps of a few seconds while the span is short: the windows hold 5 s slots.
        span = now - start
        resolution = max(5, math.ceil(span / _MAX_POINTS / 5) * 5)
        live = LiveSource(windows, store=store, clock=lambda: now)  # memory only
        curve = _evaluated_curve(live, expr, alert.labels, start, now, resolution)
    else:
        source = LiveSource(history=history, store=store, clock=lambda: now)
        widened = _widen(expr, 2 * _MINUTE)
        if widened != expr:
            notes.append("metric curve: minute history, windows widened to 120s")
        curve = _evaluated_curve(source, widened, alert.labels, start, now, _MINUTE)
    metric = MetricEvidence(
        query=describe_query(expr),
        comparison=condition.comparison,
        threshold=alert.threshold if alert.threshold is not None else condition.threshold,
        value=alert.value,
        window_s=window_s,
        resolution_s=resolution,
        curve=curve,
    )
    return metric, notes


def _steps(start: float, end: float, step: int) -> list[float]:
    count = min(_MAX_POINTS, max(1, math.ceil((end - start) / step)))
    return [end - step * i for i in range(count)][::-1]


def _matching(samples: Iterable[tuple[dict[str, str], float]], labels: Mapping[str, str]) -> float:
    values = [v for series, v in samples if all(labels.get(k) == val for k, val in series.items())]
    return max(values) if values else math.nan


def _evaluated_curve(
    source: MetricSource,
    expr: MetricTerm,
    labels: Mapping[str, str],
    start: float,
    end: float,
    step: int,
) -> list[CurvePoint]:
    points = []
    for t in _steps(start, end, step):
        value = _matching(instant(expr, source, t), labels)
        points.append(CurvePoint(t, None if math.isnan(value) else value))
    return points
