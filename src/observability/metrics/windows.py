"""In-process rolling 1m / 5m / 1h metric windows, per route and overall.

Layout (why it is cheap on the request path):

* Writes go to one *fine slot* (default 5 s wide) under a single lock: a dict lookup, three
  integer bumps and a sketch ``add``. No merging, no sorting, no allocation beyond the first
  observation of a key in a slot.
* Fine slots are kept for 6 minutes. Once a minute is complete its slots are *folded* into a
  per-minute rollup (kept ``rollup_retention_minutes``, default 70). Folding is done by readers
  (``snapshot``, the query helpers, ``completed_minutes``, ``maintain``); the writer only folds if
  nobody has read for six minutes and a slot is about to be dropped (one minute's worth, once).
* Readers copy references under the lock and merge outside it: completed slots and rollups are
  never mutated again (folding builds a fresh rollup object), only the live slot is copied.

Window edges: a window of ``W`` seconds is served from fine slots when ``W <= 300`` and covers the
live (partial) slot plus the ``ceil(W / slot) - 1`` slots before it, i.e. between ``W - slot`` and
``W`` seconds of history (5 s slots: 55-60 s for "1m", 295-300 s for "5m"). Longer windows use
minute rollups plus the live minute and cover between ``W - 60`` and ``W`` seconds (59-60 min for
"1h"). Rates divide by the span actually covered (never more than the process has been up), so
they carry no bias from the edge; counts and quantiles describe that covered span.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from observability.metrics.sketch import DEFAULT_RELATIVE_ACCURACY, QuantileSketch
from observability.request_record import RequestRecord

__all__ = [
    "OTHER_ROUTE",
    "WINDOWS",
    "MinuteRollup",
    "RequestWindowsObserver",
    "RollingWindows",
    "RouteRollup",
    "WindowStats",
]

OTHER_ROUTE = "__other__"
WINDOWS: dict[str, int] = {"1m": 60, "5m": 300, "1h": 3600}
MAX_WINDOW_S = 3600
_MINUTE = 60
_FINE_MAX_WINDOW_S = 300
_FINE_RETENTION_S = 360
_STATUS_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")
_QS = (0.5, 0.95, 0.99)


# -- internal aggregates ------------------------------------------------------------------------
class _RouteAgg:
    __slots__ = ("latency", "requests", "statuses")

    def __init__(self, latency: QuantileSketch) -> None:
        self.requests = 0
        self.statuses = [0, 0, 0, 0, 0, 0]  # indexed by status // 100, 0 = out of range
        self.latency = latency

    def merge(self, other: _RouteAgg) -> None:
        self.requests += other.requests
        for i, n in enumerate(other.statuses):
            self.statuses[i] += n
        self.latency.merge(other.latency)


class _Agg:
    """Everything recorded during one span of time (a fine slot or a whole minute)."""

    __slots__ = ("alpha", "counters", "dists", "routes")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.routes: dict[str, _RouteAgg] = {}
        self.dists: dict[str, QuantileSketch] = {}
        self.counters: dict[str, float] = {}

    def merge(self, other: _Agg) -> None:
        for key, theirs in other.routes.items():
            mine = self.routes.get(key)
            if mine is None:
                mine = self.routes[key] = _RouteAgg(QuantileSketch(self.alpha))
            mine.merge(theirs)
        for name, sketch in other.dists.items():
            dist = self.dists.get(name)
            if dist is None:
                dist = self.dists[name] = QuantileSketch(self.alpha)
            dist.merge(sketch)
        for name, value in other.counters.items():
            self.counters[name] = self.counters.get(name, 0.0) + value

    def copy(self) -> _Agg:
        clone = _Agg(self.alpha)
        clone.merge(self)
        return clone


class _Slot(_Agg):
    __slots__ = ("folded", "minute", "sid")

    def __init__(self, alpha: float, sid: int, slot_s: int) -> None:
        super().__init__(alpha)
        self.sid = sid
        self.minute = (sid * slot_s) // _MINUTE * _MINUTE
        self.folded = False


# -- public results -----------------------------------------------------------------------------
def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000.0


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Request statistics over one window (overall or one route). Latencies in milliseconds."""

    window_s: int
    span_s: float
    requests: int
    rate_per_s: float
    errors_5xx: int
    error_rate: float
    client_errors_4xx: int
    client_error_rate: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    latency: QuantileSketch = field(repr=False, compare=False)

    def quantile_ms(self, q: float) -> float | None:
        """Any latency quantile over the window, e.g. ``quantile_ms(0.9)``."""
        return _ms(self.latency.quantile(q))

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rate_per_s": self.rate_per_s,
            "errors_5xx": self.errors_5xx,
            "error_rate": self.error_rate,
            "client_errors_4xx": self.client_errors_4xx,
            "client_error_rate": self.client_error_rate,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
        }


