"""Alert rules defined once over the query model (`observability.query`): threshold and SLO
rules, expanded into alert definitions.

The same rule is evaluated in-process (`evaluate_definition` over a `MetricSource`: rolling
windows, metric history), rendered to PromQL recording and alerting rules (`prometheus_render`)
and to CloudWatch alarms (`cloudwatch_alarms`); every term has one meaning in all three.

A rule expands to one or more `AlertDefinition`s: an OR of AND-ed `Condition`s. A
`ThresholdRule` is one condition; an `SloRule` is the SRE workbook's multi-window multi-burn-rate
pair of alerts (page and ticket), each an OR over its window pairs of (long AND short).
Every term a rule uses carries its own window (`window_s`): rules have no panel to lend one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from observability.alerting.notifiers.base import SEVERITIES, Severity
from observability.alerting.templates import prefill
from observability.query.evaluate import instant
from observability.query.model import (
    METRIC_TERMS,
    BurnRate,
    ErrorRatio,
    GaugeValue,
    Labels,
    LatencyAbove,
    MetricTerm,
    window_of,
    with_window,
)
from observability.query.source import MetricSource

__all__ = [
    "WORKBOOK_WINDOWS",
    "AlertDefinition",
    "BurnWindow",
    "Comparison",
    "Condition",
    "Rule",
    "SloRule",
    "ThresholdRule",
    "compare",
    "definitions",
    "evaluate_definition",
]

Comparison = Literal[">", ">=", "<", "<="]
_COMPARISONS: tuple[str, ...] = (">", ">=", "<", "<=")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
LabelMap: TypeAlias = Mapping[str, str]


def compare(value: float, comparison: Comparison, threshold: float) -> bool:
    if math.isnan(value):
        return False
    if comparison == ">":
        return value > threshold
    if comparison == ">=":
        return value >= threshold
    if comparison == "<":
        return value < threshold
    return value <= threshold


def _check_term(owner: str, expr: object) -> None:
    if not isinstance(expr, METRIC_TERMS):
        raise ValueError(f"{owner}: {expr!r} is not a metric term of observability.query")
    if not isinstance(expr, GaugeValue) and window_of(expr) is None:
        raise ValueError(f"{owner}.window_s: a rule's {type(expr).__name__} needs a window")


# -- alert definitions ----------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    expr: MetricTerm
    comparison: Comparison
    threshold: float

    def __post_init__(self) -> None:
        if self.comparison not in _COMPARISONS:
            raise ValueError(f"Condition.comparison: must be one of {_COMPARISONS}")
        _check_term("Condition.expr", self.expr)


@dataclass(frozen=True)
class AlertDefinition:
    """One alert: fires while any clause holds (a clause holds when all its conditions do).

    `value` and `threshold` shown to humans are those of the first condition of the clause
    that held (for SLO alerts: the long window's burn rate and the burn-rate factor).
    """

    name: str
    rule: str
    severity: Severity
    clauses: tuple[tuple[Condition, ...], ...]
    summary: str
    description: str = ""
    for_seconds: int = 0
    runbook: str = ""
    dashboard: str | None = None
    labels: LabelMap = field(default_factory=dict)
    kind: Literal["threshold", "slo_page", "slo_ticket"] = "threshold"

    @property
    def threshold(self) -> float:
        return self.clauses[0][0].threshold

    def terms(self) -> list[MetricTerm]:
        return [c.expr for clause in self.clauses for c in clause]


def evaluate_definition(
    definition: AlertDefinition, source: MetricSource, now: float
) -> dict[tuple[tuple[str, str], ...], tuple[dict[str, str], float, float]]:
    """Active instances now: labels-key -> (series labels, value, threshold)."""
    active: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], float, float]] = {}
    for clause in definition.clauses:
        held: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], float, float]] | None = None
        for condition in clause:
            passing = {
                tuple(sorted(labels.items())): (labels, value, condition.threshold)
                for labels, value in instant(condition.expr, source, now)
                if compare(value, condition.comparison, condition.threshold)
            }
            # AND: the same series on both sides; the first condition's value is kept.
            held = passing if held is None else {k: v for k, v in held.items() if k in passing}
            if not held:
                break
        for key, entry in (held or {}).items():
            active.setdefault(key, entry)
    return active


# -- rules ----------------------------------------------------------------------------------
def _check_common(owner: str, name: str, severity: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{owner}.name: {name!r} must be snake_case ([a-z][a-z0-9_]*)")
    if severity not in SEVERITIES:
        raise ValueError(f"{owner}: severity must be one of {SEVERITIES}, got {severity!r}")


@dataclass(frozen=True)
class ThresholdRule:
    """`expr <comparison> threshold` held for `for_seconds` fires an alert named `name`.

    Templates may use {value}, {threshold} (with a format spec, e.g. {value:.1%}) and any
    label, e.g. {dependency}. `runbook` is the anchor in the runbook (default: the name).
    `threshold_is_duration` marks a threshold in seconds of time (a lag, an age): whoever
    shortens the windows (game days) must shorten it too, or the alert cannot fire sooner.
    Renderers ignore it.
    """

    name: str
    expr: MetricTerm
    comparison: Comparison
    threshold: float
    severity: Severity
    summary: str
    description: str = ""
    for_seconds: int = 0
    runbook: str | None = None
    dashboard: str | None = None
    labels: LabelMap = field(default_factory=dict)
    threshold_is_duration: bool = False

    def __post_init__(self) -> None:
        _check_common("ThresholdRule", self.name, self.severity)
        if self.comparison not in _COMPARISONS:
            raise ValueError(f"ThresholdRule.comparison: must be one of {_COMPARISONS}")
        _check_term(f"ThresholdRule {self.name!r} expr", self.expr)
        object.__setattr__(self, "labels", Labels(self.labels))

    def definitions(self) -> tuple[AlertDefinition, ...]:
        return (
            AlertDefinition(
                name=self.name,
                rule=self.name,
                severity=self.severity,
                clauses=((Condition(self.expr, self.comparison, self.threshold),),),
                summary=self.summary,
                description=self.description,
                for_seconds=self.for_seconds,
                runbook=self.runbook or self.name,
                dashboard=self.dashboard,
                labels=self.labels,
            ),
        )


@dataclass(frozen=True)
class BurnWindow:
    """Alert when the burn rate exceeds `burn_rate` over both the long and the short window."""

    long_s: int
    short_s: int
    burn_rate: float
    action: Literal["page", "ticket"]


# SRE workbook, "Alerting on SLOs", multiwindow multi-burn-rate for a 30-day budget: 2% and 5%
# of the budget spent in 1 h / 6 h page; 10% in 1 d / 3 d opens a ticket. Short = long / 12.
WORKBOOK_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(3600, 300, 14.4, "page"),
    BurnWindow(21600, 1800, 6.0, "page"),
    BurnWindow(86400, 7200, 3.0, "ticket"),
    BurnWindow(259200, 21600, 1.0, "ticket"),
)


@dataclass(frozen=True)
class SloRule:
    """An SLO (`objective` of events good) alerting on error-budget burn rate.

    `sli` is the *bad-event* ratio (`ErrorRatio` for availability, `LatencyAbove` for latency);
    its window is replaced by each burn window. Expands to `<name>_page` (page windows) and
    `<name>_ticket` (ticket windows); templates see {value} (burn rate), {threshold} (burn
    factor), {objective} and {budget}. `page_for_s` / `ticket_for_s` hold an alert pending
    that long before it fires: short windows stay hot after a burst as long as the burst plus
    the window, so a hold longer than that ignores bursts the service shrugs off.
    """

    name: str
    objective: float
    sli: ErrorRatio | LatencyAbove
    summary: str
    description: str = ""
    windows: tuple[BurnWindow, ...] = WORKBOOK_WINDOWS
    page_severity: Severity = Severity.CRITICAL
    ticket_severity: Severity = Severity.HIGH
    runbook: str | None = None
    dashboard: str | None = None
    labels: LabelMap = field(default_factory=dict)
    page_for_s: int = 0
    ticket_for_s: int = 0

    def __post_init__(self) -> None:
        _check_common("SloRule", self.name, self.page_severity)
        _check_common("SloRule", self.name, self.ticket_severity)
        if not isinstance(self.sli, ErrorRatio | LatencyAbove):
            raise ValueError("SloRule.sli: must be an ErrorRatio or a LatencyAbove")
        if not 0.0 < self.objective < 1.0:
            raise ValueError("SloRule.objective: must be in (0, 1), e.g. 0.999")
        for w in self.windows:
            if w.short_s >= w.long_s or w.burn_rate <= 0:
                raise ValueError(
                    "SloRule.windows: each burn window needs short < long and a positive burn rate"
                )
        object.__setattr__(self, "labels", Labels(self.labels))

    @property
    def budget(self) -> float:
        return round(1.0 - self.objective, 12)

    def burn(self, window_s: int) -> BurnRate:
        return BurnRate(with_window(self.sli, window_s), self.budget)

    def definitions(self) -> tuple[AlertDefinition, ...]:
        out: list[AlertDefinition] = []
        for action, severity, hold in (
            ("page", self.page_severity, self.page_for_s),
            ("ticket", self.ticket_severity, self.ticket_for_s),
        ):
            clauses = tuple(
                (
                    Condition(self.burn(w.long_s), ">", w.burn_rate),
                    Condition(self.burn(w.short_s), ">", w.burn_rate),
                )
                for w in self.windows
                if w.action == action
            )
            if not clauses:
                continue
            extra = {"objective": f"{self.objective * 100:g}%", "budget": str(self.budget)}
            out.append(
                AlertDefinition(
                    name=f"{self.name}_{action}",
                    rule=self.name,
                    severity=severity,
                    clauses=clauses,
                    summary=prefill(self.summary, extra),
                    description=prefill(self.description, extra),
                    for_seconds=hold,
                    runbook=self.runbook or self.name,
                    dashboard=self.dashboard,
                    labels=Labels({**self.labels, "slo": self.name}),
                    kind="slo_page" if action == "page" else "slo_ticket",
                )
            )
        return tuple(out)


Rule: TypeAlias = ThresholdRule | SloRule


def definitions(rules: Iterable[Rule]) -> list[AlertDefinition]:
    """Every alert the rules define; names must be unique."""
    out = [d for rule in rules for d in rule.definitions()]
    seen: set[str] = set()
    for d in out:
        if d.name in seen:
            raise ValueError(f"duplicate alert name {d.name!r}")
        seen.add(d.name)
    return out
