"""Cardinality stays bounded: unmatched paths collapse, per-experiment labels fold past N."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, generate_latest

from observability.asgi import ObservabilityMiddleware
from observability.metrics.cardinality import LabelGuard, LabelOverflowCounter
from observability.metrics.prometheus import HttpMetrics


def series_count(registry: CollectorRegistry, prefix: str = "") -> int:
    lines = generate_latest(registry).decode().splitlines()
    return sum(1 for line in lines if line and not line.startswith("#") and line.startswith(prefix))


async def drive(app: Any, paths: Iterable[str]) -> None:
    """Call the ASGI app directly (what a server does), fast enough for 100,000 requests."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        return

    for path in paths:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        await app(scope, receive, send)


def test_first_values_pass_later_ones_fold_and_are_counted() -> None:
    folds: list[str] = []
    guard = LabelGuard(3, on_overflow=folds.append, metric="assignments_total")
    assert [guard(v) for v in ("a", "b", "a", "c", "d", "e", "b")] == [
        "a",
        "b",
        "a",
        "c",
        "__other__",
        "__other__",
        "b",
    ]
    assert folds == ["assignments_total", "assignments_total"]
    assert guard.admitted == 3


def test_overflow_value_itself_is_never_admitted_as_a_real_value() -> None:
    guard = LabelGuard(5, overflow_value="__other__")
    assert guard("__other__") == "__other__"
    assert guard.admitted == 0


def test_a_failing_hook_does_not_stop_the_fold() -> None:
    def broken(_metric: str) -> None:
        raise RuntimeError("hook bug")

    guard = LabelGuard(1, on_overflow=broken)
    assert guard("a") == "a"
    assert guard("b") == "__other__"


def test_guard_is_thread_safe() -> None:
    registry = CollectorRegistry()
    overflow = LabelOverflowCounter(registry)
    guard = overflow.guard("flag_evaluations_total", max_values=100)
    results: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def worker(index: int) -> None:
        start.wait()
        for n in range(2_000):
            results[index].append(guard(f"flag-{(n * 7 + index) % 1_000}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    passed = {value for result in results for value in result if value != "__other__"}
    folded = sum(result.count("__other__") for result in results)
    assert len(passed) == 100 == guard.admitted
    assert folded > 0
    assert (
        registry.get_sample_value(
            "metric_label_overflow_total", {"metric": "flag_evaluations_total"}
        )
        == folded
    )


def test_100k_distinct_unmatched_paths_leave_the_series_count_bounded() -> None:
    registry = CollectorRegistry()
    http = HttpMetrics(registry)
    app = FastAPI()

    @app.get("/experiments/{key}")
    async def experiment(key: str) -> dict[str, str]:
        return {"key": key}

    app.add_middleware(ObservabilityMiddleware, observers=[http])  # type: ignore[arg-type]
    asyncio.run(drive(app, ["/experiments/warm"]))
    baseline = series_count(registry, "http_")
    asyncio.run(drive(app, (f"/probe/{n}/x{n * 31}.php" for n in range(100_000))))
    asyncio.run(drive(app, (f"/experiments/exp-{n}" for n in range(1_000))))
    assert (
        registry.get_sample_value(
            "http_requests_total",
            {"method": "GET", "route": "__unmatched__", "status_class": "4xx"},
        )
        == 100_000
    )
    # baseline: the in-flight gauge plus one (method, route, status class) set of series; the
    # 100,000 probes add exactly one more set (route __unmatched__), the 1,000 keys none
    per_route = baseline - 1
    assert series_count(registry, "http_") == baseline + per_route
    assert series_count(registry, "http_") < 100
    assert len(http._cached_series) == 2  # the per-key cache stays bounded too


def test_100k_experiment_keys_through_the_guard_leave_the_series_count_bounded() -> None:
    registry = CollectorRegistry()
    overflow = LabelOverflowCounter(registry)
    assignments = Counter("assignments_total", "Assignments", ["experiment"], registry=registry)
    guard = overflow.guard("assignments_total", max_values=50)
    for n in range(100_000):
        assignments.labels(guard(f"experiment-{n}")).inc()
    assert series_count(registry, "assignments_total") == 51
    assert registry.get_sample_value("assignments_total", {"experiment": "__other__"}) == 99_950
    assert registry.get_sample_value("assignments_total", {"experiment": "experiment-49"}) == 1
    assert (
        registry.get_sample_value("metric_label_overflow_total", {"metric": "assignments_total"})
        == 99_950
    )
