"""Dashboards as data: panels and backend-neutral queries, rendered by pure functions.

A dashboard is written once (the platform's live in its ``monitoring`` package) and rendered to
the built-in web UI (``observability.dashboards.data``), CloudWatch dashboard bodies
(``observability.dashboards.cloudwatch``) and Grafana JSON over Prometheus
(``observability.dashboards.grafana``). Queries name metrics by string (the host passes its own
constants); each renderer translates a query into its backend or says it cannot (a store-backed
query such as ``ErrorGroups`` has no Prometheus equivalent and renders as a text panel).

Units use Grafana's unit ids because they are the most precise common vocabulary
(``reqps``, ``percentunit`` = a 0..1 ratio shown as %, ``s``, ``ms``, ``bytes``, ``Bps``,
``short``); the other renderers map them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "QUERY_TYPES",
    "Counter",
    "CounterRate",
    "Dashboard",
    "ErrorBreakdown",
    "ErrorGroups",
    "ErrorRate",
    "ErrorResolution",
    "ErrorTrend",
    "GaugeValue",
    "LatencyQuantile",
    "Panel",
    "PanelKind",
    "Query",
    "Ratio",
    "RequestRate",
    "SeriesFrom",
    "Threshold",
    "TopRoutes",
    "Unit",
    "labels_key",
    "parse_series_key",
]

PanelKind = Literal["timeseries", "stat", "table", "topn"]
Unit = Literal["reqps", "percentunit", "s", "ms", "bytes", "Bps", "short", "ops", "none"]
StatusClass = Literal["4xx", "5xx"]
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _check_metric(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid metric name {name!r} (Prometheus naming: [a-zA-Z_:][\\w:]*)")


def _check_labels(labels: Sequence[str]) -> None:
    for label in labels:
        if not _NAME.match(label) or ":" in label:
            raise ValueError(f"invalid label name {label!r}")


# -- queries --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RequestRate:
    """HTTP requests per second (all routes, or one ``"METHOD /template"`` route)."""

    route: str | None = None
    label: str = "requests/s"


@dataclass(frozen=True, slots=True)
class ErrorRate:
    """Share (0..1) of requests answered with a 4xx or 5xx status."""

    status_class: StatusClass = "5xx"
    route: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.status_class not in ("4xx", "5xx"):
            raise ValueError("status_class must be '4xx' or '5xx'")
        if not self.label:
            object.__setattr__(self, "label", f"{self.status_class} ratio")


@dataclass(frozen=True, slots=True)
class LatencyQuantile:
    """A request latency quantile in seconds (0.5, 0.95 or 0.99: what every backend keeps)."""

    q: float
    route: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if self.q not in (0.5, 0.95, 0.99):
            raise ValueError("q must be 0.5, 0.95 or 0.99 (the quantiles EMF and the UI keep)")
        if not self.label:
            object.__setattr__(self, "label", f"p{round(self.q * 100):d}")


@dataclass(frozen=True, slots=True)
class CounterRate:
    """Per-second rate of a counter, summed, optionally split by bounded labels."""

    name: str
    by: tuple[str, ...] = ()
    where: Mapping[str, str] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        _check_metric(self.name)
        _check_labels(self.by)
        _check_labels(tuple(self.where))
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True, slots=True)
class Counter:
    """Total increase of a counter over the selected range (a stat), optionally split."""

    name: str
    by: tuple[str, ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        _check_metric(self.name)
        _check_labels(self.by)
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True, slots=True)
class GaugeValue:
    """The current value of a gauge, aggregated (sum/max/min/avg) over everything not in ``by``."""

    name: str
    by: tuple[str, ...] = ()
    where: Mapping[str, str] = field(default_factory=dict)
    agg: Literal["sum", "max", "min", "avg"] = "sum"
    label: str = ""

    def __post_init__(self) -> None:
        _check_metric(self.name)
        _check_labels(self.by)
        _check_labels(tuple(self.where))
        if self.agg not in ("sum", "max", "min", "avg"):
            raise ValueError("agg must be sum, max, min or avg")
        if not self.label:
            object.__setattr__(self, "label", self.name)


@dataclass(frozen=True, slots=True)
class Ratio:
    """``numerator / denominator`` of two counters' increases, per group of ``by`` labels."""

    numerator: str
    denominator: str
    by: tuple[str, ...] = ()
    label: str = "ratio"

    def __post_init__(self) -> None:
        _check_metric(self.numerator)
        _check_metric(self.denominator)
        _check_labels(self.by)


@dataclass(frozen=True, slots=True)
class TopRoutes:
    """The routes with the most traffic, the slowest p95, or the most 5xx responses."""

    by: Literal["requests", "latency", "errors"] = "requests"
    limit: int = 10
    label: str = ""

    def __post_init__(self) -> None:
        if self.by not in ("requests", "latency", "errors"):
            raise ValueError("by must be requests, latency or errors")
        if not 1 <= self.limit <= 100:
            raise ValueError("limit must be between 1 and 100")
        if not self.label:
            object.__setattr__(self, "label", f"top routes by {self.by}")


