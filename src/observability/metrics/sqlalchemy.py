"""SQLAlchemy engine instrumentation: query durations by operation, slow queries, pool gauges.

Durations come from the `before/after_cursor_execute` events (the time the DBAPI cursor
spent, i.e. the database round trip, without ORM work). A slow query is reported through a
callback with its literals replaced by `?`, so the statement can be logged or grouped without
leaking the values a user typed (SQLAlchemy binds parameters separately, but `text()` queries
and literal-rendered statements carry values inline).

Pool wait: the time `engine.raw_connection()` takes (every `engine.connect()` and session goes
through it): waiting for a free connection, opening a new one, and the pre-ping, i.e. what a
request waits before its first statement can start. SQLAlchemy has no "checkout started"
event, so the engine's `raw_connection` is wrapped (on the instance; `remove()` unwraps it).

Rolling windows: given a `windows` sink, every duration also goes into the in-process windows
as the total (`db_query_duration_seconds`) and per operation (`...{operation="select"}`), so
alert rules, panels and incident evidence read them without a Prometheus.

Pool gauges: in single-process mode a collector reads `engine.pool` at scrape time; in
multi-process mode the scrape runs in one worker only, so each worker updates "livesum"
gauges on the pool's checkout/checkin events instead and the output is the sum of all workers.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine

from observability.metrics.names import (
    DB_POOL_IN_USE,
    DB_POOL_OVERFLOW,
    DB_POOL_WAIT,
    DB_QUERY_DURATION,
    DB_SLOW_QUERIES,
)
from observability.metrics.prometheus import multiprocess_dir
from observability.metrics.windows import RollingWindows

__all__ = [
    "DB_POOL_IN_USE",
    "DB_POOL_OVERFLOW",
    "DB_POOL_WAIT",
    "DB_QUERY_DURATION",
    "DB_SLOW_QUERIES",
    "DatabaseMetrics",
    "EngineInstrumentation",
    "PoolCollector",
    "SlowQuery",
    "instrument_engine",
    "normalize_sql",
    "statement_operation",
]


QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
OPERATIONS = frozenset({"select", "insert", "update", "delete"})
_INFO_KEY = "observability_query_started"

# One pass over the statement: comments and literals are replaced, identifiers and bind
# placeholders (which may contain digits: table1, $1, :p_1) are consumed whole and kept.
_SQL_TOKENS = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>[Ee]'(?:[^'\\]|''|\\.)*'          # E'..' : backslash escapes
                |(?:[XxBbNn]|[Uu]&)?'(?:[^']|'')*'    # standard strings, '' escapes
                |'.*)                                 # unterminated: drop the rest
    | (?P<dollar>\$(?P<tag>[A-Za-z_]\w*|)\$.*?\$(?P=tag)\$)   # PostgreSQL $$..$$ / $tag$..$tag$
    | (?P<keep>"(?:[^"]|"")*"|`[^`]*`|[A-Za-z_][\w$]*|\$\d+|:[A-Za-z_]\w*|%\([^)]*\)s|%s)
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
    """,
    re.VERBOSE | re.DOTALL,
)
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_SPACE = re.compile(r"\s+")
_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/|\()*([A-Za-z]+)", re.DOTALL)
_WRITE_WORD = re.compile(r"\b(insert|update|delete)\b", re.IGNORECASE)


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "keep":
        return match.group(0)
    if kind == "comment":
        return " "  # comments may carry anything (sqlcommenter tags, pasted values)
    return "?"


def normalize_sql(statement: str) -> str:
    """The statement with literals (strings, numbers, dollar-quoted bodies) as `?`, comments
    removed, value lists collapsed to `(?, ...)` and whitespace squeezed."""
    text = _SQL_TOKENS.sub(_replace, statement)
    text = _LIST.sub("(?, ...)", text)
    return _SPACE.sub(" ", text).strip()


@lru_cache(maxsize=4096)
def statement_operation(statement: str) -> str:
    """select / insert / update / delete / other, from the statement's first keyword."""
    match = _FIRST_WORD.match(statement)
    word = match.group(1).lower() if match else ""
    if word in OPERATIONS:
        return word
    if word == "with":  # a CTE: the main statement is a write if one appears, else a read
        write = _WRITE_WORD.search(statement)
        return write.group(1).lower() if write else "select"
    return "other"


