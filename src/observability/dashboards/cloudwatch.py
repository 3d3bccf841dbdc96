"""CloudWatch dashboard bodies rendered from the neutral model (AWS "Dashboard Body Structure").

Each term becomes CloudWatch metrics and metric math through ``observability.query.cloudwatch``
(the renderer the alarms use too), over the metrics ``observability.metrics.emf.EmfPublisher``
writes, in one namespace with the publisher's base dimensions plus ``Route`` per route. Rates
are metric math (``m1/PERIOD(m1)``), top-N lists ``SORT(SEARCH())``; a panel in
``percentunit`` shows its ratios as ``100*(...)`` percent. Each panel's explanation sits under
it in a text widget. A panel none of whose terms CloudWatch can express (error groups,
resolution time, gauges split by a label: EMF metrics carry no labels) becomes a text
widget pointing at the built-in UI; a counter split by labels is a SEARCH over the per-series
metrics EMF publishes (one line per series).

Why a validator here: the CloudWatch API rejects a malformed body only at deploy time and moto
does not validate bodies at all, so ``validate_cloudwatch_body`` checks the documented rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from observability.dashboards.model import Dashboard, Panel
from observability.query.cloudwatch import CwContext, Ids, cloudwatch_query
from observability.query.model import LatencyQuantile, Term, Unsupported

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_WIDGETS",
    "render_cloudwatch_body",
    "render_cloudwatch_dashboard",
    "validate_cloudwatch_body",
]

MAX_WIDGETS = 500
MAX_METRICS_PER_WIDGET = 100  # AWS: "One metrics array can include 1-100 metrics and expressions"
MAX_BODY_BYTES = 1_048_576
_VIEWS = {"timeSeries", "singleValue", "gauge", "bar", "pie", "table"}
_STAT = re.compile(r"^(SampleCount|Average|Sum|Minimum|Maximum|p\d{1,2}(\.\d+)?|IQM)$")
_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
_VIEW = {"timeseries": "timeSeries", "stat": "singleValue", "table": "table", "topn": "bar"}


class _Widgets:
    """The ``metrics`` array of one panel: each term's metrics and metric math, unique ids."""

    def __init__(self, ctx: CwContext, percent: bool) -> None:
        self.ctx = ctx
        self.percent = percent  # a 0..1 panel: CloudWatch shows it as 0..100 (%)
        self.ids = Ids()
        self.rows: list[list[Any]] = []

    def add(self, term: Term) -> bool:
        """Add the rows for one term; False when CloudWatch metrics cannot answer it."""
        try:
            query = cloudwatch_query(term, self.ctx, self.ids)
        except Unsupported:
            return False
        label = term.label + (" (ms)" if query.scale == 1000.0 else "")
        expression = query.expression
        if self.percent and query.scale == 1.0:
            ids = [m.id for m in query.metrics]
            expression = f"100*({expression or ids[0]})"
            label = f"{term.label} (%)"
        for m in query.metrics:
            opts: dict[str, Any] = {"id": m.id, "stat": m.stat}
            if expression is not None:
                opts["visible"] = False
            else:
                opts["label"] = label
            row: list[Any] = [self.ctx.namespace, m.name]
            for key, value in m.dimensions.items():
                row += [key, value]
            self.rows.append([*row, opts])
        if expression is not None:
            self.rows.append([{"expression": expression, "label": label, "id": self.ids("e")}])
        return True


def _metric_widget(
    panel: Panel,
    *,
    namespace: str,
    region: str,
    dimensions: Mapping[str, str],
    route_dimension: str,
    period: int,
) -> dict[str, Any] | None:
    ctx = CwContext(namespace, dict(dimensions), route_dimension, period, search=True)
    builder = _Widgets(ctx, percent=panel.unit == "percentunit")
    added = [builder.add(q) for q in panel.queries]  # every query, not only up to the first
    if not any(added):
        return None
    view = _VIEW[panel.kind]
    props: dict[str, Any] = {
        "title": panel.title,
        "region": region,
        "view": view,
        "period": period,
        "stacked": False,
        "metrics": builder.rows,
    }
    if view in ("singleValue", "bar", "table"):
        props["setPeriodToTimeRange"] = True
    if view == "timeSeries":
        props["legend"] = {"position": "bottom"}
        # Thresholds are in the panel's unit; CloudWatch shows ratios as % and latency in ms.
        scale = 100.0 if panel.unit == "percentunit" else 1.0
        if any(isinstance(q, LatencyQuantile) for q in panel.queries):
            scale = 1000.0
        lines = [
            {"label": t.level, "value": t.value * scale, "color": _COLOR[t.level]}
            for t in panel.thresholds
        ]
        if lines:
            props["annotations"] = {"horizontal": lines}
    return props


_COLOR = {"warn": "#ff7f0e", "bad": "#d62728"}


