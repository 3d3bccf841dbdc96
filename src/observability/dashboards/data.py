"""The built-in UI's data source: every panel's data for a time range, as JSON-ready dicts.

Where the numbers come from:

* ranges up to an hour (15m, 1h): ``RollingWindows`` - its per-minute rollups for the curve and
  its live 60 s window for the last point, so a chart moves as soon as traffic flows;
* longer ranges (6h, 24h, 7d): a per-minute history store (``MetricHistory``; any object with
  the methods of :class:`HistoryLike`); without one, the panel says so and shows the last hour;
* gauges (CPU, memory, readiness, experiment counts): a ``gauges()`` callable read live, sampled
  into a one-hour memory on every read (and by ``sample_gauges()`` from a periodic task);
* errors: the ``ErrorStore`` (groups, trend, resolution times).

Labelled counters and gauges are keyed in Prometheus text form, ``name{label="value"}``, both in
``RollingWindows.count`` names and in ``gauges()`` (see ``registry_values``).

Computing a panel never raises into the request: a failing panel carries ``error`` and is
counted in ``panel_errors``.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from observability.dashboards.frame import (
    RANGES,
    STEPS,
    WINDOW_MAX_S,
    Frame,
    GaugeMemory,
    HistoryLike,
    Points,
    SeriesSource,
    aggregate,
    matches,
    num,
    registry_values,
)
from observability.dashboards.frame import (
    group as label_group,
)
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
from observability.errors.store import ErrorGroup, ErrorStore
from observability.metrics.windows import RollingWindows, WindowStats

__all__ = [
    "RANGES",
    "STEPS",
    "DashboardData",
    "HistoryLike",
    "SeriesSource",
    "registry_values",
]


class DashboardData:
    """Computes panel data for the built-in UI. Thread-safe; cheap enough for a 30 s refresh."""

    def __init__(
        self,
        dashboards: Sequence[Dashboard],
        *,
        windows: RollingWindows,
        history: HistoryLike | None = None,
        errors: ErrorStore | None = None,
        gauges: Callable[[], Mapping[str, float]] | None = None,
        sources: Mapping[str, SeriesSource] | None = None,
        instance: str = "local",
        clock: Callable[[], float] = time.time,
        gauge_interval_s: float = 5.0,
    ) -> None:
        self.dashboards = {d.name: d for d in dashboards}
        self.windows = windows
        self.history = history
        self.errors = errors
        self.gauges = gauges
        self.sources = dict(sources or {})
        self.instance = instance
        self.clock = clock
        self.memory = GaugeMemory(WINDOW_MAX_S + 120, gauge_interval_s)
        self.panel_errors = 0
        self.gauge_errors = 0
        self.sample_gauges()  # a first reading: rates from cumulative gauges need two

    # -- gauges ---------------------------------------------------------------------------------
    def sample_gauges(self) -> dict[str, float]:
        """Read ``gauges()`` once, remember the reading, return it ({} when it fails)."""
        if self.gauges is None:
            return {}
        try:
            values = {k: float(v) for k, v in self.gauges().items()}
        except Exception:  # a broken collector must not break the page
            self.gauge_errors += 1
            return {}
        self.memory.add(self.clock(), values)
        return values

    def _frame(self, range_key: str) -> Frame:
        return Frame(
            range_key,
            windows=self.windows,
            history=self.history,
            now=self.clock(),
            gauges=self.sample_gauges(),
        )

    # -- dashboards -----------------------------------------------------------------------------
    def dashboard_list(self) -> list[dict[str, str]]:
        return [
            {"name": d.name, "title": d.title, "description": d.description}
            for d in self.dashboards.values()
        ]

    def dashboard(self, name: str, range_key: str = "1h") -> dict[str, Any]:
        """JSON-ready data of every panel of one dashboard. KeyError for an unknown name."""
        board = self.dashboards[name]
        frame = self._frame(range_key)
        panels = [self._panel(panel, frame) for panel in board.panels]
        return {
            "name": board.name,
            "title": board.title,
            "description": board.description,
            "range": range_key,
            "start": frame.start,
            "end": frame.now,
            "step": frame.step,
            "generated_at": frame.now,
            "notes": frame.notes,
            "panels": panels,
        }

    def _panel(self, panel: Panel, frame: Frame) -> dict[str, Any]:
        out: dict[str, Any] = {
            "slug": panel.slug,
            "kind": panel.kind,
            "title": panel.title,
            "description": panel.description,
            "unit": panel.unit,
            "width": panel.width,
            "thresholds": [
                {"value": t.value, "level": t.level, "below": t.below} for t in panel.thresholds
            ],
        }
        try:
            if panel.kind == "timeseries":
                out.update(self._timeseries(panel.queries, frame))
            elif panel.kind == "stat":
                out["stats"] = [s for q in panel.queries for s in self._stats(q, frame)]
            else:
                out["table"] = self._table(panel.queries[0], frame)
        except Exception as exc:  # one broken panel must not take the dashboard down
            self.panel_errors += 1
            out["error"] = f"could not compute this panel ({type(exc).__name__})"
        return out

    # -- time series ----------------------------------------------------------------------------
    def _timeseries(self, queries: Sequence[Query], frame: Frame) -> dict[str, Any]:
        series: list[tuple[str, Points]] = []
        for query in queries:
            series.extend(self._series(query, frame))
        times = sorted({t for _, points in series for t, _ in points})
        index = {t: i for i, t in enumerate(times)}
        columns = []
        for label, points in series:
            values: list[float | None] = [None] * len(times)
            for t, v in points:
                values[index[t]] = num(v)
            columns.append({"label": label, "values": values})
        return {"time": times, "series": columns}

    def _series(self, query: Query, frame: Frame) -> list[tuple[str, Points]]:
        if isinstance(query, RequestRate):
            return [(query.label, frame.requests(query.route, "rate"))]
        if isinstance(query, ErrorRate):
            return [(query.label, frame.requests(query.route, query.status_class))]
        if isinstance(query, LatencyQuantile):
            return [(query.label, frame.requests(query.route, str(query.q)))]
        if isinstance(query, CounterRate):
            return self._counter_series(query, frame)
        if isinstance(query, GaugeValue):
            return self._gauge_series(query, frame)
        if isinstance(query, ErrorTrend):
            return [(query.label, self._error_trend(frame))]
        if isinstance(query, SeriesFrom):
            source = self.sources.get(query.source)
            if source is None:
                return []
            return [
                (
                    query.label,
                    [(float(t), v) for t, v in source(frame.start, frame.now, frame.step)],
                )
            ]
        raise TypeError(f"{type(query).__name__} cannot be drawn as a time series")

    def _counter_series(self, query: CounterRate, frame: Frame) -> list[tuple[str, Points]]:
        groups: dict[str, dict[float, float]] = defaultdict(dict)
        keys = {
            k: lab
            for k in frame.counter_keys()
            if (lab := matches(k, query.name, query.where)) is not None
        }
        if keys and frame.use_history:
            assert self.history is not None
            for key, labels in keys.items():
                bucket = groups[label_group(labels, query.by, query.label)]
                for row in self.history.counter_series(key, frame.start, frame.now, frame.step):
                    t = float(row["t"])
                    bucket[t] = bucket.get(t, 0.0) + (num(row.get("total")) or 0.0) / frame.step
        elif keys:
            for minute in frame.minutes:
                t = float(minute.minute_start + 60)
                for key, labels in keys.items():
                    bucket = groups[label_group(labels, query.by, query.label)]
                    bucket[t] = bucket.get(t, 0.0) + minute.counters.get(key, 0.0) / 60.0
            rates = frame.snapshot["windows"]["1m"]["counters"]
            for key, labels in keys.items():
                bucket = groups[label_group(labels, query.by, query.label)]
                rate = rates.get(key, {}).get("rate_per_s", 0.0)
                bucket[frame.now] = bucket.get(frame.now, 0.0) + rate
        else:
            # Not counted in the windows: a cumulative value read through gauges() (network
            # bytes): the rate is the difference between successive readings.
            return self._sampled_counter(query, frame)
        return [(label, sorted(points.items())) for label, points in sorted(groups.items())]

    def _sampled_counter(self, query: CounterRate, frame: Frame) -> list[tuple[str, Points]]:
        samples = self.memory.since(frame.now - frame.window_s)
        groups: dict[str, Points] = defaultdict(list)
        for (t0, before), (t1, after) in itertools.pairwise(samples):
            sums: dict[str, float] = defaultdict(float)
            for key, value in after.items():
                labels = matches(key, query.name, query.where)
                if labels is None or key not in before:
                    continue
                delta = value - before[key]
                if delta >= 0 and t1 > t0:  # a reset (restart) gives no point
                    sums[label_group(labels, query.by, query.label)] += delta / (t1 - t0)
            for label, rate in sums.items():
                groups[label].append((t1, rate))
        return sorted(groups.items())

    def _gauge_series(self, query: GaugeValue, frame: Frame) -> list[tuple[str, Points]]:
        groups: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        if frame.use_history:
            assert self.history is not None
            for key in frame.gauges:
                labels = matches(key, query.name, query.where)
                if labels is None:
                    continue
                label = label_group(self._with_instance(labels), query.by, query.label)
                for row in self.history.gauge_series(key, frame.start, frame.now, frame.step):
                    value = num(row.get("value"))
                    if value is not None:
                        groups[label][float(row["t"])].append(value)
        for t, reading in self.memory.since(frame.start):
            for key, value in reading.items():
                labels = matches(key, query.name, query.where)
                if labels is not None:
                    label = label_group(self._with_instance(labels), query.by, query.label)
                    groups[label][t].append(value)
        return [
            (label, [(t, aggregate(vs, query.agg)) for t, vs in sorted(points.items())])
            for label, points in sorted(groups.items())
        ]

    def _with_instance(self, labels: Mapping[str, str]) -> dict[str, str]:
        return {"instance": self.instance, **labels}

    def _error_trend(self, frame: Frame) -> Points:
        if self.errors is None:
            return []
        minutes = max(1, frame.range_s // 60)
        per_minute = self.errors.stats(minutes=minutes).per_minute
        per_step = max(1, frame.step // 60)
        points: Points = []
        for i in range(0, len(per_minute), per_step):
            chunk = per_minute[i : i + per_step]
            t = chunk[-1][0].timestamp() + 60
            points.append((t, sum(n for _, n in chunk) / len(chunk)))
        return points

    # -- stats ----------------------------------------------------------------------------------
    def _stats(self, query: Query, frame: Frame) -> list[dict[str, Any]]:
        if isinstance(query, GaugeValue):
            return [
                {"label": label, "value": num(value)}
                for label, value in self._gauge_now(query, frame).items()
            ]
        if isinstance(query, Counter):
            return [
                {"label": label, "value": num(value)}
                for label, value in self._counter_totals(
                    query.name, query.by, query.label, frame
                ).items()
            ] or [{"label": query.label, "value": 0.0}]
        if isinstance(query, RequestRate):
            if frame.use_history:
                assert self.history is not None
                stats = self.history.request_stats(frame.start, frame.now, route=query.route)
                rate = (num(stats.get("requests")) or 0.0) / frame.range_s
            else:
                rate = self.windows.request_stats(
                    frame.window_s, route=query.route, now=frame.now
                ).rate_per_s
            return [{"label": query.label, "value": num(rate)}]
        if isinstance(query, ErrorResolution):
            value = self.errors.stats().mean_resolution_seconds if self.errors else None
            return [{"label": query.label, "value": num(value)}]
        if isinstance(query, ErrorBreakdown) and query.by == "status":
            by_status = self.errors.stats().groups_by_status if self.errors else {}
            return [{"label": k, "value": float(v)} for k, v in by_status.items()]
        if isinstance(query, SeriesFrom):
            series = self._series(query, frame)
            last = series[0][1][-1][1] if series and series[0][1] else None
            return [{"label": query.label, "value": num(last)}]
        raise TypeError(f"{type(query).__name__} cannot be shown as a number")

    def _gauge_now(self, query: GaugeValue, frame: Frame) -> dict[str, float]:
        grouped: dict[str, list[float]] = defaultdict(list)
        for key, value in frame.gauges.items():
            labels = matches(key, query.name, query.where)
            if labels is not None:
                grouped[label_group(self._with_instance(labels), query.by, query.label)].append(
                    value
                )
        return {label: aggregate(vs, query.agg) for label, vs in sorted(grouped.items())}

    def _counter_totals(
        self, name: str, by: Sequence[str], fallback: str, frame: Frame
    ) -> dict[str, float]:
        totals: dict[str, float] = defaultdict(float)
        for key in frame.counter_keys():
            labels = matches(key, name, {})
            if labels is None:
                continue
            if frame.use_history:
                assert self.history is not None
                value = self.history.counter_total(key, frame.start, frame.now)
            else:
                value = self.windows.counter_total(key, frame.window_s, now=frame.now)
            totals[label_group(labels, by, fallback)] += value
        return dict(sorted(totals.items()))

    # -- tables ---------------------------------------------------------------------------------
    def _table(self, query: Query, frame: Frame) -> dict[str, Any]:
        if isinstance(query, TopRoutes):
            return self._top_routes(query, frame)
        if isinstance(query, GaugeValue):
            rows = [
                [*label.split(" "), num(value)] if query.by else [label, num(value)]
                for label, value in self._gauge_now(query, frame).items()
            ]
            columns = [*query.by, query.label] if query.by else ["series", query.label]
            return {"columns": columns, "rows": rows}
        if isinstance(query, Ratio):
            numerators = self._counter_totals(query.numerator, query.by, "all", frame)
            denominators = self._counter_totals(query.denominator, query.by, "all", frame)
            rows = []
            for group in sorted(set(numerators) | set(denominators)):
                n, d = numerators.get(group, 0.0), denominators.get(group, 0.0)
                parts = group.split(" ") if query.by else [group]
                rows.append([*parts, n, d, n / d if d else None])
            columns = [*(query.by or ("group",)), query.numerator, query.denominator, query.label]
            return {"columns": columns, "rows": rows, "unit_column": len(columns) - 1}
        if isinstance(query, ErrorGroups):
            return self._error_groups_table(query, frame)
        if isinstance(query, ErrorBreakdown):
            return self._error_breakdown(query, frame)
        if isinstance(query, Counter):
            totals = self._counter_totals(query.name, query.by, query.label, frame)
            return {
                "columns": [*(query.by or ("series",)), "total"],
                "rows": [[*k.split(" "), v] for k, v in totals.items()],
            }
        raise TypeError(f"{type(query).__name__} cannot be shown as a table")

    def _top_routes(self, query: TopRoutes, frame: Frame) -> dict[str, Any]:
        columns = ["route", "requests", "req/s", "p95 ms", "5xx"]
        rows: list[list[Any]] = []
        if frame.use_history:
            assert self.history is not None
            by = "p95" if query.by == "latency" else query.by  # MetricHistory's name for it
            for item in self.history.top_routes(frame.start, frame.now, by, query.limit):
                requests = num(item.get("requests")) or 0.0
                rows.append(
                    [
                        str(item.get("route", "?")),
                        requests,
                        requests / frame.range_s,
                        num(item.get("p95_ms")),
                        num(item.get("errors_5xx")),
                    ]
                )
        else:
            stats = self.windows.route_stats(frame.window_s, now=frame.now)

            def rank(item: tuple[str, WindowStats]) -> float:
                s = item[1]
                if query.by == "latency":
                    return s.p95_ms or 0.0
                return float(s.errors_5xx if query.by == "errors" else s.requests)

            ranked = sorted(stats.items(), key=rank, reverse=True)
            for route, s in ranked[: query.limit]:
                if query.by == "errors" and not s.errors_5xx:
                    continue
                rows.append([route, s.requests, s.rate_per_s, num(s.p95_ms), s.errors_5xx])
        # The value column the bars are drawn from, and each row drills down to its route.
        value_column = {"requests": 1, "latency": 3, "errors": 4}[query.by]
        return {"columns": columns, "rows": rows, "value_column": value_column, "link": "route"}

    def _error_groups_table(self, query: ErrorGroups, frame: Frame) -> dict[str, Any]:
        groups = self.error_groups(
            status=query.status, sort=query.sort, limit=query.limit, since=frame.start
        )
        columns = ["type", "message", "severity", "count", "users", "last seen", "status"]
        rows = [
            [
                g["type"],
                g["message"],
                g["severity"],
                g["count"],
                g["users"],
                g["last_seen"],
                g["status"],
            ]
            for g in groups
        ]
        return {
            "columns": columns,
            "rows": rows,
            "link": "error_group",
            "keys": [g["fingerprint"] for g in groups],
        }

    def _error_breakdown(self, query: ErrorBreakdown, frame: Frame) -> dict[str, Any]:
        if self.errors is None:
            return {"columns": [query.by, "count"], "rows": []}
        if query.by == "status":
            stats = self.errors.stats()
            return {
                "columns": ["status", "groups"],
                "rows": [[k, v] for k, v in stats.groups_by_status.items()],
            }
        groups = self.errors.list_groups(since=_dt(frame.start), limit=500, sort="count")
        counts: dict[tuple[str, ...], int] = defaultdict(int)
        for g in groups:
            key = (g.type, g.severity.value) if query.by == "type" else (g.severity.value,)
            counts[key] += g.count
        columns = (
            ["type", "severity", "occurrences"]
            if query.by == "type"
            else ["severity", "occurrences"]
        )
        rows = [[*k, n] for k, n in sorted(counts.items(), key=lambda kv: -kv[1])]
        return {"columns": columns, "rows": rows}

    # -- drill-down -----------------------------------------------------------------------------
    def route_detail(self, route: str, range_key: str = "1h") -> dict[str, Any]:
        """Latency quantiles and request rate of one ``"METHOD /template"`` route over time."""
        frame = self._frame(range_key)
        latency = self._timeseries(
            [
                LatencyQuantile(0.5, route),
                LatencyQuantile(0.95, route),
                LatencyQuantile(0.99, route),
            ],
            frame,
        )
        traffic = self._timeseries([RequestRate(route), ErrorRate("5xx", route)], frame)
        return {
            "route": route,
            "range": range_key,
            "notes": frame.notes,
            "latency": latency,
            "traffic": traffic,
        }

    def error_groups(
        self,
        *,
        status: str | None = "open",
        sort: str = "count",
        limit: int = 50,
        since: float | None = None,
        route: str | None = None,
    ) -> list[dict[str, Any]]:
        if self.errors is None:
            return []
        groups = self.errors.list_groups(
            status=status, sort=sort, limit=limit, since=_dt(since) if since else None, route=route
        )
        return [_group_json(g) for g in groups]

    def error_group(self, fingerprint: str, occurrences: int = 20) -> dict[str, Any] | None:
        """A group with its sample occurrences (request ids for the log drill-down)."""
        if self.errors is None:
            return None
        detail = self.errors.get_group(fingerprint, occurrences=occurrences)
        if detail is None:
            return None
        return {
            "group": _group_json(detail.group),
            "routes": detail.routes,
            "occurrences": [
                {
                    "id": o.id,
                    "timestamp": o.timestamp.timestamp(),
                    "request_id": o.request_id,
                    "trace_id": o.trace_id,
                    "route": o.route,
                    "method": o.method,
                    "message": o.message,
                    "frames": o.frames[-5:],
                }
                for o in detail.occurrences
            ],
        }


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _group_json(g: ErrorGroup) -> dict[str, Any]:
    return {
        "fingerprint": g.fingerprint,
        "type": g.type,
        "message": g.message,
        "severity": g.severity.value,
        "status": g.status.value,
        "count": g.count,
        "users": g.users,
        "first_seen": g.first_seen.timestamp(),
        "last_seen": g.last_seen.timestamp(),
        "regression": g.regression,
        "first_request_id": g.first_request_id,
    }
