"""Engine instrumentation on SQLite and the real PostgreSQL; the literal-stripping normaliser."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from observability.metrics.sqlalchemy import (
    SlowQuery,
    instrument_engine,
    normalize_sql,
    statement_operation,
)
from observability.metrics.windows import RollingWindows
from tests.support.platform import postgres_database


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        (
            "SELECT * FROM users WHERE email = 'alice@example.com' AND age > 42",
            "SELECT * FROM users WHERE email = ? AND age > ?",
        ),
        (
            "select name from t1 where id = 10 and ratio < 0.25e-3",
            "select name from t1 where id = ? and ratio < ?",
        ),
        (
            "UPDATE accounts SET note = 'it''s mine', balance = -12.50 WHERE id=7",
            "UPDATE accounts SET note = ?, balance = -? WHERE id=?",
        ),
        ("SELECT * FROM t WHERE id IN (1, 2, 3, 4)", "SELECT * FROM t WHERE id IN (?, ...)"),
        (
            "SELECT * FROM t WHERE id = :id_1 AND code = $2 AND x = %(name)s AND y = %s AND z = ?",
            "SELECT * FROM t WHERE id = :id_1 AND code = $2 AND x = %(name)s AND y = %s AND z = ?",
        ),
        ('SELECT "user2"."col 1" FROM "user2"', 'SELECT "user2"."col 1" FROM "user2"'),
        ("SELECT E'line\\'s end', X'DEADBEEF', 0xFF", "SELECT ?, ?, ?"),
        ("SELECT $$ secret body $$, $fn$ other $fn$", "SELECT ?, ?"),
        ("/* user=bob@example.com */ SELECT 1 -- card 4111111111111111\n", "SELECT ?"),
        ("SELECT 'unterminated secret", "SELECT ?"),
        ("INSERT INTO t (a, b)\n   VALUES ('x',\n 5)", "INSERT INTO t (a, b) VALUES (?, ...)"),
    ],
)
def test_normalize_sql_replaces_literals(statement: str, expected: str) -> None:
    assert normalize_sql(statement) == expected


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("SELECT 1", "select"),
        ("  \n select x", "select"),
        ("/* app */ INSERT INTO t VALUES (1)", "insert"),
        ("-- note\nUPDATE t SET a = 1", "update"),
        ("DELETE FROM t", "delete"),
        ("(SELECT 1) UNION (SELECT 2)", "select"),
        ("WITH r AS (SELECT 1) SELECT * FROM r", "select"),
        ("WITH r AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM r)", "delete"),
        ("CREATE TABLE t (a int)", "other"),
        ("PRAGMA foreign_keys=ON", "other"),
        ("", "other"),
    ],
)
def test_statement_operation(statement: str, operation: str) -> None:
    assert statement_operation(statement) == operation


def query_count(registry: CollectorRegistry, operation: str) -> float:
    return (
        registry.get_sample_value("db_query_duration_seconds_count", {"operation": operation})
        or 0.0
    )


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield engine
    engine.dispose()


def test_sqlite_queries_are_timed_by_operation(sqlite_engine: Engine) -> None:
    registry = CollectorRegistry()
    instrumentation = instrument_engine(sqlite_engine, registry)
    with sqlite_engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT)"))
        conn.execute(
            text("INSERT INTO people (email) VALUES (:email)"),
            [{"email": "a@x.io"}, {"email": "b@x.io"}],
        )
        conn.execute(text("UPDATE people SET email = :email WHERE id = 1"), {"email": "c@x.io"})
        rows = conn.execute(text("SELECT email FROM people ORDER BY id")).all()
        conn.execute(text("DELETE FROM people WHERE id = 2"))
    assert [r.email for r in rows] == ["c@x.io", "b@x.io"]
    assert query_count(registry, "insert") == 1  # one executemany is one round trip
    assert query_count(registry, "update") == 1
    assert query_count(registry, "select") == 1
    assert query_count(registry, "delete") == 1
    assert query_count(registry, "other") >= 1  # CREATE TABLE
    assert instrumentation.errors == 0

    instrumentation.remove()
    with sqlite_engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert query_count(registry, "select") == 1  # detached


def test_sqlite_slow_queries_are_reported_without_literals(sqlite_engine: Engine) -> None:
    registry = CollectorRegistry()
    reports: list[SlowQuery] = []
    # threshold 0: every statement counts as slow, so the test needs no timing
    instrument_engine(sqlite_engine, registry, slow_query_seconds=0.0, on_slow_query=reports.append)
    with sqlite_engine.connect() as conn:
        conn.execute(
            text("SELECT 'alice@example.com' AS email, 4111111111111111 AS card, :p AS bound"),
            {"p": "bound-secret"},
        )
    (report,) = reports
    assert report.statement == "SELECT ? AS email, ? AS card, ? AS bound"
    assert report.operation == "select"
    # The duration reported is the one the histogram recorded for that statement.
    timed = registry.get_sample_value("db_query_duration_seconds_sum", {"operation": "select"})
    assert report.duration_s == pytest.approx(timed)
    assert "alice" not in repr(report)
    assert "4111" not in repr(report)
    assert "bound-secret" not in repr(report)
    assert registry.get_sample_value("db_slow_queries_total", {"operation": "select"}) == 1


def test_a_failing_hook_or_query_never_breaks_the_next_query(sqlite_engine: Engine) -> None:
    registry = CollectorRegistry()

    def broken(_report: SlowQuery) -> None:
        raise RuntimeError("logger down")

    instrumentation = instrument_engine(
        sqlite_engine, registry, slow_query_seconds=0.0, on_slow_query=broken
    )
    with sqlite_engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
        with pytest.raises(OperationalError):
            conn.execute(text("SELEKT nonsense"))
        assert conn.execute(text("SELECT 2")).scalar() == 2
    assert instrumentation.errors == 2  # the hook failed twice; the queries did not
    assert query_count(registry, "select") == 2  # the failed statement is not timed


def test_pool_gauges_from_the_collector(sqlite_engine: Engine) -> None:
    registry = CollectorRegistry()
    instrument_engine(sqlite_engine, registry, name="main", multiprocess=False)
    value = registry.get_sample_value
    size = sqlite_engine.pool.size()  # type: ignore[attr-defined]
    conns = [sqlite_engine.connect() for _ in range(size + 2)]
    for conn in conns:
        conn.execute(text("SELECT 1"))
    assert value("db_pool_connections_in_use", {"pool": "main"}) == size + 2
    assert value("db_pool_overflow", {"pool": "main"}) == 2  # beyond the pool's size
    for conn in conns:
        conn.close()
    assert value("db_pool_connections_in_use", {"pool": "main"}) == 0
    assert value("db_pool_overflow", {"pool": "main"}) == 0


def test_pool_gauges_from_pool_events_in_multiprocess_mode(sqlite_engine: Engine) -> None:
    registry = CollectorRegistry()
    instrument_engine(sqlite_engine, registry, name="main", multiprocess=True)
    value = registry.get_sample_value
    first, second = sqlite_engine.connect(), sqlite_engine.connect()
    first.execute(text("SELECT 1"))
    second.execute(text("SELECT 1"))
    assert value("db_pool_connections_in_use", {"pool": "main"}) == 2
    second.close()
    assert value("db_pool_connections_in_use", {"pool": "main"}) == 1
    first.close()
    assert value("db_pool_connections_in_use", {"pool": "main"}) == 0


def test_event_driven_overflow(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'o.sqlite'}", pool_size=1, max_overflow=2)
    try:
        registry = CollectorRegistry()
        instrument_engine(engine, registry, multiprocess=True)
        with engine.connect(), engine.connect(), engine.connect():
            assert registry.get_sample_value("db_pool_overflow", {"pool": "default"}) == 2
        assert registry.get_sample_value("db_pool_overflow", {"pool": "default"}) == 0
    finally:
        engine.dispose()


@pytest.mark.integration
def test_postgresql_queries_and_slow_query_literal_stripping() -> None:
    with postgres_database() as url:
        engine = create_engine(url, pool_size=2, max_overflow=1)
        try:
            registry = CollectorRegistry()
            reports: list[SlowQuery] = []
            instrument_engine(
                engine, registry, slow_query_seconds=0.25, on_slow_query=reports.append
            )
            with engine.begin() as conn:
                conn.execute(
                    text("CREATE TABLE orders (id serial PRIMARY KEY, note text, amount numeric)")
                )
                conn.execute(
                    text(
                        "INSERT INTO orders (note, amount) VALUES ('card 4111111111111111', 99.95)"
                    )
                )
                conn.execute(
                    text("INSERT INTO orders (note, amount) VALUES (:n, :a)"), {"n": "x", "a": 1}
                )
                assert conn.execute(text("SELECT count(*) FROM orders")).scalar() == 2
                conn.execute(
                    text(
                        "SELECT pg_sleep(0.3), note FROM orders"
                        " WHERE note = 'card 4111111111111111' AND amount > 10"
                    )
                )
                conn.execute(text("UPDATE orders SET amount = 5 WHERE id = 2"))
                conn.execute(text("DELETE FROM orders WHERE id = 2"))
                with pytest.raises(ProgrammingError), conn.begin_nested():
                    conn.execute(text("SELECT * FROM missing_table WHERE secret = 'x'"))
            assert query_count(registry, "insert") == 2
            assert query_count(registry, "update") == 1
            assert query_count(registry, "delete") == 1
            assert query_count(registry, "select") >= 2
            (report,) = reports  # only the pg_sleep statement crossed 0.25 s
            assert (
                report.statement
                == "SELECT pg_sleep(?), note FROM orders WHERE note = ? AND amount > ?"
            )
            assert report.operation == "select"
            assert report.duration_s >= 0.3
            assert "4111" not in repr(report)
            assert registry.get_sample_value("db_slow_queries_total", {"operation": "select"}) == 1
            slow_bucket = registry.get_sample_value(
                "db_query_duration_seconds_bucket", {"operation": "select", "le": "0.25"}
            )
            assert slow_bucket == query_count(registry, "select") - 1
            value = registry.get_sample_value
            with engine.connect(), engine.connect():
                assert value("db_pool_connections_in_use", {"pool": "default"}) == 2
                assert value("db_pool_overflow", {"pool": "default"}) == 0
                with engine.connect():  # pool_size=2: the third is an overflow connection
                    assert value("db_pool_connections_in_use", {"pool": "default"}) == 3
                    assert value("db_pool_overflow", {"pool": "default"}) == 1
        finally:
            engine.dispose()


def test_statement_durations_feed_the_rolling_windows(sqlite_engine: Engine) -> None:
    registry = CollectorRegistry()
    windows = RollingWindows()
    instrument_engine(sqlite_engine, registry, slow_query_seconds=0.0, windows=windows)
    with sqlite_engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        conn.execute(text("INSERT INTO t (id) VALUES (1)"))
        for _ in range(3):
            conn.execute(text("SELECT id FROM t"))
    select = windows.distribution('db_query_duration_seconds{operation="select"}', 60)
    insert = windows.distribution('db_query_duration_seconds{operation="insert"}', 60)
    total = windows.distribution("db_query_duration_seconds", 60)
    assert (select.count, insert.count) == (3, 1)
    assert total.count == query_count(registry, "select") + query_count(
        registry, "insert"
    ) + query_count(registry, "other")
    # Slow statements are counted per operation too (threshold 0: every one is slow).
    totals, _ = windows.counter_totals(60)
    assert totals['db_slow_queries_total{operation="select"}'] == 3


def test_pool_wait_is_the_time_to_check_out_a_connection(tmp_path: Path) -> None:
    # One connection, no overflow: a second checkout waits until the first is returned.
    engine = create_engine(f"sqlite:///{tmp_path / 'w.sqlite'}", pool_size=1, max_overflow=0)
    registry = CollectorRegistry()
    windows = RollingWindows()
    instrumentation = instrument_engine(engine, registry, name="main", windows=windows)
    try:
        held = engine.connect()
        released = threading.Event()

        def release_later() -> None:
            released.wait(0.3)  # hold the only connection a while, then give it back
            held.close()

        releaser = threading.Thread(target=release_later)
        releaser.start()
        with engine.connect() as conn:  # blocks until the releaser closes `held`
            conn.execute(text("SELECT 1"))
        releaser.join()
        value = registry.get_sample_value
        assert value("db_pool_wait_seconds_count", {"pool": "main"}) == 2
        # The blocked checkout waited at least as long as the connection was held.
        waits = windows.distribution("db_pool_wait_seconds", 60)
        assert waits.count == 2
        assert (waits.quantile(1.0) or 0.0) >= 0.29
        assert (value("db_pool_wait_seconds_sum", {"pool": "main"}) or 0.0) >= 0.29

        instrumentation.remove()  # unwrapped: no more checkouts are timed
        with engine.connect():
            pass
        assert value("db_pool_wait_seconds_count", {"pool": "main"}) == 2
    finally:
        engine.dispose()


def test_a_checkout_that_times_out_counts_its_wait(tmp_path: Path) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path / 't.sqlite'}", pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    registry = CollectorRegistry()
    instrument_engine(engine, registry)
    try:
        with engine.connect(), pytest.raises(SATimeoutError):
            engine.connect()
        assert registry.get_sample_value("db_pool_wait_seconds_count", {"pool": "default"}) == 2
        assert (
            registry.get_sample_value("db_pool_wait_seconds_sum", {"pool": "default"}) or 0
        ) >= 0.19
    finally:
        engine.dispose()
