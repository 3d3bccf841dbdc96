"""The platform's four dashboards, written once and rendered to the built-in UI, CloudWatch and
Grafana. Every panel says what it means, what bad looks like and where to click next; the same
text appears in each backend and in docs/dashboards.md."""

from __future__ import annotations

from experimentation_platform.telemetry import names as domain
from observability.dashboards.model import (
    Counter,
    CounterRate,
    Dashboard,
    ErrorBreakdown,
    ErrorGroups,
    ErrorRate,
    ErrorResolution,
    ErrorTrend,
    GaugeValue,
    LatencyQuantile,
    Panel,
    Ratio,
    RequestRate,
    Threshold,
    TopRoutes,
)
from observability.metrics import names

__all__ = [
    "API_PERFORMANCE",
    "BUSINESS_METRICS",
    "DASHBOARDS",
    "ERROR_TRACKING",
    "SYSTEM_HEALTH",
    "dashboard_by_name",
]

SYSTEM_HEALTH = Dashboard(
    name="system-health",
    title="System health",
    description="Is each instance healthy: CPU, memory, disk, network, readiness, event loop.",
    tags=("system",),
    panels=(
        Panel(
            "timeseries",
            "CPU usage",
            "Share of CPU in use on the host. Bad: above 80% for minutes (requests queue, "
            "latency climbs). Next: API performance > latency, then top endpoints by latency.",
            (GaugeValue(names.SYSTEM_CPU, agg="max", label="cpu"),),
            unit="percentunit",
            thresholds=(Threshold(0.7, "warn"), Threshold(0.85, "bad")),
        ),
        Panel(
            "timeseries",
            "Memory usage",
            "Share of memory in use. Bad: a steady climb that never falls (a leak) or above 90% "
            "(swapping, OOM kills). Next: restart one instance and watch if it returns.",
            (GaugeValue(names.SYSTEM_MEMORY, agg="max", label="memory"),),
            unit="percentunit",
            thresholds=(Threshold(0.8, "warn"), Threshold(0.9, "bad")),
        ),
        Panel(
            "stat",
            "Disk usage",
            "Share of each mount in use (logs, SQLite, error store live here). Bad: above 85%: "
            "log files and databases stop growing. Next: check log retention in the runbook.",
            (GaugeValue(names.SYSTEM_DISK, by=("mount",), agg="max", label="disk"),),
            unit="percentunit",
            thresholds=(Threshold(0.75, "warn"), Threshold(0.85, "bad")),
            width=4,
        ),
        Panel(
            "timeseries",
            "Network I/O",
            "Bytes per second sent and received. Bad: a sudden drop to zero (cut off) or a "
            "spike matching errors (a client flood). Next: API performance > request rate.",
            (CounterRate(names.SYSTEM_NETWORK, by=("direction",), label="network"),),
            unit="Bps",
            width=4,
        ),
        Panel(
            "timeseries",
            "Event-loop lag",
            "How late the asyncio loop runs scheduled callbacks. Bad: above 100 ms: some code "
            "blocks the loop and every request waits. Next: top endpoints by latency.",
            (GaugeValue(names.EVENT_LOOP_LAG, agg="max", label="loop lag"),),
            unit="s",
            thresholds=(Threshold(0.05, "warn"), Threshold(0.1, "bad")),
            width=4,
        ),
        Panel(
            "table",
            "Readiness per instance",
            "1 = the dependency (database, cache) answers, 0 = it does not. Bad: any 0: that "
            "instance fails /health/ready and leaves the load balancer. Next: its logs.",
            (
                GaugeValue(
                    names.SERVICE_READY, by=("instance", "dependency"), agg="min", label="ready"
                ),
            ),
            unit="short",
            thresholds=(Threshold(1, "bad", below=True),),
            width=12,
        ),
        Panel(
            "timeseries",
            "Log lines dropped",
            "Log lines lost per second, by reason: the queue overflowed (overflow_level_N) or a "
            "sink could not write (sink_failed_file: a full disk). Bad: anything above 0: "
            "evidence is being lost. Next: disk usage, then the runbook's log_events_dropped.",
            (CounterRate(names.LOG_EVENTS_DROPPED, by=("reason",), label="dropped"),),
            unit="short",
            thresholds=(Threshold(0.001, "bad"),),
            width=12,
        ),
    ),
)