@dataclass(frozen=True, slots=True)
class RouteRollup:
    """One route's minute: request count, status classes and the latency sketch (seconds)."""

    requests: int
    status_classes: dict[str, int]
    latency: dict[str, Any]

    def latency_sketch(self) -> QuantileSketch:
        return QuantileSketch.from_dict(self.latency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "status_classes": dict(self.status_classes),
            "latency": self.latency,
        }


@dataclass(frozen=True, slots=True)
class MinuteRollup:
    """Everything recorded in one complete minute, JSON-ready for persistence or EMF."""

    minute_start: int  # epoch seconds, a multiple of 60
    routes: dict[str, RouteRollup]  # keyed "METHOD /route/{template}" (or "__other__")
    distributions: dict[str, dict[str, Any]]  # name -> QuantileSketch.to_dict()
    counters: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "minute_start": self.minute_start,
            "routes": {key: r.to_dict() for key, r in self.routes.items()},
            "distributions": self.distributions,
            "counters": dict(self.counters),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MinuteRollup:
        routes = {
            key: RouteRollup(
                requests=int(r["requests"]),
                status_classes={k: int(v) for k, v in r["status_classes"].items()},
                latency=dict(r["latency"]),
            )
            for key, r in data["routes"].items()
        }
        return cls(
            minute_start=int(data["minute_start"]),
            routes=routes,
            distributions={k: dict(v) for k, v in data["distributions"].items()},
            counters={k: float(v) for k, v in data["counters"].items()},
        )


def _rollup_from_agg(minute: int, agg: _Agg) -> MinuteRollup:
    routes = {
        key: RouteRollup(
            requests=r.requests,
            status_classes=dict(zip(_STATUS_CLASSES, r.statuses, strict=True)),
            latency=r.latency.to_dict(),
        )
        for key, r in agg.routes.items()
    }
    dists = {name: s.to_dict() for name, s in agg.dists.items()}
    return MinuteRollup(minute, routes, dists, dict(agg.counters))


