"""The built-in UI's data source: every panel's data for a time range, as JSON-ready dicts.

Numbers come from the one query evaluator (`observability.query`) over a `LiveSource`:

* a time series is its terms evaluated at the end of every step of the range (a step of a
  minute up to an hour, 5 minutes for 6 h, ...), over the step before it; up to an hour the
  steps are the rolling windows' complete minutes and a live point for the last step follows,
  so a chart moves as soon as traffic flows; longer ranges read the per-minute history store
  (`MetricHistory`); without one, the page says so and shows the last hour;
* a number or a table is its terms over the whole range (the live windows up to an hour);
  a gauge is its current reading;
* gauges (CPU, memory, readiness, experiment counts) come from a `gauges()` callable read once
  per dashboard read and remembered for an hour; cumulative values among them (network bytes)
  become rates between readings;
* errors: the `ErrorStore` (groups, trend, resolution times).

Labelled counters and gauges are keyed in Prometheus text form, `name{label="value"}`, both in
`RollingWindows.count` names and in `gauges()` (see `registry_values`).

Computing a panel never raises into the request: a failing panel carries `error` and is
counted in `panel_errors`.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from observability.dashboards.model import Dashboard, Panel
from observability.errors.store import ErrorStore
from observability.fleet.rollups import FleetRollups
from observability.metrics.history import MetricHistory
from observability.metrics.windows import RollingWindows
from observability.query.evaluate import instant, series, top_routes
from observability.query.fleet import FleetRound, fleet_view
from observability.query.live import LiveRound, LiveSource, RangeView
from observability.query.model import (
    CounterIncrease,
    ErrorBreakdown,
    ErrorGroups,
    ErrorRatio,
    ErrorResolution,
    ErrorTrend,
    GaugeValue,
    LatencyQuantile,
    MetricTerm,
    Ratio,
    RequestRate,
    SeriesFrom,
    Term,
    TopRoutes,
    Unsupported,
    route_filter,
)
from observability.query.source import MetricSource

__all__ = ["RANGES", "STEPS", "DashboardData", "SeriesSource", "registry_values"]

RANGES: dict[str, int] = {"15m": 900, "1h": 3600, "6h": 21_600, "24h": 86_400, "7d": 604_800}
STEPS: dict[str, int] = {"15m": 60, "1h": 60, "6h": 300, "24h": 900, "7d": 3600}
_WINDOWS_MAX_S = 3600

Points: TypeAlias = list[tuple[float, float | None]]
SeriesSource = Callable[[float, float, int], Sequence[tuple[float, float]]]


def num(value: Any) -> float | None:
    """JSON-safe float: NaN and infinities become None (JSON has neither)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def registry_values(registry: Any, names: Iterable[str]) -> dict[str, float]:
    """Current values of gauges/counters named in `names` from a prometheus_client registry,
    keyed `name{labels}` - a ready-made `gauges` callable body for the UI."""
    wanted = set(names)
    values: dict[str, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in wanted:
                key = sample.name
                if sample.labels:
                    inner = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                    key = f"{key}{{{inner}}}"
                values[key] = float(sample.value)
    return values


def _display(term: Term, labels: Mapping[str, str]) -> str:
    """A series' name on a chart: the values of the `by` labels, else the term's label."""
    by: Sequence[str] = getattr(term, "by", ())
    if by and isinstance(by, tuple):
        return " ".join(labels.get(label, "-") for label in by)
    if labels:
        return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return term.label


@dataclass
class _Read:
    """One dashboard read: the range, its view, the live source for this round."""

    range_key: str
    range_s: int
    step: int
    now: float
    view: RangeView | Exception  # the exception when the history could not be read
    live: LiveRound | FleetRound

    @property
    def steps(self) -> RangeView:
        if isinstance(self.view, Exception):
            raise self.view  # the panels that need the range fail; the others do not
        return self.view

    @property
    def notes(self) -> list[str]:
        if isinstance(self.view, Exception):
            return [f"history unavailable ({type(self.view).__name__})"]
        return self.view.notes

    def over_range(self) -> tuple[MetricSource, float, int]:
        """Where a number over the whole range comes from: the live windows (up to an hour;
        the fleet's buckets when there is a fleet), else the range's history."""
        view = self.steps
        if view.live_edge:
            return self.live, self.now, min(self.range_s, _WINDOWS_MAX_S)
        return view.store, view.end, self.range_s


class DashboardData:
    """Computes panel data for the built-in UI. Thread-safe; cheap enough for a 30 s refresh."""

    def __init__(
        self,
        dashboards: Sequence[Dashboard],
        *,
        windows: RollingWindows,
        history: MetricHistory | None = None,
        errors: ErrorStore | None = None,
        gauges: Callable[[], Mapping[str, float]] | None = None,
        sources: Mapping[str, SeriesSource] | None = None,
        instance: str = "local",
        clock: Callable[[], float] = time.time,
        gauge_interval_s: float = 5.0,
        fleet: FleetRollups | None = None,
    ) -> None:
        """`fleet`: the instances' shared recent buckets; panels then show the fleet (or the
        instance asked for) at every range; without it, this process up to an hour."""
        self.dashboards = {d.name: d for d in dashboards}
        self.fleet = fleet
        self.windows = windows
        self.history = history
        self.errors = errors
        self.sources = dict(sources or {})
        self.instance = instance
        self.clock = clock
        self.live = LiveSource(
            windows,
            history=history,
            gauges=gauges,
            clock=clock,
            instance=instance,
            gauge_interval_s=gauge_interval_s,
        )
        self.panel_errors = 0
        self.sample_gauges()  # a first reading: rates from cumulative gauges need two

    @property
    def gauge_errors(self) -> int:
        return self.live.gauge_errors

    def sample_gauges(self) -> dict[str, float]:
        """Read `gauges()` once, remember the reading, return it ({} when it fails)."""
        return self.live.sample_gauges()

    def _read(self, range_key: str, instance: str | None = None) -> _Read:
        if range_key not in RANGES:
            raise ValueError(f"range must be one of {', '.join(RANGES)}")
        range_s, step = RANGES[range_key], STEPS[range_key]
        live = self.live.begin_round(read_now=True)  # one gauges read per dashboard read
        now = self.clock()  # after the reading: a rate at "now" includes it
        view: RangeView | Exception
        source: LiveRound | FleetRound = live
        try:
            if self.fleet is None or (instance is None and range_s > _WINDOWS_MAX_S):
                view = self.live.view(range_s, step, now)  # the history is fleet-wide
            else:
                view, fine = fleet_view(self.fleet, self.history, range_s, step, now, instance)
                source = FleetRound(fine, live)
        except Exception as exc:  # a broken history store costs its panels, not the page
            view = exc
        return _Read(range_key, range_s, step, now, view, source)

    def instances(self, now: float | None = None) -> list[str]:
        """The instances a dashboard can be narrowed to (those that published in the last
        hour); without a fleet, this process."""
        if self.fleet is None:
            return [self.instance]
        now = self.clock() if now is None else now
        try:
            return self.fleet.instances(now - _WINDOWS_MAX_S)
        except Exception:  # the selector then offers the fleet only
            return []

    # -- dashboards -----------------------------------------------------------------------------
    def dashboard_list(self) -> list[dict[str, str]]:
        return [
            {"name": d.name, "title": d.title, "description": d.description}
            for d in self.dashboards.values()
        ]

    def dashboard(
        self, name: str, range_key: str = "1h", instance: str | None = None
    ) -> dict[str, Any]:
        """JSON-ready data of every panel of one dashboard, for the fleet (`instance` None) or
        one instance. KeyError for an unknown name."""
        board = self.dashboards[name]
        instance = instance if self.fleet is not None else None  # one process: all of it
        read = self._read(range_key, instance)
        return {
            "name": board.name,
            "title": board.title,
            "description": board.description,
            "range": range_key,
            **self._scope(instance, read.now),
            "start": read.now - read.range_s,
            "end": read.now,
            "step": read.step,
            "generated_at": read.now,
            "notes": read.notes,
            "panels": [self._panel(panel, read) for panel in board.panels],
        }

    def _panel(self, panel: Panel, read: _Read) -> dict[str, Any]:
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
                out.update(self._timeseries(panel.queries, read))
            elif panel.kind == "stat":
                out["stats"] = [s for q in panel.queries for s in self._stats(q, read)]
            elif len(panel.queries) > 1:
                out["table"] = self._joined(panel, read)
            else:
                out["table"] = self._table(panel.queries[0], read)
            if panel.link and "table" in out:
                rows = out["table"].get("labels", [])
                out["table"]["hrefs"] = [_href(panel.link, labels) for labels in rows]
        except Exception as exc:  # one broken panel must not take the dashboard down
            self.panel_errors += 1
            out["error"] = f"could not compute this panel ({type(exc).__name__})"
        return out

    # -- time series ----------------------------------------------------------------------------
    def _timeseries(self, queries: Sequence[Term], read: _Read) -> dict[str, Any]:
        drawn: list[tuple[str, Points]] = []
        for query in queries:
            drawn.extend(self._series(query, read))
        times = sorted({t for _, points in drawn for t, _ in points})
        index = {t: i for i, t in enumerate(times)}
        columns = []
        for label, points in drawn:
            values: list[float | None] = [None] * len(times)
            for t, v in points:
                values[index[t]] = num(v)
            columns.append({"label": label, "values": values})
        return {"time": times, "series": columns}

    def _series(self, term: Term, read: _Read) -> list[tuple[str, Points]]:
        if isinstance(term, ErrorTrend):
            return [(term.label, self._error_trend(read))]
        if isinstance(term, SeriesFrom):
            source = self.sources.get(term.source)
            if source is None:
                return []
            computed = source(read.now - read.range_s, read.now, read.step)
            return [(term.label, [(float(t), v) for t, v in computed])]
        if not isinstance(term, MetricTerm):
            raise Unsupported(f"{type(term).__name__} cannot be drawn as a time series")
        found: dict[str, dict[float, float | None]] = {}
        view = read.steps
        for labels, points in series(term, view.store, view.times(), read.step):
            found.setdefault(_display(term, labels), {}).update(points)
        if view.live_edge:  # the live edge: the last step up to now, from the windows
            for labels, value in instant(term, read.live, read.now, read.step):
                found.setdefault(_display(term, labels), {})[read.now] = value
        return [(label, sorted(points.items())) for label, points in sorted(found.items())]

    def _error_trend(self, read: _Read) -> Points:
        if self.errors is None:
            return []
        minutes = max(1, read.range_s // 60)
        per_minute = self.errors.stats(minutes=minutes).per_minute
        per_step = max(1, read.step // 60)
        points: Points = []
        for i in range(0, len(per_minute), per_step):
            chunk = per_minute[i : i + per_step]
            t = chunk[-1][0].timestamp() + 60
            points.append((t, sum(n for _, n in chunk) / len(chunk)))
        return points

    # -- numbers --------------------------------------------------------------------------------
    def _stats(self, term: Term, read: _Read) -> list[dict[str, Any]]:
        if isinstance(term, ErrorResolution):
            value = self.errors.stats().mean_resolution_seconds if self.errors else None
            return [{"label": term.label, "value": num(value)}]
        if isinstance(term, ErrorBreakdown) and term.by == "status":
            by_status = self.errors.stats().groups_by_status if self.errors else {}
            return [{"label": k, "value": float(v)} for k, v in by_status.items()]
        if isinstance(term, SeriesFrom):
            drawn = self._series(term, read)
            last = drawn[0][1][-1][1] if drawn and drawn[0][1] else None
            return [{"label": term.label, "value": num(last)}]
        if not isinstance(term, MetricTerm):
            raise Unsupported(f"{type(term).__name__} cannot be shown as a number")
        samples = self._now(term, read)
        stats = [{"label": _display(term, labels), "value": num(v)} for labels, v in samples]
        if not stats and isinstance(term, CounterIncrease):
            return [{"label": term.label, "value": 0.0}]  # nothing counted in the range
        return stats

    def _now(self, term: MetricTerm, read: _Read) -> list[tuple[dict[str, str], float]]:
        if isinstance(term, GaugeValue):
            return instant(term, read.live, read.now)
        source, at, window = read.over_range()
        return instant(term, source, at, window)

    # -- tables ---------------------------------------------------------------------------------
    def _table(self, term: Term, read: _Read) -> dict[str, Any]:
        if isinstance(term, TopRoutes):
            return self._top_routes(term, read)
        if isinstance(term, GaugeValue):
            samples = self._now(term, read)
            rows = [
                [*(labels.get(b, "-") for b in term.by), num(v)]
                if term.by
                else [_display(term, labels), num(v)]
                for labels, v in samples
            ]
            columns = [*term.by, term.label] if term.by else ["series", term.label]
            return {"columns": columns, "rows": rows, "labels": [s[0] for s in samples]}
        if isinstance(term, Ratio):
            return self._ratio(term, read)
        if isinstance(term, ErrorGroups):
            return self._error_groups_table(term, read)
        if isinstance(term, ErrorBreakdown):
            return self._error_breakdown(term, read)
        if isinstance(term, CounterIncrease):
            totals = self._now(term, read)
            return {
                "columns": [*(term.by or ("series",)), "total"],
                "rows": [[*_display(term, k).split(" "), v] for k, v in totals],
            }
        raise Unsupported(f"{type(term).__name__} cannot be shown as a table")

    def _joined(self, panel: Panel, read: _Read) -> dict[str, Any]:
        """Several terms split by the same labels, one column each, one row per label set."""
        by: tuple[str, ...] = getattr(panel.queries[0], "by", ())
        values: dict[tuple[str, ...], list[float | None]] = {}
        for column, term in enumerate(panel.queries):
            if not isinstance(term, GaugeValue | CounterIncrease | Ratio):
                raise Unsupported(f"{type(term).__name__} cannot be a column of a joined table")
            for labels, value in self._now(term, read):
                key = tuple(labels.get(b, "") for b in by)
                values.setdefault(key, [None] * len(panel.queries))[column] = num(value)
        keys = sorted(values)
        units = list(panel.column_units) or [panel.unit] * len(panel.queries)
        return {
            "columns": [*by, *(q.label for q in panel.queries)],
            "rows": [[*key, *values[key]] for key in keys],
            "units": [*(["none"] * len(by)), *units],
            "labels": [dict(zip(by, key, strict=True)) for key in keys],
        }

    def _ratio(self, term: Ratio, read: _Read) -> dict[str, Any]:
        top_term, below_term = term.parts()
        tops = {_display(term, k): v for k, v in self._now(top_term, read)}
        belows = {_display(term, k): v for k, v in self._now(below_term, read)}
        ratios = {_display(term, k): v for k, v in self._now(term, read)}
        rows = []
        for group in sorted(set(tops) | set(belows)):
            parts = group.split(" ") if term.by else [group]
            rows.append([*parts, tops.get(group, 0.0), belows.get(group, 0.0), ratios.get(group)])
        columns = [*(term.by or ("group",)), term.numerator, term.denominator, term.label]
        return {"columns": columns, "rows": rows, "unit_column": len(columns) - 1}

    def _top_routes(self, term: TopRoutes, read: _Read) -> dict[str, Any]:
        source, at, window = read.over_range()
        rows = [
            [row.route, row.requests, row.rate_per_s, num(row.p95_ms), row.errors_5xx]
            for row in top_routes(term, source, at, window)
        ]
        # The value column the bars are drawn from, and each row drills down to its route.
        value_column = {"requests": 1, "latency": 3, "errors": 4}[term.by]
        columns = ["route", "requests", "req/s", "p95 ms", "5xx"]
        return {"columns": columns, "rows": rows, "value_column": value_column, "link": "route"}

    def _error_groups_table(self, term: ErrorGroups, read: _Read) -> dict[str, Any]:
        groups = self.error_groups(
            status=term.status, sort=term.sort, limit=term.limit, since=read.now - read.range_s
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

    def _error_breakdown(self, term: ErrorBreakdown, read: _Read) -> dict[str, Any]:
        if self.errors is None:
            return {"columns": [term.by, "count"], "rows": []}
        if term.by == "status":
            stats = self.errors.stats()
            return {
                "columns": ["status", "groups"],
                "rows": [[k, v] for k, v in stats.groups_by_status.items()],
            }
        groups = self.errors.list_groups(
            since=_dt(read.now - read.range_s), limit=500, sort="count"
        )
        counts: dict[tuple[str, ...], int] = {}
        for g in groups:
            key = (g.type, g.severity.value) if term.by == "type" else (g.severity.value,)
            counts[key] = counts.get(key, 0) + g.count
        columns = (
            ["type", "severity", "occurrences"]
            if term.by == "type"
            else ["severity", "occurrences"]
        )
        rows = [[*k, n] for k, n in sorted(counts.items(), key=lambda kv: -kv[1])]
        return {"columns": columns, "rows": rows}

    # -- drill-down -----------------------------------------------------------------------------
    def _scope(self, instance: str | None, now: float) -> dict[str, Any]:
        """What the numbers cover: "instance" is "all" (the fleet; on one process, itself) or
        the one asked for; "instances" what the selector offers."""
        return {"instance": instance or "all", "instances": self.instances(now)}

    def route_detail(
        self, route: str, range_key: str = "1h", instance: str | None = None
    ) -> dict[str, Any]:
        """Latency quantiles and request rate of one `"METHOD /template"` route over time."""
        instance = instance if self.fleet is not None else None  # one process: all of it
        read = self._read(range_key, instance)
        where = route_filter(route)
        latency = self._timeseries(
            [
                LatencyQuantile(0.5, where),
                LatencyQuantile(0.95, where),
                LatencyQuantile(0.99, where),
            ],
            read,
        )
        traffic = self._timeseries([RequestRate(where), ErrorRatio("5xx", where)], read)
        return {
            "route": route,
            "range": range_key,
            **self._scope(instance, read.now),
            "notes": read.notes,
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
        return [g.to_dict() for g in groups]

    def error_group(self, fingerprint: str, occurrences: int = 20) -> dict[str, Any] | None:
        """A group with its sample occurrences (request ids for the log drill-down)."""
        if self.errors is None:
            return None
        detail = self.errors.get_group(fingerprint, occurrences=occurrences)
        if detail is None:
            return None
        return detail.to_dict()


def _href(template: str, labels: Mapping[str, str]) -> str | None:
    """The template filled from a row's labels (URL-quoted); None when one is missing."""
    try:
        return template.format_map({k: urllib.parse.quote(v, safe="") for k, v in labels.items()})
    except (KeyError, IndexError, ValueError):
        return None


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
