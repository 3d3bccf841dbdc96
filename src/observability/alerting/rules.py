"""Alert rules defined once: a tiny backend-neutral query language, threshold and SLO rules.

The same rule renders three ways: evaluated in-process over a `MetricSource` (rolling windows,
metric history), to PromQL recording and alerting rules (`prometheus_render`) and to CloudWatch
alarms (`cloudwatch_alarms`). The query language is deliberately small and explicit, so every
term has an obvious meaning in all three backends:

    ErrorRatio(window_s, route, method)            5xx responses / all responses
    LatencyAbove(threshold_s, window_s, ...)       fraction of requests slower than threshold
    LatencyQuantile(q, window_s, ...)              the q quantile of latency (seconds)
    CounterRate(name, labels, window_s)            per-second rate of a counter
    CounterIncrease(name, labels, window_s)        increase of a counter over the window
    GaugeValue(name, labels)                       current value, one sample per series
    Stalled(name, window_s, while_route, ...)      counter increase, only while requests flow
    BurnRate(sli, budget)                          an SLI ratio divided by the error budget

A rule expands to one or more `AlertDefinition`s: an OR of AND-ed `Condition`s. A
`ThresholdRule` is one condition; an `SloRule` is the SRE workbook's multi-window multi-burn-rate
pair of alerts (page and ticket), each an OR over its window pairs of (long AND short).

In-process counters and gauges are keyed by a flat *series key*, `name{label="value",...}`
with labels sorted (`series_key`), so one dict holds every labelled series.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeAlias

from observability.alerting.notifiers.base import SEVERITIES, Severity

__all__ = [
    "DEFAULT_INHIBIT_RULES",
    "WORKBOOK_WINDOWS",
    "AlertDefinition",
    "BurnRate",
    "BurnWindow",
    "Comparison",
    "Condition",
    "CounterIncrease",
    "CounterRate",
    "ErrorRatio",
    "GaugeValue",
    "Grouping",
    "HttpMetrics",
    "InhibitRule",
    "LatencyAbove",
    "LatencyQuantile",
    "MetricSource",
    "Query",
    "Rule",
    "Sample",
    "SloRule",
    "Stalled",
    "ThresholdRule",
    "compare",
    "definitions",
    "evaluate_definition",
    "format_duration",
    "parse_series_key",
    "render_template",
    "series_key",
    "template_fields",
]

Comparison = Literal[">", ">=", "<", "<="]
_COMPARISONS: tuple[str, ...] = (">", ">=", "<", "<=")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
Labels: TypeAlias = Mapping[str, str]


@dataclass(frozen=True)
class HttpMetrics:
    """Names of the HTTP metrics the queries refer to (Prometheus conventions by default)."""

    requests: str = "http_requests_total"
    duration: str = "http_request_duration_seconds"
    status_label: str = "status_class"
    error_status: str = "5xx"
    route_label: str = "route"
    method_label: str = "method"


# -- series keys ----------------------------------------------------------------------------
def series_key(name: str, labels: Labels | None = None) -> str:
    """`name{a="1",b="2"}` with sorted labels; just `name` without labels."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


_LABEL_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_series_key(key: str) -> tuple[str, dict[str, str]]:
    """Inverse of `series_key`: (name, labels)."""
    brace = key.find("{")
    if brace < 0 or not key.endswith("}"):
        return key, {}
    labels = {
        m.group(1): m.group(2).replace('\\"', '"').replace("\\\\", "\\")
        for m in _LABEL_PAIR.finditer(key[brace + 1 : -1])
    }
    return key[:brace], labels