def render_cloudwatch_dashboard(
    dashboard: Dashboard,
    *,
    namespace: str,
    region: str,
    dimensions: Mapping[str, str] | None = None,
    route_dimension: str = "Route",
    period: int = 60,
    ui_hint: str = "the built-in operations UI (/ops/errors)",
) -> dict[str, Any]:
    """The dashboard body (a dict; ``json.dumps`` it for ``put_dashboard``). Pure."""
    if period not in (1, 5, 10, 30) and period % 60:
        raise ValueError("period must be 1, 5, 10, 30 or a multiple of 60")
    dims = dict(dimensions or {})
    widgets: list[dict[str, Any]] = [
        {
            "type": "text",
            "x": 0,
            "y": 0,
            "width": 24,
            "height": 2,
            "properties": {"markdown": f"# {dashboard.title}\n{dashboard.description}"},
        }
    ]
    x, y, row_h = 0, 2, 0
    for panel in dashboard.panels:
        width = panel.width * 2
        if x + width > 24:
            x, y, row_h = 0, y + row_h, 0
        props = _metric_widget(
            panel,
            namespace=namespace,
            region=region,
            dimensions=dims,
            route_dimension=route_dimension,
            period=period,
        )
        if props is None:
            text = f"### {panel.title}\n{panel.description}\n\n_Data: {ui_hint}._"
            widgets.append(
                {
                    "type": "text",
                    "x": x,
                    "y": y,
                    "width": width,
                    "height": 8,
                    "properties": {"markdown": text},
                }
            )
        else:
            widgets.append(
                {"type": "metric", "x": x, "y": y, "width": width, "height": 6, "properties": props}
            )
            widgets.append(
                {
                    "type": "text",
                    "x": x,
                    "y": y + 6,
                    "width": width,
                    "height": 2,
                    "properties": {"markdown": panel.description},
                }
            )
        x += width
        row_h = max(row_h, 8)
    return {"start": "-PT3H", "periodOverride": "auto", "widgets": widgets}


def render_cloudwatch_body(dashboard: Dashboard, **options: Any) -> str:
    """``render_cloudwatch_dashboard`` as the JSON string ``put_dashboard`` takes."""
    return json.dumps(render_cloudwatch_dashboard(dashboard, **options), separators=(",", ":"))


def _check_metric_row(row: Any, ids: set[str], where: str) -> list[str]:
    problems: list[str] = []
    if not isinstance(row, list) or not row:
        return [f"{where}: a metric row must be a non-empty array"]
    opts = row[-1] if isinstance(row[-1], dict) else {}
    if "expression" in opts:
        if len(row) != 1:
            problems.append(f"{where}: an expression row holds only its options object")
        if not isinstance(opts["expression"], str) or not opts["expression"]:
            problems.append(f"{where}: empty expression")
    else:
        plain = row[:-1] if isinstance(row[-1], dict) else row
        if len(plain) < 2 or not all(isinstance(v, str) and v for v in plain):
            problems.append(f"{where}: needs namespace and metric name as strings")
        elif len(plain) % 2:
            problems.append(f"{where}: dimensions must come in name/value pairs")
        elif len(plain[2:]) // 2 > 30:
            problems.append(f"{where}: more than 30 dimensions")
        stat = opts.get("stat")
        if stat is not None and not _STAT.match(str(stat)):
            problems.append(f"{where}: invalid stat {stat!r}")
    ident = opts.get("id")
    if ident is not None:
        if not _ID.match(str(ident)):
            problems.append(f"{where}: id {ident!r} must start with a lowercase letter")
        elif ident in ids:
            problems.append(f"{where}: duplicate id {ident!r}")
        ids.add(str(ident))
    return problems


def validate_cloudwatch_body(body: Mapping[str, Any] | str) -> list[str]:
    """Problems with a dashboard body per the documented structure; an empty list means valid."""
    if isinstance(body, str):
        if len(body.encode()) > MAX_BODY_BYTES:
            return ["body larger than 1 MB"]
        body = json.loads(body)
        assert isinstance(body, Mapping)
    widgets = body.get("widgets")
    if not isinstance(widgets, list):
        return ["'widgets' must be an array"]
    problems: list[str] = []
    if len(widgets) > MAX_WIDGETS:
        problems.append(f"{len(widgets)} widgets; at most {MAX_WIDGETS}")
    for i, widget in enumerate(widgets):
        where = f"widget {i}"
        kind = widget.get("type")
        x, y = widget.get("x", 0), widget.get("y", 0)
        width, height = widget.get("width", 6), widget.get("height", 6)
        if not (isinstance(x, int) and 0 <= x <= 23):
            problems.append(f"{where}: x must be 0..23")
        if not (isinstance(y, int) and y >= 0):
            problems.append(f"{where}: y must be >= 0")
        if not (isinstance(width, int) and 1 <= width <= 24 and x + width <= 24):
            problems.append(f"{where}: width must be 1..24 and fit the 24-column grid")
        if not (isinstance(height, int) and 1 <= height <= 1000):
            problems.append(f"{where}: height must be 1..1000")
        props = widget.get("properties")
        if not isinstance(props, dict):
            problems.append(f"{where}: properties object required")
            continue
        if kind == "text":
            if not isinstance(props.get("markdown"), str) or not props["markdown"]:
                problems.append(f"{where}: text widget needs markdown")
        elif kind == "metric":
            metrics = props.get("metrics")
            if not isinstance(metrics, list) or not 1 <= len(metrics) <= MAX_METRICS_PER_WIDGET:
                problems.append(f"{where}: metrics must hold 1..{MAX_METRICS_PER_WIDGET} rows")
                continue
            if not isinstance(props.get("region"), str):
                problems.append(f"{where}: region required")
            if props.get("view", "timeSeries") not in _VIEWS:
                problems.append(f"{where}: invalid view {props.get('view')!r}")
            period = props.get("period", 300)
            if not isinstance(period, int) or (period not in (1, 5, 10, 30) and period % 60):
                problems.append(f"{where}: invalid period {period!r}")
            ids: set[str] = set()
            for j, row in enumerate(metrics):
                problems += _check_metric_row(row, ids, f"{where} row {j}")
            for j, row in enumerate(metrics):
                opts = row[-1] if isinstance(row, list) and isinstance(row[-1], dict) else {}
                expr = opts.get("expression")
                if isinstance(expr, str) and "SEARCH(" not in expr:
                    unknown = set(re.findall(r"\b([me]\d+)\b", expr)) - ids
                    if unknown:
                        problems.append(f"{where} row {j}: unknown ids {sorted(unknown)}")
        else:
            problems.append(f"{where}: unsupported widget type {kind!r}")
    return problems
