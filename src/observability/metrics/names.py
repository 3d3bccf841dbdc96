"""The toolkit's own metric and log-event names: one spelling for instruments, dashboards,
alert rules and docs. Prometheus conventions: snake_case, base units, `_total` for counters,
`_seconds` for durations; labels bounded (route templates, never ids).

An application keeps only its domain names (the platform's are in its `telemetry.names`);
everything the toolkit measures by itself is named here.
"""

from __future__ import annotations

from typing import Final

# HTTP (recorded by the middleware for every request)
HTTP_REQUESTS: Final = "http_requests_total"  # {method, route, status_class}
HTTP_DURATION: Final = "http_request_duration_seconds"  # histogram {method, route}
HTTP_IN_FLIGHT: Final = "http_requests_in_flight"
HTTP_REQUEST_SIZE: Final = "http_request_size_bytes"
HTTP_RESPONSE_SIZE: Final = "http_response_size_bytes"

# Database and cache (instrument_engine, CacheMetrics)
DB_QUERY_DURATION: Final = "db_query_duration_seconds"  # histogram {operation}
DB_SLOW_QUERIES: Final = "db_slow_queries_total"  # {operation}
DB_POOL_IN_USE: Final = "db_pool_connections_in_use"
DB_POOL_OVERFLOW: Final = "db_pool_overflow"
DB_POOL_WAIT: Final = "db_pool_wait_seconds"  # histogram: time to check out a connection
CACHE_REQUESTS: Final = "cache_requests_total"  # {backend, outcome=hit|miss|error}
CACHE_EVICTIONS: Final = "cache_evictions_total"  # {backend}
CACHE_DURATION: Final = "cache_operation_duration_seconds"  # histogram {backend, operation}
CACHE_OPERATIONS: Final = "cache_operations_total"  # {backend, operation}
CACHE_ERRORS: Final = "cache_errors_total"  # {backend, operation}: the backend failed

# Errors and telemetry about telemetry
ERROR_EVENTS: Final = "error_events_total"  # {severity}
ERROR_GROUPS_OPEN: Final = "error_groups_open"  # gauge {severity}
LOG_EVENTS: Final = "observability_log_events_total"  # {level}
LOG_EVENTS_DROPPED: Final = "observability_log_events_dropped_total"  # {reason}
LOG_SINK_ERRORS: Final = "observability_log_sink_errors_total"  # {sink}
CLOUDWATCH_SHIPPED: Final = "cloudwatch_events_shipped_total"
CLOUDWATCH_DROPPED: Final = "cloudwatch_events_dropped_total"  # {reason}
CLOUDWATCH_LAG: Final = "cloudwatch_shipping_lag_seconds"
CARDINALITY_OVERFLOW: Final = "metric_label_overflow_total"  # {metric}
LOG_AUDIT_FINDINGS: Final = "log_audit_findings_total"  # {detector}: secrets found after the fact

# System and process
SYSTEM_CPU: Final = "system_cpu_usage_ratio"
SYSTEM_MEMORY: Final = "system_memory_usage_ratio"
SYSTEM_DISK: Final = "system_disk_usage_ratio"  # {mount}
SYSTEM_NETWORK: Final = "system_network_bytes_total"  # {direction}
EVENT_LOOP_LAG: Final = "event_loop_lag_seconds"
PROCESS_MEMORY: Final = "process_memory_usage_ratio"  # resident memory / memory budget
SERVICE_READY: Final = "service_ready"  # gauge {dependency}: 1 ready, 0 not
SERVICE_DEGRADED: Final = "service_degraded"  # gauge {dependency}: 1 answered slowly
READINESS_CHECK_DURATION: Final = "readiness_check_duration_seconds"  # gauge {dependency}

# The fleet (read from the shared instance registry: the same on every instance)
INSTANCES_UP: Final = "instances_up"
INSTANCES_LOST: Final = "instances_lost"  # stopped heartbeating without a clean stop
INSTANCE_UP: Final = "instance_up"  # {instance}: 1 heartbeating, 0 lost

# Log events (snake_case verbs in the past tense)
REQUEST_COMPLETED: Final = "request_completed"
REQUEST_FAILED: Final = "request_failed"
LOG_AUDIT_FINDING: Final = (
    "log_audit_finding"  # the periodic audit found a secret (where, not what)
)
SERVICE_STARTED: Final = "service_started"
SERVICE_STOPPING: Final = "service_stopping"
SERVICE_STOPPED: Final = "service_stopped"  # the last line of a clean shutdown
SLOW_QUERY: Final = "slow_query"
