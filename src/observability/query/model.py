"""One backend-neutral query model: the terms alert rules, dashboard panels and incident
evidence are written in.

Every term is a frozen dataclass with one spelling of filters and windows:

    where      label matchers (equality): {"severity": "critical"}; on HTTP terms only
               `method` and `route` (the route *template*), e.g. route_filter("GET /x")
    by         labels to split the result by (the others are summed or aggregated away)
    window_s   seconds the term looks back over; None means "the evaluation's window": a
               panel's step (time series) or range (numbers, tables). Alert rules need it set.
    label      display only (a series name on a chart); evaluation ignores it

    RequestRate(where, window_s)                          HTTP requests per second
    ErrorRatio(status_class, where, window_s)             4xx or 5xx responses / all responses
    LatencyQuantile(q, where, window_s, distribution)     a latency quantile in seconds
    LatencyAbove(threshold_s, where, window_s, dist.)     share of observations slower than it
                  (a named distribution's `where` picks one of its recorded series: the
                  in-process windows keep the total under the bare name and one series per
                  label set, e.g. db_query_duration_seconds{operation="select"})
    CounterRate(name, where, by, window_s)                per-second rate of a counter
    CounterIncrease(name, where, by, window_s)            increase of a counter over the window
    GaugeValue(name, where, by, agg)                      current value; every series when agg
                                                          is None, else agg over what `by` omits
    Ratio(numerator, denominator, where, by, window_s)    increase of one counter / another's
    Stalled(name, window_s, where, requests_where)        counter increase while requests flow
    BurnRate(sli, budget)                                 an SLI bad-event ratio / error budget

Store-backed terms (the error store, the host, or the per-route table) are answered by the
built-in UI; a metric backend that cannot express one says so (`Unsupported`):

    TopRoutes(by, limit, window_s)   ErrorGroups(status, sort, limit)   ErrorTrend(errors_metric)
    ErrorBreakdown(by, ...)          ErrorResolution()                  SeriesFrom(source)

In-process counters and gauges are keyed by a flat *series key*, `name{label="value",...}`
with labels sorted (`series_key`), the Prometheus text form, so one dict holds every series.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, NoReturn, TypeAlias

__all__ = [
    "HTTP_LABELS",
    "METRIC_TERMS",
    "STORE_TERMS",
    "TERM_TYPES",
    "Agg",
    "BurnRate",
    "CounterIncrease",
    "CounterRate",
    "ErrorBreakdown",
    "ErrorGroups",
    "ErrorRatio",
    "ErrorResolution",
    "ErrorTrend",
    "GaugeValue",
    "Labels",
    "LatencyAbove",
    "LatencyQuantile",
    "MetricTerm",
    "Ratio",
    "RequestRate",
    "SeriesFrom",
    "Sli",
    "Stalled",
    "StatusClass",
    "StoreTerm",
    "Term",
    "TopRoutes",
    "Unsupported",
    "Where",
    "latency_series",
    "metric_names",
    "parse_series_key",
    "route_filter",
    "route_key",
    "series_key",
    "window_of",
    "with_window",
]

Where: TypeAlias = Mapping[str, str]
Agg = Literal["sum", "max", "min", "avg"]
StatusClass = Literal["4xx", "5xx"]
HTTP_LABELS: tuple[str, ...] = ("method", "route")
_AGGS: tuple[str, ...] = ("sum", "max", "min", "avg")
_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Unsupported(ValueError):
    """A backend (or the in-process evaluator) cannot express this term."""


class Labels(dict[str, str]):
    """An immutable label mapping: hashable (terms can be dict keys) and picklable (rules can
    go to worker processes), unlike `types.MappingProxyType`."""

    def _immutable(self, *_: object, **__: object) -> NoReturn:
        raise TypeError("labels are immutable")

    __setitem__ = __delitem__ = _immutable
    clear = pop = popitem = setdefault = update = _immutable
    __ior__ = _immutable

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __reduce__(self) -> tuple[type[Labels], tuple[dict[str, str]]]:
        return (Labels, (dict(self),))

    def __repr__(self) -> str:
        return repr(dict(self))


# -- validation helpers: every message names the term and its field ---------------------------
def _bad(term: object, name: str, problem: str) -> ValueError:
    return ValueError(f"{type(term).__name__}.{name}: {problem}")


def _metric(term: object, name: str, value: str) -> None:
    if not isinstance(value, str) or not _METRIC.fullmatch(value):
        raise _bad(term, name, f"invalid metric name {value!r} (Prometheus: [a-zA-Z_:][\\w:]*)")


def _labels(term: object, name: str, labels: Sequence[str]) -> None:
    if isinstance(labels, str):
        raise _bad(term, name, f"must be a tuple of label names, not the string {labels!r}")
    for label in labels:
        if not isinstance(label, str) or not _LABEL.fullmatch(label):
            raise _bad(term, name, f"invalid label name {label!r}")


def _where(term: object, name: str, allowed: Sequence[str] | None = None) -> None:
    where = getattr(term, name)
    _labels(term, name, tuple(where))
    for key, value in where.items():
        if allowed is not None and key not in allowed:
            raise _bad(term, name, f"label {key!r} is not one of {', '.join(allowed)}")
        if not isinstance(value, str):
            raise _bad(term, name, f"value of {key!r} must be a string, got {value!r}")
    object.__setattr__(term, name, Labels(sorted(where.items())))


def _window(term: object, value: int | None, name: str = "window_s") -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise _bad(term, name, f"must be a whole number of seconds >= 1 or None, got {value!r}")


def _default_label(term: Any, text: str) -> None:
    if not term.label:
        object.__setattr__(term, "label", text)


def _latency_where(term: LatencyQuantile | LatencyAbove) -> None:
    # HTTP latency filters by method/route; a named distribution by its own labels, which
    # name one recorded series exactly (see `latency_series`).
    if term.distribution is None:
        _where(term, "where", HTTP_LABELS)
        return
    _metric(term, "distribution", term.distribution)
    _where(term, "where")


# -- request terms ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestRate:
    """HTTP requests per second."""

    where: Where = field(default_factory=dict)
    window_s: int | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _where(self, "where", HTTP_LABELS)
        _window(self, self.window_s)
        _default_label(self, "requests/s")


@dataclass(frozen=True)
class ErrorRatio:
    """Share (0..1) of responses with a 4xx or 5xx status; no value while there is no traffic."""

    status_class: StatusClass = "5xx"
    where: Where = field(default_factory=dict)
    window_s: int | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.status_class not in ("4xx", "5xx"):
            raise _bad(self, "status_class", f"must be '4xx' or '5xx', got {self.status_class!r}")
        _where(self, "where", HTTP_LABELS)
        _window(self, self.window_s)
        _default_label(self, f"{self.status_class} ratio")


@dataclass(frozen=True)
class LatencyQuantile:
    """The `q` quantile of latency in seconds: HTTP requests, or a named distribution (a
    histogram in seconds, e.g. assignment_duration_seconds)."""

    q: float
    where: Where = field(default_factory=dict)
    window_s: int | None = None
    distribution: str | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.q, int | float) or not 0.0 < self.q < 1.0:
            raise _bad(self, "q", f"must be in (0, 1), got {self.q!r}")
        _latency_where(self)
        _window(self, self.window_s)
        _default_label(self, f"p{self.q * 100:g}")


@dataclass(frozen=True)
class LatencyAbove:
    """Share of observations slower than `threshold_s`: a latency SLI's bad-event ratio. In
    PromQL it reads the histogram bucket `le=threshold_s`, which must exist."""

    threshold_s: float
    where: Where = field(default_factory=dict)
    window_s: int | None = None
    distribution: str | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.threshold_s, int | float) or self.threshold_s <= 0:
            raise _bad(self, "threshold_s", f"must be a positive number, got {self.threshold_s!r}")
        _latency_where(self)
        _window(self, self.window_s)
        _default_label(self, f"share above {self.threshold_s * 1000:g} ms")


# -- counters and gauges ----------------------------------------------------------------------
@dataclass(frozen=True)
class CounterRate:
    """Per-second rate of a counter, summed over its series (split by `by`). A counter the
    windows never counted is read from cumulative readings of the gauges (network bytes)."""

    name: str
    where: Where = field(default_factory=dict)
    by: tuple[str, ...] = ()
    window_s: int | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _metric(self, "name", self.name)
        _where(self, "where")
        _labels(self, "by", self.by)
        _window(self, self.window_s)
        _default_label(self, self.name)


@dataclass(frozen=True)
class CounterIncrease:
    """Increase of a counter over the window, summed over its series (split by `by`)."""

    name: str
    where: Where = field(default_factory=dict)
    by: tuple[str, ...] = ()
    window_s: int | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _metric(self, "name", self.name)
        _where(self, "where")
        _labels(self, "by", self.by)
        _window(self, self.window_s)
        _default_label(self, self.name)


@dataclass(frozen=True)
class GaugeValue:
    """The current value of a gauge. `agg=None` keeps every series (one alert per series);
    otherwise `agg` (sum/max/min/avg) combines the series that share the `by` labels."""

    name: str
    where: Where = field(default_factory=dict)
    by: tuple[str, ...] = ()
    agg: Agg | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _metric(self, "name", self.name)
        _where(self, "where")
        _labels(self, "by", self.by)
        if self.agg is not None and self.agg not in _AGGS:
            raise _bad(self, "agg", f"must be one of {', '.join(_AGGS)} or None, got {self.agg!r}")
        if self.by and self.agg is None:
            raise _bad(self, "by", "splitting needs an agg to combine the other series")
        _default_label(self, self.name)


@dataclass(frozen=True)
class Ratio:
    """Increase of `numerator` / increase of `denominator` per group of `by` labels."""

    numerator: str
    denominator: str
    where: Where = field(default_factory=dict)
    by: tuple[str, ...] = ()
    window_s: int | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _metric(self, "numerator", self.numerator)
        _metric(self, "denominator", self.denominator)
        _where(self, "where")
        _labels(self, "by", self.by)
        _window(self, self.window_s)
        _default_label(self, "ratio")

    def parts(self) -> tuple[CounterIncrease, CounterIncrease]:
        """The numerator's and the denominator's increase, as terms of their own."""
        common: dict[str, Any] = {"where": self.where, "by": self.by, "window_s": self.window_s}
        return (
            CounterIncrease(self.numerator, **common),
            CounterIncrease(self.denominator, **common),
        )


@dataclass(frozen=True)
class Stalled:
    """Increase of counter `name` over the window, reported only while HTTP requests (matching
    `requests_where`) flow in the same window: a quiet system never looks stalled. A counter
    never seen counts as 0 (the stall may have started before this process did)."""

    name: str
    window_s: int | None = 900
    where: Where = field(default_factory=dict)
    requests_where: Where = field(default_factory=dict)
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        _metric(self, "name", self.name)
        _where(self, "where")
        _where(self, "requests_where", HTTP_LABELS)
        _window(self, self.window_s)
        _default_label(self, f"{self.name} while requests flow")


Sli: TypeAlias = ErrorRatio | LatencyAbove


@dataclass(frozen=True)
class BurnRate:
    """An SLI bad-event ratio divided by the error budget: 1.0 spends the budget exactly."""

    sli: ErrorRatio | LatencyAbove
    budget: float
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.sli, ErrorRatio | LatencyAbove):
            raise _bad(self, "sli", f"must be an ErrorRatio or LatencyAbove, got {self.sli!r}")
        if not isinstance(self.budget, int | float) or not 0.0 < self.budget < 1.0:
            raise _bad(self, "budget", f"must be in (0, 1), got {self.budget!r}")
        _default_label(self, "burn rate")

    @property
    def window_s(self) -> int | None:
        return self.sli.window_s


# -- store-backed terms -----------------------------------------------------------------------
@dataclass(frozen=True)
class TopRoutes:
    """The routes with the most traffic, the slowest p95, or the most 5xx responses."""

    by: Literal["requests", "latency", "errors"] = "requests"
    limit: int = 10
    window_s: int | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.by not in ("requests", "latency", "errors"):
            raise _bad(self, "by", f"must be requests, latency or errors, got {self.by!r}")
        if not isinstance(self.limit, int) or not 1 <= self.limit <= 100:
            raise _bad(self, "limit", f"must be between 1 and 100, got {self.limit!r}")
        _window(self, self.window_s)
        _default_label(self, f"top routes by {self.by}")


@dataclass(frozen=True)
class ErrorGroups:
    """The error store's groups (fingerprinted exceptions), most frequent first."""

    status: Literal["open", "resolved", "ignored"] | None = "open"
    sort: Literal["count", "last_seen", "users"] = "count"
    limit: int = 10
    label: str = field(default="error groups", compare=False)

    def __post_init__(self) -> None:
        if self.status not in ("open", "resolved", "ignored", None):
            raise _bad(self, "status", f"must be open, resolved, ignored or None: {self.status!r}")
        if self.sort not in ("count", "last_seen", "users"):
            raise _bad(self, "sort", f"must be count, last_seen or users, got {self.sort!r}")
        if not isinstance(self.limit, int) or not 1 <= self.limit <= 500:
            raise _bad(self, "limit", f"must be between 1 and 500, got {self.limit!r}")


