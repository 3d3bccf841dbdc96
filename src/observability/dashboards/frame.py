"""Reading the sources behind the built-in UI for one time range: RollingWindows minutes,
the history store, gauge readings. ``observability.dashboards.data`` turns these into panels."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from observability.dashboards.model import parse_series_key
from observability.metrics.windows import RollingWindows

__all__ = [
    "RANGES",
    "STEPS",
    "WINDOW_MAX_S",
    "Frame",
    "GaugeMemory",
    "HistoryLike",
    "Points",
    "SeriesSource",
    "aggregate",
    "group",
    "matches",
    "num",
    "registry_values",
]

RANGES: dict[str, int] = {"15m": 900, "1h": 3600, "6h": 21_600, "24h": 86_400, "7d": 604_800}
STEPS: dict[str, int] = {"15m": 60, "1h": 60, "6h": 300, "24h": 900, "7d": 3600}
WINDOW_MAX_S = 3600
_Q_KEY = {0.5: "p50_ms", 0.95: "p95_ms", 0.99: "p99_ms"}

Points = list[tuple[float, float | None]]
SeriesSource = Callable[[float, float, int], Sequence[tuple[float, float]]]


class HistoryLike(Protocol):
    """The per-minute history store's read API (``observability.metrics.history``)."""

    def request_series(
        self, start: float, end: float, step_s: int, route: str | None = None
    ) -> list[dict[str, Any]]: ...

    def counter_series(
        self, name: str, start: float, end: float, step_s: int
    ) -> list[dict[str, Any]]: ...

    def gauge_series(
        self, name: str, start: float, end: float, step_s: int
    ) -> list[dict[str, Any]]: ...

    def request_stats(
        self, start: float, end: float, route: str | None = None
    ) -> dict[str, Any]: ...

    def counter_total(self, name: str, start: float, end: float) -> float: ...

    def top_routes(self, start: float, end: float, by: str, limit: int) -> list[dict[str, Any]]: ...


def num(value: Any) -> float | None:
    """JSON-safe float: NaN and infinities become None (JSON has neither)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def matches(key: str, name: str, where: Mapping[str, str]) -> dict[str, str] | None:
    parsed = parse_series_key(key)
    if parsed is None or parsed[0] != name:
        return None
    labels = parsed[1]
    if any(labels.get(k) != v for k, v in where.items()):
        return None
    return labels


def group(labels: Mapping[str, str], by: Sequence[str], fallback: str) -> str:
    if not by:
        return fallback
    return " ".join(labels.get(label, "-") for label in by)


def aggregate(values: list[float], agg: str) -> float:
    if agg == "max":
        return max(values)
    if agg == "min":
        return min(values)
    if agg == "avg":
        return sum(values) / len(values)
    return sum(values)


def registry_values(registry: Any, names: Iterable[str]) -> dict[str, float]:
    """Current values of gauges/counters named in ``names`` from a prometheus_client registry,
    keyed ``name{labels}`` - a ready-made ``gauges`` callable body for the UI."""
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


class GaugeMemory:
    """The last hour of ``gauges()`` readings, at most one per ``interval`` seconds."""

    def __init__(self, retention_s: float, interval_s: float) -> None:
        self.samples: deque[tuple[float, dict[str, float]]] = deque()
        self.retention = retention_s
        self.interval = interval_s
        self.lock = threading.Lock()

    def add(self, now: float, values: Mapping[str, float]) -> None:
        with self.lock:
            if self.samples and now - self.samples[-1][0] < self.interval:
                self.samples[-1] = (self.samples[-1][0], dict(values))  # keep the freshest
            else:
                self.samples.append((now, dict(values)))
            while self.samples and self.samples[0][0] < now - self.retention:
                self.samples.popleft()

    def since(self, start: float) -> list[tuple[float, dict[str, float]]]:
        with self.lock:
            return [s for s in self.samples if s[0] >= start]


class Frame:
    """Everything one dashboard read needs, computed once: time bounds, windows and gauges."""

    def __init__(
        self,
        range_key: str,
        *,
        windows: RollingWindows,
        history: HistoryLike | None,
        now: float,
        gauges: dict[str, float],
    ) -> None:
        if range_key not in RANGES:
            raise ValueError(f"range must be one of {', '.join(RANGES)}")
        self.windows = windows
        self.history = history
        self.range_key = range_key
        self.now = now
        self.range_s = RANGES[range_key]
        self.step = STEPS[range_key]
        self.start = self.now - self.range_s
        self.use_history = self.range_s > WINDOW_MAX_S and history is not None
        self.window_s = min(self.range_s, WINDOW_MAX_S)
        self.notes: list[str] = []
        if self.range_s > WINDOW_MAX_S and history is None:
            self.notes.append("no history store: showing the last hour")
        self._minutes: list[Any] | None = None
        self._snapshot: dict[str, Any] | None = None
        self.gauges = gauges

    @property
    def minutes(self) -> list[Any]:
        if self._minutes is None:
            since = self.now - self.window_s
            self._minutes = self.windows.completed_minutes(since=since, now=self.now)
        return self._minutes

    @property
    def snapshot(self) -> dict[str, Any]:
        if self._snapshot is None:
            self._snapshot = self.windows.snapshot(now=self.now)
        return self._snapshot

    def counter_keys(self) -> set[str]:
        keys = set(self.snapshot["windows"]["1h"]["counters"])
        for minute in self.minutes:
            keys.update(minute.counters)
        return keys

    # -- request series from the windows (<= 1h) ----------------------------------------------
    def request_points(self, route: str | None, field: str) -> Points:
        points: Points = []
        for minute in self.minutes:
            routes = [r for k, r in minute.routes.items() if route is None or k == route]
            requests = sum(r.requests for r in routes)
            t = float(minute.minute_start + 60)
            if field == "rate":
                points.append((t, requests / 60.0))
            elif field in ("4xx", "5xx"):
                bad = sum(r.status_classes.get(field, 0) for r in routes)
                points.append((t, bad / requests if requests else None))
            else:
                sketch = None
                for r in routes:
                    part = r.latency_sketch()
                    if sketch is None:
                        sketch = part
                    else:
                        sketch.merge(part)
                value = sketch.quantile(float(field)) if sketch is not None else None
                points.append((t, value))
        tail = self.windows.request_stats(60, route=route, now=self.now)
        if field == "rate":
            points.append((self.now, tail.rate_per_s))
        elif field == "5xx":
            points.append((self.now, tail.error_rate if tail.requests else None))
        elif field == "4xx":
            points.append((self.now, tail.client_error_rate if tail.requests else None))
        else:
            ms = tail.quantile_ms(float(field))
            points.append((self.now, None if ms is None else ms / 1000.0))
        return points

    def history_request_points(self, route: str | None, field: str) -> Points:
        assert self.history is not None
        rows = self.history.request_series(self.start, self.now, self.step, route=route)
        points: Points = []
        for row in rows:
            requests = num(row.get("requests")) or 0.0
            if field == "rate":
                value = requests / self.step
            elif field in ("4xx", "5xx"):
                bad = num(row.get(f"errors_{field}")) or 0.0
                value = bad / requests if requests else None  # type: ignore[assignment]
            else:
                ms = num(row.get(_Q_KEY[float(field)]))
                value = None if ms is None else ms / 1000.0  # type: ignore[assignment]
            points.append((float(row["t"]), value))
        return points

    def requests(self, route: str | None, field: str) -> Points:
        if self.use_history:
            return self.history_request_points(route, field)
        return self.request_points(route, field)
