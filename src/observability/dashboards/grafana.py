"""Grafana dashboard JSON over a Prometheus data source, rendered from the neutral model.

One PromQL expression per query. The data source is a ``${datasource}`` template variable (the
JSON imports into any Grafana without editing uids), and ``$instance`` / ``$route`` variables
filter every HTTP expression. Rates use Grafana's ``$__rate_interval`` (at least four scrape
intervals, so ``rate`` always has two samples); range totals use ``$__range``.

Metric names follow the model's strings; the HTTP metrics are assumed to carry the labels the
observability middleware records: ``http_requests_total{method, route, status_class}`` and the
histogram ``http_request_duration_seconds{method, route}``. A neutral route key
``"GET /experiments/{key}"`` becomes ``method="GET", route="/experiments/{key}"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from observability.dashboards.model import (
    Counter,
    CounterRate,
    Dashboard,
    ErrorBreakdown,
    ErrorGroups,
    ErrorRate,
    ErrorResolution,
    ErrorTrend,
    GaugeValue,
    LatencyQuantile,
    Panel,
    Query,
    Ratio,
    RequestRate,
    SeriesFrom,
    TopRoutes,
)

__all__ = [
    "GRAFANA_SCHEMA_VERSION",
    "PromNames",
    "promql",
    "render_grafana_dashboard",
    "render_grafana_files",
]

GRAFANA_SCHEMA_VERSION = 39
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_COLORS = {"warn": "orange", "bad": "red"}
_HEIGHT = {"timeseries": 8, "stat": 5, "table": 8, "topn": 8}
_PANEL_TYPE = {"timeseries": "timeseries", "stat": "stat", "table": "table", "topn": "bargauge"}


class PromNames:
    """Names of the HTTP metrics and labels the expressions use (override for other hosts)."""

    def __init__(
        self,
        requests: str = "http_requests_total",
        duration: str = "http_request_duration_seconds",
        route_label: str = "route",
        method_label: str = "method",
        status_label: str = "status_class",
        instance_label: str = "instance",
    ) -> None:
        self.requests = requests
        self.duration = duration
        self.route = route_label
        self.method = method_label
        self.status = status_label
        self.instance = instance_label


_DEFAULT_NAMES = PromNames()


def _quote(value: str) -> str:
    return json.dumps(value)  # PromQL string literals accept JSON's escapes for " and \


def _selector(matchers: Sequence[str]) -> str:
    return "{" + ", ".join(matchers) + "}" if matchers else ""


def _by(labels: Sequence[str]) -> str:
    return f" by ({', '.join(labels)})" if labels else ""


class _Builder:
    def __init__(self, names: PromNames, rate_interval: str, range_: str) -> None:
        self.n = names
        self.ri = rate_interval
        self.range = range_

    def base(self, *, http: bool, route: str | None = None) -> list[str]:
        matchers = [f'{self.n.instance}=~"$instance"']
        if http:
            if route is None:
                matchers.append(f'{self.n.route}=~"$route"')
            else:
                method, _, template = route.partition(" ")
                if template:
                    matchers.append(f"{self.n.method}={_quote(method)}")
                else:
                    template = method
                matchers.append(f"{self.n.route}={_quote(template)}")
        return matchers

    def where(self, where: Mapping[str, str]) -> list[str]:
        return [f"{key}={_quote(value)}" for key, value in sorted(where.items())]

    def requests_rate(self, matchers: list[str], by: Sequence[str] = ()) -> str:
        return f"sum{_by(by)} (rate({self.n.requests}{_selector(matchers)}[{self.ri}]))"

    def expr(self, query: Query) -> str | None:
        n = self.n
        if isinstance(query, RequestRate):
            return self.requests_rate(self.base(http=True, route=query.route))
        if isinstance(query, ErrorRate):
            base = self.base(http=True, route=query.route)
            errors = self.requests_rate([*base, f'{n.status}="{query.status_class}"'])
            # `or vector(0)`: no error series yet means a 0 ratio, not an empty panel.
            return f"({errors} or vector(0)) / {self.requests_rate(base)}"
        if isinstance(query, LatencyQuantile):
            sel = _selector(self.base(http=True, route=query.route))
            return (
                f"histogram_quantile({query.q}, sum by (le) "
                f"(rate({n.duration}_bucket{sel}[{self.ri}])))"
            )
        if isinstance(query, CounterRate):
            sel = _selector([*self.base(http=False), *self.where(query.where)])
            return f"sum{_by(query.by)} (rate({query.name}{sel}[{self.ri}]))"
        if isinstance(query, Counter):
            sel = _selector(self.base(http=False))
            return f"sum{_by(query.by)} (increase({query.name}{sel}[{self.range}]))"
        if isinstance(query, GaugeValue):
            sel = _selector([*self.base(http=False), *self.where(query.where)])
            return f"{query.agg}{_by(query.by)} ({query.name}{sel})"
        if isinstance(query, Ratio):
            sel = _selector(self.base(http=False))
            by = _by(query.by)
            num = f"sum{by} (increase({query.numerator}{sel}[{self.range}]))"
            den = f"sum{by} (increase({query.denominator}{sel}[{self.range}]))"
            return f"{num} / {den}"
        if isinstance(query, TopRoutes):
            return self.top_routes(query)
        if isinstance(query, ErrorTrend):
            sel = _selector(self.base(http=False))
            return f"sum(rate({query.errors_metric}{sel}[{self.ri}])) * 60"
        if isinstance(query, ErrorBreakdown):
            sel = _selector(self.base(http=False))
            if query.by == "status":
                # A gauge read from the shared store: every instance reports the same value.
                return f"max by (severity) ({query.open_groups_metric}{sel})"
            return f"sum by (severity) (increase({query.errors_metric}{sel}[{self.range}]))"
        if isinstance(query, ErrorGroups | ErrorResolution | SeriesFrom):
            return None
        raise TypeError(f"unknown query {query!r}")

    def top_routes(self, query: TopRoutes) -> str:
        n = self.n
        base = self.base(http=True)
        by = (n.method, n.route)
        if query.by == "requests":
            inner = f"sum{_by(by)} (increase({n.requests}{_selector(base)}[{self.range}]))"
        elif query.by == "errors":
            sel = _selector([*base, f'{n.status}="5xx"'])
            inner = f"sum{_by(by)} (increase({n.requests}{sel}[{self.range}]))"
        else:
            inner = (
                f"1000 * histogram_quantile(0.95, sum{_by((*by, 'le'))} "
                f"(rate({n.duration}_bucket{_selector(base)}[{self.range}])))"
            )
        return f"topk({query.limit}, {inner})"


def promql(
    query: Query,
    *,
    names: PromNames = _DEFAULT_NAMES,
    rate_interval: str = "$__rate_interval",
    range_: str = "$__range",
) -> str | None:
    """The PromQL for one neutral query; None when Prometheus cannot answer it."""
    return _Builder(names, rate_interval, range_).expr(query)


def _legend(query: Query, names: PromNames) -> str:
    if isinstance(query, TopRoutes):
        return f"{{{{{names.method}}}}} {{{{{names.route}}}}}"
    by: tuple[str, ...] = ()
    if isinstance(query, CounterRate | Counter | GaugeValue | Ratio):
        by = query.by
    elif isinstance(query, ErrorBreakdown):
        by = ("severity",)
    if by:
        return " ".join(f"{{{{{label}}}}}" for label in by)
    return query.label


def _thresholds(panel: Panel) -> dict[str, Any]:
    below = [t for t in panel.thresholds if t.below]
    if below:  # "bad below": red up to the value, green from it
        steps: list[dict[str, Any]] = [{"color": "red", "value": None}]
        steps += [
            {"color": "green", "value": t.value} for t in sorted(below, key=lambda t: t.value)
        ]
    else:
        steps = [{"color": "green", "value": None}]
        steps += [
            {"color": _COLORS[t.level], "value": t.value}
            for t in sorted(panel.thresholds, key=lambda t: t.value)
        ]
    return {"mode": "absolute", "steps": steps}


def _text_panel(panel: Panel, where: str) -> dict[str, Any]:
    content = (
        f"**{panel.title}**\n\n{panel.description}\n\n"
        f"_This panel reads the error store, not Prometheus: open it in {where}._"
    )
    return {
        "type": "text",
        "title": panel.title,
        "description": panel.description,
        "options": {"mode": "markdown", "content": content},
    }


def _panel(panel: Panel, names: PromNames, ui_hint: str) -> dict[str, Any]:
    targets: list[dict[str, Any]] = []
    instant = panel.kind in ("table", "topn") or any(
        isinstance(q, Counter | Ratio | ErrorBreakdown) for q in panel.queries
    )
    for query in panel.queries:
        expr = promql(query, names=names)
        if expr is None:
            continue
        target: dict[str, Any] = {
            "datasource": _DATASOURCE,
            "refId": chr(ord("A") + len(targets)),
            "expr": expr,
            "legendFormat": _legend(query, names),
            "range": not instant,
            "instant": instant,
        }
        if panel.kind == "table":
            target["format"] = "table"
        targets.append(target)
    if not targets:
        return _text_panel(panel, ui_hint)
    out: dict[str, Any] = {
        "type": _PANEL_TYPE[panel.kind],
        "title": panel.title,
        "description": panel.description,
        "datasource": _DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {"unit": panel.unit, "thresholds": _thresholds(panel)},
            "overrides": [],
        },
    }
    if panel.kind == "timeseries":
        out["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}}
        if panel.thresholds:
            custom = {"thresholdsStyle": {"mode": "line"}}
            out["fieldConfig"]["defaults"]["custom"] = custom
    elif panel.kind == "stat":
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
        }
    elif panel.kind == "topn":
        out["options"] = {
            "orientation": "horizontal",
            "displayMode": "basic",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        }
    else:
        out["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True}}},
        ]
    return out


def _templating(names: PromNames) -> dict[str, Any]:
    def query_var(name: str, label: str, definition: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": _DATASOURCE,
            "definition": definition,
            "query": {"query": definition, "refId": f"{name}-values"},
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "refresh": 2,
            "sort": 1,
            "hide": 0,
        }

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
            },
            query_var("instance", "Instance", f"label_values({names.requests}, {names.instance})"),
            query_var(
                "route",
                "Route",
                f'label_values({names.requests}{{{names.instance}=~"$instance"}}, {names.route})',
            ),
        ]
    }


def render_grafana_dashboard(
    dashboard: Dashboard,
    *,
    uid_prefix: str = "ep",
    names: PromNames = _DEFAULT_NAMES,
    ui_hint: str = "the built-in UI (/ops/errors) or Sentry",
    refresh: str = "30s",
) -> dict[str, Any]:
    """Grafana dashboard JSON (schema 39) for one dashboard. Pure: same input, same output."""
    panels: list[dict[str, Any]] = []
    x = y = row_h = 0
    for index, panel in enumerate(dashboard.panels, start=1):
        width, height = panel.width * 2, _HEIGHT[panel.kind]
        if x + width > 24:
            x, y, row_h = 0, y + row_h, 0
        rendered = _panel(panel, names, ui_hint)
        rendered = {"id": index, "gridPos": {"h": height, "w": width, "x": x, "y": y}, **rendered}
        panels.append(rendered)
        x += width
        row_h = max(row_h, height)
    return {
        "uid": f"{uid_prefix}-{dashboard.name}"[:40],
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": GRAFANA_SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {"refresh_intervals": ["10s", "30s", "1m", "5m", "15m"]},
        "templating": _templating(names),
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


def render_grafana_files(
    dashboards: Sequence[Dashboard], *, uid_prefix: str = "ep", names: PromNames = _DEFAULT_NAMES
) -> dict[str, str]:
    """``{"<name>.json": text}`` for committing under deploy/grafana/ (stable, sorted keys)."""
    return {
        f"{d.name}.json": json.dumps(
            render_grafana_dashboard(d, uid_prefix=uid_prefix, names=names), indent=2
        )
        + "\n"
        for d in dashboards
    }