@dataclass(frozen=True)
class ErrorBreakdown:
    """Error occurrences or groups broken down by `type`, `severity` or group `status`.

    Metric backends only see the `severity` label of the errors counter and the open-groups
    gauge; a breakdown by exception type comes from the error store (built-in UI)."""

    by: Literal["type", "severity", "status"] = "severity"
    errors_metric: str = "error_events_total"
    open_groups_metric: str = "error_groups_open"
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.by not in ("type", "severity", "status"):
            raise _bad(self, "by", f"must be type, severity or status, got {self.by!r}")
        _metric(self, "errors_metric", self.errors_metric)
        _metric(self, "open_groups_metric", self.open_groups_metric)
        _default_label(self, f"errors by {self.by}")


@dataclass(frozen=True)
class ErrorTrend:
    """Captured errors per minute over time (the error store; `errors_metric` in backends)."""

    errors_metric: str = "error_events_total"
    label: str = field(default="errors/min", compare=False)

    def __post_init__(self) -> None:
        _metric(self, "errors_metric", self.errors_metric)


@dataclass(frozen=True)
class ErrorResolution:
    """Mean time from a group opening to its resolution (seconds); the error store knows it."""

    label: str = field(default="mean time to resolve", compare=False)


@dataclass(frozen=True)
class SeriesFrom:
    """A named series the host computes itself (a callable given to the UI's data source).
    Metric backends cannot evaluate it; they show the panel's description instead."""

    source: str
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise _bad(self, "source", "must name a series source")
        _default_label(self, self.source)


