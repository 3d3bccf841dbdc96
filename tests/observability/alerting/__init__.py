"""Helpers shared by the alerting tests: build minute rollups the way RollingWindows does."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import MinuteRollup, RouteRollup

T0 = 1_767_571_200  # a Monday, 00:00 UTC: every minute boundary is a multiple of 60
ROUTE = "GET /api/v1/assignments/{experiment_key}"


def sketch(values: Iterable[float]) -> dict[str, object]:
    s = QuantileSketch()
    for v in values:
        s.add(v)
    return s.to_dict()


def rollup(
    minute: int,
    requests: int = 100,
    errors: int = 0,
    *,
    route: str = ROUTE,
    latency_s: float = 0.02,
    slow: int = 0,
    slow_s: float = 1.0,
    counters: Mapping[str, float] | None = None,
    distributions: Mapping[str, Iterable[float]] | None = None,
) -> MinuteRollup:
    """One minute of traffic: `requests` requests, `errors` of them 5xx, `slow` of them slow."""
    latencies = [slow_s] * slow + [latency_s] * (requests - slow)
    routes = {
        route: RouteRollup(requests, {"2xx": requests - errors, "5xx": errors}, sketch(latencies))
    }
    dists = {name: sketch(values) for name, values in (distributions or {}).items()}
    return MinuteRollup(minute, routes, dists, dict(counters or {}))
