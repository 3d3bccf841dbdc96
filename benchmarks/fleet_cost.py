"""What the fleet costs each round, on a real PostgreSQL: leader election (the lease renewal a
leader makes every third of the lease, the attempt a follower makes), rollup publishing (each
instance, every 10 s bucket) and the leader's read of the fleet's last hour (every evaluation
round), against baselines in the same run: `SELECT 1` on the same pool, the cheapest round
trip any round could make, and the heartbeat's one-row upsert, the cheapest committed write.

Run: .venv/bin/python benchmarks/fleet_cost.py [--dsn postgresql://root@127.0.0.1:5432/test]
     [--instances 3] [--routes 20] [--requests 100] [--rounds 200]

It creates a scratch database next to the DSN's and drops it afterwards. Prints per round: the
median microseconds, the ratio to the baseline, the SQL statements and the bytes written.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy import Engine, event, text

from observability.fleet.lease import Lease
from observability.fleet.registry import InstanceRegistry
from observability.fleet.rollups import FleetPublisher, FleetRollups
from observability.metrics.windows import RollingWindows
from observability.query.fleet import FleetSource
from observability.query.live import LiveSource
from observability.store import ObservabilityStore

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@contextmanager
def scratch_database(dsn: str) -> Iterator[str]:
    name = f"ep_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Statements:
    """Counts the SQL statements an engine executes."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._one)

    def _one(self, *_args: object) -> None:
        self.count += 1


def measure(
    name: str, fn: Callable[[], object], rounds: int, statements: Statements
) -> dict[str, float | str]:
    times = []
    before = statements.count
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - start) / 1000)
    return {
        "name": name,
        "us": statistics.median(times),
        "queries": (statements.count - before) / rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("EP_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test"),
    )
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--routes", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100, help="per instance per 10 s")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()

    with scratch_database(args.dsn) as url:
        store = ObservabilityStore.open(url)
        store.migrate()
        engine = store.engine
        statements = Statements(engine)
        rows: list[dict[str, float | str]] = []

        def select_one() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        for _ in range(20):  # warm the pool
            select_one()
        rows.append(measure("baseline: SELECT 1", select_one, args.rounds, statements))
        # A committed one-row write: what every heartbeat already pays (commit = WAL flush).
        registry = InstanceRegistry(engine, instance="bench", service="bench")
        rows.append(measure("baseline: heartbeat upsert", registry.beat, args.rounds, statements))

        leader = Lease(engine, "bench", "leader", ttl_s=15)
        follower = Lease(engine, "bench", "follower", ttl_s=15)
        leader.try_acquire()
        rows.append(measure("election: leader renews", leader.try_acquire, args.rounds, statements))
        rows.append(
            measure("election: follower tries", follower.try_acquire, args.rounds, statements)
        )

        # Publishing: each instance's windows fed with traffic, one publish per 10 s bucket,
        # over an hour of (simulated) time, so the leader's read sees a full hour.
        clock = Clock(T0)
        rng = random.Random(7)
        routes = [f"/api/v1/r{i}/{{key}}" for i in range(args.routes)]
        members = []
        for i in range(args.instances):
            windows = RollingWindows(clock=clock)
            rollups = FleetRollups(engine, service="bench", instance=f"i{i}", clock=clock)
            members.append((windows, rollups, FleetPublisher(windows, rollups, clock=clock)))
        publish_us: list[float] = []
        publish_queries = 0
        for _ in range(360):
            for windows, _, _ in members:
                for _ in range(args.requests):
                    status = 500 if rng.random() < 0.01 else 200
                    windows.observe_request(
                        "GET", rng.choice(routes), status, rng.lognormvariate(-4, 1)
                    )
                windows.count("assignments_total", args.requests / 2)
            clock.t += 10
            for _, _, publisher in members:
                before = statements.count
                start = time.perf_counter_ns()
                publisher.publish_once()
                publish_us.append((time.perf_counter_ns() - start) / 1000)
                publish_queries += statements.count - before
        published_bytes = sum(r.bytes_written for _, r, _ in members)
        publishes = len(publish_us)
        rows.append(
            {
                "name": "publish: one instance's buckets",
                "us": statistics.median(publish_us),
                "queries": publish_queries / publishes,
                "bytes": published_bytes / publishes,
            }
        )
        source = FleetSource(members[0][1], LiveSource(members[0][0], clock=clock))
        rows.append(
            measure(
                f"leader reads the fleet's hour ({args.instances} instances)",
                source.begin_round,
                max(5, args.rounds // 20),
                statements,
            )
        )
        store.dispose()

    base = float(rows[0]["us"])
    print(f"{'per round':<48} {'µs':>9} {'x SELECT 1':>11} {'queries':>8} {'bytes':>8}")
    for row in rows:
        us = float(row["us"])
        written = f"{row['bytes']:.0f}" if "bytes" in row else "-"
        print(
            f"{row['name']:<48} {us:>9.0f} {us / base:>11.1f} {row['queries']:>8.1f} {written:>8}"
        )
    print(
        f"\n{args.instances} instances x {args.routes} routes, {args.requests} requests per "
        "instance per 10 s bucket; election rounds every lease/3 (5 s by default), publishing "
        "every 10 s, the leader's read every evaluation round (30 s by default)."
    )


if __name__ == "__main__":
    main()