MetricTerm: TypeAlias = (
    RequestRate
    | ErrorRatio
    | LatencyQuantile
    | LatencyAbove
    | CounterRate
    | CounterIncrease
    | GaugeValue
    | Ratio
    | Stalled
    | BurnRate
)
StoreTerm: TypeAlias = (
    TopRoutes | ErrorGroups | ErrorBreakdown | ErrorTrend | ErrorResolution | SeriesFrom
)
Term: TypeAlias = MetricTerm | StoreTerm
METRIC_TERMS: tuple[type, ...] = (
    RequestRate,
    ErrorRatio,
    LatencyQuantile,
    LatencyAbove,
    CounterRate,
    CounterIncrease,
    GaugeValue,
    Ratio,
    Stalled,
    BurnRate,
)
STORE_TERMS: tuple[type, ...] = (
    TopRoutes,
    ErrorGroups,
    ErrorBreakdown,
    ErrorTrend,
    ErrorResolution,
    SeriesFrom,
)
TERM_TYPES: tuple[type, ...] = METRIC_TERMS + STORE_TERMS


def window_of(term: object) -> int | None:
    """The term's own window in seconds (the SLI's for a burn rate), or None."""
    window = getattr(term, "window_s", None)
    return int(window) if window is not None else None


def with_window(term: Any, window_s: int) -> Any:
    """The same term over another window (the SLI's window for a burn rate); a term without a
    window (a gauge, an error-store term) comes back unchanged."""
    if isinstance(term, BurnRate):
        return replace(term, sli=with_window(term.sli, window_s))
    if not any(f.name == "window_s" for f in fields(term)):
        return term
    return replace(term, window_s=window_s)


