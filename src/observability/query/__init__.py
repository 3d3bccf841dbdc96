"""One query model for alert rules, dashboard panels and incident evidence.

model       the terms (RequestRate, ErrorRatio, LatencyQuantile, GaugeValue, ...)
evaluate    instant and range evaluation over a MetricSource
source      the MetricSource protocol; minutes / live: its two implementations
promql      any term as PromQL;  cloudwatch: any term as CloudWatch metric math
"""

from observability.query.evaluate import instant, series, top_routes
from observability.query.live import LiveRound, LiveSource, RangeView
from observability.query.minutes import MinuteStore
from observability.query.model import (
    BurnRate,
    CounterIncrease,
    CounterRate,
    ErrorBreakdown,
    ErrorGroups,
    ErrorRatio,
    ErrorResolution,
    ErrorTrend,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    MetricTerm,
    Ratio,
    RequestRate,
    SeriesFrom,
    Stalled,
    Term,
    TopRoutes,
    Unsupported,
    parse_series_key,
    route_filter,
    series_key,
)
from observability.query.source import MetricSource

__all__ = [
    "BurnRate",
    "CounterIncrease",
    "CounterRate",
    "ErrorBreakdown",
    "ErrorGroups",
    "ErrorRatio",
    "ErrorResolution",
    "ErrorTrend",
    "GaugeValue",
    "LatencyAbove",
    "LatencyQuantile",
    "LiveRound",
    "LiveSource",
    "MetricSource",
    "MetricTerm",
    "MinuteStore",
    "RangeView",
    "Ratio",
    "RequestRate",
    "SeriesFrom",
    "Stalled",
    "Term",
    "TopRoutes",
    "Unsupported",
    "instant",
    "parse_series_key",
    "route_filter",
    "series",
    "series_key",
    "top_routes",
]
