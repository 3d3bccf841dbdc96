"""Any query term as PromQL, for Prometheus rules and Grafana panels alike.

    promql(term, PromContext(...)) -> str      raises Unsupported for a store-backed term

A term's own window becomes its range (`[5m]`). Without one, the context says what to use:
`rate_window` for per-second terms (Grafana: `$__rate_interval`), `range_window` for totals
over the selected range (Grafana: `$__range`); rule files have neither, so every rule term must
carry its window. `matchers` are added to every selector and `http_matchers` to the HTTP ones
without a route filter (Grafana's `$instance` and `$route` variables).

The HTTP metrics are those the observability middleware records:
`http_requests_total{method, route, status_class}` and the histogram
`http_request_duration_seconds{method, route}` (`PromNames` renames them for another host).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from observability.query.model import (
    BurnRate,
    CounterIncrease,
    CounterRate,
    ErrorBreakdown,
    ErrorRatio,
    ErrorTrend,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    Ratio,
    RequestRate,
    Stalled,
    Term,
    TopRoutes,
    Unsupported,
    Where,
)

__all__ = ["PromContext", "PromNames", "format_duration", "promql", "selector"]


@dataclass(frozen=True)
class PromNames:
    """Names of the HTTP metrics and labels (Prometheus conventions by default)."""

    requests: str = "http_requests_total"
    duration: str = "http_request_duration_seconds"
    status_label: str = "status_class"
    route_label: str = "route"
    method_label: str = "method"
    instance_label: str = "instance"


@dataclass(frozen=True)
class PromContext:
    names: PromNames = PromNames()
    rate_window: str | None = None
    range_window: str | None = None
    matchers: tuple[str, ...] = ()
    http_matchers: tuple[str, ...] = ()


def format_duration(seconds: int) -> str:
    """Prometheus duration text: 90 -> '90s', 300 -> '5m', 3600 -> '1h', 259200 -> '3d'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _num(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _le(value: float) -> str:
    # prometheus_client writes bucket bounds with repr() (0.3 -> "0.3", 1 -> "1.0").
    return repr(float(value))


def _eq(label: str, value: str) -> str:
    return f"{label}={json.dumps(value)}"  # PromQL string literals accept JSON's escapes


def selector(name: str, matchers: Sequence[str]) -> str:
    return f"{name}{{{', '.join(matchers)}}}" if matchers else name


def _agg(op: str, by: Sequence[str], inner: str) -> str:
    return f"{op} by ({', '.join(by)}) ({inner})" if by else f"{op}({inner})"


class _Render:
    def __init__(self, ctx: PromContext) -> None:
        self.ctx = ctx
        self.n = ctx.names

    def window(self, term: object, *, total: bool) -> str:
        own = getattr(term, "window_s", None)
        if own is not None:
            return format_duration(int(own))
        default = self.ctx.range_window if total else self.ctx.rate_window
        if default is None:
            raise Unsupported(f"{type(term).__name__}.window_s: PromQL here needs a window")
        return default

    def plain(self, where: Where) -> list[str]:
        return [*self.ctx.matchers, *(_eq(k, v) for k, v in sorted(where.items()))]

    def http(self, where: Where, *extra: str) -> list[str]:
        n = self.n
        names = {"method": n.method_label, "route": n.route_label}
        matchers = list(self.ctx.matchers)
        if "route" not in where:
            matchers += self.ctx.http_matchers
        matchers += [_eq(names[k], v) for k, v in sorted(where.items())]
        return [*matchers, *extra]

    def requests_rate(self, where: Where, w: str, *extra: str) -> str:
        return f"sum(rate({selector(self.n.requests, self.http(where, *extra))}[{w}]))"

    def expr(self, term: Term) -> str:
        n = self.n
        if isinstance(term, BurnRate):
            return f"({self.expr(term.sli)}) / {_num(term.budget)}"
        if isinstance(term, RequestRate):
            return self.requests_rate(term.where, self.window(term, total=False))
        if isinstance(term, ErrorRatio):
            w = self.window(term, total=False)
            bad = self.requests_rate(term.where, w, _eq(n.status_label, term.status_class))
            # `or vector(0)`: no error series yet is a 0 ratio (while traffic flows).
            return f"({bad} or vector(0)) / {self.requests_rate(term.where, w)}"
        if isinstance(term, LatencyQuantile | LatencyAbove):
            return self.latency(term)
        if isinstance(term, CounterRate | CounterIncrease):
            fn = "rate" if isinstance(term, CounterRate) else "increase"
            w = self.window(term, total=isinstance(term, CounterIncrease))
            inner = f"{fn}({selector(term.name, self.plain(term.where))}[{w}])"
            return _agg("sum", term.by, inner)
        if isinstance(term, GaugeValue):
            sel = selector(term.name, self.plain(term.where))
            return sel if term.agg is None else _agg(term.agg, term.by, sel)
        if isinstance(term, Ratio):
            w = self.window(term, total=True)
            top, below = (
                _agg("sum", term.by, f"increase({selector(name, self.plain(term.where))}[{w}])")
                for name in (term.numerator, term.denominator)
            )
            return f"{top} / {below}"
        if isinstance(term, Stalled):
            w = self.window(term, total=False)
            moved = f"sum(increase({selector(term.name, self.plain(term.where))}[{w}]))"
            traffic = self.requests_rate(term.requests_where, w)
            # `or vector(0)`: a counter that never moved may not exist yet; a stall too.
            return f"({moved} or vector(0)) and on() ({traffic} > 0)"
        if isinstance(term, TopRoutes):
            return self.top_routes(term)
        if isinstance(term, ErrorTrend):
            w = self.window(term, total=False)
            errors = selector(term.errors_metric, self.plain({}))
            return f"sum(rate({errors}[{w}])) * 60"
        if isinstance(term, ErrorBreakdown):
            if term.by == "status":
                # A gauge read from the shared store: every instance reports the same value.
                return _agg("max", ("severity",), selector(term.open_groups_metric, self.plain({})))
            w = self.window(term, total=True)
            errors = selector(term.errors_metric, self.plain({}))
            return _agg("sum", ("severity",), f"increase({errors}[{w}])")
        raise Unsupported(f"{type(term).__name__} has no PromQL (it reads a store, not metrics)")

    def latency(self, term: LatencyQuantile | LatencyAbove) -> str:
        w = self.window(term, total=False)
        name = term.distribution or self.n.duration
        matchers = self.plain(term.where) if term.distribution else self.http(term.where)
        if isinstance(term, LatencyQuantile):
            buckets = selector(f"{name}_bucket", matchers)
            return f"histogram_quantile({_num(term.q)}, sum by (le) (rate({buckets}[{w}])))"
        fast = selector(f"{name}_bucket", [*matchers, _eq("le", _le(term.threshold_s))])
        every = selector(f"{name}_count", matchers)
        return f"1 - (sum(rate({fast}[{w}])) / sum(rate({every}[{w}])))"

    def top_routes(self, term: TopRoutes) -> str:
        n = self.n
        w = self.window(term, total=True)
        by = (n.method_label, n.route_label)
        if term.by == "requests":
            sel = selector(n.requests, self.http({}))
            inner = _agg("sum", by, f"increase({sel}[{w}])")
        elif term.by == "errors":
            sel = selector(n.requests, self.http({}, _eq(n.status_label, "5xx")))
            inner = _agg("sum", by, f"increase({sel}[{w}])")
        else:
            sel = selector(f"{n.duration}_bucket", self.http({}))
            inner = (
                "1000 * histogram_quantile(0.95, "
                + _agg("sum", (*by, "le"), f"rate({sel}[{w}])")
                + ")"
            )
        return f"topk({term.limit}, {inner})"


def promql(term: Term, ctx: PromContext | None = None) -> str:
    """The PromQL expression of a term; `Unsupported` when Prometheus cannot answer it."""
    return _Render(ctx or PromContext()).expr(term)
