"""The platform's alert rules, routes and receivers: defined once, rendered everywhere.

    BASE_RULES     the toolkit's rules for an HTTP service (`observability.defaults`) plus the
                   platform's own; what the embedded evaluator runs (at EP_ALERT_WINDOW_SCALE,
                   scaled by the toolkit) and what the renderers turn into
                   deploy/prometheus/rules.yml and CloudWatch alarms
    ROUTES         severity -> receiver names (embedded Dispatcher and Alertmanager alike)
    BASE_GROUPING, INHIBIT_RULES, RECEIVERS   for Alertmanager (deploy/alertmanager/...)
    render_deploy_files(root)            writes both deploy files (tests compare them)

The platform's own thresholds and why (tuned with `observability.alerting.backtest`, see
docs/alerting.md; the generic ones are explained in `observability.defaults`):
- Assignment latency: 99% under 50 ms (the domain call SDKs make on every page view).
- Event ingestion stalled: no event stored for 15 minutes while clients keep posting them.
- Sample-ratio mismatch: a running experiment's split fails the chi-squared check for 5 min.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from experimentation_platform.telemetry import names as domain
from observability import defaults
from observability.alerting.alertmanager_render import (
    EmailReceiver,
    PagerDutyReceiver,
    Receiver,
    SlackReceiver,
    SnsReceiver,
    render_alertmanager_yaml,
)
from observability.alerting.cloudwatch_alarms import render_cloudwatch_alarms
from observability.alerting.grouping import Grouping, InhibitRule
from observability.alerting.notifiers import Route, Severity, routes_from_table
from observability.alerting.prometheus_render import render_rules_yaml
from observability.alerting.rules import Rule, SloRule, ThresholdRule
from observability.defaults import API_LATENCY_THRESHOLD_S
from observability.metrics import names
from observability.query.model import GaugeValue, LatencyAbove, Stalled
from observability.query.promql import PromNames

__all__ = [
    "API_LATENCY_THRESHOLD_S",
    "ASSIGNMENT_LATENCY_THRESHOLD_S",
    "BASE_GROUPING",
    "BASE_RULES",
    "HTTP_METRICS",
    "INHIBIT_RULES",
    "RECEIVERS",
    "ROUTES",
    "ROUTE_TABLE",
    "cloudwatch_alarms",
    "dashboard_url",
    "render_deploy_files",
    "runbook_url",
]

ASSIGNMENT_LATENCY_THRESHOLD_S: Final = 0.05
EVENTS_ROUTE: Final = "/api/v1/events"

HTTP_METRICS = PromNames(
    requests=names.HTTP_REQUESTS, duration=names.HTTP_DURATION, status_label="status_class"
)


def _signal(name: str) -> dict[str, str]:
    # `signal` groups related alerts into one notification and scopes inhibition.
    return {"service": "api", "signal": name}


BASE_RULES: tuple[Rule, ...] = (
    *defaults.rules(service="api"),
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
        name="event_ingestion_stalled",
        expr=Stalled(
            domain.EVENTS_INGESTED,
            window_s=900,
            requests_where={"method": "POST", "route": EVENTS_ROUTE},
        ),
        comparison="<=",
        threshold=0,
        severity=Severity.HIGH,
        summary="No events ingested for 15 minutes while clients keep posting them",
        description="POST /api/v1/events receives traffic but ep_events_ingested_total is flat.",
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
)

# critical pages someone (and reaches the AWS critical topic, where the CloudWatch alarms
# publish too); high goes to chat and mail; medium to chat; low stays on dashboards.
ROUTE_TABLE: dict[Severity, list[str]] = {
    Severity.CRITICAL: ["pagerduty", "sns"],
    Severity.HIGH: ["slack", "email"],
    Severity.MEDIUM: ["slack"],
    Severity.LOW: [],
}
ROUTES: tuple[Route, ...] = routes_from_table(ROUTE_TABLE)

BASE_GROUPING: Grouping = defaults.GROUPING
INHIBIT_RULES: tuple[InhibitRule, ...] = defaults.INHIBIT_RULES

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
    # The stack's AlertTopicCritical (deploy/cloudformation): one topic for every critical page.
    SnsReceiver(
        topic_arn="arn:aws:sns:us-east-1:123456789012:experimentation-platform-alerts-critical",
        region="us-east-1",
    ),
)

# Rendered files (deploy/) link to an instance's own pages; `ep alerts render --base-url`
# writes them for the deployment's EP_PUBLIC_BASE_URL (the committed ones use the default).
DEFAULT_BASE_URL = "http://127.0.0.1:8000"  # EP_HOST:EP_PORT by default


def runbook_url(base_url: str = DEFAULT_BASE_URL) -> str:
    """The runbook every instance serves (docs/runbook.md rendered at /ops/runbook)."""
    return f"{base_url.rstrip('/')}/ops/runbook"


def dashboard_url(base_url: str = DEFAULT_BASE_URL) -> str:
    return f"{base_url.rstrip('/')}/ops/dashboards"


# The EmfPublisher's base dimensions (the toolkit's: Service=<service>): alarms name the same.
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


def render_prometheus_rules(base_url: str = DEFAULT_BASE_URL) -> str:
    return render_rules_yaml(
        BASE_RULES,
        names=HTTP_METRICS,
        group_name="experimentation-platform",
        runbook_base_url=runbook_url(base_url),
        dashboard_base_url=dashboard_url(base_url),
    )


def render_alertmanager() -> str:
    return render_alertmanager_yaml(
        ROUTE_TABLE, RECEIVERS, grouping=BASE_GROUPING, inhibit_rules=INHIBIT_RULES
    )


def render_deploy_files(root: Path, base_url: str = DEFAULT_BASE_URL) -> dict[Path, str]:
    """Write deploy/prometheus/rules.yml and deploy/alertmanager/alertmanager.yml under root;
    rule links point at the instances behind `base_url`."""
    files = {
        root / "deploy" / "prometheus" / "rules.yml": render_prometheus_rules(base_url),
        root / "deploy" / "alertmanager" / "alertmanager.yml": render_alertmanager(),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return files
