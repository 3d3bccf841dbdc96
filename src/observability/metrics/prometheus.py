"""Prometheus for any ASGI app: registry (single or multi-process), HTTP RED metrics; the
/metrics endpoint that exposes them is observability.metrics.endpoint.

Instruments always take an explicit registry (never prometheus_client's import-time global),
so tests and apps build their own. Wiring, in order:

    registry = build_registry()                   # multiprocess-aware, see below
    http = HttpMetrics(registry)                  # an observer of ObservabilityMiddleware
    app = ObservabilityMiddleware(app, observers=[http], in_flight=http.in_flight,
                                  in_flight_exclude=http.excluded)
    metrics_app = metrics_endpoint(registry, token=..., authorize=...)   # metrics/endpoint.py

Multi-process (`uvicorn --workers N`): prometheus_client writes each worker's values to mmap
files in PROMETHEUS_MULTIPROC_DIR. The parent calls `prepare_multiprocess_dir()` before it
spawns workers (it empties the directory and exports the variable, so workers import
prometheus_client with it set); `build_registry()` in each worker returns a registry whose
exposition reads every worker's files (MultiProcessCollector) plus the live custom collectors
registered on it (host metrics). Workers call `mark_worker_dead()` on shutdown so their live
gauges leave the output. Exemplars are not stored in multi-process mode (a prometheus_client
limitation).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from observability.metrics.cardinality import LabelGuard
from observability.metrics.names import (
    HTTP_DURATION,
    HTTP_IN_FLIGHT,
    HTTP_REQUEST_SIZE,
    HTTP_REQUESTS,
    HTTP_RESPONSE_SIZE,
)
from observability.request_record import UNMATCHED_ROUTE, LiveGauge, RequestRecord

__all__ = [
    "DURATION_BUCKETS",
    "HTTP_DURATION",
    "HTTP_IN_FLIGHT",
    "HTTP_REQUESTS",
    "HTTP_REQUEST_SIZE",
    "HTTP_RESPONSE_SIZE",
    "MULTIPROC_ENV",
    "SIZE_BUCKETS",
    "HttpMetrics",
    "LiveGauge",
    "MultiProcessRegistry",
    "build_registry",
    "mark_worker_dead",
    "multiprocess_dir",
    "prepare_multiprocess_dir",
]


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# 0.3 s is the API latency SLO threshold (telemetry/alerts.py): the SLI needs that bound.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.3,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SIZE_BUCKETS = (100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0, 10_000_000.0)
DEFAULT_EXCLUDED = ("/metrics", "/health/live", "/health/ready")
# A client may send any method token; only these become label values (cardinality).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
_STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


# --- registry -------------------------------------------------------------------------------


def multiprocess_dir() -> str | None:
    """The multi-process directory when multi-process mode is on, else None."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(path: str | os.PathLike[str]) -> None:
    """Parent process, before spawning workers: create `path`, empty it, export the variable.

    Only `*.db` files are removed (stale values of a previous run would otherwise be summed
    into the new one); anything else an operator put there is left alone.
    """
    directory = Path(path).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)


class MultiProcessRegistry(CollectorRegistry):
    """A registry whose exposition is every worker's values, not just this process's.

    Instruments (Counter, Gauge, Histogram...) register here as usual, so name clashes are
    still caught, but their values live in the mmap files: `collect()` reads those through
    MultiProcessCollector and adds only the live custom collectors (host-level metrics such
    as the system collector), which would otherwise be missing from a multi-process scrape.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._files = MultiProcessCollector(None, path)  # type: ignore[no-untyped-call]
        self._live: list[Collector] = []
        self._live_lock = threading.Lock()

    def register(self, collector: Collector) -> None:
        super().register(collector)
        if not isinstance(collector, MetricWrapperBase):
            with self._live_lock:
                self._live.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        with self._live_lock:
            if collector in self._live:
                self._live.remove(collector)

    def collect(self) -> Iterator[Metric]:
        yield from self._files.collect()  # type: ignore[no-untyped-call]
        with self._live_lock:
            live = list(self._live)
        for collector in live:
            yield from collector.collect()


def build_registry() -> CollectorRegistry:
    """A fresh registry: multi-process aware when PROMETHEUS_MULTIPROC_DIR is set.

    No `_created` series: prometheus_client adds one per counter, histogram and summary (a
    creation timestamp no query here uses, doubling the series count, and a counter named
    `x_created_total` would export `x_created_created`). prometheus_client's switch is
    process-wide, as its own docs say; so is a registry's exposition format."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
    path = multiprocess_dir()
    if path is None:
        return CollectorRegistry()
    if values.ValueClass is values.MutexValue:
        # Values would stay in this process's memory and silently vanish from the scrape.
        raise RuntimeError(
            f"{MULTIPROC_ENV} is set but prometheus_client was imported before it was: "
            "set it in the parent (prepare_multiprocess_dir) before workers import anything"
        )
    if not os.path.isdir(path):
        raise RuntimeError(f"{MULTIPROC_ENV}={path!r} is not a directory")
    return MultiProcessRegistry(path)


