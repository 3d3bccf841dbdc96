"""The platform's four dashboards, written once as data (panels of `observability.query` terms,
the same terms the alert rules use) and rendered to the built-in UI, CloudWatch and Grafana: the
toolkit's three for any HTTP service (`observability.defaults`: system health, API performance,
error tracking) and the platform's business metrics. Every panel says what it means, what bad
looks like and where to click next; the same text appears in each backend and in
docs/dashboards.md."""

from __future__ import annotations

from experimentation_platform.telemetry import names as domain
from observability.dashboards.model import Dashboard, Panel, Threshold
from observability.defaults import API_PERFORMANCE, ERROR_TRACKING, SYSTEM_HEALTH
from observability.query.model import (
    CounterIncrease,
    CounterRate,
    GaugeValue,
    Ratio,
)

__all__ = [
    "API_PERFORMANCE",
    "BUSINESS_METRICS",
    "DASHBOARDS",
    "ERROR_TRACKING",
    "SYSTEM_HEALTH",
    "dashboard_by_name",
]

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
            (CounterIncrease(domain.CONVERSION_EVENTS, label="conversions"),),
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
