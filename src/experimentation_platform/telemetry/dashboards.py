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
from observability.query.model import CounterIncrease, CounterRate, GaugeValue

__all__ = [
    "API_PERFORMANCE",
    "BUSINESS_METRICS",
    "DASHBOARDS",
    "ERROR_TRACKING",
    "SYSTEM_HEALTH",
    "dashboard_by_name",
]

# Each experiment's row links to its results (per variant, with the SRM check).
RESULTS_LINK = "/api/v1/experiments/{experiment}/results"

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
            "Exposures per variant",
            "Users exposed per second, per experiment and variant. Bad: a variant far below "
            "its configured weight (see Sample-ratio status), or a fall to zero while "
            "assignments go on. Next: the experiment's results link below.",
            (CounterRate(domain.EXPOSURES, by=("experiment", "variant"), label="exposures"),),
            unit="ops",
        ),
        Panel(
            "timeseries",
            "Conversion events rate",
            "Conversion events per second, per experiment and the variant the user was exposed "
            "to ('unexposed': never assigned). Bad: a sudden drop while exposures continue "
            "(clients stopped sending events). Next: API performance > 4xx.",
            (
                CounterRate(
                    domain.CONVERSION_EVENTS, by=("experiment", "variant"), label="conversions"
                ),
            ),
            unit="ops",
        ),
        Panel(
            "table",
            "Conversion rate per variant",
            "Per running experiment and variant: users exposed, users who converted after "
            "exposure, their ratio and its 95% Wilson interval (from the database). Bad: a "
            "variant at zero (its code path is broken) or intervals that never narrow. Next: "
            "the experiment's results (the link).",
            tuple(
                GaugeValue(name, by=("experiment", "variant"), agg="max", label=label)
                for name, label in (
                    (domain.EXPOSED_USERS, "exposed"),
                    (domain.CONVERTED_USERS, "converted"),
                    (domain.CONVERSION_RATE, "rate"),
                    (domain.CONVERSION_RATE_LOW, "95% low"),
                    (domain.CONVERSION_RATE_HIGH, "95% high"),
                )
            ),
            unit="percentunit",
            column_units=("short", "short", "percentunit", "percentunit", "percentunit"),
            link=RESULTS_LINK,
            width=12,
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
            link=RESULTS_LINK,
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
