"""Cost of RollingWindows.observe_request against an empty call with the same arguments.

Run: .venv/bin/python benchmarks/windows_overhead.py [--calls N] [--routes R] [--rounds K]

Prints nanoseconds per call (best of K rounds, so scheduler noise does not inflate figures) for
an empty function, observe_request on one route, observe_request across R routes, observe()
and count(), plus the cost of a snapshot() and a 5-minute request_stats() over the data recorded.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from observability.metrics.windows import RollingWindows


def empty(method: str, route: str, status: int, duration_s: float) -> None:
    return None


def best_ns_per_call(fn: Callable[[int], None], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn(calls)
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--routes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    windows = RollingWindows()
    rng = random.Random(1)
    durations = [rng.lognormvariate(-3.0, 1.0) for _ in range(4096)]
    routes = [f"/api/v1/r{i}/{{key}}" for i in range(args.routes)]

    def run_empty(n: int) -> None:
        for i in range(n):
            empty("GET", "/api/v1/experiments/{key}", 200, durations[i & 4095])

    def run_one_route(n: int) -> None:
        observe = windows.observe_request
        for i in range(n):
            observe("GET", "/api/v1/experiments/{key}", 200, durations[i & 4095])

    def run_many_routes(n: int) -> None:
        observe = windows.observe_request
        r = len(routes)
        for i in range(n):
            observe("GET", routes[i % r], 500 if i % 97 == 0 else 200, durations[i & 4095])

    def run_observe(n: int) -> None:
        observe = windows.observe
        for i in range(n):
            observe("assignment_latency_seconds", durations[i & 4095])

    def run_count(n: int) -> None:
        count = windows.count
        for _ in range(n):
            count("ep_assignments_total")

    base = best_ns_per_call(run_empty, args.calls, args.rounds)
    print(f"empty function call           {base:8.0f} ns/call")
    for label, fn in (
        ("observe_request (1 route)", run_one_route),
        (f"observe_request ({args.routes} routes)", run_many_routes),
        ("observe(name, value)", run_observe),
        ("count(name)", run_count),
    ):
        ns = best_ns_per_call(fn, args.calls, args.rounds)
        print(f"{label:<30}{ns:8.0f} ns/call  ({ns / base:4.1f}x empty, +{ns - base:.0f} ns)")

    start = time.perf_counter()
    windows.snapshot()
    print(f"snapshot()                    {(time.perf_counter() - start) * 1000:8.2f} ms")
    start = time.perf_counter()
    windows.request_stats(300)
    print(f"request_stats(300)            {(time.perf_counter() - start) * 1000:8.2f} ms")


if __name__ == "__main__":
    main()