def mark_worker_dead(pid: int | None = None) -> None:
    """On worker exit (app lifespan shutdown): drop its live gauges from the aggregate."""
    path = multiprocess_dir()
    if path is not None:
        mark_process_dead(os.getpid() if pid is None else pid, path)  # type: ignore[no-untyped-call]


# --- HTTP RED metrics ----------------------------------------------------------------------


class _Histogram:
    """One labelled histogram in plain Python: per-bucket counts (not cumulative), the sum and,
    optionally, the last exemplar of each bucket. Cumulated only at scrape time."""

    __slots__ = ("bounds", "counts", "created", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...], exemplars: bool = False) -> None:
        self.bounds = bounds  # ends with +Inf, like prometheus_client's
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()
        self.exemplars: list[tuple[str, float, float] | None] | None = (
            [None] * len(bounds) if exemplars else None
        )

    def observe(self, value: float) -> int:
        # The first bound >= value, as prometheus_client's `amount <= bound` scan finds it:
        # bisect_left's loop written out, because the compiled build runs it natively (~100
        # instructions) where calling bisect_left costs ~750, three histograms a request. The
        # last bound is +Inf, so every value but NaN stops at or before it (NaN goes first,
        # as with bisect_left).
        bounds = self.bounds
        i, hi = 0, len(bounds) - 1
        while i < hi:
            mid = (i + hi) // 2
            if bounds[mid] < value:
                i = mid + 1
            else:
                hi = mid
        self.counts[i] += 1
        self.sum += value
        return i

    def add_to(self, metric: Metric, labels: dict[str, str]) -> None:
        """Append this histogram's samples exactly as prometheus_client's Histogram does."""
        name = metric.name
        acc = 0.0
        for i, bound in enumerate(self.bounds):
            acc += self.counts[i]
            exemplar = None
            if self.exemplars is not None and (seen := self.exemplars[i]) is not None:
                exemplar = Exemplar({"trace_id": seen[0]}, seen[1], seen[2])
            metric.add_sample(
                name + "_bucket",
                {**labels, "le": floatToGoString(bound)},  # type: ignore[no-untyped-call]
                acc,
                None,
                exemplar,
            )
        metric.add_sample(name + "_count", labels, acc)
        metric.add_sample(name + "_sum", labels, self.sum)
        if prometheus_metrics._use_created:  # the PROMETHEUS_DISABLE_CREATED_SERIES switch
            metric.add_sample(name + "_created", labels, self.created)


class _Series:
    """What one (method, route, status class) updates: its counter and its route's histograms."""

    __slots__ = ("count", "created", "duration", "size_in", "size_out")

    def __init__(self, duration: _Histogram, size_in: _Histogram, size_out: _Histogram) -> None:
        self.count = 0
        self.created = time.time()
        self.duration = duration
        self.size_in = size_in
        self.size_out = size_out