@dataclass(frozen=True, slots=True)
class SlowQuery:
    statement: str  # normalised: literals replaced by `?`
    operation: str
    duration_s: float


SlowQueryHook = Callable[[SlowQuery], None]


def _keyed(name: str, operation: str) -> str:
    return f'{name}{{operation="{operation}"}}'  # the windows' series key (query.series_key)


class DatabaseMetrics:
    """The instruments, once per registry (several engines may share them)."""

    def __init__(
        self, registry: CollectorRegistry, *, buckets: tuple[float, ...] = QUERY_BUCKETS
    ) -> None:
        self.registry = registry
        self.duration = Histogram(
            DB_QUERY_DURATION,
            "Database round-trip time per statement",
            ["operation"],
            buckets=buckets,
            registry=registry,
        )
        self.slow = Counter(
            DB_SLOW_QUERIES,
            "Statements slower than the threshold",
            ["operation"],
            registry=registry,
        )
        self.pool_wait = Histogram(
            DB_POOL_WAIT,
            "Time to check out a pool connection (wait, connect, pre-ping)",
            ["pool"],
            buckets=buckets,
            registry=registry,
        )
        self._durations = {op: self.duration.labels(op) for op in (*OPERATIONS, "other")}
        self._slow = {op: self.slow.labels(op) for op in (*OPERATIONS, "other")}
        self._duration_keys = {op: _keyed(DB_QUERY_DURATION, op) for op in self._durations}
        self._slow_keys = {op: _keyed(DB_SLOW_QUERIES, op) for op in self._slow}
        self._pool_gauges: tuple[Gauge, Gauge] | None = None

    def pool_gauges(self) -> tuple[Gauge, Gauge]:
        """Event-driven pool gauges (multi-process mode), created on first use."""
        if self._pool_gauges is None:
            self._pool_gauges = (
                Gauge(
                    DB_POOL_IN_USE,
                    "Connections checked out of the pool",
                    ["pool"],
                    registry=self.registry,
                    multiprocess_mode="livesum",
                ),
                Gauge(
                    DB_POOL_OVERFLOW,
                    "Connections beyond the pool size",
                    ["pool"],
                    registry=self.registry,
                    multiprocess_mode="livesum",
                ),
            )
        return self._pool_gauges


def _pool_reading(pool: Any, method: str) -> float | None:
    reader = getattr(pool, method, None)
    if reader is None:
        return None  # NullPool, StaticPool... have no such counter
    try:
        # QueuePool.overflow() starts at -pool_size (room left): only > 0 is overflow
        return max(0.0, float(reader()))
    except Exception:
        return None


class PoolCollector(Collector):
    """`db_pool_connections_in_use{pool}` and `db_pool_overflow{pool}` read from `engine.pool`."""

    def __init__(self, engine: Engine, name: str = "default") -> None:
        self.engine = engine
        self.name = name

    def collect(self) -> Iterator[Metric]:
        pool = self.engine.pool  # read each time: engine.dispose() replaces the pool
        for metric, method, doc in (
            (DB_POOL_IN_USE, "checkedout", "Connections checked out of the pool"),
            (DB_POOL_OVERFLOW, "overflow", "Connections beyond the pool size"),
        ):
            value = _pool_reading(pool, method)
            family = GaugeMetricFamily(metric, doc, labels=["pool"])
            if value is not None:
                family.add_metric([self.name], value)
            yield family