def latency_series(term: LatencyQuantile | LatencyAbove) -> tuple[Where, str | None]:
    """What an in-process source reads for a latency term: (HTTP filter, None) for request
    latency; ({}, series key) for a named distribution, e.g. `name{operation="select"}`."""
    if term.distribution is None:
        return term.where, None
    return {}, series_key(term.distribution, term.where)


def metric_names(term: object) -> set[str]:
    """The metric names a term reads (HTTP terms read the host's HTTP metrics: none here)."""
    if isinstance(term, BurnRate):
        return metric_names(term.sli)
    if isinstance(term, CounterRate | CounterIncrease | GaugeValue | Stalled):
        return {term.name}
    if isinstance(term, LatencyQuantile | LatencyAbove) and term.distribution:
        return {term.distribution}
    if isinstance(term, Ratio):
        return {term.numerator, term.denominator}
    if isinstance(term, ErrorBreakdown):
        return {term.errors_metric, term.open_groups_metric}
    if isinstance(term, ErrorTrend):
        return {term.errors_metric}
    return set()


# -- routes and series keys ---------------------------------------------------------------------
def route_filter(route: str) -> dict[str, str]:
    """`where` for one route: "GET /x" -> {method: GET, route: /x}; "/x" -> {route: /x}."""
    method, _, template = route.partition(" ")
    if template:
        return {"method": method, "route": template}
    return {"route": method}


def route_key(where: Where) -> str | None:
    """The windows' route key ("GET /x") a `where` names exactly, or None (not one route)."""
    if "method" in where and "route" in where:
        return f"{where['method']} {where['route']}"
    return None


def series_key(name: str, labels: Mapping[str, str] | None = None) -> str:
    """`name{a="1",b="2"}` with sorted, escaped labels; just `name` without labels."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


_KEY = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$")
_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_series_key(key: str) -> tuple[str, dict[str, str]] | None:
    """`'name{a="b",c="d"}'` -> `('name', {'a': 'b', 'c': 'd'})`; None when malformed."""
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
