"""Grafana dashboard JSON over a Prometheus data source, rendered from the neutral model.

One PromQL expression per term, from `observability.query.promql` (the renderer the Prometheus
rule files use too). The data source is a ``${datasource}`` template variable (the
JSON imports into any Grafana without editing uids), and ``$instance`` / ``$route`` variables
filter every HTTP expression. Rates use Grafana's ``$__rate_interval`` (at least four scrape
intervals, so ``rate`` always has two samples); range totals use ``$__range``.

Metric names follow the terms' strings; the HTTP metrics are assumed to carry the labels the
observability middleware records: ``http_requests_total{method, route, status_class}`` and the
histogram ``http_request_duration_seconds{method, route}``. A term a Prometheus cannot answer
(the error store's) becomes a text panel pointing at the built-in UI.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from observability.dashboards.model import Dashboard, Panel
from observability.query.model import (
    CounterIncrease,
    ErrorBreakdown,
    Ratio,
    Term,
    TopRoutes,
    Unsupported,
)
from observability.query.promql import PromContext, PromNames, promql

__all__ = [
    "GRAFANA_SCHEMA_VERSION",
    "grafana_context",
    "render_grafana_dashboard",
    "render_grafana_files",
]

GRAFANA_SCHEMA_VERSION = 39
_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_COLORS = {"warn": "orange", "bad": "red"}
_HEIGHT = {"timeseries": 8, "stat": 5, "table": 8, "topn": 8}
_PANEL_TYPE = {"timeseries": "timeseries", "stat": "stat", "table": "table", "topn": "bargauge"}
_DEFAULT_NAMES = PromNames()


def grafana_context(names: PromNames = _DEFAULT_NAMES) -> PromContext:
    """Grafana's windows (`$__rate_interval`, `$__range`) and its `$instance` / `$route`
    filters, for `observability.query.promql.promql`."""
    return PromContext(
        names=names,
        rate_window="$__rate_interval",
        range_window="$__range",
        matchers=(f'{names.instance_label}=~"$instance"',),
        http_matchers=(f'{names.route_label}=~"$route"',),
    )


def _legend(query: Term, names: PromNames) -> str:
    if isinstance(query, TopRoutes):
        return f"{{{{{names.method_label}}}}} {{{{{names.route_label}}}}}"
    by: tuple[str, ...] = getattr(query, "by", ())
    if isinstance(query, ErrorBreakdown):
        by = ("severity",)
    if by and isinstance(by, tuple):
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
        isinstance(q, CounterIncrease | Ratio | ErrorBreakdown) for q in panel.queries
    )
    context = grafana_context(names)
    for query in panel.queries:
        try:
            expr = promql(query, context)
        except Unsupported:
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
        organize: dict[str, Any] = {"excludeByName": {"Time": True}}
        transformations: list[dict[str, Any]] = []
        if len(targets) > 1:  # one row per label set, one column per query (as the UI joins)
            transformations.append({"id": "merge", "options": {}})
            organize["renameByName"] = {
                f"Value #{t['refId']}": q.label
                for t, q in zip(targets, panel.queries, strict=False)
            }
            overrides = out["fieldConfig"]["overrides"]
            for t, unit in zip(targets, panel.column_units, strict=False):
                matcher = {"id": "byName", "options": f"Value #{t['refId']}"}
                overrides.append(
                    {"matcher": matcher, "properties": [{"id": "unit", "value": unit}]}
                )
        transformations.append({"id": "organize", "options": organize})
        out["transformations"] = transformations
        if panel.link:
            out["fieldConfig"]["overrides"].append(_link_override(panel.link))
    return out


def _link_override(template: str) -> dict[str, Any]:
    """A data link on the first label of the path template (``{experiment}``), to the host
    app at the ``$app_url`` variable."""
    label = template.partition("{")[2].partition("}")[0]
    url = "${app_url}" + template.replace(f"{{{label}}}", "${__value.raw}")
    return {
        "matcher": {"id": "byName", "options": label},
        "properties": [{"id": "links", "value": [{"title": "Results", "url": url}]}],
    }


def _templating(names: PromNames, links: bool = False) -> dict[str, Any]:
    instance = names.instance_label

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

    app_url = {
        "name": "app_url",
        "label": "App URL",
        "type": "textbox",
        "query": "http://127.0.0.1:8000",
        "current": {"text": "http://127.0.0.1:8000", "value": "http://127.0.0.1:8000"},
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
            query_var("instance", "Instance", f"label_values({names.requests}, {instance})"),
            query_var(
                "route",
                "Route",
                f'label_values({names.requests}{{{instance}=~"$instance"}}, {names.route_label})',
            ),
            *([app_url] if links else []),
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
        "templating": _templating(names, links=any(p.link for p in dashboard.panels)),
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