class EngineInstrumentation:
    """The listeners attached to one engine; `remove()` detaches them."""

    def __init__(
        self,
        engine: Engine,
        metrics: DatabaseMetrics,
        *,
        slow_query_seconds: float,
        on_slow_query: SlowQueryHook | None,
        name: str,
        multiprocess: bool,
        windows: RollingWindows | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.windows = windows
        self._pool_wait = metrics.pool_wait.labels(name)
        self.slow_query_seconds = slow_query_seconds
        self.on_slow_query = on_slow_query
        self.name = name
        self.errors = 0
        self._lock = threading.Lock()
        self._listeners: list[tuple[Any, str, Callable[..., None]]] = [
            (engine, "before_cursor_execute", self._before),
            (engine, "after_cursor_execute", self._after),
            (engine, "handle_error", self._failed),
        ]
        self.collector: PoolCollector | None = None
        if multiprocess:
            in_use, overflow = metrics.pool_gauges()
            self._in_use, self._overflow = in_use.labels(name), overflow.labels(name)
            self._checked_out = 0
            self._listeners += [
                (engine, "checkout", self._checked_out_one),
                (engine, "checkin", self._checked_in_one),
            ]
        else:
            self.collector = PoolCollector(engine, name)
            metrics.registry.register(self.collector)
        for target, name_, fn in self._listeners:
            event.listen(target, name_, fn)
        self._raw_connection = engine.raw_connection
        engine.raw_connection = self._timed_checkout  # type: ignore[method-assign]

    def remove(self) -> None:
        for target, name_, fn in self._listeners:
            if event.contains(target, name_, fn):
                event.remove(target, name_, fn)
        if self.engine.__dict__.get("raw_connection") == self._timed_checkout:
            del self.engine.__dict__["raw_connection"]
        if self.collector is not None:
            self.metrics.registry.unregister(self.collector)
            self.collector = None

    # A connection runs one statement at a time, so one slot in its info dict is enough.
    def _before(self, conn: Any, _cursor: Any, _stmt: str, *_args: Any) -> None:
        conn.info[_INFO_KEY] = time.perf_counter()

    def _after(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        started = conn.info.pop(_INFO_KEY, None)
        if started is None:
            return
        try:
            elapsed = time.perf_counter() - started
            operation = statement_operation(statement)
            metrics = self.metrics
            metrics._durations[operation].observe(elapsed)
            windows = self.windows
            if windows is not None:
                windows.observe(DB_QUERY_DURATION, elapsed)
                windows.observe(metrics._duration_keys[operation], elapsed)
            if elapsed >= self.slow_query_seconds:
                metrics._slow[operation].inc()
                if windows is not None:
                    windows.count(metrics._slow_keys[operation])
                if self.on_slow_query is not None:
                    self.on_slow_query(SlowQuery(normalize_sql(statement), operation, elapsed))
        except Exception:  # telemetry never raises into the query path
            self.errors += 1

    def _timed_checkout(self) -> Any:
        started = time.perf_counter()
        try:
            return self._raw_connection()
        finally:  # a checkout that timed out waited too: the worst wait of all
            self._waited(time.perf_counter() - started)

    def _waited(self, seconds: float) -> None:
        try:
            self._pool_wait.observe(seconds)
            if self.windows is not None:
                self.windows.observe(DB_POOL_WAIT, seconds)
        except Exception:  # telemetry never raises into the query path
            self.errors += 1

    def _failed(self, context: Any) -> None:
        conn = getattr(context, "connection", None)
        if conn is not None:
            conn.info.pop(_INFO_KEY, None)

    # The checkin event fires before the pool updates its own counters, so this process
    # counts checkouts itself; overflow is what is checked out beyond the pool size.
    def _checked_out_one(self, *_args: Any) -> None:
        self._pool_changed(+1)

    def _checked_in_one(self, *_args: Any) -> None:
        self._pool_changed(-1)

    def _pool_changed(self, delta: int) -> None:
        try:
            with self._lock:
                self._checked_out = max(0, self._checked_out + delta)
                in_use = self._checked_out
            self._in_use.set(in_use)
            size = _pool_reading(self.engine.pool, "size")
            if size is not None:
                self._overflow.set(max(0.0, in_use - size))
        except Exception:
            self.errors += 1


def instrument_engine(
    engine: Engine,
    registry: CollectorRegistry | DatabaseMetrics,
    *,
    slow_query_seconds: float = 0.5,
    on_slow_query: SlowQueryHook | None = None,
    name: str = "default",
    multiprocess: bool | None = None,
    windows: RollingWindows | None = None,
) -> EngineInstrumentation:
    """Time every statement of `engine` and every connection checkout, report slow
    statements, expose its pool; with `windows`, durations also feed the rolling windows.

    Pass the `metrics` of an earlier instrumentation instead of a registry to instrument a
    second engine into the same instruments (give it another `name`).
    """
    metrics = registry if isinstance(registry, DatabaseMetrics) else DatabaseMetrics(registry)
    if multiprocess is None:
        multiprocess = multiprocess_dir() is not None
    return EngineInstrumentation(
        engine,
        metrics,
        slow_query_seconds=slow_query_seconds,
        on_slow_query=on_slow_query,
        name=name,
        multiprocess=multiprocess,
        windows=windows,
    )
