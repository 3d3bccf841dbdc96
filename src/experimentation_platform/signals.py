"""The platform's metric and log-event names: constants, so dashboards, alert rules and code
refer to one spelling. Prometheus conventions: snake_case, base units, `_total` for counters,
`_seconds` for durations; labels bounded (route templates, never ids)."""

from __future__ import annotations

# HTTP (recorded by the observability middleware for every request)
HTTP_REQUESTS = "http_requests_total"  # {method, route, status_class}
HTTP_DURATION = "http_request_duration_seconds"  # histogram {method, route}
HTTP_IN_FLIGHT = "http_requests_in_flight"
HTTP_REQUEST_SIZE = "http_request_size_bytes"
HTTP_RESPONSE_SIZE = "http_response_size_bytes"

# Database and cache
DB_QUERY_DURATION = "db_query_duration_seconds"  # histogram {operation}
DB_SLOW_QUERIES = "db_slow_queries_total"  # {operation}
DB_POOL_IN_USE = "db_pool_connections_in_use"
DB_POOL_OVERFLOW = "db_pool_overflow"
CACHE_REQUESTS = "cache_requests_total"  # {backend, outcome=hit|miss|error}
CACHE_EVICTIONS = "cache_evictions_total"  # {backend}

# Domain
ASSIGNMENT_DURATION = "assignment_duration_seconds"  # histogram: the domain operation
ASSIGNMENTS = "assignments_total"  # {experiment, outcome=assigned|not_running|targeting|...}
EXPOSURES = "exposures_total"  # {experiment}
FLAG_EVALUATION_DURATION = "flag_evaluation_duration_seconds"
FLAG_EVALUATIONS = "flag_evaluations_total"  # {flag, result=on|off}
EXPERIMENTS_CREATED = "experiments_created_total"
EXPERIMENTS = "experiments"  # gauge read from the database {status}
CONVERSION_EVENTS = "conversion_events_total"  # {experiment}
EVENTS_INGESTED = "events_ingested_total"
SAMPLE_RATIO_MISMATCH = "experiment_sample_ratio_mismatch"  # gauge {experiment}: 1 = mismatch
CARDINALITY_OVERFLOW = "metric_label_overflow_total"  # {metric}

# Errors and telemetry about telemetry
ERROR_EVENTS = "error_events_total"  # {severity}
ERROR_GROUPS_OPEN = "error_groups_open"  # gauge {severity}
LOG_EVENTS = "observability_log_events_total"  # {level}
LOG_EVENTS_DROPPED = "observability_log_events_dropped_total"  # {reason}
LOG_SINK_ERRORS = "observability_log_sink_errors_total"  # {sink}
CLOUDWATCH_SHIPPED = "cloudwatch_events_shipped_total"
CLOUDWATCH_DROPPED = "cloudwatch_events_dropped_total"  # {reason}
CLOUDWATCH_LAG = "cloudwatch_shipping_lag_seconds"

# System and process
SYSTEM_CPU = "system_cpu_usage_ratio"
SYSTEM_MEMORY = "system_memory_usage_ratio"
SYSTEM_DISK = "system_disk_usage_ratio"  # {mount}
SYSTEM_NETWORK = "system_network_bytes_total"  # {direction}
EVENT_LOOP_LAG = "event_loop_lag_seconds"
PROCESS_MEMORY = "process_memory_usage_ratio"  # resident memory / EP_MEMORY_BUDGET_MB
SERVICE_READY = "service_ready"  # gauge {dependency}: 1 ready, 0 not

# Log events (snake_case verbs in the past tense)
REQUEST_COMPLETED = "request_completed"
REQUEST_FAILED = "request_failed"
SERVICE_STARTED = "service_started"
EXPERIMENT_CREATED = "experiment_created"
EXPERIMENT_STATUS_CHANGED = "experiment_status_changed"
FLAG_CHANGED = "flag_changed"
