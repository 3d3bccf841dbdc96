"""Per-minute metric history in SQL: request rollups, counters, distributions and gauges.

`RollingWindows` keeps the last ~70 minutes in memory; this store keeps every completed minute
for a week (SQLite by default, PostgreSQL works) so dashboards can draw days of history and the
alert evaluator can compute burn rates over 6 h, 1 d and 3 d windows.

Rows are keyed by (minute, instance, route/name): each API instance records its own minutes
and readers merge them, so several instances can share one database. Recording the same
minute again from the same instance replaces it (idempotent after a crash and retry).
Latency is kept as the mergeable sketch dict (`QuantileSketch.to_dict`), so quantiles over any
range are exact merges, not averages of percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    select,
)

from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import MinuteRollup, RouteRollup

__all__ = [
    "RETENTION_S",
    "MetricHistory",
    "history_metadata",
    "merge_rollups",
    "slow_count",
]

RETENTION_S = 7 * 86400
_MINUTE = 60
_QS = (0.5, 0.95, 0.99)

# Own MetaData: the toolkit's tables never mix with the host application's models.
history_metadata = MetaData()
_requests = Table(
    "metric_history_requests",
    history_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("minute_start", BigInteger, nullable=False),
    Column("instance", String(128), nullable=False),
    Column("route", String(512), nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors_5xx", Integer, nullable=False),
    Column("errors_4xx", Integer, nullable=False),
    Column("latency", Text, nullable=False),
    UniqueConstraint("minute_start", "instance", "route", name="uq_metric_history_requests"),
    Index("ix_metric_history_requests_minute", "minute_start"),
)
_counters = Table(
    "metric_history_counters",
    history_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("minute_start", BigInteger, nullable=False),
    Column("instance", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("total", Float, nullable=False),
    UniqueConstraint("minute_start", "instance", "name", name="uq_metric_history_counters"),
    Index("ix_metric_history_counters_name_minute", "name", "minute_start"),
)
_distributions = Table(
    "metric_history_distributions",
    history_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("minute_start", BigInteger, nullable=False),
    Column("instance", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("sketch", Text, nullable=False),
    UniqueConstraint("minute_start", "instance", "name", name="uq_metric_history_dists"),
    Index("ix_metric_history_dists_minute", "minute_start"),
)
_gauges = Table(
    "metric_history_gauges",
    history_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("minute_start", BigInteger, nullable=False),
    Column("instance", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("value", Float, nullable=False),
    UniqueConstraint("minute_start", "instance", "name", name="uq_metric_history_gauges"),
    Index("ix_metric_history_gauges_name_minute", "name", "minute_start"),
)
_TABLES = (_requests, _counters, _distributions, _gauges)


def slow_count(sketch: Mapping[str, Any], threshold_s: float) -> int:
    """How many values of a sketch dict lie above `threshold_s` (to the sketch's accuracy).

    Works on the dict form directly (no rebuild): bucket k holds values in
    (gamma**(k-1), gamma**k] and stands for 2 * gamma**k / (gamma + 1).
    """
    if threshold_s <= 0:
        return int(sketch.get("count", 0)) - sum(int(n) for _, n in sketch.get("neg", ()))
    alpha = float(sketch["alpha"])
    gamma = (1.0 + alpha) / (1.0 - alpha)
    limit = math.log(threshold_s * (gamma + 1.0) / 2.0) / math.log(gamma)
    return sum(int(n) for k, n in sketch["pos"] if k > limit)


def _route_matches(key: str, route: str | None) -> bool:
    """`route` is either a full "METHOD /template" key or just the template."""
    if route is None:
        return True
    if " " in route:
        return key == route
    return key.split(" ", 1)[-1] == route


def merge_rollups(minute: int, parts: Sequence[MinuteRollup]) -> MinuteRollup:
    """One rollup for a minute recorded by several instances."""
    if len(parts) == 1:
        return parts[0]
    routes: dict[str, tuple[int, dict[str, int], QuantileSketch]] = {}
    dists: dict[str, QuantileSketch] = {}
    counters: dict[str, float] = {}
    for part in parts:
        for key, r in part.routes.items():
            sketch = r.latency_sketch()
            if key in routes:
                n, classes, merged = routes[key]
                merged.merge(sketch)
                for cls, count in r.status_classes.items():
                    classes[cls] = classes.get(cls, 0) + count
                routes[key] = (n + r.requests, classes, merged)
            else:
                routes[key] = (r.requests, dict(r.status_classes), sketch)
        for name, data in part.distributions.items():
            sketch = QuantileSketch.from_dict(data)
            if name in dists:
                dists[name].merge(sketch)
            else:
                dists[name] = sketch
        for name, value in part.counters.items():
            counters[name] = counters.get(name, 0.0) + value
    return MinuteRollup(
        minute_start=minute,
        routes={k: RouteRollup(n, c, s.to_dict()) for k, (n, c, s) in routes.items()},
        distributions={k: s.to_dict() for k, s in dists.items()},
        counters=counters,
    )


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000.0


class MetricHistory:
    """SQL store of per-minute rollups and gauge samples, with the dashboards' query API."""

    def __init__(
        self, engine: Engine, *, instance: str = "local", retention_s: int = RETENTION_S
    ) -> None:
        self.engine = engine
        self.instance = instance[:128]
        self.retention_s = retention_s
        self.metadata = history_metadata

    def create_schema(self) -> None:
        history_metadata.create_all(self.engine)

    # -- writing ----------------------------------------------------------------------------
    def record(self, rollups: Sequence[MinuteRollup], instance: str | None = None) -> None:
        """Store complete minutes from `RollingWindows.completed_minutes()` (replaces repeats),
        as this store's instance or as `instance` (the leader writing a lost one's minutes)."""
        if not rollups:
            return
        who = self.instance if instance is None else instance[:128]
        minutes = sorted({r.minute_start for r in rollups})
        req_rows: list[dict[str, Any]] = []
        ctr_rows: list[dict[str, Any]] = []
        dist_rows: list[dict[str, Any]] = []
        for rollup in rollups:
            m = rollup.minute_start
            for key, r in rollup.routes.items():
                req_rows.append(
                    {
                        "minute_start": m,
                        "instance": who,
                        "route": key[:512],
                        "requests": r.requests,
                        "errors_5xx": r.status_classes.get("5xx", 0),
                        "errors_4xx": r.status_classes.get("4xx", 0),
                        "latency": orjson.dumps(r.latency).decode(),
                    }
                )
            for name, total in rollup.counters.items():
                row = {"minute_start": m, "instance": who, "name": name[:512]}
                ctr_rows.append({**row, "total": float(total)})
            for name, data in rollup.distributions.items():
                row = {"minute_start": m, "instance": who, "name": name[:512]}
                dist_rows.append({**row, "sketch": orjson.dumps(data).decode()})
        with self.engine.begin() as conn:
            for table in (_requests, _counters, _distributions):
                conn.execute(
                    delete(table).where(table.c.instance == who, table.c.minute_start.in_(minutes))
                )
            for table, rows in ((_requests, req_rows), (_counters, ctr_rows)):
                if rows:
                    conn.execute(insert(table), rows)
            if dist_rows:
                conn.execute(insert(_distributions), dist_rows)

    def record_gauges(self, minute_start: float, values: Mapping[str, float]) -> None:
        """One sample per gauge series (series key, e.g. 'service_ready{dependency="db"}')."""
        minute = int(minute_start // _MINUTE * _MINUTE)
        rows = [
            {"minute_start": minute, "instance": self.instance, "name": k[:512], "value": float(v)}
            for k, v in values.items()
            if math.isfinite(float(v))
        ]
        with self.engine.begin() as conn:
            conn.execute(
                delete(_gauges).where(
                    _gauges.c.instance == self.instance,
                    _gauges.c.minute_start == minute,
                    _gauges.c.name.in_([r["name"] for r in rows]),
                )
            )
            if rows:
                conn.execute(insert(_gauges), rows)

    def last_minute(self, instance: str) -> int | None:
        """The latest minute `instance` recorded requests or counters for (None: none)."""
        latest: int | None = None
        with self.engine.connect() as conn:
            for table in (_requests, _counters):
                found = conn.execute(
                    select(func.max(table.c.minute_start)).where(table.c.instance == instance[:128])
                ).scalar_one()
                if found is not None:
                    latest = max(latest or 0, int(found))
        return latest

    def prune(self, before: float) -> int:
        """Delete every minute starting before `before`; returns the rows removed."""
        removed = 0
        with self.engine.begin() as conn:
            for table in _TABLES:
                result = conn.execute(delete(table).where(table.c.minute_start < int(before)))
                removed += int(result.rowcount or 0)
        return removed

    # -- reading: series for dashboards ------------------------------------------------------
    def _request_rows(self, start: float, end: float) -> list[Any]:
        query = select(
            _requests.c.minute_start,
            _requests.c.route,
            _requests.c.requests,
            _requests.c.errors_5xx,
            _requests.c.errors_4xx,
            _requests.c.latency,
        ).where(_requests.c.minute_start >= int(start), _requests.c.minute_start < end)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    @staticmethod
    def _buckets(start: float, end: float, step_s: int) -> list[float]:
        if step_s < _MINUTE or step_s % _MINUTE:
            raise ValueError("step_s must be a positive multiple of 60")
        if end <= start:
            return []
        count = math.ceil((end - start) / step_s)
        return [start + i * step_s for i in range(count)]

    def request_series(
        self, start: float, end: float, step_s: int, route: str | None = None
    ) -> list[dict[str, Any]]:
        """Requests, 5xx, 4xx and latency quantiles (ms) per step; empty steps included."""
        times = self._buckets(start, end, step_s)
        acc: list[dict[str, Any]] = [{"n": 0, "e5": 0, "e4": 0, "sketch": None} for _ in times]
        for row in self._request_rows(start, end):
            if not _route_matches(row.route, route):
                continue
            b = acc[int((row.minute_start - start) // step_s)]
            b["n"] += row.requests
            b["e5"] += row.errors_5xx
            b["e4"] += row.errors_4xx
            sketch = QuantileSketch.from_dict(orjson.loads(row.latency))
            if b["sketch"] is None:
                b["sketch"] = sketch
            else:
                b["sketch"].merge(sketch)
        out = []
        for t, b in zip(times, acc, strict=True):
            qs = b["sketch"].quantiles(_QS) if b["sketch"] is not None else [None] * 3
            out.append(
                {
                    "t": t,
                    "requests": b["n"],
                    "errors_5xx": b["e5"],
                    "errors_4xx": b["e4"],
                    "p50_ms": _ms(qs[0]),
                    "p95_ms": _ms(qs[1]),
                    "p99_ms": _ms(qs[2]),
                }
            )
        return out

    def counter_series(
        self, name: str, start: float, end: float, step_s: int
    ) -> list[dict[str, Any]]:
        times = self._buckets(start, end, step_s)
        totals = [0.0] * len(times)
        query = select(_counters.c.minute_start, _counters.c.total).where(
            _counters.c.name == name,
            _counters.c.minute_start >= int(start),
            _counters.c.minute_start < end,
        )
        with self.engine.connect() as conn:
            for minute, total in conn.execute(query):
                totals[int((minute - start) // step_s)] += float(total)
        return [{"t": t, "total": v} for t, v in zip(times, totals, strict=True)]

    def gauge_series(
        self, name: str, start: float, end: float, step_s: int
    ) -> list[dict[str, Any]]:
        """Mean of the samples in each step (None when there is none)."""
        times = self._buckets(start, end, step_s)
        sums = [0.0] * len(times)
        counts = [0] * len(times)
        query = select(_gauges.c.minute_start, _gauges.c.value).where(
            _gauges.c.name == name,
            _gauges.c.minute_start >= int(start),
            _gauges.c.minute_start < end,
        )
        with self.engine.connect() as conn:
            for minute, value in conn.execute(query):
                i = int((minute - start) // step_s)
                sums[i] += float(value)
                counts[i] += 1
        return [
            {"t": t, "value": (s / c if c else None)}
            for t, s, c in zip(times, sums, counts, strict=True)
        ]

    # -- reading: totals ----------------------------------------------------------------------
    def request_stats(self, start: float, end: float, route: str | None = None) -> dict[str, Any]:
        """Totals over [start, end): requests, 5xx, error rate and merged-sketch quantiles (ms)."""
        n = e5 = e4 = 0
        merged: QuantileSketch | None = None
        for row in self._request_rows(start, end):
            if not _route_matches(row.route, route):
                continue
            n += row.requests
            e5 += row.errors_5xx
            e4 += row.errors_4xx
            sketch = QuantileSketch.from_dict(orjson.loads(row.latency))
            if merged is None:
                merged = sketch
            else:
                merged.merge(sketch)
        qs = merged.quantiles(_QS) if merged is not None else [None] * 3
        return {
            "requests": n,
            "errors_5xx": e5,
            "errors_4xx": e4,
            "error_rate": e5 / n if n else 0.0,
            "p50_ms": _ms(qs[0]),
            "p95_ms": _ms(qs[1]),
            "p99_ms": _ms(qs[2]),
        }

    def counter_total(self, name: str, start: float, end: float) -> float:
        query = select(func.coalesce(func.sum(_counters.c.total), 0.0)).where(
            _counters.c.name == name,
            _counters.c.minute_start >= int(start),
            _counters.c.minute_start < end,
        )
        with self.engine.connect() as conn:
            return float(conn.execute(query).scalar_one())

    def top_routes(
        self,
        start: float,
        end: float,
        by: str = "requests",  # requests | errors | p95 (checked below)
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        """Routes ranked by request count, 5xx count or p95 latency, highest first."""
        if by not in ("requests", "errors", "p95"):
            raise ValueError("by must be 'requests', 'errors' or 'p95'")
        per: dict[str, list[Any]] = {}
        for row in self._request_rows(start, end):
            entry = per.setdefault(row.route, [0, 0, None])
            entry[0] += row.requests
            entry[1] += row.errors_5xx
            sketch = QuantileSketch.from_dict(orjson.loads(row.latency))
            if entry[2] is None:
                entry[2] = sketch
            else:
                entry[2].merge(sketch)
        routes = []
        for key, (n, e5, sketch) in per.items():
            p95 = sketch.quantile(0.95) if sketch is not None else None
            routes.append(
                {
                    "route": key,
                    "requests": n,
                    "errors_5xx": e5,
                    "error_rate": e5 / n if n else 0.0,
                    "p95_ms": _ms(p95),
                }
            )
        field = {"requests": "requests", "errors": "errors_5xx", "p95": "p95_ms"}[by]
        routes.sort(key=lambda r: (r[field] is not None, r[field] or 0.0), reverse=True)
        return routes[: max(limit, 0)]

    # -- reading: whole minutes (the alert evaluator's long windows) -------------------------
    def rollups(self, start: float, end: float, instance: str | None = None) -> list[MinuteRollup]:
        """Complete minutes in [start, end), merged across instances (or of one `instance`),
        oldest first."""
        parts: dict[int, dict[str, Any]] = {}
        only = instance[:128] if instance is not None else None

        def slot(minute: int) -> dict[str, Any]:
            return parts.setdefault(minute, {"routes": {}, "dists": {}, "counters": {}, "n": 0})

        with self.engine.connect() as conn:
            for row in conn.execute(
                select(_requests).where(
                    _requests.c.minute_start >= int(start), _requests.c.minute_start < end
                )
            ):
                if only is not None and row.instance != only:
                    continue
                s = slot(row.minute_start)
                rollup = RouteRollup(
                    row.requests,
                    {"4xx": row.errors_4xx, "5xx": row.errors_5xx},
                    orjson.loads(row.latency),
                )
                s["routes"].setdefault(row.instance, {})[row.route] = rollup
            for row in conn.execute(
                select(_counters).where(
                    _counters.c.minute_start >= int(start), _counters.c.minute_start < end
                )
            ):
                if only is not None and row.instance != only:
                    continue
                s = slot(row.minute_start)
                s["counters"].setdefault(row.instance, {})[row.name] = float(row.total)
            for row in conn.execute(
                select(_distributions).where(
                    _distributions.c.minute_start >= int(start),
                    _distributions.c.minute_start < end,
                )
            ):
                if only is not None and row.instance != only:
                    continue
                s = slot(row.minute_start)
                s["dists"].setdefault(row.instance, {})[row.name] = orjson.loads(row.sketch)
        out = []
        for minute in sorted(parts):
            s = parts[minute]
            instances: Iterable[str] = set(s["routes"]) | set(s["counters"]) | set(s["dists"])
            per_instance = [
                MinuteRollup(
                    minute,
                    s["routes"].get(i, {}),
                    s["dists"].get(i, {}),
                    s["counters"].get(i, {}),
                )
                for i in sorted(instances)
            ]
            out.append(merge_rollups(minute, per_instance))
        return out

    def gauges(self, start: float, end: float) -> dict[int, dict[str, float]]:
        """minute -> {series key: value} (the highest value when several instances report)."""
        out: dict[int, dict[str, float]] = {}
        query = select(_gauges.c.minute_start, _gauges.c.name, _gauges.c.value).where(
            _gauges.c.minute_start >= int(start), _gauges.c.minute_start < end
        )
        with self.engine.connect() as conn:
            for minute, name, value in conn.execute(query):
                values = out.setdefault(int(minute), {})
                values[name] = max(float(value), values.get(name, -math.inf))
        return out
