"""Any query term as CloudWatch metric math over the EMF metrics, for alarms and dashboards.

    cloudwatch_query(term, CwContext(namespace, dimensions), Ids()) -> CwQuery

The metrics are those `observability.metrics.emf.EmfPublisher` writes each minute, in one
namespace with the publisher's base dimensions (plus `Route`, "METHOD /template", per route):
`http_requests_total`, `http_requests_4xx_total`, `http_requests_5xx_total` (Count),
`http_request_duration_p50|p95|p99` and `<distribution>_p50|p95|p99` (Milliseconds), and each
in-process counter under its series key (`name{label="v"}`). Gauges are named the same way
when something publishes them.

What CloudWatch cannot express raises `Unsupported` (a dashboard shows the panel's text, a rule
renderer refuses the rule): terms split `by` a label (EMF metrics carry no labels; on a
dashboard, `CwContext(search=True)`, a counter is a SEARCH over its per-series metrics instead,
summed unless split, and a gauge split by labels a SEARCH of its Maximum), latency
shares above a threshold (EMF publishes percentiles, not buckets), quantiles other than
p50/p95/p99, a filter on only one of method and route, and the error store's terms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from observability.query.model import (
    BurnRate,
    CounterIncrease,
    CounterRate,
    ErrorBreakdown,
    ErrorRatio,
    ErrorTrend,
    GaugeValue,
    LatencyQuantile,
    Ratio,
    RequestRate,
    Stalled,
    Term,
    TopRoutes,
    Unsupported,
    Where,
    latency_series,
    route_key,
    series_key,
)

__all__ = ["QUANTILE_NAMES", "CwContext", "CwMetric", "CwQuery", "Ids", "cloudwatch_query"]

QUANTILE_NAMES = {0.5: "p50", 0.95: "p95", 0.99: "p99"}
_GAUGE_STAT = {"max": "Maximum", "min": "Minimum", "avg": "Average", "sum": "Average"}


@dataclass(frozen=True)
class CwContext:
    namespace: str
    dimensions: Mapping[str, str] = field(default_factory=dict)
    route_dimension: str = "Route"
    period: int = 60  # of SEARCH expressions (top routes)
    low_is_bad: bool = False  # a gauge without agg: Minimum if low values are the worry
    # Dashboards only (alarms cannot use SEARCH): a counter split `by` labels becomes a
    # SEARCH over its per-series metrics, one line per series.
    search: bool = False


@dataclass(frozen=True)
class CwMetric:
    id: str
    name: str
    dimensions: dict[str, str]
    stat: str


@dataclass(frozen=True)
class CwQuery:
    """The metrics a term reads and the metric math that combines them (None: the single
    metric is the value). CloudWatch's value is the term's value times `scale`."""

    metrics: tuple[CwMetric, ...]
    expression: str | None
    scale: float = 1.0


class Ids:
    """Unique metric-math ids for one widget or alarm: m1, m2, e3, ..."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Render:
    def __init__(self, ctx: CwContext, ids: Ids) -> None:
        self.ctx = ctx
        self.ids = ids

    def dims(self, term: object, where: Where, name: str = "where") -> dict[str, str]:
        dims = dict(self.ctx.dimensions)
        if where:
            key = route_key(where)
            if key is None:
                raise Unsupported(
                    f"{type(term).__name__}.{name}: CloudWatch per-route metrics need both "
                    "method and route"
                )
            dims[self.ctx.route_dimension] = key
        return dims

    def metric(self, name: str, stat: str, dims: dict[str, str]) -> CwMetric:
        return CwMetric(self.ids("m"), name, dims, stat)

    @staticmethod
    def unsplit(term: CounterRate | CounterIncrease | GaugeValue | Ratio) -> None:
        if term.by:
            raise Unsupported(f"{type(term).__name__}.by: EMF metrics carry no labels to split by")

    def query(self, term: Term) -> CwQuery:
        base = dict(self.ctx.dimensions)
        if isinstance(term, BurnRate):
            inner = self.query(term.sli)
            return CwQuery(inner.metrics, f"{inner.expression} / {term.budget:g}")
        if isinstance(term, RequestRate):
            m = self.metric("http_requests_total", "Sum", self.dims(term, term.where))
            return CwQuery((m,), f"{m.id}/PERIOD({m.id})")
        if isinstance(term, ErrorRatio):
            dims = self.dims(term, term.where)
            bad = self.metric(f"http_requests_{term.status_class}_total", "Sum", dims)
            every = self.metric("http_requests_total", "Sum", dims)
            # No traffic: nothing failed (an alarm stays OK, a chart shows 0).
            return CwQuery((bad, every), f"IF({every.id} > 0, {bad.id} / {every.id}, 0)")
        if isinstance(term, LatencyQuantile):
            label = QUANTILE_NAMES.get(term.q)
            if label is None:
                raise Unsupported(f"LatencyQuantile.q: EMF publishes p50/p95/p99, not {term.q}")
            # EMF names a distribution's series by its windows key: `name{op="x"}_p95`.
            _, series = latency_series(term)
            name = f"{series or 'http_request_duration'}_{label}"
            dims = base if term.distribution else self.dims(term, term.where)
            stat = "Average" if term.q == 0.5 else "Maximum"  # tails: the worst instance
            return CwQuery((self.metric(name, stat, dims),), None, scale=1000.0)
        if isinstance(term, CounterIncrease | CounterRate):
            if self.ctx.search and not term.where:
                # Every series (labelled counters have no unlabelled total): one line per
                # series when split, else their sum.
                search = self.split_counter(term)
                return CwQuery((), search if term.by else f"SUM({search})")
            self.unsplit(term)
            m = self.metric(series_key(term.name, term.where), "Sum", base)
            if isinstance(term, CounterIncrease):
                return CwQuery((m,), None)
            return CwQuery((m,), f"{m.id}/PERIOD({m.id})")
        if isinstance(term, GaugeValue):
            if term.by and self.ctx.search and not term.where:
                return CwQuery((), self.split_search(term.name, "Maximum"))
            self.unsplit(term)
            if term.agg is None:
                stat = "Minimum" if self.ctx.low_is_bad else "Maximum"
            else:
                stat = _GAUGE_STAT[term.agg]
            return CwQuery((self.metric(series_key(term.name, term.where), stat, base),), None)
        if isinstance(term, Ratio):
            self.unsplit(term)
            top = self.metric(series_key(term.numerator, term.where), "Sum", base)
            below = self.metric(series_key(term.denominator, term.where), "Sum", base)
            return CwQuery((top, below), f"{top.id}/{below.id}")
        if isinstance(term, Stalled):
            moved = self.metric(series_key(term.name, term.where), "Sum", base)
            traffic = self.metric(
                "http_requests_total", "Sum", self.dims(term, term.requests_where, "requests_where")
            )
            return CwQuery(
                (moved, traffic), f"IF(FILL({traffic.id}, 0) > 0, FILL({moved.id}, 0), 1)"
            )
        if isinstance(term, TopRoutes):
            return CwQuery((), self.top_routes(term))
        if isinstance(term, ErrorTrend):
            if self.ctx.search:  # EMF publishes one series per severity: their sum
                search = self.split_search(term.errors_metric, "Sum")
                return CwQuery((), f"60*SUM({search})/{self.ctx.period}")
            m = self.metric(term.errors_metric, "Sum", base)
            return CwQuery((m,), f"60*{m.id}/PERIOD({m.id})")
        if isinstance(term, ErrorBreakdown):
            if self.ctx.search:  # one line per severity series
                status = term.by == "status"
                name = term.open_groups_metric if status else term.errors_metric
                return CwQuery((), self.split_search(name, "Maximum" if status else "Sum"))
            if term.by == "status":
                return CwQuery((self.metric(term.open_groups_metric, "Maximum", base),), None)
            return CwQuery((self.metric(term.errors_metric, "Sum", base),), None)
        raise Unsupported(f"{type(term).__name__} has no CloudWatch metric (see module doc)")

    def split_counter(self, term: CounterIncrease | CounterRate) -> str:
        """Every series of a counter: EMF publishes each under its series key
        (`exposures_total{experiment="x",variant="a"}`), so the key's name part finds them all
        and each series' own name tells its labels apart."""
        search = self.split_search(term.name, "Sum")
        return search if isinstance(term, CounterIncrease) else f"{search}/{self.ctx.period}"

    def split_search(self, name: str, stat: str) -> str:
        ctx = self.ctx
        keys = ",".join([_q(ctx.namespace), *ctx.dimensions])
        terms = [f"{{{keys}}}", f"MetricName={name}"]
        terms += [f"{k}={_q(v)}" for k, v in ctx.dimensions.items()]
        return f"SEARCH('{' '.join(terms)}', '{stat}', {ctx.period})"

    def top_routes(self, term: TopRoutes) -> str:
        metric, stat, fn = {
            "requests": ("http_requests_total", "Sum", "SUM"),
            "errors": ("http_requests_5xx_total", "Sum", "SUM"),
            "latency": ("http_request_duration_p95", "Maximum", "MAX"),
        }[term.by]
        ctx = self.ctx
        keys = ",".join([_q(ctx.namespace), *ctx.dimensions, ctx.route_dimension])
        terms = [f"{{{keys}}}", f"MetricName={_q(metric)}"]
        terms += [f"{k}={_q(v)}" for k, v in ctx.dimensions.items()]
        search = f"SEARCH('{' '.join(terms)}', '{stat}', {ctx.period})"
        return f"SORT({search}, {fn}, DESC, {term.limit})"


def cloudwatch_query(term: Term, ctx: CwContext, ids: Ids | None = None) -> CwQuery:
    """The CloudWatch metrics and metric math of a term; `Unsupported` when it has none."""
    return _Render(ctx, ids or Ids()).query(term)