def format_duration(seconds: int) -> str:
    """Prometheus duration text: 90 -> '90s', 300 -> '5m', 3600 -> '1h', 259200 -> '3d'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- the source the in-process evaluation reads -----------------------------------------------
class MetricSource(Protocol):
    """What the in-process evaluation needs from the metric store (windows end at `now`)."""

    def request_counts(
        self, window_s: int, now: float, route: str | None, method: str | None
    ) -> tuple[float, float]:
        """(all requests, 5xx responses) over the window."""
        ...

    def latency_above(
        self,
        threshold_s: float,
        window_s: int,
        now: float,
        route: str | None,
        method: str | None,
        distribution: str | None,
    ) -> tuple[float, float]:
        """(observations slower than threshold, all observations) over the window."""
        ...

    def latency_quantile(
        self,
        q: float,
        window_s: int,
        now: float,
        route: str | None,
        method: str | None,
        distribution: str | None,
    ) -> float | None: ...

    def counter_increase(self, key: str, window_s: int, now: float) -> float | None:
        """Increase of one counter series over the window; None if it was never seen."""
        ...

    def gauge_values(self, name: str, now: float) -> Mapping[str, float]:
        """Latest value of every series of gauge `name`, keyed by series key."""
        ...


Sample: TypeAlias = tuple[dict[str, str], float]


# -- queries --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorRatio:
    """Share of responses with a 5xx status (0..1); no sample while there is no traffic."""

    window_s: int = 300
    route: str | None = None
    method: str | None = None

    def evaluate(self, source: MetricSource, now: float) -> list[Sample]:
        total, errors = source.request_counts(self.window_s, now, self.route, self.method)
        return [({}, errors / total)] if total > 0 else []

    def with_window(self, window_s: int) -> ErrorRatio:
        return replace(self, window_s=window_s)


@dataclass(frozen=True)
class LatencyAbove:
    """Share of observations slower than `threshold_s`: the latency SLI's bad-event ratio.

    `distribution=None` means HTTP request latency; otherwise a named distribution
    (a Prometheus histogram in seconds, e.g. assignment_duration_seconds). In PromQL it is
    computed from the histogram bucket `le=threshold_s`, which must exist.
    """

    threshold_s: float
    window_s: int = 300
    route: str | None = None
    method: str | None = None
    distribution: str | None = None

    def evaluate(self, source: MetricSource, now: float) -> list[Sample]:
        slow, total = source.latency_above(
            self.threshold_s, self.window_s, now, self.route, self.method, self.distribution
        )
        return [({}, slow / total)] if total > 0 else []

    def with_window(self, window_s: int) -> LatencyAbove:
        return replace(self, window_s=window_s)


@dataclass(frozen=True)
class LatencyQuantile:
    """The `q` quantile of latency in seconds over the window."""

    q: float
    window_s: int = 300
    route: str | None = None
    method: str | None = None
    distribution: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.q < 1.0:
            raise ValueError("q must be in (0, 1)")

    def evaluate(self, source: MetricSource, now: float) -> list[Sample]:
        value = source.latency_quantile(
            self.q, self.window_s, now, self.route, self.method, self.distribution
        )
        return [] if value is None else [({}, value)]


@dataclass(frozen=True)
class CounterRate:
    """Per-second rate of one counter series over the window."""

    name: str
    labels: Labels = field(default_factory=dict)
    window_s: int = 300

    def evaluate(self, source: MetricSource, now: float) -> list[Sample]:
        increase = source.counter_increase(series_key(self.name, self.labels), self.window_s, now)
        return [] if increase is None else [({}, increase / self.window_s)]


@dataclass(frozen=True)
class CounterIncrease:
    """Increase of one counter series over the window (0 when it was seen but did not move)."""

    name: str
    labels: Labels = field(default_factory=dict)
    window_s: int = 300

    def evaluate(self, source: MetricSource, now: float) -> list[Sample]:
        increase = source.counter_increase(series_key(self.name, self.labels), self.window_s, now)
        return [] if increase is None else [({}, increase)]


@dataclass(frozen=True)
class GaugeValue:
    """Current value of every series of a gauge whose labels include `labels`."""

    name: str
    labels: Labels = field(default_factory=dict)

    def evaluate(self, source: MetricSource, now: float) -> list[Sample]:
        samples: list[Sample] = []
        for key, value in sorted(source.gauge_values(self.name, now).items()):
            _, labels = parse_series_key(key)
            if all(labels.get(k) == v for k, v in self.labels.items()):
                samples.append((labels, float(value)))
        return samples


@dataclass(frozen=True)
class Stalled:
    """Increase of counter `name` over the window, reported only while requests flow.

    "Requests flow" means at least one request (to `while_route`/`while_method` if set) in the
    same window; with no traffic there is no sample, so a quiet system never looks stalled.
    A counter never seen counts as 0 (the stall may have started before this process did).
    """

    name: str
    window_s: int = 900
    while_route: str | None = None
    while_method: str | None = None

    def evaluate(self, source: MetricSource, now: float) -> list[Sample]:
        total, _ = source.request_counts(self.window_s, now, self.while_route, self.while_method)
        if total <= 0:
            return []
        increase = source.counter_increase(self.name, self.window_s, now)
        return [({}, increase or 0.0)]


@dataclass(frozen=True)
class BurnRate:
    """An SLI bad-event ratio divided by the error budget: 1.0 spends the budget exactly."""

    sli: ErrorRatio | LatencyAbove
    budget: float

    def evaluate(self, source: MetricSource, now: float) -> list[Sample]:
        return [(labels, value / self.budget) for labels, value in self.sli.evaluate(source, now)]


Query: TypeAlias = (
    ErrorRatio
    | LatencyAbove
    | LatencyQuantile
    | CounterRate
    | CounterIncrease
    | GaugeValue
    | Stalled
    | BurnRate
)


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


# -- alert definitions ----------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    expr: Query
    comparison: Comparison
    threshold: float

    def __post_init__(self) -> None:
        if self.comparison not in _COMPARISONS:
            raise ValueError(f"comparison must be one of {_COMPARISONS}")


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
    labels: Labels = field(default_factory=dict)
    kind: Literal["threshold", "slo_page", "slo_ticket"] = "threshold"

    @property
    def threshold(self) -> float:
        return self.clauses[0][0].threshold


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
                for labels, value in condition.expr.evaluate(source, now)
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
def _check_common(name: str, severity: str) -> None:
    if not _NAME.fullmatch(name):
        raise ValueError(f"rule name {name!r} must be snake_case ([a-z][a-z0-9_]*)")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")


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
    expr: Query
    comparison: Comparison
    threshold: float
    severity: Severity
    summary: str
    description: str = ""
    for_seconds: int = 0
    runbook: str | None = None
    dashboard: str | None = None
    labels: Labels = field(default_factory=dict)
    threshold_is_duration: bool = False

    def __post_init__(self) -> None:
        _check_common(self.name, self.severity)
        if self.comparison not in _COMPARISONS:
            raise ValueError(f"comparison must be one of {_COMPARISONS}")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

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
    factor), {objective} and {budget}.
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
    labels: Labels = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_common(self.name, self.page_severity)
        _check_common(self.name, self.ticket_severity)
        if not 0.0 < self.objective < 1.0:
            raise ValueError("objective must be in (0, 1), e.g. 0.999")
        for w in self.windows:
            if w.short_s >= w.long_s or w.burn_rate <= 0:
                raise ValueError("each burn window needs short < long and a positive burn rate")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @property
    def budget(self) -> float:
        return round(1.0 - self.objective, 12)

    def burn(self, window_s: int) -> BurnRate:
        return BurnRate(self.sli.with_window(window_s), self.budget)

    def definitions(self) -> tuple[AlertDefinition, ...]:
        out: list[AlertDefinition] = []
        for action, severity in (("page", self.page_severity), ("ticket", self.ticket_severity)):
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
            extra = {"objective": _fmt_objective(self.objective), "budget": str(self.budget)}
            out.append(
                AlertDefinition(
                    name=f"{self.name}_{action}",
                    rule=self.name,
                    severity=severity,
                    clauses=clauses,
                    summary=_prefill(self.summary, extra),
                    description=_prefill(self.description, extra),
                    runbook=self.runbook or self.name,
                    dashboard=self.dashboard,
                    labels={**self.labels, "slo": self.name},
                    kind="slo_page" if action == "page" else "slo_ticket",
                )
            )
        return tuple(out)


def _fmt_objective(objective: float) -> str:
    return f"{objective * 100:g}%"


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


# -- templates ------------------------------------------------------------------------------
_FORMATTER = string.Formatter()


def template_fields(template: str) -> list[tuple[str, str, str]]:
    """(literal text, field name, format spec) triples of a template (field '' at the end)."""
    return [
        (literal, name or "", spec or "")
        for literal, name, spec, _conv in _FORMATTER.parse(template)
    ]


def _prefill(template: str, values: Mapping[str, str]) -> str:
    """Substitute rule-level constants now, leaving {value}/{threshold}/labels for later."""
    parts: list[str] = []
    for literal, name, spec in template_fields(template):
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if not name:
            continue
        if name in values:
            parts.append(format(values[name], spec).replace("{", "{{").replace("}", "}}"))
        else:
            parts.append("{" + name + (":" + spec if spec else "") + "}")
    return "".join(parts)


def render_template(
    template: str, value: float | None, threshold: float | None, labels: Labels
) -> str:
    """Fill {value}, {threshold} and {label} fields; unknown fields render empty."""
    parts: list[str] = []
    for literal, name, spec in template_fields(template):
        parts.append(literal)
        if not name:
            continue
        raw: Any
        if name == "value":
            raw = value
        elif name == "threshold":
            raw = threshold
        else:
            raw = labels.get(name, "")
        if raw is None:
            parts.append("n/a")
            continue
        try:
            parts.append(format(raw, spec))
        except (ValueError, TypeError):
            parts.append(str(raw))
    return "".join(parts)


# -- grouping and inhibition (shared by the evaluator and the Alertmanager renderer) ----------
@dataclass(frozen=True)
class Grouping:
    """Alertmanager-style notification grouping (its defaults: 30 s / 5 m / 4 h)."""

    group_by: tuple[str, ...] = ("alertname", "service")
    group_wait_s: int = 30
    group_interval_s: int = 300
    repeat_interval_s: int = 4 * 3600


@dataclass(frozen=True)
class InhibitRule:
    """A firing alert of a source severity mutes target-severity alerts with equal labels.

    Unlike Alertmanager (where two missing labels count as equal) every `equal` label must be
    present on both alerts; the rendered Alertmanager rule adds `label=~".+"` matchers to match.
    """

    source_severities: tuple[Severity, ...] = (Severity.CRITICAL,)
    target_severities: tuple[Severity, ...] = (Severity.HIGH, Severity.MEDIUM, Severity.LOW)
    equal: tuple[str, ...] = ("inhibit_key",)

    def mutes(self, source: Labels, target: Labels) -> bool:
        if source.get("severity") not in self.source_severities:
            return False
        if target.get("severity") not in self.target_severities:
            return False
        return all(
            source.get(name) is not None and source.get(name) == target.get(name)
            for name in self.equal
        )


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (InhibitRule(),)
