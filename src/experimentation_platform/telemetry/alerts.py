"""The platform's alert rules, routes and receivers: defined once, rendered everywhere.

    BASE_RULES     the rule set (SLOs and thresholds) the renderers turn into
                   deploy/prometheus/rules.yml and CloudWatch alarms
    RULES          what the embedded evaluator runs: BASE_RULES at EP_ALERT_WINDOW_SCALE
    ROUTES         severity -> receiver names (embedded Dispatcher and Alertmanager alike)
    BASE_GROUPING, INHIBIT_RULES, RECEIVERS   for Alertmanager (deploy/alertmanager/...)
    GROUPING       the embedded evaluator's grouping: BASE_GROUPING at the same scale
    render_deploy_files(root)            writes both deploy files (tests compare them)

Thresholds and why (tuned with `observability.alerting.backtest`, see docs/alerting.md):
- API availability 99.9% of requests without a 5xx over 30 days.
- API latency: 99% of requests complete in under 300 ms. The API's own median is a few ms; 300
  ms is where a client's page load visibly suffers and leaves room for a cold database.
- Assignment latency: 99% under 50 ms (the domain call SDKs make on every page view).
- Saturation: CPU > 90% or memory > 90% for 10 minutes, disk > 85% for 10 minutes; the
  process's own resident memory > 90% of its budget (EP_MEMORY_BUDGET_MB) for 10 minutes.

Shortened windows (game days, tests): EP_ALERT_WINDOW_SCALE (default 1.0, accepted 0 < s <= 1)
multiplies every rule's windows and `for` durations, the thresholds that are durations
(`threshold_is_duration`, e.g. the shipping lag) and the notification grouping timers of
what the embedded evaluator runs (`RULES`, `GROUPING`), so the same code path detects within
seconds. The deploy renderings always use the unscaled `BASE_RULES` / `BASE_GROUPING`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from experimentation_platform.telemetry import names as domain
from observability.alerting.alertmanager_render import (
    EmailReceiver,
    PagerDutyReceiver,
    Receiver,
    SlackReceiver,
    SnsReceiver,
    render_alertmanager_yaml,
)
from observability.alerting.cloudwatch_alarms import render_cloudwatch_alarms
from observability.alerting.notifiers import Route, Severity, routes_from_table
from observability.alerting.prometheus_render import render_rules_yaml
from observability.alerting.rules import (
    BurnRate,
    CounterIncrease,
    ErrorRatio,
    GaugeValue,
    Grouping,
    HttpMetrics,
    InhibitRule,
    LatencyAbove,
    Rule,
    SloRule,
    Stalled,
    ThresholdRule,
)
from observability.metrics import names

__all__ = [
    "API_LATENCY_THRESHOLD_S",
    "ASSIGNMENT_LATENCY_THRESHOLD_S",
    "BASE_GROUPING",
    "BASE_RULES",
    "GROUPING",
    "HTTP_METRICS",
    "INHIBIT_RULES",
    "RECEIVERS",
    "ROUTES",
    "ROUTE_TABLE",
    "RULES",
    "WINDOW_SCALE",
    "cloudwatch_alarms",
    "render_deploy_files",
    "scale_grouping",
    "scale_rules",
]

API_LATENCY_THRESHOLD_S: Final = 0.3
ASSIGNMENT_LATENCY_THRESHOLD_S: Final = 0.05
EVENTS_ROUTE: Final = "/api/v1/events"

HTTP_METRICS = HttpMetrics(
    requests=names.HTTP_REQUESTS,
    duration=names.HTTP_DURATION,
    status_label="status_class",
    error_status="5xx",
)

_API = {"service": "api"}


def _signal(name: str) -> dict[str, str]:
    # `signal` groups related alerts into one notification and scopes inhibition.
    return {**_API, "signal": name}


BASE_RULES: tuple[Rule, ...] = (
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
        labels=_signal("availability"),
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
        labels=_signal("latency"),
    ),
    SloRule(
        name="assignment_latency",
        objective=0.99,
        sli=LatencyAbove(ASSIGNMENT_LATENCY_THRESHOLD_S, distribution=domain.ASSIGNMENT_DURATION),
        summary="Assignment latency: calls over 50 ms burn the budget at {value:.1f}x",
        description="More than 1% of assignments take longer than 50 ms ({objective} SLO).",
        dashboard="business-metrics",
        labels=_signal("assignment_latency"),
    ),
    ThresholdRule(
        name="error_rate_spike",
        expr=ErrorRatio(window_s=120),
        comparison=">",
        threshold=0.05,
        for_seconds=180,
        severity=Severity.CRITICAL,
        summary="5xx ratio {value:.1%} for 3 minutes (threshold {threshold:.0%})",
        description="More than one request in twenty fails; see the error groups for the cause.",
        dashboard="api-performance",
        labels=_signal("availability"),
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
        labels=_signal("errors"),
    ),
    ThresholdRule(
        name="dependency_not_ready",
        expr=GaugeValue(names.SERVICE_READY),
        comparison="<",
        threshold=1,
        for_seconds=60,
        severity=Severity.CRITICAL,
        summary="Dependency {dependency} not ready for over a minute",
        description="The readiness probe of {dependency} fails; requests that need it fail.",
        dashboard="system-health",
        labels=_signal("dependencies"),
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
        labels={**_signal("telemetry"), "dependency": "cloudwatch"},
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
        labels=_signal("telemetry"),
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
        labels=_signal("telemetry"),
    ),
    ThresholdRule(
        name="event_ingestion_stalled",
        expr=Stalled(
            domain.EVENTS_INGESTED, window_s=900, while_route=EVENTS_ROUTE, while_method="POST"
        ),
        comparison="<=",
        threshold=0,
        severity=Severity.HIGH,
        summary="No events ingested for 15 minutes while clients keep posting them",
        description="POST /api/v1/events receives traffic but events_ingested_total is flat.",
        dashboard="business-metrics",
        labels=_signal("ingestion"),
    ),
    ThresholdRule(
        name="sample_ratio_mismatch",
        expr=GaugeValue(domain.SAMPLE_RATIO_MISMATCH),
        comparison=">=",
        threshold=1,
        for_seconds=300,
        severity=Severity.MEDIUM,
        summary="Sample-ratio mismatch on experiment {experiment}",
        description="Observed assignment counts deviate from the configured split (chi-squared).",
        dashboard="business-metrics",
        labels=_signal("experiments"),
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
        labels=_signal("saturation"),
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
        labels=_signal("saturation"),
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
            "The platform's resident memory is close to its budget (EP_MEMORY_BUDGET_MB, by "
            "default the container's memory limit): the OOM killer or swapping comes next."
        ),
        dashboard="system-health",
        labels=_signal("saturation"),
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
        labels=_signal("saturation"),
    ),
)

# critical pages someone; high goes to chat and mail; medium to chat; low stays on dashboards.
ROUTE_TABLE: dict[Severity, list[str]] = {
    Severity.CRITICAL: ["pagerduty"],
    Severity.HIGH: ["slack", "email"],
    Severity.MEDIUM: ["slack"],
    Severity.LOW: [],
}
ROUTES: tuple[Route, ...] = routes_from_table(ROUTE_TABLE)

BASE_GROUPING = Grouping(
    group_by=("service", "signal"),
    group_wait_s=30,
    group_interval_s=300,
    repeat_interval_s=4 * 3600,
)
# A firing critical alert mutes the lower-severity alerts of the same signal (the SLO page
# mutes its ticket; the error-spike page mutes the availability ticket).
INHIBIT_RULES: tuple[InhibitRule, ...] = (InhibitRule(equal=("signal",)),)

# -- shortened windows ------------------------------------------------------------------------
SCALE_ENV: Final = "EP_ALERT_WINDOW_SCALE"
# The embedded evaluator reads windows <= 1 h from RollingWindows in 5 s slots: a window shorter
# than two slots would see a fraction of one slot, so scaled windows stop at 10 s.
MIN_SCALED_WINDOW_S: Final = 10
# A scaled duration threshold must stay above what is normal for it: the shipping lag is 1-3 s
# in steady state (the shipper batches for 1 s, then one PutLogEvents), so 30 s is a backlog.
MIN_SCALED_DURATION_THRESHOLD_S: Final = 30.0


def _read_scale() -> float:
    raw = os.environ.get(SCALE_ENV, "").strip() or "1.0"
    try:
        scale = float(raw)
    except ValueError:
        scale = float("nan")
    if not 0.0 < scale <= 1.0:  # also rejects NaN
        raise ValueError(f"{SCALE_ENV}: expected a number with 0 < value <= 1 (got {raw!r})")
    return scale


def _window(seconds: int, scale: float) -> int:
    return max(MIN_SCALED_WINDOW_S, round(seconds * scale))


def _scale_query(query: Any, scale: float) -> Any:
    if isinstance(query, BurnRate):
        return replace(query, sli=_scale_query(query.sli, scale))
    window = getattr(query, "window_s", None)
    return query if window is None else replace(query, window_s=_window(window, scale))


def scale_rules(rules: tuple[Rule, ...], scale: float) -> tuple[Rule, ...]:
    """The rules with every window, `for` and duration threshold multiplied by `scale` (1.0
    returns them as is). Windows stop at 10 s, duration thresholds at 30 s (or their own
    value when that is lower)."""
    if scale == 1.0:
        return rules
    out: list[Rule] = []
    for rule in rules:
        if isinstance(rule, SloRule):
            windows = []
            for w in rule.windows:
                short = _window(w.short_s, scale)
                # Keep short < long (the burn-rate pair) even where both hit the floor.
                long = max(_window(w.long_s, scale), short + 5)
                windows.append(replace(w, long_s=long, short_s=short))
            out.append(replace(rule, windows=tuple(windows)))
        else:
            threshold = rule.threshold
            if rule.threshold_is_duration:
                floor = min(threshold, MIN_SCALED_DURATION_THRESHOLD_S)
                threshold = max(floor, threshold * scale)
            out.append(
                replace(
                    rule,
                    expr=_scale_query(rule.expr, scale),
                    threshold=threshold,
                    for_seconds=round(rule.for_seconds * scale),
                )
            )
    return tuple(out)


def scale_grouping(grouping: Grouping, scale: float) -> Grouping:
    """Grouping timers multiplied by `scale` (a resolve would otherwise wait a full 5 minutes)."""
    if scale == 1.0:
        return grouping
    return replace(
        grouping,
        group_wait_s=max(1, round(grouping.group_wait_s * scale)),
        group_interval_s=max(1, round(grouping.group_interval_s * scale)),
        repeat_interval_s=max(1, round(grouping.repeat_interval_s * scale)),
    )


WINDOW_SCALE: Final = _read_scale()
# What the embedded evaluator runs: the base definitions at EP_ALERT_WINDOW_SCALE.
RULES: tuple[Rule, ...] = scale_rules(BASE_RULES, WINDOW_SCALE)
GROUPING: Grouping = scale_grouping(BASE_GROUPING, WINDOW_SCALE)

# Alertmanager receivers for deploy/; secrets are mounted files, never literals.
RECEIVERS: tuple[Receiver, ...] = (
    PagerDutyReceiver(),
    SlackReceiver(channel="#ep-alerts"),
    EmailReceiver(
        to="oncall@example.com",
        sender="alertmanager@example.com",
        smarthost="smtp.example.com:587",
        auth_username="alertmanager@example.com",
        auth_password_file="/etc/alertmanager/secrets/smtp_password",  # noqa: S106 - a path
    ),
    SnsReceiver(topic_arn="arn:aws:sns:us-east-1:123456789012:ep-alerts", region="us-east-1"),
)

RUNBOOK_URL = "https://github.com/example/experimentation-platform/blob/main/docs/runbook.md"
DASHBOARD_URL = "http://localhost:8000/ops/dashboards"


# The EmfPublisher's base dimensions (instrumentation.py): alarms must name the same ones.
EMF_DIMENSIONS: Final = {"Service": "experimentation-platform"}


def cloudwatch_alarms(
    namespace: str = "ExperimentationPlatform", dimensions: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """AWS::CloudWatch::Alarm Properties for the rules, over the EMF metrics in `namespace`.

    Actions reference SNS topics by logical id: AlertTopicCritical, AlertTopicHigh,
    AlertTopicMedium, AlertTopicLow. `dimensions` default to the EmfPublisher's base ones.
    """
    dims = EMF_DIMENSIONS if dimensions is None else dimensions
    return render_cloudwatch_alarms(BASE_RULES, namespace=namespace, dimensions=dims)


def render_prometheus_rules() -> str:
    return render_rules_yaml(
        BASE_RULES,
        metrics=HTTP_METRICS,
        group_name="experimentation-platform",
        runbook_base_url=RUNBOOK_URL,
        dashboard_base_url=DASHBOARD_URL,
    )


def render_alertmanager() -> str:
    return render_alertmanager_yaml(
        ROUTE_TABLE, RECEIVERS, grouping=BASE_GROUPING, inhibit_rules=INHIBIT_RULES
    )


def render_deploy_files(root: Path) -> dict[Path, str]:
    """Write deploy/prometheus/rules.yml and deploy/alertmanager/alertmanager.yml under root."""
    files = {
        root / "deploy" / "prometheus" / "rules.yml": render_prometheus_rules(),
        root / "deploy" / "alertmanager" / "alertmanager.yml": render_alertmanager(),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return files