# -- the windows --------------------------------------------------------------------------------
class RollingWindows:
    """Thread-safe rolling windows of requests, latency distributions and counters.

    ``observe_request``/``observe``/``count`` are the hot path and never raise (failures are
    counted in ``internal_errors``). Everything else is read-side and may raise ValueError for
    bad arguments (a window longer than an hour, a quantile outside [0, 1]).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_routes: int = 200,
        max_names: int = 200,
        slot_seconds: int = 5,
        relative_accuracy: float = DEFAULT_RELATIVE_ACCURACY,
        rollup_retention_minutes: int = 70,
    ) -> None:
        if slot_seconds < 1 or _MINUTE % slot_seconds:
            raise ValueError("slot_seconds must be a divisor of 60")
        if max_routes < 1 or max_names < 1:
            raise ValueError("max_routes and max_names must be >= 1")
        if rollup_retention_minutes < 60:
            raise ValueError("rollup_retention_minutes must be >= 60 (the 1h window needs it)")
        self._clock = clock
        self._slot_s = slot_seconds
        self._alpha = relative_accuracy
        self._max_routes = max_routes
        self._max_names = max_names
        self._retention_s = rollup_retention_minutes * _MINUTE
        self._fine_slots = _FINE_RETENTION_S // slot_seconds
        self._lock = threading.Lock()
        # Bound once for the hot path: `with lock` looks up and calls __enter__ and __exit__
        # generically (~0.4k instructions a request in the compiled build).
        self._acquire: Callable[[], object] = self._lock.acquire
        self._release: Callable[[], object] = self._lock.release
        self._slots: deque[_Slot] = deque()
        self._current = _Slot(relative_accuracy, -(2**62), slot_seconds)  # never read: sentinel
        self._rollups: dict[int, _Agg] = {}
        self._routes: set[str] = set()
        self._keys: dict[str, dict[str, str]] = {}  # route -> method -> key (bounded)
        self._names: set[str] = set()
        self._origin = clock()
        self.routes_overflowed = 0  # observations folded into OTHER_ROUTE
        self.names_dropped = 0  # observe()/count() calls dropped past max_names
        self.internal_errors = 0  # exceptions swallowed on the hot path

    # -- hot path --------------------------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, duration_s: float) -> None:
        """Record one finished request; ``route`` must be the template, not the raw path."""
        try:
            self._acquire()
            try:
                slot = self._current
                sid = int(self._clock() // self._slot_s)
                if sid > slot.sid or slot.folded:
                    slot = self._rotate(sid)
                key = self._key(method, route)
                agg = slot.routes.get(key)
                if agg is None:
                    agg = self._route_agg(slot, key)
                agg.requests += 1
                cls = status // 100
                agg.statuses[cls if 0 < cls < 6 else 0] += 1
                agg.latency.add(duration_s)
            finally:
                self._release()
        except Exception:
            self.internal_errors += 1

    def observe(self, name: str, value: float) -> None:
        """Record one value (base units, seconds for durations) of a named distribution."""
        try:
            self._acquire()
            try:
                slot = self._current
                sid = int(self._clock() // self._slot_s)
                if sid > slot.sid or slot.folded:
                    slot = self._rotate(sid)
                sketch = slot.dists.get(name)
                if sketch is None:
                    if not self._admit_name(name):
                        return
                    sketch = slot.dists[name] = QuantileSketch(self._alpha)
                sketch.add(value)
            finally:
                self._release()
        except Exception:
            self.internal_errors += 1

    def count(self, name: str, value: float = 1.0) -> None:
        """Add ``value`` to a named business counter (assignments, exposures, ...)."""
        try:
            self._acquire()
            try:
                slot = self._current
                sid = int(self._clock() // self._slot_s)
                if sid > slot.sid or slot.folded:
                    slot = self._rotate(sid)
                counters = slot.counters
                current = counters.get(name)
                if current is None:
                    if not self._admit_name(name):
                        return
                    current = 0.0
                counters[name] = current + value
            finally:
                self._release()
        except Exception:
            self.internal_errors += 1

    def _key(self, method: str, route: str) -> str:
        """The route's key ("GET /items/{id}"), built once per (route, method), not twice a
        request: two concatenations are two new strings, two dict lookups allocate nothing."""
        by_method = self._keys.get(route)
        if by_method is not None:
            key = by_method.get(method)
            if key is not None:
                return key
        key = method + " " + route
        if len(self._keys) < self._max_routes * 2 and (by_method is None or len(by_method) < 16):
            self._keys.setdefault(route, {})[method] = key
        return key

    def _route_agg(self, slot: _Slot, key: str) -> _RouteAgg:
        if key not in self._routes:
            if len(self._routes) >= self._max_routes:
                self.routes_overflowed += 1
                key = OTHER_ROUTE
                agg = slot.routes.get(key)
                if agg is not None:
                    return agg
            else:
                self._routes.add(key)
        agg = slot.routes[key] = _RouteAgg(QuantileSketch(self._alpha))
        return agg

    def _admit_name(self, name: str) -> bool:
        if name in self._names:
            return True
        if len(self._names) >= self._max_names:
            self.names_dropped += 1
            return False
        self._names.add(name)
        return True

    def _rotate(self, sid: int) -> _Slot:
        # Called with the lock held when the clock enters a new slot. If the clock went
        # backwards onto a slot already folded, open a fresh slot with the same id: data stays
        # disjoint and is folded later.
        sid = max(sid, self._current.sid)
        slot = _Slot(self._alpha, sid, self._slot_s)
        self._slots.append(slot)
        self._current = slot
        oldest_kept = sid - self._fine_slots + 1
        while self._slots and self._slots[0].sid < oldest_kept:
            old = self._slots.popleft()
            if not old.folded:
                # Nobody read for six minutes: fold the evicted slot's minute now.
                self._fold(old.minute + _MINUTE, extra=(old,))
        return slot

    # -- folding ---------------------------------------------------------------------------
    def _fold(self, before_minute: int, extra: Iterable[_Slot] = ()) -> None:
        """Fold every unfolded slot of a minute earlier than ``before_minute`` (lock held)."""
        groups: dict[int, list[_Slot]] = {}
        for slot in (*extra, *self._slots):
            if not slot.folded and slot.minute < before_minute:
                groups.setdefault(slot.minute, []).append(slot)
        for minute, slots in groups.items():
            # Copy-on-write: readers may be merging the previous rollup object outside the lock.
            fresh = _Agg(self._alpha)
            previous = self._rollups.get(minute)
            if previous is not None:
                fresh.merge(previous)
            for slot in slots:
                fresh.merge(slot)
                slot.folded = True
            self._rollups[minute] = fresh
        if groups:
            limit = max(groups) - self._retention_s
            for minute in [m for m in self._rollups if m < limit]:
                del self._rollups[minute]

    def maintain(self, now: float | None = None) -> None:
        """Fold completed minutes into rollups; call from a periodic task to keep writes lean."""
        with self._lock:
            now = self._clock() if now is None else now
            self._fold(int(now // _MINUTE) * _MINUTE)

    # -- reading ---------------------------------------------------------------------------
    def _gather(self, seconds: int, now: float | None) -> tuple[list[_Agg], float, float]:
        """References to the data of the window, its covered span and ``now`` (merge later)."""
        if not 0 < seconds <= MAX_WINDOW_S:
            raise ValueError(f"window must be between 1 and {MAX_WINDOW_S} seconds")
        with self._lock:
            now = self._clock() if now is None else now
            now_sid = int(now // self._slot_s)
            cur_minute = int(now // _MINUTE) * _MINUTE
            self._fold(cur_minute)
            parts: list[_Agg] = []
            if seconds <= _FINE_MAX_WINDOW_S:
                lo_sid = now_sid - math.ceil(seconds / self._slot_s) + 1
                start = float(lo_sid * self._slot_s)
                for slot in self._slots:
                    if lo_sid <= slot.sid <= now_sid:
                        parts.append(slot.copy() if slot is self._current else slot)
            else:
                lo_minute = cur_minute - (math.ceil(seconds / _MINUTE) - 1) * _MINUTE
                start = float(lo_minute)
                parts.extend(
                    agg for m, agg in self._rollups.items() if lo_minute <= m <= cur_minute
                )
                for slot in self._slots:
                    if not slot.folded and slot.minute >= lo_minute and slot.sid <= now_sid:
                        parts.append(slot.copy() if slot is self._current else slot)
        span = max(now - max(start, self._origin), 1.0)
        return parts, span, now

    def _stats(self, seconds: int, span: float, aggs: Iterable[_RouteAgg]) -> WindowStats:
        total = _RouteAgg(QuantileSketch(self._alpha))
        for agg in aggs:
            total.merge(agg)
        n = total.requests
        p50, p95, p99 = (_ms(v) for v in total.latency.quantiles(_QS))
        return WindowStats(
            window_s=seconds,
            span_s=span,
            requests=n,
            rate_per_s=n / span,
            errors_5xx=total.statuses[5],
            error_rate=total.statuses[5] / n if n else 0.0,
            client_errors_4xx=total.statuses[4],
            client_error_rate=total.statuses[4] / n if n else 0.0,
            p50_ms=p50,
            p95_ms=p95,
            p99_ms=p99,
            latency=total.latency,
        )

    def request_stats(
        self, seconds: int, route: str | None = None, now: float | None = None
    ) -> WindowStats:
        """Requests over the last ``seconds`` (<= 3600), overall or for one "METHOD route" key."""
        parts, span, _ = self._gather(seconds, now)
        aggs = (
            agg
            for part in parts
            for key, agg in part.routes.items()
            if route is None or key == route
        )
        return self._stats(seconds, span, aggs)

    def route_stats(self, seconds: int, now: float | None = None) -> dict[str, WindowStats]:
        """Per-route statistics keyed "METHOD route"."""
        parts, span, _ = self._gather(seconds, now)
        by_route: dict[str, list[_RouteAgg]] = {}
        for part in parts:
            for key, agg in part.routes.items():
                by_route.setdefault(key, []).append(agg)
        return {key: self._stats(seconds, span, aggs) for key, aggs in sorted(by_route.items())}

    @property
    def clock(self) -> Callable[[], float]:
        """The clock these windows run on: readers take "now" from it."""
        return self._clock

    def counter_totals(
        self, seconds: int, now: float | None = None
    ) -> tuple[dict[str, float], float]:
        """Every counter's total over the window, and the span the window covers (seconds)."""
        parts, span, _ = self._gather(seconds, now)
        totals: dict[str, float] = {}
        for part in parts:
            for name, value in part.counters.items():
                totals[name] = totals.get(name, 0.0) + value
        return totals, span

    def counter_total(self, name: str, seconds: int, now: float | None = None) -> float:
        parts, _, _ = self._gather(seconds, now)
        return sum(part.counters.get(name, 0.0) for part in parts)

    def counter_rate(self, name: str, seconds: int, now: float | None = None) -> float:
        """Per-second rate of a counter over the covered span of the window."""
        parts, span, _ = self._gather(seconds, now)
        return sum(part.counters.get(name, 0.0) for part in parts) / span

    def distribution(self, name: str, seconds: int, now: float | None = None) -> QuantileSketch:
        """A merged copy of a distribution's sketch over the window (empty if unknown)."""
        parts, _, _ = self._gather(seconds, now)
        merged = QuantileSketch(self._alpha)
        for part in parts:
            sketch = part.dists.get(name)
            if sketch is not None:
                merged.merge(sketch)
        return merged

    def quantile(self, name: str, q: float, seconds: int, now: float | None = None) -> float | None:
        """The ``q`` quantile of a distribution in its recorded unit; None without samples."""
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1]")
        return self.distribution(name, seconds, now).quantile(q)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready view of the 1m, 5m and 1h windows (latencies in ms)."""
        now = self._clock() if now is None else now
        windows: dict[str, Any] = {}
        for label, seconds in WINDOWS.items():
            parts, span, _ = self._gather(seconds, now)
            by_route: dict[str, list[_RouteAgg]] = {}
            dists: dict[str, QuantileSketch] = {}
            counters: dict[str, float] = {}
            for part in parts:
                for key, agg in part.routes.items():
                    by_route.setdefault(key, []).append(agg)
                for name, sketch in part.dists.items():
                    dists.setdefault(name, QuantileSketch(self._alpha)).merge(sketch)
                for name, value in part.counters.items():
                    counters[name] = counters.get(name, 0.0) + value
            routes = {
                key: self._stats(seconds, span, aggs) for key, aggs in sorted(by_route.items())
            }
            overall = self._stats(seconds, span, (a for aggs in by_route.values() for a in aggs))
            windows[label] = {
                "window_s": seconds,
                "span_s": span,
                "overall": overall.to_dict(),
                "routes": {key: stats.to_dict() for key, stats in routes.items()},
                "distributions": {
                    name: _dist_summary(sketch) for name, sketch in sorted(dists.items())
                },
                "counters": {
                    name: {"total": total, "rate_per_s": total / span}
                    for name, total in sorted(counters.items())
                },
            }
        return {
            "generated_at": now,
            "slot_seconds": self._slot_s,
            "windows": windows,
            "routes_overflowed": self.routes_overflowed,
            "names_dropped": self.names_dropped,
            "internal_errors": self.internal_errors,
        }

    def buckets(self, bucket_s: int, since: float, now: float | None = None) -> list[MinuteRollup]:
        """The last six minutes (at most) in rollups of `bucket_s` seconds (a multiple of the
        slot width dividing a minute) starting at or after `since`, oldest first; the last one
        is the live, partial bucket. `minute_start` is then the bucket's start. What each
        instance publishes for the fleet-wide view (`observability.fleet.rollups`)."""
        if bucket_s % self._slot_s or _MINUTE % bucket_s:
            raise ValueError("bucket_s must be a multiple of the slot width dividing 60")
        with self._lock:
            now = self._clock() if now is None else now
            now_sid = int(now // self._slot_s)
            groups: dict[int, list[_Agg]] = {}
            for slot in self._slots:
                start = slot.sid * self._slot_s // bucket_s * bucket_s
                if start >= since and slot.sid <= now_sid:
                    groups.setdefault(start, []).append(
                        slot.copy() if slot is self._current else slot
                    )
        out = []
        for start in sorted(groups):
            agg = _Agg(self._alpha)
            for part in groups[start]:
                agg.merge(part)
            out.append(_rollup_from_agg(start, agg))
        return out

    def completed_minutes(self, since: float, now: float | None = None) -> list[MinuteRollup]:
        """Rollups of complete minutes starting at or after ``since``, oldest first."""
        with self._lock:
            now = self._clock() if now is None else now
            cur_minute = int(now // _MINUTE) * _MINUTE
            self._fold(cur_minute)
            selected = sorted(
                ((m, agg) for m, agg in self._rollups.items() if since <= m < cur_minute),
                key=lambda item: item[0],
            )
        return [_rollup_from_agg(m, agg) for m, agg in selected]


class RequestWindowsObserver:
    """The middleware's observer feeding finished requests into `RollingWindows`.

    A compiled class rather than a function in the (interpreted) caller: an interpreted
    observer costs every request a Python frame (~1 us here) to forward four fields.
    Requests whose route or path starts with one of `exclude_prefixes` (operator routes) stay
    out; the path too, because a mounted app (a /metrics endpoint) reads as an unmatched route.
    """

    def __init__(self, windows: RollingWindows, exclude_prefixes: Iterable[str] = ()) -> None:
        self.windows = windows
        self.exclude_prefixes = tuple(exclude_prefixes)

    def __call__(self, record: RequestRecord) -> None:
        prefixes = self.exclude_prefixes
        if prefixes and (record.route.startswith(prefixes) or record.path.startswith(prefixes)):
            return
        self.windows.observe_request(record.method, record.route, record.status, record.duration_s)


def _dist_summary(sketch: QuantileSketch) -> dict[str, Any]:
    p50, p95, p99 = (_ms(v) for v in sketch.quantiles(_QS))
    return {"count": sketch.count, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99}
