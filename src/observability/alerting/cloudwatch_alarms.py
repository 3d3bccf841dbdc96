"""Render rules to CloudWatch alarms: `AWS::CloudWatch::Alarm` Properties dicts.

The metrics are those `EmfPublisher` writes per minute (namespace and base dimensions given
here): `http_requests_total`, `http_requests_5xx_total`, `http_request_duration_p50/p95/p99`
(milliseconds), each in-process counter under its series key, `<distribution>_p99`, and gauges
under their name. Alarm actions reference one SNS topic per severity by logical id
(`{"Ref": "AlertTopicCritical"}`), for the CloudFormation template to define.

What CloudWatch cannot express, and what we render instead (documented in docs/alerting.md):
- A metric alarm has one evaluation window, so an SLO's (long AND short) window pair becomes
  one alarm on the long window's burn rate; windows over a day become N one-day periods that
  must all breach. Short-window confirmation would need a composite alarm per pair.
- EMF publishes latency percentiles, not bucket counts, so a latency SLO (`LatencyAbove`)
  becomes "the p99 (for a 99% objective) averaged over the window exceeds the threshold".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from observability.alerting.rules import (
    AlertDefinition,
    BurnRate,
    Condition,
    CounterIncrease,
    CounterRate,
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    Query,
    Rule,
    Stalled,
    definitions,
    format_duration,
    series_key,
)

__all__ = ["render_cloudwatch_alarms", "topic_ref"]

_OPERATORS = {
    ">": "GreaterThanThreshold",
    ">=": "GreaterThanOrEqualToThreshold",
    "<": "LessThanThreshold",
    "<=": "LessThanOrEqualToThreshold",
}
_QUANTILE_NAMES = {0.5: "p50", 0.95: "p95", 0.99: "p99"}
_DAY = 86400


def topic_ref(severity: str, prefix: str = "AlertTopic") -> dict[str, str]:
    return {"Ref": f"{prefix}{severity.capitalize()}"}


def _period(window_s: int) -> tuple[int, int]:
    """(Period, periods) covering `window_s`: one period up to a day, whole days beyond."""
    if window_s <= _DAY:
        return max(60, math.ceil(window_s / 60) * 60), 1
    return _DAY, math.ceil(window_s / _DAY)


class _Renderer:
    def __init__(
        self,
        namespace: str,
        dimensions: Mapping[str, str],
        route_dimension: str,
    ) -> None:
        self.namespace = namespace
        self.dimensions = dict(dimensions)
        self.route_dimension = route_dimension

    def _dims(self, route: str | None = None, method: str | None = None) -> list[dict[str, str]]:
        dims = dict(self.dimensions)
        if route is not None or method is not None:
            if route is None or method is None:
                raise ValueError("CloudWatch per-route metrics need both route and method")
            dims[self.route_dimension] = f"{method} {route}"
        return [{"Name": k, "Value": v} for k, v in dims.items()]

    def _stat(self, mid: str, name: str, stat: str, period: int, dims: list[Any]) -> dict[str, Any]:
        metric: dict[str, Any] = {"Namespace": self.namespace, "MetricName": name}
        if dims:
            metric["Dimensions"] = dims
        return {
            "Id": mid,
            "MetricStat": {"Metric": metric, "Period": period, "Stat": stat},
            "ReturnData": False,
        }

    def single(self, name: str, stat: str, dims: list[Any]) -> dict[str, Any]:
        part: dict[str, Any] = {"Namespace": self.namespace, "MetricName": name}
        if dims:
            part["Dimensions"] = dims
        part["Statistic"] = stat
        return part

    def metric(self, query: Query, comparison: str) -> tuple[dict[str, Any], int, float]:
        """(metric part of the alarm, window seconds, factor applied to the threshold)."""
        budget = 1.0
        if isinstance(query, BurnRate):
            budget = query.budget
            query = query.sli
        if isinstance(query, ErrorRatio):
            period, _ = _period(query.window_s)
            dims = self._dims(query.route, query.method)
            expr = "IF(m2 > 0, m1 / m2, 0)"
            if budget != 1.0:
                expr = f"{expr} / {budget:g}"
            metrics = [
                self._stat("m1", "http_requests_5xx_total", "Sum", period, dims),
                self._stat("m2", "http_requests_total", "Sum", period, dims),
                {"Id": "e1", "Expression": expr, "Label": "ratio", "ReturnData": True},
            ]
            return {"Metrics": metrics}, query.window_s, 1.0
        if isinstance(query, LatencyAbove):
            # Approximation: the objective's percentile against the threshold (see module doc).
            quantile = 1.0 - budget if budget != 1.0 else 0.99
            label = _QUANTILE_NAMES.get(round(quantile, 2), "p99")
            base = query.distribution or "http_request_duration"
            dims = self._dims(
                None if query.distribution else query.route,
                query.method if not query.distribution else None,
            )
            part = self.single(f"{base}_{label}", "Average", dims)
            return part, query.window_s, math.nan
        if isinstance(query, LatencyQuantile):
            if query.q not in _QUANTILE_NAMES:
                raise ValueError(f"EMF publishes p50/p95/p99 only, not q={query.q}")
            label = _QUANTILE_NAMES[query.q]
            base = query.distribution or "http_request_duration"
            dims = (
                self._dims(None, None)
                if query.distribution
                else self._dims(query.route, query.method)
            )
            return self.single(f"{base}_{label}", "Average", dims), query.window_s, 1000.0
        if isinstance(query, CounterIncrease | CounterRate):
            name = series_key(query.name, query.labels)
            factor = 1.0 if isinstance(query, CounterIncrease) else float(query.window_s)
            return self.single(name, "Sum", self._dims()), query.window_s, factor
        if isinstance(query, GaugeValue):
            stat = "Minimum" if comparison in ("<", "<=") else "Maximum"
            return self.single(series_key(query.name, query.labels), stat, self._dims()), 60, 1.0
        if isinstance(query, Stalled):
            period, _ = _period(query.window_s)
            traffic_dims = (
                self._dims(query.while_route, query.while_method)
                if query.while_route is not None and query.while_method is not None
                else self._dims()
            )
            metrics = [
                self._stat("m1", query.name, "Sum", period, self._dims()),
                self._stat("m2", "http_requests_total", "Sum", period, traffic_dims),
                {
                    "Id": "e1",
                    "Expression": "IF(FILL(m2, 0) > 0, FILL(m1, 0), 1)",
                    "Label": "ingested while requests flow",
                    "ReturnData": True,
                },
            ]
            return {"Metrics": metrics}, query.window_s, 1.0
        raise TypeError(f"no CloudWatch alarm for {type(query).__name__}")


def _alarm(
    renderer: _Renderer,
    d: AlertDefinition,
    condition: Condition,
    suffix: str,
    actions_prefix: str,
    name_prefix: str,
    latency_threshold_ms: float | None,
) -> dict[str, Any]:
    part, window_s, factor = renderer.metric(condition.expr, condition.comparison)
    period, periods = _period(window_s)
    threshold = condition.threshold
    if math.isnan(factor):  # latency SLO approximated by a percentile
        threshold = latency_threshold_ms if latency_threshold_ms is not None else threshold
    else:
        threshold = threshold * factor
    extra = 0
    if d.for_seconds and "Metrics" not in part:
        extra = math.ceil(d.for_seconds / period)
    alarm: dict[str, Any] = {
        "AlarmName": f"{name_prefix}{d.name}{suffix}",
        "AlarmDescription": f"[{d.severity.upper()}] {d.name}: runbook #{d.runbook}",
        "ActionsEnabled": True,
        "AlarmActions": [topic_ref(d.severity, actions_prefix)],
        "OKActions": [topic_ref(d.severity, actions_prefix)],
        "ComparisonOperator": _OPERATORS[condition.comparison],
        "Threshold": threshold,
        "EvaluationPeriods": periods + extra,
        "DatapointsToAlarm": periods + extra,
        "TreatMissingData": "notBreaching",
        **part,
    }
    if "Metrics" not in part:
        alarm["Period"] = period
    return alarm


def render_cloudwatch_alarms(
    rules: Sequence[Rule],
    *,
    namespace: str,
    dimensions: Mapping[str, str] | None = None,
    route_dimension: str = "Route",
    topic_prefix: str = "AlertTopic",
    name_prefix: str = "",
) -> list[dict[str, Any]]:
    """One alarm per threshold rule; one per burn window (its long window) for SLO rules."""
    renderer = _Renderer(namespace, dimensions or {}, route_dimension)
    alarms: list[dict[str, Any]] = []
    for d in definitions(rules):
        for i, clause in enumerate(d.clauses):
            condition = clause[0]
            latency_ms = None
            expr = condition.expr
            if isinstance(expr, BurnRate) and isinstance(expr.sli, LatencyAbove):
                latency_ms = expr.sli.threshold_s * 1000.0
                if i > 0:
                    continue  # every window collapses to the same percentile alarm
            suffix = ""
            if isinstance(expr, BurnRate) and latency_ms is None:
                suffix = "_" + format_duration(expr.sli.window_s)
            alarms.append(
                _alarm(renderer, d, condition, suffix, topic_prefix, name_prefix, latency_ms)
            )
    return alarms