class _HttpCollector(Collector):
    """Exposes HttpMetrics' plain per-worker values at scrape time, in the same families,
    sample names and labels prometheus_client's Counter/Histogram/Gauge would produce."""

    def __init__(self, http: HttpMetrics) -> None:
        self.http = http

    def _families(self) -> tuple[Metric, Metric, Metric, Metric, Metric]:
        requests = Metric(HTTP_REQUESTS.removesuffix("_total"), _REQUESTS_HELP, "counter")
        duration = Metric(HTTP_DURATION, _DURATION_HELP, "histogram")
        size_in = Metric(HTTP_REQUEST_SIZE, _REQUEST_SIZE_HELP, "histogram")
        size_out = Metric(HTTP_RESPONSE_SIZE, _RESPONSE_SIZE_HELP, "histogram")
        in_flight = Metric(HTTP_IN_FLIGHT, _IN_FLIGHT_HELP, "gauge")
        return requests, duration, size_in, size_out, in_flight

    def describe(self) -> Iterator[Metric]:
        yield from self._families()  # names only: lets the registry catch a clash

    def collect(self) -> Iterator[Metric]:
        http = self.http
        requests, duration, size_in, size_out, in_flight = self._families()
        with http._lock:  # a consistent copy; the formatting happens outside the lock
            series = [(labels, s.count, s.created) for labels, s in http._series.items()]
            routes = [
                (labels, _copy(d), _copy(i), _copy(o)) for labels, (d, i, o) in http._routes.items()
            ]
        created = prometheus_metrics._use_created
        for (method, route, status_class), count, since in series:
            labels = {"method": method, "route": route, "status_class": status_class}
            requests.add_sample(HTTP_REQUESTS, labels, count)
            if created:
                requests.add_sample(requests.name + "_created", labels, since)
        for (method, route), d, i, o in routes:
            labels = {"method": method, "route": route}
            d.add_to(duration, labels)
            i.add_to(size_in, labels)
            o.add_to(size_out, labels)
        in_flight.add_sample(HTTP_IN_FLIGHT, {}, float(http.live_in_flight.value))
        yield from (requests, duration, size_in, size_out, in_flight)


def _copy(histogram: _Histogram) -> _Histogram:
    clone = _Histogram(histogram.bounds)  # not __new__: the compiled build has no bare __new__
    clone.counts = list(histogram.counts)
    clone.sum = histogram.sum
    clone.created = histogram.created
    clone.exemplars = None if histogram.exemplars is None else list(histogram.exemplars)
    return clone


_REQUESTS_HELP = "HTTP requests by method, route template and status class"
_DURATION_HELP = "Time to the last response byte (background tasks excluded)"
_REQUEST_SIZE_HELP = "HTTP request body size"
_RESPONSE_SIZE_HELP = "HTTP response body size"
_IN_FLIGHT_HELP = "HTTP requests being served"


