"""The toolkit's defaults for an HTTP service: three dashboards (system health, API
performance, error tracking) and the alert rules that go with them, written once as data.

An app that says nothing gets these; an app with its own panels and rules adds them beside
these (`(*defaults.dashboards(), MY_BOARD)`, `(*defaults.rules(), MY_RULE)`). Every panel says
what it means, what bad looks like and where to click next. Rule thresholds and why (tuned
with `observability.alerting.backtest` against bursts of errors and failed readiness probes of
up to 5 minutes, which the service shrugs off; see docs/alerting.md). Every rule that pages
holds longer than a burst plus the window the burst keeps hot:

- API availability: 99.9% of requests without a 5xx over 30 days (multi-window burn rates);
  the page holds 36 minutes (the 30-minute short window plus a burst), the ticket 6 h 10 min.
- Errors: more than half of all requests failing for 2 minutes pages (bursts stay under
  half); more than 6% for 7 minutes pages; more than 5% for 4 minutes opens a ticket.
- A dependency not ready pages after 6 minutes (a readiness probe blip lasts up to 5).
- A slow dependency opens a ticket: database statements p95 above 250 ms for 1 minute (a
  statement takes a few ms on a healthy database; 250 ms is where every request that runs a
  handful of them misses the API's 300 ms objective); cache calls p95 above 100 ms for 2
  minutes (a Redis round trip is well under a millisecond; its client gives up at 500 ms);
  more than 5% of cache calls failing for 5 minutes (the database serves what the cache
  would, slower). Each carries `dependency=` so evidence and receivers name the dependency.
- API latency: 99% of requests complete in under 300 ms. A service's own median is a few ms;
  300 ms is where a client's page load visibly suffers and leaves room for a cold database.
- Saturation: CPU or memory > 90% for 10 minutes, disk > 85% for 10 minutes; the process's own
  resident memory > 90% of its budget for 10 minutes.
"""

from __future__ import annotations

from typing import Final

from observability.alerting.grouping import Grouping, InhibitRule
from observability.alerting.rules import Rule, SloRule, ThresholdRule
from observability.dashboards.model import Dashboard, Panel, Threshold
from observability.metrics import names
from observability.query.model import (
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
    Ratio,
    RequestRate,
    TopRoutes,
)
from observability.severity import Severity

__all__ = [
    "API_LATENCY_THRESHOLD_S",
    "API_PERFORMANCE",
    "CACHE_ERROR_RATIO_THRESHOLD",
    "CACHE_LATENCY_THRESHOLD_S",
    "DATABASE_LATENCY_THRESHOLD_S",
    "ERROR_TRACKING",
    "GROUPING",
    "INHIBIT_RULES",
    "SYSTEM_HEALTH",
    "dashboards",
    "rules",
]

API_LATENCY_THRESHOLD_S: Final = 0.3
DATABASE_LATENCY_THRESHOLD_S: Final = 0.25
CACHE_LATENCY_THRESHOLD_S: Final = 0.1
CACHE_ERROR_RATIO_THRESHOLD: Final = 0.05
_OPERATIONS = ("select", "insert", "update", "delete")

