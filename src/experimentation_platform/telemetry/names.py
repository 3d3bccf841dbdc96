"""The platform's domain metric and log-event names: constants, so dashboards, alert rules and
code refer to one spelling. What the toolkit measures by itself (HTTP, database, cache,
system, errors, logs) is named in `observability.metrics.names`.

Prometheus conventions: snake_case, base units, `_total` for counters, `_seconds` for
durations, `_ratio` for 0..1 ratios; labels bounded (experiment and flag keys go through the
cardinality guard). Every metric the platform defines carries its application prefix `ep_`
(Prometheus naming guidance: a single-word prefix for the domain the metric belongs to), so
its series never collide with another exporter's on the same Prometheus; the toolkit's generic
families (`http_*`, `db_*`, `cache_*`, `system_*`, ...) keep their names for any app.
"""

from __future__ import annotations

from typing import Final

# Metrics
ASSIGNMENT_DURATION: Final = "ep_assignment_duration_seconds"  # histogram: the domain operation
ASSIGNMENTS: Final = "ep_assignments_total"  # {experiment, outcome=assigned|not_running|...}
EXPOSURES: Final = "ep_exposures_total"  # {experiment, variant}
FLAG_EVALUATION_DURATION: Final = "ep_flag_evaluation_duration_seconds"
FLAG_EVALUATIONS: Final = "ep_flag_evaluations_total"  # {flag, result=on|off}
EXPERIMENTS_CREATED: Final = "ep_experiments_created_total"
EXPERIMENTS: Final = "ep_experiments"  # gauge read from the database {status}
CONVERSION_EVENTS: Final = "ep_conversion_events_total"  # {experiment, variant}
EVENTS_INGESTED: Final = "ep_events_ingested_total"
# Gauges read from the database (running experiments), per experiment and variant: users
# exposed, users converted, their ratio and its 95% Wilson interval; the SRM check.
SAMPLE_RATIO_MISMATCH: Final = "ep_experiment_sample_ratio_mismatch"  # gauge {experiment}
EXPOSED_USERS: Final = "ep_experiment_exposed_users"  # gauge {experiment, variant}
CONVERTED_USERS: Final = "ep_experiment_converted_users"  # gauge {experiment, variant}
CONVERSION_RATE: Final = "ep_experiment_conversion_ratio"  # gauge {experiment, variant}
CONVERSION_RATE_LOW: Final = "ep_experiment_conversion_ci_low_ratio"  # gauge {experiment, variant}
CONVERSION_RATE_HIGH: Final = (
    "ep_experiment_conversion_ci_high_ratio"  # gauge {experiment, variant}
)
STATE_GAUGES: Final = (
    SAMPLE_RATIO_MISMATCH,
    EXPOSED_USERS,
    CONVERTED_USERS,
    CONVERSION_RATE,
    CONVERSION_RATE_LOW,
    CONVERSION_RATE_HIGH,
)

STATE_AGE: Final = "ep_state_age_seconds"  # gauge: age of the database snapshot above

# Log events (snake_case verbs in the past tense)
EVENTS_STORED: Final = "events_ingested"
EXPERIMENT_CREATED: Final = "experiment_created"
EXPERIMENT_STATUS_CHANGED: Final = "experiment_status_changed"
FLAG_CHANGED: Final = "flag_changed"
FAULT_INJECTED: Final = "fault_injected"
FAULT_CLEARED: Final = "fault_cleared"
