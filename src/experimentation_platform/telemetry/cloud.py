"""The platform's CloudWatch resources: log groups, metric filters, alert topics, IAM scope.

Turned into a CloudFormation template by `observability.cloud.provisioning.build_template`
(`ep cloud render`). Saved queries, dashboards and alarms are defined in their own modules
(`queries.py`, `dashboards.py`, `alerts.py`) and gathered here.

Metric filters publish under names starting with `log_` so they never collide with the EMF
metrics (`http_requests_5xx_total`, ...) in the same namespace: a log-derived count and a
metric-derived count of the same thing must stay apart, or dashboards would add them up.
Request logs of fast successful requests may be sampled (`request_log` sample_rate), so there is
no log-derived request *count*: rates come from EMF; logs count only what is never sampled
(responses >= 400, slow requests, error lines).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from experimentation_platform.telemetry.alerts import cloudwatch_alarms
from experimentation_platform.telemetry.dashboards import DASHBOARDS
from experimentation_platform.telemetry.queries import SAVED_QUERIES
from observability.cloud.provisioning import (
    SEVERITIES,
    LogGroupSpec,
    MetricFilterSpec,
    MonitoringDefinitions,
    SavedQuery,
)
from observability.dashboards.cloudwatch import render_cloudwatch_dashboard
from observability.metrics import names

__all__ = [
    "LOG_GROUPS",
    "LOG_GROUP_PREFIX",
    "METRIC_5XX",
    "METRIC_ERROR_LINES",
    "METRIC_ERROR_LINES_BY_LEVEL",
    "METRIC_FILTERS",
    "METRIC_SLOW_REQUESTS",
    "NAMESPACE",
    "RESOURCE_PREFIX",
    "SLOW_REQUEST_THRESHOLD_MS",
    "platform_definitions",
]

NAMESPACE = "ExperimentationPlatform"  # same as EP_CLOUDWATCH_NAMESPACE's default and EMF's
LOG_GROUP_PREFIX = "/experimentation-platform"
RESOURCE_PREFIX = "experimentation-platform"
SLOW_REQUEST_THRESHOLD_MS = 1000

LOG_GROUPS: tuple[LogGroupSpec, ...] = (
    LogGroupSpec("api", 30, "request logs (request_completed)"),
    LogGroupSpec("services", 90, "application logs"),
    LogGroupSpec("errors", 180, "level error and above"),
)

METRIC_5XX = "log_http_5xx_total"
METRIC_SLOW_REQUESTS = "log_slow_requests_total"
METRIC_ERROR_LINES = "log_error_lines_total"
METRIC_ERROR_LINES_BY_LEVEL = "log_error_lines_by_level_total"

_COMPLETED = f'($.event = "{names.REQUEST_COMPLETED}")'
METRIC_FILTERS: tuple[MetricFilterSpec, ...] = (
    MetricFilterSpec(
        name="http-5xx",
        log_group="api",
        pattern=f"{{ {_COMPLETED} && ($.status >= 500) }}",
        metric_name=METRIC_5XX,
        default_value=0,  # a zero, not a gap, when nothing failed: alarms see "ok"
        unit="Count",
    ),
    MetricFilterSpec(
        name="slow-requests",
        log_group="api",
        pattern=f"{{ {_COMPLETED} && ($.duration_ms > {SLOW_REQUEST_THRESHOLD_MS}) }}",
        metric_name=METRIC_SLOW_REQUESTS,
        default_value=0,
        unit="Count",
    ),
    # Error lines land in the errors group (level error and above). The total carries a
    # default of 0 for alarms; the per-level series cannot (CloudWatch forbids a default
    # value on a filter with dimensions), so it is a second filter over the same lines.
    MetricFilterSpec(
        name="error-lines",
        log_group="errors",
        pattern='{ ($.level = "error") || ($.level = "critical") }',
        metric_name=METRIC_ERROR_LINES,
        default_value=0,
        unit="Count",
    ),
    MetricFilterSpec(
        name="error-lines-by-level",
        log_group="errors",
        pattern='{ ($.level = "error") || ($.level = "critical") }',
        metric_name=METRIC_ERROR_LINES_BY_LEVEL,
        unit="Count",
        dimensions={"level": "$.level"},
    ),
)


def _saved_queries() -> tuple[SavedQuery, ...]:
    # The template puts every query in the ResourceNamePrefix folder itself, and asks each of
    # all three groups (a request's lines span them).
    groups = tuple(g.key for g in LOG_GROUPS)
    return tuple(
        SavedQuery(q.name.removeprefix(RESOURCE_PREFIX + "/"), q.query, groups)
        for q in SAVED_QUERIES
    )


def _dashboards(namespace: str) -> dict[str, Mapping[str, Any]]:
    # The region is a placeholder: the builder replaces every widget's with ${AWS::Region}.
    return {
        d.name: render_cloudwatch_dashboard(d, namespace=namespace, region="us-east-1")
        for d in DASHBOARDS
    }


def platform_definitions(
    *,
    namespace: str = NAMESPACE,
    saved_queries: Iterable[SavedQuery] | None = None,
    dashboards: Mapping[str, Mapping[str, Any]] | None = None,
    alarms: Iterable[Mapping[str, Any]] | None = None,
) -> MonitoringDefinitions:
    """The platform's definitions; saved queries, dashboards and alarms come from their
    modules unless passed in (tests pass them to pin the template)."""
    return MonitoringDefinitions(
        namespace=namespace,
        log_groups=LOG_GROUPS,
        log_group_prefix=LOG_GROUP_PREFIX,
        resource_prefix=RESOURCE_PREFIX,
        metric_filters=METRIC_FILTERS,
        saved_queries=tuple(saved_queries) if saved_queries is not None else _saved_queries(),
        dashboards=dict(dashboards) if dashboards is not None else _dashboards(namespace),
        alarms=tuple(alarms) if alarms is not None else tuple(cloudwatch_alarms(namespace)),
        severities=SEVERITIES,
        subscription_protocols=("email", "https"),
        description=(
            "Experimentation platform monitoring: log groups and retention, metric filters, "
            "Logs Insights queries, dashboards, alarms, alert topics, application IAM policy. "
            "Generated by `ep cloud render`; edit experimentation_platform/telemetry, not this."
        ),
    )