# -- dashboards --------------------------------------------------------------------------------
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
            "Share of each mount in use (logs and the SQLite stores live here). Bad: above 85%: "
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
            "timeseries",
            "Dependencies: database statement latency",
            "How long the database takes per SQL statement (the round trip, without ORM "
            "work), p50 / p95 / p99. Bad: p95 above 250 ms (a slow network, locks, a missing "
            "index): every request waits for it. Next: the per-operation panel, then "
            "`ep logs --where event=slow_query` for the statements.",
            (
                LatencyQuantile(0.5, distribution=names.DB_QUERY_DURATION, label="p50"),
                LatencyQuantile(0.95, distribution=names.DB_QUERY_DURATION, label="p95"),
                LatencyQuantile(0.99, distribution=names.DB_QUERY_DURATION, label="p99"),
            ),
            unit="s",
            thresholds=(Threshold(0.1, "warn"), Threshold(DATABASE_LATENCY_THRESHOLD_S, "bad")),
        ),
        Panel(
            "timeseries",
            "Dependencies: database p95 by operation",
            "Statement p95 per operation. Bad: one operation slow while the others are fast "
            "(locks on writes, a scan on reads); all of them slow: the database or the network "
            "to it. Next: slow_query log lines of that operation.",
            tuple(
                LatencyQuantile(
                    0.95, {"operation": op}, distribution=names.DB_QUERY_DURATION, label=op
                )
                for op in _OPERATIONS
            ),
            unit="s",
            thresholds=(Threshold(0.1, "warn"), Threshold(DATABASE_LATENCY_THRESHOLD_S, "bad")),
        ),
        Panel(
            "timeseries",
            "Dependencies: database pool in use",
            "Connections checked out of the pool (and beyond its size). Bad: in use stuck at "
            "the pool size: requests queue for a connection. Next: pool wait, then statement "
            "latency (slow statements hold connections longer).",
            (
                GaugeValue(names.DB_POOL_IN_USE, agg="sum", label="in use"),
                GaugeValue(names.DB_POOL_OVERFLOW, agg="sum", label="overflow"),
            ),
            unit="short",
            width=4,
        ),
        Panel(
            "timeseries",
            "Dependencies: database pool wait",
            "Time to check out a connection (waiting for a free one, connecting, the "
            "pre-ping), p95 / p99. Bad: above 100 ms: the pool is exhausted or the database "
            "slow to answer a ping. Next: pool in use, statement latency.",
            (
                LatencyQuantile(0.95, distribution=names.DB_POOL_WAIT, label="p95"),
                LatencyQuantile(0.99, distribution=names.DB_POOL_WAIT, label="p99"),
            ),
            unit="s",
            thresholds=(Threshold(0.05, "warn"), Threshold(0.1, "bad")),
            width=4,
        ),
        Panel(
            "timeseries",
            "Dependencies: cache latency and errors",
            "Cache call p95 (look-ups, stores, invalidations; in-process: microseconds, Redis: "
            "about a millisecond) and the share of calls the backend failed. Bad: p95 above "
            "100 ms, or errors above 5% (reads fall through to the database). Next: readiness "
            "of the cache, then Redis itself.",
            (
                LatencyQuantile(0.95, distribution=names.CACHE_DURATION, label="p95"),
                Ratio(names.CACHE_ERRORS, names.CACHE_OPERATIONS, label="error ratio"),
            ),
            unit="s",
            thresholds=(Threshold(CACHE_LATENCY_THRESHOLD_S, "bad"),),
            width=4,
        ),
        Panel(
            "timeseries",
            "Dependencies: readiness check latency",
            "How long each dependency's readiness check took (a query, a ping). Bad: above "
            "the degraded threshold (EP_READINESS_DEGRADED_SECONDS, 250 ms by default): "
            "/health/ready says degraded. Next: that dependency's latency panels.",
            (GaugeValue(names.READINESS_CHECK_DURATION, by=("dependency",), agg="max"),),
            unit="s",
            thresholds=(Threshold(0.25, "bad"),),
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
            width=8,
        ),
        Panel(
            "table",
            "Instances",
            "Every instance (and worker) of the fleet: 1 = it heartbeats, 0 = it stopped without "
            "a clean stop (killed, crashed host). Bad: any 0. Next: that host's logs and "
            "/ops/api/instances; a clean stop leaves the list.",
            (GaugeValue(names.INSTANCE_UP, by=("instance",), agg="min", label="up"),),
            unit="short",
            thresholds=(Threshold(1, "bad", below=True),),
            width=4,
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
            (ErrorRatio("5xx"),),
            unit="percentunit",
            thresholds=(Threshold(0.01, "warn"), Threshold(0.05, "bad")),
        ),
        Panel(
            "timeseries",
            "Client errors (4xx)",
            "Share of requests rejected as invalid, unauthorised or not found. Bad: a sudden "
            "jump (a broken client release, a bad key, a scan). Next: top endpoints by traffic.",
            (ErrorRatio("4xx"),),
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
            "Routes with the highest p95. Bad: a hot route above 100 ms. "
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


def dashboards() -> tuple[Dashboard, ...]:
    """The three default dashboards, in menu order."""
    return (SYSTEM_HEALTH, API_PERFORMANCE, ERROR_TRACKING)


# -- alert rules -------------------------------------------------------------------------------
def _signal(name: str, service: str) -> dict[str, str]:
    # `signal` groups related alerts into one notification and scopes inhibition.
    return {"service": service, "signal": name}


def rules(service: str = "api") -> tuple[Rule, ...]:
    """The default rules; `service` is the label that names this service in every alert."""
    return (
        SloRule(
            name="api_availability",
            objective=0.999,
            sli=ErrorRatio(),
            summary="API availability: error budget burning at {value:.1f}x (over {threshold:g}x)",
            description=(
                "The share of 5xx responses would exhaust the {objective} availability SLO's "
                "30-day error budget ({budget} of requests) early if it continues."
            ),
            dashboard="api-performance",
            labels=_signal("availability", service),
            page_for_s=36 * 60,
            ticket_for_s=6 * 3600 + 600,
        ),
        SloRule(
            name="api_latency",
            objective=0.99,
            sli=LatencyAbove(API_LATENCY_THRESHOLD_S),
            summary="API latency: requests over 300 ms burn the budget at {value:.1f}x",
            description=(
                "More than 1% of requests take longer than 300 ms ({objective} SLO); the error "
                "budget burns at {value:.1f}x the sustainable rate."
            ),
            dashboard="api-performance",
            labels=_signal("latency", service),
        ),
        ThresholdRule(
            name="error_rate_outage",
            expr=ErrorRatio(window_s=60),
            comparison=">",
            threshold=0.5,
            for_seconds=120,
            severity=Severity.CRITICAL,
            summary="{value:.0%} of requests fail (threshold {threshold:.0%} for 2 minutes)",
            description="Most requests fail: an outage, not a burst. A dependency down?",
            dashboard="api-performance",
            labels=_signal("availability", service),
        ),
        ThresholdRule(
            name="error_rate_spike",
            expr=ErrorRatio(window_s=120),
            comparison=">",
            threshold=0.06,
            for_seconds=420,
            severity=Severity.CRITICAL,
            summary="5xx ratio {value:.1%} for 7 minutes (threshold {threshold:.0%})",
            description=(
                "More than 6% of requests have failed for 7 minutes: longer than any burst the "
                "service shrugs off. See the error groups for the cause."
            ),
            dashboard="api-performance",
            labels=_signal("availability", service),
        ),
        ThresholdRule(
            name="error_rate_elevated",
            expr=ErrorRatio(window_s=120),
            comparison=">",
            threshold=0.05,
            for_seconds=240,
            severity=Severity.HIGH,
            summary="5xx ratio {value:.1%} for 4 minutes (threshold {threshold:.0%})",
            description=(
                "More than one request in twenty has failed for 4 minutes: longer than most "
                "bursts, shorter than a page. See the error groups for the cause."
            ),
            dashboard="api-performance",
            labels=_signal("availability", service),
        ),
        ThresholdRule(
            name="critical_error_group",
            expr=CounterIncrease(names.ERROR_EVENTS, {"severity": "critical"}, window_s=300),
            comparison=">",
            threshold=0,
            severity=Severity.HIGH,
            summary="{value:.0f} critical error event(s) in the last 5 minutes",
            description="An error classified critical was captured; open its error group.",
            dashboard="error-tracking",
            labels=_signal("errors", service),
        ),
        ThresholdRule(
            name="dependency_not_ready",
            expr=GaugeValue(names.SERVICE_READY),
            comparison="<",
            threshold=1,
            for_seconds=360,
            severity=Severity.CRITICAL,
            summary="Dependency {dependency} not ready for over 6 minutes",
            description="The readiness probe of {dependency} fails; requests that need it fail.",
            dashboard="system-health",
            labels=_signal("dependencies", service),
        ),
        ThresholdRule(
            name="database_latency_high",
            expr=LatencyQuantile(0.95, window_s=120, distribution=names.DB_QUERY_DURATION),
            comparison=">",
            threshold=DATABASE_LATENCY_THRESHOLD_S,
            for_seconds=60,
            severity=Severity.HIGH,
            summary="Database statements p95 {value:.3f}s (threshold {threshold:g}s)",
            description="SQL statements are slow (network to the database, locks, load); "
            "every request that queries the database waits for them.",
            dashboard="system-health",
            labels={**_signal("dependencies", service), "dependency": "database"},
        ),
        ThresholdRule(
            name="cache_latency_high",
            expr=LatencyQuantile(0.95, window_s=120, distribution=names.CACHE_DURATION),
            comparison=">",
            threshold=CACHE_LATENCY_THRESHOLD_S,
            for_seconds=120,
            severity=Severity.MEDIUM,
            summary="Cache calls p95 {value:.3f}s (threshold {threshold:g}s)",
            description="The configuration cache answers slowly; requests that read "
            "experiments and flags wait for it.",
            dashboard="system-health",
            labels={**_signal("dependencies", service), "dependency": "cache"},
        ),
        ThresholdRule(
            name="cache_errors_high",
            expr=Ratio(names.CACHE_ERRORS, names.CACHE_OPERATIONS, window_s=300),
            comparison=">",
            threshold=CACHE_ERROR_RATIO_THRESHOLD,
            for_seconds=300,
            severity=Severity.MEDIUM,
            summary="{value:.1%} of cache calls fail (threshold {threshold:.0%})",
            description="The cache backend fails calls; reads fall through to the database "
            "and invalidations fail the writes that need them.",
            dashboard="system-health",
            labels={**_signal("dependencies", service), "dependency": "cache"},
        ),
        ThresholdRule(
            name="log_shipping_lag",
            expr=GaugeValue(names.CLOUDWATCH_LAG),
            comparison=">",
            threshold=300,
            threshold_is_duration=True,
            for_seconds=300,
            severity=Severity.MEDIUM,
            summary="CloudWatch log shipping {value:.0f}s behind (threshold {threshold:.0f}s)",
            description="Logs reach CloudWatch late; the local journal is buffering them.",
            dashboard="system-health",
            # The gauge has no labels: the rule names what is behind, for evidence and receivers.
            labels={**_signal("telemetry", service), "dependency": "cloudwatch"},
        ),
        ThresholdRule(
            name="log_events_dropped",
            expr=CounterIncrease(names.LOG_EVENTS_DROPPED, window_s=600),
            comparison=">",
            threshold=0,
            severity=Severity.MEDIUM,
            summary="{value:.0f} log events dropped in the last 10 minutes",
            description="The logging queue overflowed or a sink failed; evidence is being lost.",
            dashboard="system-health",
            labels=_signal("telemetry", service),
        ),
        ThresholdRule(
            name="log_audit_findings",
            expr=CounterIncrease(names.LOG_AUDIT_FINDINGS, window_s=3600),
            comparison=">",
            threshold=0,
            severity=Severity.HIGH,
            summary="{value:.0f} secret(s) or personal data found in stored logs by the audit",
            description="The log audit found what masking let through; the lines are evidence "
            "to fix and to purge (ep logs audit lists them).",
            dashboard="system-health",
            labels=_signal("telemetry", service),
        ),
        ThresholdRule(
            name="cpu_saturation",
            expr=GaugeValue(names.SYSTEM_CPU),
            comparison=">",
            threshold=0.9,
            for_seconds=600,
            severity=Severity.MEDIUM,
            summary="CPU at {value:.0%} for 10 minutes (threshold {threshold:.0%})",
            dashboard="system-health",
            labels=_signal("saturation", service),
        ),
        ThresholdRule(
            name="memory_saturation",
            expr=GaugeValue(names.SYSTEM_MEMORY),
            comparison=">",
            threshold=0.9,
            for_seconds=600,
            severity=Severity.HIGH,
            summary="Memory at {value:.0%} for 10 minutes (threshold {threshold:.0%})",
            dashboard="system-health",
            labels=_signal("saturation", service),
        ),
        ThresholdRule(
            name="process_memory_high",
            expr=GaugeValue(names.PROCESS_MEMORY),
            comparison=">",
            threshold=0.9,
            for_seconds=600,
            severity=Severity.HIGH,
            summary="Process memory at {value:.0%} of its budget for 10 minutes "
            "(threshold {threshold:.0%})",
            description=(
                "The process's resident memory is close to its budget (the memory_budget_mb "
                "setting, by default the container's memory limit): the OOM killer or swapping "
                "comes next."
            ),
            dashboard="system-health",
            labels=_signal("saturation", service),
        ),
        ThresholdRule(
            name="disk_saturation",
            expr=GaugeValue(names.SYSTEM_DISK),
            comparison=">",
            threshold=0.85,
            for_seconds=600,
            severity=Severity.HIGH,
            summary="Disk {mount} at {value:.0%} (threshold {threshold:.0%})",
            dashboard="system-health",
            labels=_signal("saturation", service),
        ),
        ThresholdRule(
            name="instance_missing",
            expr=GaugeValue(names.INSTANCES_LOST),
            comparison=">",
            threshold=0,
            for_seconds=60,
            severity=Severity.HIGH,
            summary="{value:.0f} instance(s) stopped heartbeating without a clean stop",
            description=(
                "An instance of the fleet was killed or its host is gone: the load balancer may "
                "still send it traffic, and its last unrecorded minutes are lost."
            ),
            dashboard="system-health",
            labels=_signal("fleet", service),
        ),
    )


# Alerts of one signal of one service form one notification group.
GROUPING: Final = Grouping(
    group_by=("service", "signal"),
    group_wait_s=30,
    group_interval_s=300,
    repeat_interval_s=4 * 3600,
)
# A firing critical alert mutes the lower-severity alerts of the same signal (the SLO page
# mutes its ticket; the error pages mute the availability ticket and error_rate_elevated).
INHIBIT_RULES: Final[tuple[InhibitRule, ...]] = (InhibitRule(equal=("signal",)),)