API_PERFORMANCE = Dashboard(
    name="api-performance",
    title="API performance",
    description="Rate, errors and duration of every route (the RED method).",
    tags=("api",),
    panels=(
        Panel(
            "timeseries",
            "Request rate",
            "Requests per second across all routes. Bad: a drop to zero (clients cut off) or a "
            "spike far above the usual curve. Next: top endpoints by traffic.",
            (RequestRate(),),
            unit="reqps",
        ),
        Panel(
            "timeseries",
            "Latency p50 / p95 / p99",
            "How long requests take; p99 is what the slowest 1% wait. Bad: p99 above 500 ms "
            "(the SLO) or p50 rising. Next: top endpoints by latency, then click a route.",
            (LatencyQuantile(0.5), LatencyQuantile(0.95), LatencyQuantile(0.99)),
            unit="s",
            thresholds=(Threshold(0.25, "warn"), Threshold(0.5, "bad")),
        ),
        Panel(
            "timeseries",
            "Server errors (5xx)",
            "Share of requests the service failed. Bad: above 1% (pages within minutes at "
            "5%). Next: Error tracking > top error groups, then a request's logs.",
            (ErrorRate("5xx"),),
            unit="percentunit",
            thresholds=(Threshold(0.01, "warn"), Threshold(0.05, "bad")),
        ),
        Panel(
            "timeseries",
            "Client errors (4xx)",
            "Share of requests rejected as invalid, unauthorised or not found. Bad: a sudden "
            "jump (a broken client release, a bad key, a scan). Next: top endpoints by traffic.",
            (ErrorRate("4xx"),),
            unit="percentunit",
            thresholds=(Threshold(0.1, "warn"), Threshold(0.25, "bad")),
        ),
        Panel(
            "topn",
            "Top endpoints by traffic",
            "Routes with the most requests in the range. Bad: an unexpected route on top, or "
            "'__unmatched__' (scans, broken clients). Next: click a route for its latency.",
            (TopRoutes("requests"),),
            unit="short",
            width=4,
        ),
        Panel(
            "topn",
            "Top endpoints by latency",
            "Routes with the highest p95. Bad: a hot route (assignments, flags) above 100 ms. "
            "Next: click the route for its latency over time; check System health.",
            (TopRoutes("latency"),),
            unit="ms",
            width=4,
        ),
        Panel(
            "topn",
            "Top endpoints by errors",
            "Routes with the most 5xx responses. Bad: any route with many. Next: Error "
            "tracking, filter groups by that route.",
            (TopRoutes("errors"),),
            unit="short",
            width=4,
        ),
    ),
)