@dataclass(frozen=True, slots=True)
class ErrorGroups:
    """The error store's groups (fingerprinted exceptions), most frequent first."""

    status: Literal["open", "resolved", "ignored"] | None = "open"
    sort: Literal["count", "last_seen", "users"] = "count"
    limit: int = 10
    label: str = "error groups"


@dataclass(frozen=True, slots=True)
class ErrorBreakdown:
    """Error occurrences or groups broken down by ``type``, ``severity`` or group ``status``.

    Metric backends only see the ``severity`` label of the errors counter and the open-groups
    gauge; a breakdown by exception type comes from the error store (built-in UI).
    """

    by: Literal["type", "severity", "status"] = "severity"
    errors_metric: str = "error_events_total"
    open_groups_metric: str = "error_groups_open"
    label: str = ""

    def __post_init__(self) -> None:
        _check_metric(self.errors_metric)
        _check_metric(self.open_groups_metric)
        if not self.label:
            object.__setattr__(self, "label", f"errors by {self.by}")


@dataclass(frozen=True, slots=True)
class ErrorTrend:
    """Captured errors per minute over time."""

    errors_metric: str = "error_events_total"
    label: str = "errors/min"

    def __post_init__(self) -> None:
        _check_metric(self.errors_metric)


@dataclass(frozen=True, slots=True)
class ErrorResolution:
    """Mean time from a group opening to its resolution (seconds); the error store knows it."""

    label: str = "mean time to resolve"


@dataclass(frozen=True, slots=True)
class SeriesFrom:
    """A named series the host computes itself (a callable given to the UI's data source).

    Metric backends cannot evaluate it; they render the panel's description instead.
    """

    source: str
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.source)


Query = (
    RequestRate
    | ErrorRate
    | LatencyQuantile
    | CounterRate
    | Counter
    | GaugeValue
    | Ratio
    | TopRoutes
    | ErrorGroups
    | ErrorBreakdown
    | ErrorTrend
    | ErrorResolution
    | SeriesFrom
)
QUERY_TYPES: tuple[type, ...] = (
    RequestRate,
    ErrorRate,
    LatencyQuantile,
    CounterRate,
    Counter,
    GaugeValue,
    Ratio,
    TopRoutes,
    ErrorGroups,
    ErrorBreakdown,
    ErrorTrend,
    ErrorResolution,
    SeriesFrom,
)


# -- panels and dashboards ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Threshold:
    """From ``value`` upwards the panel turns ``level`` (or downwards when ``below``)."""

    value: float
    level: Literal["warn", "bad"] = "bad"
    below: bool = False


@dataclass(frozen=True, slots=True)
class Panel:
    """One chart, number or table.

    ``description`` answers three questions for the person on call: what it means, what bad
    looks like, and where to click next. ``width`` is in twelfths of the page.
    """

    kind: PanelKind
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: Unit = "short"
    thresholds: tuple[Threshold, ...] = ()
    width: int = 6

    def __post_init__(self) -> None:
        if self.kind not in ("timeseries", "stat", "table", "topn"):
            raise ValueError(f"panel {self.title!r}: unknown kind {self.kind!r}")
        if not self.queries:
            raise ValueError(f"panel {self.title!r} has no queries")
        if not all(isinstance(q, QUERY_TYPES) for q in self.queries):
            raise ValueError(f"panel {self.title!r}: queries must be model query objects")
        if not 1 <= self.width <= 12:
            raise ValueError(f"panel {self.title!r}: width must be 1..12 (twelfths)")
        if not self.description.strip():
            raise ValueError(f"panel {self.title!r} needs a description")

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A named set of panels. ``name`` is a URL slug (``api-performance``)."""

    name: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _SLUG.match(self.name):
            raise ValueError(f"dashboard name {self.name!r} must be a lowercase slug")
        slugs = [p.slug for p in self.panels]
        duplicated = {s for s in slugs if slugs.count(s) > 1}
        if duplicated:
            raise ValueError(
                f"dashboard {self.name!r}: duplicate panel titles {sorted(duplicated)}"
            )

    def panel(self, slug: str) -> Panel:
        for panel in self.panels:
            if panel.slug == slug:
                return panel
        raise KeyError(slug)


# -- series keys ----------------------------------------------------------------------------------
_KEY = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")
_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_series_key(key: str) -> tuple[str, dict[str, str]] | None:
    """``'name{a="b",c="d"}'`` -> ``('name', {'a': 'b', 'c': 'd'})``; None when malformed.

    Hosts hand labelled counters and gauges to the built-in UI in Prometheus text form, so one
    spelling serves both the UI and the exposition.
    """
    match = _KEY.match(key.strip())
    if match is None:
        return None
    name, body = match.group(1), match.group(2)
    labels: dict[str, str] = {}
    if body:
        pos = 0
        while pos < len(body):
            pair = _PAIR.match(body, pos)
            if pair is None or pair.end() == pos:
                return None
            labels[pair.group(1)] = pair.group(2).replace('\\"', '"').replace("\\\\", "\\")
            pos = pair.end()
    return name, labels


def labels_key(name: str, labels: Mapping[str, str]) -> str:
    """The inverse of :func:`parse_series_key` (labels sorted)."""
    if not labels:
        return name
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in sorted(labels.items())
    )
    return f"{name}{{{inner}}}"
