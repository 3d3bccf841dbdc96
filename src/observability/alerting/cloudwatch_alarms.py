"""Render rules to CloudWatch alarms: `AWS::CloudWatch::Alarm` Properties dicts.

Terms become CloudWatch metrics and metric math through `observability.query.cloudwatch` (the
renderer CloudWatch dashboards use too), over the metrics `EmfPublisher` writes per minute in
the namespace and base dimensions given here. Alarm actions reference one SNS topic per
severity by logical id (`{"Ref": "AlertTopicCritical"}`), for the CloudFormation template.

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

from observability.alerting.rules import AlertDefinition, Condition, Rule, definitions
from observability.query.cloudwatch import QUANTILE_NAMES, CwContext, Ids, cloudwatch_query
from observability.query.model import BurnRate, LatencyAbove, latency_series, window_of
from observability.query.promql import format_duration

__all__ = ["render_cloudwatch_alarms", "topic_ref"]

_OPERATORS = {
    ">": "GreaterThanThreshold",
    ">=": "GreaterThanOrEqualToThreshold",
    "<": "LessThanThreshold",
    "<=": "LessThanOrEqualToThreshold",
}
_DAY = 86400


def topic_ref(severity: str, prefix: str = "AlertTopic") -> dict[str, str]:
    return {"Ref": f"{prefix}{severity.capitalize()}"}


def _period(window_s: int) -> tuple[int, int]:
    """(Period, periods) covering `window_s`: one period up to a day, whole days beyond."""
    if window_s <= _DAY:
        return max(60, math.ceil(window_s / 60) * 60), 1
    return _DAY, math.ceil(window_s / _DAY)


def _latency_slo_metric(expr: BurnRate, ctx: CwContext) -> tuple[dict[str, Any], int, float]:
    """A latency SLO approximated by the objective's percentile (see the module doc)."""
    sli = expr.sli
    assert isinstance(sli, LatencyAbove)
    assert sli.window_s is not None
    label = QUANTILE_NAMES.get(round(1.0 - expr.budget, 2), "p99")
    dims = dict(ctx.dimensions)
    if not sli.distribution and sli.where:
        dims[ctx.route_dimension] = f"{sli.where.get('method', '')} {sli.where.get('route', '')}"
    part: dict[str, Any] = {
        "Namespace": ctx.namespace,
        "MetricName": f"{latency_series(sli)[1] or 'http_request_duration'}_{label}",
    }
    if dims:
        part["Dimensions"] = [{"Name": k, "Value": v} for k, v in dims.items()]
    part["Statistic"] = "Average"
    return part, sli.window_s, sli.threshold_s * 1000.0


def _metric(condition: Condition, ctx: CwContext) -> tuple[dict[str, Any], int, float]:
    """(metric part of the alarm, window seconds, threshold in CloudWatch's unit)."""
    expr = condition.expr
    window = window_of(expr) or 60  # a gauge: its latest minute
    period, _ = _period(window)
    ids = Ids()
    query = cloudwatch_query(expr, ctx, ids)
    threshold = condition.threshold * query.scale
    if query.expression is None and len(query.metrics) == 1:
        [m] = query.metrics
        part: dict[str, Any] = {"Namespace": ctx.namespace, "MetricName": m.name}
        if m.dimensions:
            part["Dimensions"] = [{"Name": k, "Value": v} for k, v in m.dimensions.items()]
        part["Statistic"] = m.stat
        return part, window, threshold
    metrics: list[dict[str, Any]] = []
    for m in query.metrics:
        metric: dict[str, Any] = {"Namespace": ctx.namespace, "MetricName": m.name}
        if m.dimensions:
            metric["Dimensions"] = [{"Name": k, "Value": v} for k, v in m.dimensions.items()]
        metrics.append(
            {
                "Id": m.id,
                "MetricStat": {"Metric": metric, "Period": period, "Stat": m.stat},
                "ReturnData": False,
            }
        )
    metrics.append(
        {"Id": ids("e"), "Expression": query.expression, "Label": expr.label, "ReturnData": True}
    )
    return {"Metrics": metrics}, window, threshold


def _alarm(
    d: AlertDefinition,
    condition: Condition,
    ctx: CwContext,
    suffix: str,
    actions_prefix: str,
    name_prefix: str,
) -> dict[str, Any]:
    expr = condition.expr
    if isinstance(expr, BurnRate) and isinstance(expr.sli, LatencyAbove):
        part, window_s, threshold = _latency_slo_metric(expr, ctx)
    else:
        part, window_s, threshold = _metric(condition, ctx)
    period, periods = _period(window_s)
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
    """One alarm per threshold rule; one per burn window (its long window) for SLO rules.
    A rule whose term CloudWatch cannot express raises `Unsupported`."""
    alarms: list[dict[str, Any]] = []
    for d in definitions(rules):
        for i, clause in enumerate(d.clauses):
            condition = clause[0]
            expr = condition.expr
            ctx = CwContext(
                namespace,
                dict(dimensions or {}),
                route_dimension,
                low_is_bad=condition.comparison in ("<", "<="),
            )
            suffix = ""
            if isinstance(expr, BurnRate):
                if isinstance(expr.sli, LatencyAbove):
                    if i > 0:
                        continue  # every window collapses to the same percentile alarm
                elif expr.sli.window_s is not None:
                    suffix = "_" + format_duration(expr.sli.window_s)
            alarms.append(_alarm(d, condition, ctx, suffix, topic_prefix, name_prefix))
    return alarms
