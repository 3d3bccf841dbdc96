"""Cache metrics: look-up outcomes, and the latency and failures of every backend call.

    cache_requests_total{backend,outcome}       look-ups: hit | miss | error (other if unknown)
    cache_evictions_total{backend}              entries evicted to make room (not a request)
    cache_operation_duration_seconds{backend,operation}   histogram of each call's duration
    cache_operations_total{backend,operation}   calls; cache_errors_total{...} the failed ones

`observe(backend, outcome)` matches the platform caches' `observer` hook and `timed(backend,
operation, seconds, failed)` their `timer` hook. Operations are a fixed set (get, set, delete,
ping; anything else counts as "other") so labels stay bounded. Given a `windows` sink, calls
also go into the rolling windows (total, per operation, and the error and call counters per
operation), so rules and panels read them in-process.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from observability.metrics.names import (
    CACHE_DURATION,
    CACHE_ERRORS,
    CACHE_EVICTIONS,
    CACHE_OPERATIONS,
    CACHE_REQUESTS,
)
from observability.metrics.windows import RollingWindows

__all__ = ["CACHE_BUCKETS", "CacheMetrics"]

# An in-process look-up takes microseconds, a Redis round trip a few hundred; the Redis
# client gives up after 0.5 s (socket_timeout), so the top buckets catch timeouts.
CACHE_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0
)  # fmt: skip
OPERATIONS = ("get", "set", "delete", "ping", "other")


def _keyed(name: str, operation: str) -> str:
    return f'{name}{{operation="{operation}"}}'  # the windows' series key (query.series_key)


class CacheMetrics:
    OUTCOMES = frozenset({"hit", "miss", "error"})

    def __init__(self, registry: CollectorRegistry, windows: RollingWindows | None = None) -> None:
        self.windows = windows
        self.requests = Counter(
            CACHE_REQUESTS,
            "Cache look-ups by backend and outcome",
            ["backend", "outcome"],
            registry=registry,
        )
        self.evictions = Counter(
            CACHE_EVICTIONS, "Entries evicted to make room", ["backend"], registry=registry
        )
        self.duration = Histogram(
            CACHE_DURATION,
            "Duration of each cache call (look-up, store, invalidation, ping)",
            ["backend", "operation"],
            buckets=CACHE_BUCKETS,
            registry=registry,
        )
        self.operations = Counter(
            CACHE_OPERATIONS, "Cache calls", ["backend", "operation"], registry=registry
        )
        self.errors = Counter(
            CACHE_ERRORS,
            "Cache calls the backend failed (connection lost, timeout)",
            ["backend", "operation"],
            registry=registry,
        )
        self._children: dict[tuple[str, str], Any] = {}
        self._timers: dict[tuple[str, str], tuple[Any, Any, Any]] = {}

    def observe(self, backend: str, outcome: str) -> None:
        key = (backend, outcome)
        child = self._children.get(key)
        if child is None:
            if outcome == "eviction":
                child = self.evictions.labels(backend)
            else:
                child = self.requests.labels(
                    backend, outcome if outcome in self.OUTCOMES else "other"
                )
            self._children[key] = child
        child.inc()

    __call__ = observe

    def timed(self, backend: str, operation: str, seconds: float, failed: bool) -> None:
        """One cache call: its duration, and whether the backend failed it."""
        op = operation if operation in OPERATIONS else "other"
        children = self._timers.get((backend, op))
        if children is None:
            children = self._timers[(backend, op)] = (
                self.duration.labels(backend, op),
                self.operations.labels(backend, op),
                self.errors.labels(backend, op),
            )
        duration, calls, errors = children
        duration.observe(seconds)
        calls.inc()
        if failed:
            errors.inc()
        windows = self.windows
        if windows is not None:
            windows.observe(CACHE_DURATION, seconds)
            windows.observe(_keyed(CACHE_DURATION, op), seconds)
            windows.count(_keyed(CACHE_OPERATIONS, op))
            if failed:
                windows.count(_keyed(CACHE_ERRORS, op))
