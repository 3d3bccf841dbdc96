"""Fleet-wide recent data: every instance (and every worker) publishes its last minutes in
fine buckets (10 s) to the shared store, and anyone reads them back merged with the history's
sketch merge (`merge_rollups`): exact counts, quantiles from merged sketches, not averages.

Why the SQL store and not Redis: it is the store every instance already shares (leases,
registry, history, alert state), it exists in every deployment (Redis is optional), its rows
come with the migrations, and a reader gets a consistent set of buckets in one query.

    publish   every `bucket_s` the buckets since the last complete one are upserted (the live,
              partial bucket included, so a reader is at most one bucket behind); rows older
              than `keep_s` (an hour, the longest window the rolling windows answer) are pruned.
    read      buckets in [start, end), merged across instances, or one instance's only. The
              fleet's merged buckets older than `settle_s` (a minute: every live instance has
              published them complete by then) are kept merged in memory, so each read
              merges only the last minute again (merging an hour of sketches costs ~1 s).

A graceful stop publishes the partial bucket last; an instance killed loses at most the
bucket it was in (10 s), not the minute the history would have lost.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

import orjson
from sqlalchemy import Engine, delete, insert, select

from observability.fleet.tables import rollups_table
from observability.logging import get_logger
from observability.metrics.history import merge_rollups
from observability.metrics.windows import MinuteRollup, RollingWindows

__all__ = ["FleetPublisher", "FleetRollups"]

log = get_logger("observability.fleet")
_T = rollups_table.c


class FleetRollups:
    """The fleet's recent buckets in the shared store (see module docstring)."""

    def __init__(
        self,
        engine: Engine,
        *,
        service: str,
        instance: str,
        bucket_s: int = 10,
        keep_s: float = 3700.0,
        settle_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.service = service[:100]
        self.instance = instance[:160]
        self.bucket_s = bucket_s
        self.keep_s = keep_s
        self.settle_s = settle_s
        self._clock = clock
        self.bytes_written = 0  # what publishing costs (benchmarks/fleet_cost.py)
        self._lock = threading.Lock()
        self._settled: dict[int, MinuteRollup] = {}  # merged, final buckets
        self._cached_from: int | None = None  # the cache holds every bucket from here...
        self._settled_until = 0  # ...to here

    def publish(self, buckets: Sequence[MinuteRollup], now: float) -> None:
        """Upsert this instance's buckets (delete + insert, one transaction) and prune."""
        encoded = [
            (int(b.minute_start), orjson.dumps(b.to_dict()).decode())
            for b in buckets
            if b.routes or b.counters or b.distributions
        ]
        self.bytes_written += sum(len(data) for _, data in encoded)
        rows = [
            {"service": self.service, "instance": self.instance, "bucket_start": t, "data": data}
            for t, data in encoded
        ]
        with self.engine.begin() as conn:
            if rows:
                conn.execute(
                    delete(rollups_table).where(
                        _T.service == self.service,
                        _T.instance == self.instance,
                        _T.bucket_start.in_([t for t, _ in encoded]),
                    )
                )
                conn.execute(insert(rollups_table), rows)
            conn.execute(
                delete(rollups_table).where(
                    _T.service == self.service, _T.bucket_start < int(now - self.keep_s)
                )
            )

    def read(self, start: float, end: float, instance: str | None = None) -> list[MinuteRollup]:
        """Buckets starting in [start, end), merged across the fleet (or of one instance),
        oldest first; `minute_start` is the bucket's start."""
        if instance is not None:
            return self._read(start, end, instance)
        with self._lock:
            bucket = self.bucket_s
            settle = int((self._clock() - self.settle_s) // bucket * bucket)
            if self._cached_from is None or start < self._cached_from:
                self._settled.clear()
                self._cached_from = self._settled_until = int(start)
            fresh = self._read(min(self._settled_until, settle), end, None)
            for rollup in fresh:
                if rollup.minute_start < settle:
                    self._settled[rollup.minute_start] = rollup
            self._settled_until = max(self._settled_until, settle)
            forget = int(self._clock() - self.keep_s)
            for old in [k for k in self._settled if k < forget]:
                del self._settled[old]
            self._cached_from = max(self._cached_from, forget)
            cached = [self._settled[k] for k in sorted(self._settled) if start <= k < end]
        recent = [r for r in fresh if r.minute_start >= settle and start <= r.minute_start < end]
        return [*cached, *recent]

    def _read(self, start: float, end: float, instance: str | None) -> list[MinuteRollup]:
        query = select(_T.bucket_start, _T.data).where(
            _T.service == self.service,
            _T.bucket_start >= int(start),
            _T.bucket_start < end,
        )
        if instance is not None:
            query = query.where(_T.instance == instance[:160])
        parts: dict[int, list[MinuteRollup]] = {}
        with self.engine.connect() as conn:
            for bucket_start, data in conn.execute(query):
                parts.setdefault(int(bucket_start), []).append(
                    MinuteRollup.from_dict(orjson.loads(data))
                )
        return [merge_rollups(start_, parts[start_]) for start_ in sorted(parts)]

    def minutes(self, instance: str, since: float) -> list[MinuteRollup]:
        """One instance's buckets from `since` on, merged into whole minutes, oldest first."""
        by_minute: dict[int, list[MinuteRollup]] = {}
        for bucket in self._read(since, math.inf, instance):
            by_minute.setdefault(bucket.minute_start // 60 * 60, []).append(bucket)
        out = []
        for minute in sorted(by_minute):
            merged = merge_rollups(minute, by_minute[minute])
            out.append(MinuteRollup(minute, merged.routes, merged.distributions, merged.counters))
        return out

    def instances(self, since: float) -> list[str]:
        """Instances that published a bucket since `since` (the dashboards' selector)."""
        query = (
            select(_T.instance)
            .where(_T.service == self.service, _T.bucket_start >= int(since))
            .distinct()
        )
        with self.engine.connect() as conn:
            return sorted(str(row[0]) for row in conn.execute(query))


class FleetPublisher:
    """Publishes `windows`' fine buckets every `bucket_s` on a daemon thread; `stop()`
    publishes the partial bucket once more (a graceful stop loses nothing)."""

    def __init__(
        self,
        windows: RollingWindows,
        rollups: FleetRollups,
        *,
        before_publish: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`before_publish` runs first each time (copying counters kept elsewhere into the
        windows, so they reach the fleet too)."""
        self.windows = windows
        self.rollups = rollups
        self.before_publish = before_publish
        self._clock = clock
        self._since = 0.0  # the start of the oldest bucket that may still change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.publishes = 0
        self.failures = 0

    def publish_once(self) -> None:
        now = self._clock()
        bucket = self.rollups.bucket_s
        # Six minutes at most: what the windows' fine slots hold.
        since = max(self._since, now - 300)
        try:
            if self.before_publish is not None:
                self.before_publish()
            self.rollups.publish(self.windows.buckets(bucket, since, now), now)
        except Exception as exc:  # retried with the same buckets next time; never fatal
            self.failures += 1
            log.warning("fleet_rollups_publish_failed", error=type(exc).__name__)
            return
        self.publishes += 1
        self._since = now // bucket * bucket  # the current bucket is published again next time

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fleet-rollups", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        bucket = self.rollups.bucket_s
        while True:
            # Just after each bucket boundary: the bucket that ended is published complete.
            wait = bucket - self._clock() % bucket + 0.2
            if self._stop.wait(wait):
                return
            self.publish_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.publish_once()