class HttpMetrics:
    """RED metrics from each `RequestRecord` (an ObservabilityMiddleware observer).

    `http_requests_total{method,route,status_class}`, `http_request_duration_seconds{method,
    route}` (with a trace_id exemplar), request/response size histograms `{method,route}` and
    `http_requests_in_flight` (fed by the middleware's `in_flight=`, or by
    `metrics.endpoint.InFlightMiddleware(app, http.in_flight)`).

    One process: the values are plain per-worker counters and bucket arrays, updated under one
    lock per request and exposed by a collector at scrape time (prometheus_client's
    instruments cost a label lookup and a lock per value, ~3x more). Multi-process: the values
    must reach the other workers' scrapes, so they go through prometheus_client's instruments
    (mmap files); labelled children are cached per (method, route, status class).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        exclude_routes: Iterable[str] = DEFAULT_EXCLUDED,
        buckets: Iterable[float] = DURATION_BUCKETS,
        size_buckets: Iterable[float] = SIZE_BUCKETS,
        exemplars: bool = True,
        route_guard: LabelGuard | None = None,
    ) -> None:
        self.excluded = frozenset(exclude_routes)
        self.route_guard = route_guard
        # prometheus_client keeps no exemplars in multi-process mode: skip the work.
        self.exemplars = exemplars and multiprocess_dir() is None
        self.shared = multiprocess_dir() is not None
        self._lock = threading.Lock()
        # Bound once for the per-request update: `with lock` looks up and calls __enter__ and
        # __exit__ generically (~0.4k instructions a request in the compiled build).
        self._acquire: Callable[[], object] = self._lock.acquire
        self._release: Callable[[], object] = self._lock.release
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._routes: dict[tuple[str, str], tuple[_Histogram, _Histogram, _Histogram]] = {}
        self._children: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self._cached_series: dict[tuple[str, str, int], _Series] = {}
        self._buckets = _bounds(buckets)
        self._size_buckets = _bounds(size_buckets)
        self.in_flight: Gauge | LiveGauge
        self.live_in_flight = LiveGauge()
        if not self.shared:
            self.in_flight = self.live_in_flight
            registry.register(_HttpCollector(self))
            return
        self.requests = Counter(
            HTTP_REQUESTS, _REQUESTS_HELP, ["method", "route", "status_class"], registry=registry
        )
        self.duration = Histogram(
            HTTP_DURATION,
            _DURATION_HELP,
            ["method", "route"],
            buckets=self._buckets,
            registry=registry,
        )
        self.request_size = Histogram(
            HTTP_REQUEST_SIZE,
            _REQUEST_SIZE_HELP,
            ["method", "route"],
            buckets=self._size_buckets,
            registry=registry,
        )
        self.response_size = Histogram(
            HTTP_RESPONSE_SIZE,
            _RESPONSE_SIZE_HELP,
            ["method", "route"],
            buckets=self._size_buckets,
            registry=registry,
        )
        self.in_flight = Gauge(
            HTTP_IN_FLIGHT, _IN_FLIGHT_HELP, registry=registry, multiprocess_mode="livesum"
        )

    def _labels(self, method: str, route: str, klass: int) -> tuple[str, str, str]:
        if method not in _METHODS:
            method = "OTHER"
        if self.route_guard is not None and route != UNMATCHED_ROUTE:
            route = self.route_guard(route)
        return method, route, _STATUS_CLASSES.get(klass, "other")

    def _plain(self, method: str, route: str, status_class: str) -> _Series:
        series = self._series.get((method, route, status_class))
        if series is None:
            histograms = self._routes.get((method, route))
            if histograms is None:
                histograms = self._routes[(method, route)] = (
                    _Histogram(self._buckets, self.exemplars),
                    _Histogram(self._size_buckets),
                    _Histogram(self._size_buckets),
                )
            series = self._series[(method, route, status_class)] = _Series(*histograms)
        return series

    def _instruments(self, method: str, route: str, status_class: str) -> tuple[Any, ...]:
        return (
            self.requests.labels(method, route, status_class),
            self.duration.labels(method, route),
            self.request_size.labels(method, route),
            self.response_size.labels(method, route),
        )

    def __call__(self, record: RequestRecord) -> None:
        route = record.route
        if route in self.excluded or record.path in self.excluded:
            return
        key = (record.method, route, record.status // 100)
        if self.shared:
            self._record_shared(key, record)
            return
        series = self._cached_series.get(key)  # typed, unlike the shared path's children:
        if series is None:  # the compiled build calls its methods directly
            with self._lock:
                series = self._plain(*self._labels(*key))
            if len(self._cached_series) < 10_000:  # the cache stays bounded, whatever comes
                self._cached_series[key] = series
        duration = record.duration_s
        self._acquire()
        try:
            series.count += 1
            i = series.duration.observe(duration)
            series.size_in.observe(record.bytes_in)
            series.size_out.observe(record.bytes_out)
            exemplars = series.duration.exemplars
            if exemplars is not None and (trace_id := record.context.trace_id):
                exemplars[i] = (trace_id, duration, record.started_at + duration)
        finally:
            self._release()

    def _record_shared(self, key: tuple[str, str, int], record: RequestRecord) -> None:
        children = self._children.get(key)
        if children is None:
            children = self._instruments(*self._labels(*key))
            if len(self._children) < 10_000:
                self._children[key] = children
        count, duration, size_in, size_out = children
        count.inc()
        duration.observe(record.duration_s)
        size_in.observe(record.bytes_in)
        size_out.observe(record.bytes_out)


def _bounds(buckets: Iterable[float]) -> tuple[float, ...]:
    """Sorted bounds ending with +Inf, as prometheus_client's Histogram keeps them."""
    bounds = [float(b) for b in buckets]
    if bounds != sorted(bounds):
        raise ValueError("buckets not in sorted order")
    if not bounds or bounds[-1] != math.inf:
        bounds.append(math.inf)
    return tuple(bounds)
