"""The platform's domain metric and log-event names: constants, so dashboards, alert rules and
code refer to one spelling. What the toolkit measures by itself (HTTP, database, cache,
system, errors, logs) is named in `observability.metrics.names`.

Prometheus conventions: snake_case, base units, `_total` for counters, `_seconds` for
durations; labels bounded (experiment and flag keys go through the cardinality guard).
"""

from __future__ import annotations

from typing import Final

# Metrics
ASSIGNMENT_DURATION: Final = "assignment_duration_seconds"  # histogram: the domain operation
ASSIGNMENTS: Final = "assignments_total"  # {experiment, outcome=assigned|not_running|...}
EXPOSURES: Final = "exposures_total"  # {experiment, variant}
FLAG_EVALUATION_DURATION: Final = "flag_evaluation_duration_seconds"
FLAG_EVALUATIONS: Final = "flag_evaluations_total"  # {flag, result=on|off}
EXPERIMENTS_CREATED: Final = "experiments_created_total"
EXPERIMENTS: Final = "experiments"  # gauge read from the database {status}
CONVERSION_EVENTS: Final = "conversion_events_total"  # {experiment, variant}
EVENTS_INGESTED: Final = "events_ingested_total"
# Gauges read from the database (running experiments), per experiment and variant: users
# exposed, users converted, their ratio and its 95% Wilson interval; the SRM check.
SAMPLE_RATIO_MISMATCH: Final = "experiment_sample_ratio_mismatch"  # gauge {experiment}
EXPOSED_USERS: Final = "experiment_exposed_users"  # gauge {experiment, variant}
CONVERTED_USERS: Final = "experiment_converted_users"  # gauge {experiment, variant}
CONVERSION_RATE: Final = "experiment_conversion_rate"  # gauge {experiment, variant}
CONVERSION_RATE_LOW: Final = "experiment_conversion_rate_ci_low"  # gauge {experiment, variant}
CONVERSION_RATE_HIGH: Final = "experiment_conversion_rate_ci_high"  # gauge {experiment, variant}
STATE_GAUGES: Final = (
    SAMPLE_RATIO_MISMATCH,
    EXPOSED_USERS,
    CONVERTED_USERS,
    CONVERSION_RATE,
    CONVERSION_RATE_LOW,
    CONVERSION_RATE_HIGH,
)

# Log events (snake_case verbs in the past tense)
EXPERIMENT_CREATED: Final = "experiment_created"
EXPERIMENT_STATUS_CHANGED: Final = "experiment_status_changed"
FLAG_CHANGED: Final = "flag_changed"
FAULT_INJECTED: Final = "fault_injected"
FAULT_CLEARED: Final = "fault_cleared"
