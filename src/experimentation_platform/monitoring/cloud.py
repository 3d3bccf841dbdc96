"""The platform's CloudWatch resources: log groups, metric filters, alert topics, IAM scope.

Turned into a CloudFormation template by `observability.cloud.provisioning.build_template`
(`ep cloud render`). Saved queries, dashboards and alarms are defined in their own modules
(`queries.py`, `dashboards.py`, `alerts.py`); they are read here lazily and defensively so the
template can be rendered while one of them is missing or mid-change: `sources()` says what was
found, and the CLI prints it.

Metric filters publish under names starting with `log_` so they never collide with the EMF
metrics (`http_requests_5xx_total`, ...) in the same namespace: a log-derived count and a
metric-derived count of the same thing must stay apart, or dashboards would add them up.
Request logs of fast successful requests may be sampled (`request_log` sample_rate), so there is
no log-derived request *count*: rates come from EMF; logs count only what is never sampled
(responses >= 400, slow requests, error lines).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experimentation_platform import signals
from observability.cloud.provisioning import (
    SEVERITIES,
    LogGroupSpec,
    MetricFilterSpec,
    MonitoringDefinitions,
    SavedQuery,
)

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
    "Sources",
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

_COMPLETED = f'($.event = "{signals.REQUEST_COMPLETED}")'
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


@dataclass
class Sources:
    """Where saved queries, dashboards and alarms came from, or why they are missing."""

    found: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def _module(name: str, sources: Sources, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        sources.missing[what] = f"{name} not importable ({exc})"
        return None


def _first(module: Any, names: Sequence[str]) -> tuple[str, Any] | None:
    for name in names:
        if hasattr(module, name):
            return name, getattr(module, name)
    return None


def _call(func: Callable[..., Any], **available: Any) -> Any:
    """Call `func` with the keyword arguments it accepts among `available` (the sibling
    modules' signatures are still settling; this keeps the template renderable meanwhile)."""
    params = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return func(**available)
    return func(**{k: v for k, v in available.items() if k in params})


def _saved_queries(sources: Sources) -> tuple[SavedQuery, ...]:
    module = _module("experimentation_platform.monitoring.queries", sources, "saved queries")
    if module is None:
        return ()
    found = _first(module, ("cloudwatch_saved_queries", "SAVED_QUERIES", "saved_queries"))
    if found is None:
        sources.missing["saved queries"] = "queries.py has no SAVED_QUERIES"
        return ()
    name, value = found
    items = _call(value, log_group_prefix=LOG_GROUP_PREFIX) if callable(value) else value
    queries = tuple(_as_query(item) for item in items)
    sources.found["saved queries"] = f"queries.{name} ({len(queries)})"
    return queries


def _as_query(item: Any) -> SavedQuery:
    """A provisioning SavedQuery from queries.py's (name, query[, log groups]) shapes."""
    if isinstance(item, SavedQuery):
        return item
    if isinstance(item, tuple):
        name, text, groups = item
    else:
        name = item.name
        text = next(getattr(item, a) for a in ("query", "query_string") if hasattr(item, a))
        groups = getattr(item, "log_groups", None) or getattr(item, "log_group_names", None)
    # The template puts every query in the ResourceNamePrefix folder itself.
    short = str(name).removeprefix(RESOURCE_PREFIX + "/")
    # No groups named: the query is asked of all three (a request's lines span them).
    return SavedQuery(short, str(text), tuple(groups or (g.key for g in LOG_GROUPS)))


def _dashboards(sources: Sources, namespace: str) -> dict[str, Mapping[str, Any]]:
    module = _module("experimentation_platform.monitoring.dashboards", sources, "dashboards")
    renderer = _module("observability.dashboards.cloudwatch", sources, "dashboards")
    if module is None or renderer is None:
        return {}
    defined = getattr(module, "DASHBOARDS", None)
    render = getattr(renderer, "render_cloudwatch_dashboard", None)
    if defined is None or render is None:
        sources.missing["dashboards"] = "no DASHBOARDS or render_cloudwatch_dashboard"
        return {}
    # The region is a placeholder: the builder replaces every widget's with ${AWS::Region}.
    bodies = {d.name: render(d, namespace=namespace, region="us-east-1") for d in defined}
    sources.found["dashboards"] = f"dashboards.DASHBOARDS ({len(bodies)})"
    return bodies


def _alarms(sources: Sources, namespace: str) -> tuple[Mapping[str, Any], ...]:
    module = _module("experimentation_platform.monitoring.alerts", sources, "alarms")
    if module is None:
        return ()
    custom = getattr(module, "cloudwatch_alarms", None)
    if callable(custom):  # alerts.py may take over the rendering (dimensions, names)
        alarms = tuple(dict(a) for a in _call(custom, namespace=namespace))
        sources.found["alarms"] = f"alerts.cloudwatch_alarms() ({len(alarms)})"
        return alarms
    renderer = _module("observability.alerting.cloudwatch_alarms", sources, "alarms")
    rules = getattr(module, "RULES", None)
    render = getattr(renderer, "render_cloudwatch_alarms", None)
    if rules is None or render is None:
        sources.missing["alarms"] = "no alerts.RULES or render_cloudwatch_alarms"
        return ()
    alarms = tuple(dict(a) for a in render(rules, namespace=namespace))
    sources.found["alarms"] = f"alerts.RULES ({len(alarms)} alarms)"
    return alarms


def platform_definitions(
    *,
    namespace: str = NAMESPACE,
    saved_queries: Iterable[SavedQuery] | None = None,
    dashboards: Mapping[str, Mapping[str, Any]] | None = None,
    alarms: Iterable[Mapping[str, Any]] | None = None,
    sources: Sources | None = None,
) -> MonitoringDefinitions:
    """The platform's definitions; saved queries, dashboards and alarms come from their
    modules unless passed in (tests pass them to pin the template)."""
    sources = sources if sources is not None else Sources()
    return MonitoringDefinitions(
        namespace=namespace,
        log_groups=LOG_GROUPS,
        log_group_prefix=LOG_GROUP_PREFIX,
        resource_prefix=RESOURCE_PREFIX,
        metric_filters=METRIC_FILTERS,
        saved_queries=(
            tuple(saved_queries) if saved_queries is not None else _saved_queries(sources)
        ),
        dashboards=dict(dashboards) if dashboards is not None else _dashboards(sources, namespace),
        alarms=tuple(alarms) if alarms is not None else _alarms(sources, namespace),
        severities=SEVERITIES,
        subscription_protocols=("email", "https"),
        description=(
            "Experimentation platform monitoring: log groups and retention, metric filters, "
            "Logs Insights queries, dashboards, alarms, alert topics, application IAM policy. "
            "Generated by `ep cloud render`; edit experimentation_platform/monitoring, not this."
        ),
    )