BUSINESS_METRICS = Dashboard(
    name="business-metrics",
    title="Business metrics",
    description="Experiments, assignments, flags and conversions: is the product doing its job?",
    tags=("business",),
    panels=(
        Panel(
            "stat",
            "Active experiments",
            "Experiments currently running. Bad: fewer than expected after a deploy (an "
            "experiment stopped by mistake). Next: GET /experiments?status=running.",
            (
                GaugeValue(
                    domain.EXPERIMENTS, where={"status": "running"}, agg="max", label="running"
                ),
            ),
            unit="short",
            width=3,
        ),
        Panel(
            "stat",
            "Conversion events",
            "Conversion events received in the range. Bad: zero while experiments run (the "
            "event pipeline is broken). Next: API performance, route POST /events.",
            (Counter(domain.CONVERSION_EVENTS, label="conversions"),),
            unit="short",
            width=3,
        ),
        Panel(
            "timeseries",
            "Assignment rate",
            "Users assigned to variants per second, by outcome. Bad: a fall to zero, or "
            "'not_running'/'targeting' outcomes dominating. Next: top endpoints by errors.",
            (CounterRate(domain.ASSIGNMENTS, by=("outcome",), label="assignments"),),
            unit="ops",
            width=6,
        ),
        Panel(
            "timeseries",
            "Flag evaluations",
            "Feature-flag evaluations per second, by result. Bad: all 'off' after a change "
            "(a kill switch flipped). Next: the flag's audit log.",
            (CounterRate(domain.FLAG_EVALUATIONS, by=("result",), label="evaluations"),),
            unit="ops",
        ),
        Panel(
            "timeseries",
            "Conversion events rate",
            "Conversions per second per experiment. Bad: a sudden drop while assignments "
            "continue (clients stopped sending events). Next: API performance > 4xx.",
            (CounterRate(domain.CONVERSION_EVENTS, by=("experiment",), label="conversions"),),
            unit="ops",
        ),
        Panel(
            "table",
            "Conversion rate per variant",
            "Conversions divided by exposures per experiment and variant. Bad: a variant at "
            "zero (its code path is broken). Next: the experiment's results endpoint.",
            (Ratio(domain.CONVERSION_EVENTS, domain.EXPOSURES, by=("experiment", "variant")),),
            unit="percentunit",
        ),
        Panel(
            "table",
            "Sample-ratio status",
            "1 = the observed split differs from the configured one (chi-squared p < 0.001). "
            "Bad: any 1: results are not trustworthy. Next: check assignment targeting.",
            (
                GaugeValue(
                    domain.SAMPLE_RATIO_MISMATCH, by=("experiment",), agg="max", label="mismatch"
                ),
            ),
            unit="short",
            thresholds=(Threshold(1, "bad"),),
        ),
    ),
)

ERROR_TRACKING = Dashboard(
    name="error-tracking",
    title="Error tracking",
    description="Captured exceptions grouped by fingerprint: what breaks, how often, for how long.",
    tags=("errors",),
    panels=(
        Panel(
            "timeseries",
            "Error-rate trend",
            "Captured errors per minute. Bad: a step up after a deploy, or a steady stream. "
            "Next: top error groups below.",
            (ErrorTrend(names.ERROR_EVENTS),),
            unit="short",
            thresholds=(Threshold(10, "warn"), Threshold(100, "bad")),
            width=8,
        ),
        Panel(
            "stat",
            "Mean resolution time",
            "Average time from a group opening to being resolved. Bad: growing week over "
            "week. Next: the open groups, oldest first.",
            (ErrorResolution(),),
            unit="s",
            width=4,
        ),
        Panel(
            "table",
            "Top error groups",
            "Open groups with the most occurrences. Bad: a new group (first seen today) or a "
            "regression. Next: click a group: its occurrences, then a request's log lines.",
            (ErrorGroups("open", "count", 10),),
            unit="short",
            width=12,
        ),
        Panel(
            "table",
            "Errors by type",
            "Occurrences by exception type and severity. Bad: critical or high types, or a "
            "type that was rare. Next: the group of that type in the table above.",
            (ErrorBreakdown("type", names.ERROR_EVENTS, names.ERROR_GROUPS_OPEN),),
            unit="short",
        ),
        Panel(
            "stat",
            "Open vs resolved",
            "Error groups by status. Bad: open groups piling up faster than they are "
            "resolved. Next: assign the oldest open groups.",
            (ErrorBreakdown("status", names.ERROR_EVENTS, names.ERROR_GROUPS_OPEN),),
            unit="short",
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (
    SYSTEM_HEALTH,
    API_PERFORMANCE,
    BUSINESS_METRICS,
    ERROR_TRACKING,
)


def dashboard_by_name(name: str) -> Dashboard:
    for dashboard in DASHBOARDS:
        if dashboard.name == name:
            return dashboard
    raise KeyError(name)
