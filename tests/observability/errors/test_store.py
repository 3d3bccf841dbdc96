"""The error store on SQLite and on a real PostgreSQL: counts, samples, regressions, queries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from observability.errors.classify import Severity
from observability.errors.store import (
    METADATA,
    ErrorEvent,
    ErrorStore,
    GroupBatch,
    GroupStatus,
    Occurrence,
)
from tests.observability.errors import pg_database, pg_url

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture(scope="module")
def pg_name() -> Iterator[str]:
    with pg_database("errors_store_test") as name:
        yield name


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'errors.db'}"
        return
    url = pg_url(request.getfixturevalue("pg_name"))
    yield url
    engine = sa.create_engine(url)
    METADATA.drop_all(engine)  # a clean slate for the next test on the shared database
    engine.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[ErrorStore]:
    store = ErrorStore.from_url(store_url)
    store.create_schema()
    yield store
    store.dispose()


def event(
    fp: str = "fp-a",
    *,
    ts: float = T0,
    request_id: str = "req-1",
    user: str | None = "user-1",
    route: str = "/experiments/{key}",
    severity: Severity = Severity.LOW,
    rule: str = "default",
) -> ErrorEvent:
    return ErrorEvent(
        fingerprint=fp,
        type_name="KeyError",
        message="order <num> missing",
        severity=severity,
        rule_name=rule,
        user_hash=user,
        occurrence=Occurrence(
            timestamp=ts,
            message="order 12 missing",
            request_id=request_id,
            trace_id="trace-" + request_id,
            route=route,
            method="GET",
            user_id=user,
            context={"principal": "svc", "tags": {"region": "eu"}},
            frames=[{"module": "shop.orders", "function": "load", "lineno": 3, "in_app": True}],
        ),
    )


def batch_of(*events: ErrorEvent, sample_limit: int = 20) -> GroupBatch:
    batch = GroupBatch.start(events[0], sample_limit)
    for e in events[1:]:
        batch.add(e)
    return batch


def test_first_batch_creates_the_group_with_exact_counts(store: ErrorStore) -> None:
    events = [event(ts=T0 + i, request_id=f"r{i}", user=f"u{i % 3}") for i in range(7)]
    [change] = store.write_batch([batch_of(*events)])
    assert change.created
    assert not change.regressed
    assert change.count == 7
    assert change.first_request_id == "r0"

    detail = store.get_group("fp-a")
    assert detail is not None
    group = detail.group
    assert (group.count, group.users, group.status) == (7, 3, GroupStatus.OPEN)
    assert group.first_seen == datetime.fromtimestamp(T0, UTC)
    assert group.last_seen == datetime.fromtimestamp(T0 + 6, UTC)
    assert group.message == "order <num> missing"
    assert [o.request_id for o in detail.occurrences] == [f"r{i}" for i in range(6, -1, -1)]
    newest = detail.occurrences[0]
    assert (newest.trace_id, newest.route, newest.method) == (
        "trace-r6",
        "/experiments/{key}",
        "GET",
    )
    assert newest.context["tags"] == {"region": "eu"}
    assert newest.frames[0]["function"] == "load"
    assert detail.routes == {"/experiments/{key}": 7}

    # A second batch updates, it does not create; users already seen are not counted twice.
    [again] = store.write_batch([batch_of(event(ts=T0 + 10, user="u1"), event(user="u9"))])
    assert not again.created
    group = store.get_group("fp-a").group  # type: ignore[union-attr]
    assert (group.count, group.users) == (9, 4)


def test_samples_are_bounded_to_the_newest(store_url: str) -> None:
    store = ErrorStore.from_url(store_url, sample_limit=5)
    store.create_schema()
    for round_ in range(3):
        events = [event(ts=T0 + round_ * 10 + i, request_id=f"r{round_}-{i}") for i in range(4)]
        store.write_batch([batch_of(*events, sample_limit=5)])
    detail = store.get_group("fp-a", occurrences=100)
    assert detail is not None
    assert detail.group.count == 12
    assert [o.request_id for o in detail.occurrences] == ["r2-3", "r2-2", "r2-1", "r2-0", "r1-3"]
    store.dispose()


def test_resolved_group_that_recurs_is_reopened_as_regression(store: ErrorStore) -> None:
    store.write_batch([batch_of(event(ts=T0))])
    resolved_at = datetime.fromtimestamp(T0 + 3600, UTC)
    assert store.resolve("fp-a", at=resolved_at)
    group = store.get_group("fp-a").group  # type: ignore[union-attr]
    assert group.status is GroupStatus.RESOLVED
    assert group.resolution_seconds == pytest.approx(3600)

    # An event from before the resolution (buffered during an outage) does not reopen it.
    [late] = store.write_batch([batch_of(event(ts=T0 + 60))])
    assert not late.regressed
    assert late.status is GroupStatus.RESOLVED

    [change] = store.write_batch([batch_of(event(ts=T0 + 7200))])
    assert change.regressed
    assert change.status is GroupStatus.OPEN
    group = store.get_group("fp-a").group  # type: ignore[union-attr]
    assert (group.status, group.regression, group.regression_count) == (
        GroupStatus.OPEN,
        True,
        1,
    )
    assert group.count == 3
    # Further occurrences of an open regression are not new regressions.
    [more] = store.write_batch([batch_of(event(ts=T0 + 7300))])
    assert not more.regressed


def test_ignored_group_keeps_counting_and_stays_ignored(store: ErrorStore) -> None:
    store.write_batch([batch_of(event())])
    assert store.ignore("fp-a")
    [change] = store.write_batch([batch_of(event(ts=T0 + 99))])
    assert change.status is GroupStatus.IGNORED
    assert not change.regressed
    assert store.get_group("fp-a").group.count == 2  # type: ignore[union-attr]
    assert store.reopen("fp-a")
    assert store.get_group("fp-a").group.status is GroupStatus.OPEN  # type: ignore[union-attr]
    assert not store.resolve("unknown")


def test_severity_escalates_and_remembers_the_rule(store: ErrorStore) -> None:
    store.write_batch([batch_of(event())])
    store.write_batch([batch_of(event(severity=Severity.CRITICAL, rule="storm"))])
    store.write_batch([batch_of(event(severity=Severity.MEDIUM, rule="validation-bug"))])
    group = store.get_group("fp-a").group  # type: ignore[union-attr]
    assert (group.severity, group.rule_name) == (Severity.CRITICAL, "storm")


def test_list_groups_filters_and_sorts(store: ErrorStore) -> None:
    store.write_batch(
        [
            batch_of(*[event("fp-many", ts=T0 + 1)] * 5),
            batch_of(event("fp-late", ts=T0 + 500, route="/assignments/{key}",
                           severity=Severity.HIGH, rule="assignment-path-5xx")),
            batch_of(event("fp-old", ts=T0 - 3600)),
        ]
    )  # fmt: skip
    store.resolve("fp-old")

    def fps(**kwargs: object) -> list[str]:
        return [g.fingerprint for g in store.list_groups(**kwargs)]  # type: ignore[arg-type]

    assert fps() == ["fp-late", "fp-many", "fp-old"]
    assert fps(sort="count") == ["fp-many", "fp-late", "fp-old"]
    assert fps(severity="high") == ["fp-late"]
    assert fps(severity=[Severity.LOW, Severity.HIGH], status="open") == ["fp-late", "fp-many"]
    assert fps(status=GroupStatus.RESOLVED) == ["fp-old"]
    assert fps(route="/assignments") == ["fp-late"]
    since = datetime.fromtimestamp(T0, UTC)
    assert fps(since=since) == ["fp-late", "fp-many"]
    assert fps(until=since) == ["fp-old"]
    assert fps(limit=1, offset=1) == ["fp-many"]
    with pytest.raises(ValueError, match="sort must be one of"):
        store.list_groups(sort="random")


def test_stats_for_dashboards(store: ErrorStore) -> None:
    store.write_batch(
        [
            batch_of(*[event("fp-a", ts=T0 + i) for i in range(3)]),
            batch_of(event("fp-b", ts=T0 + 61, severity=Severity.CRITICAL, rule="lost-write")),
            batch_of(event("fp-c", ts=T0 + 125)),
        ]
    )
    store.resolve("fp-a", at=datetime.fromtimestamp(T0 + 100, UTC))  # opened at T0: 100 s
    store.resolve("fp-c", at=datetime.fromtimestamp(T0 + 425, UTC))  # opened at T0+125: 300 s
    stats = store.stats(now=datetime.fromtimestamp(T0 + 150, UTC), minutes=4)
    assert stats.groups_by_severity == {"critical": 1, "high": 0, "medium": 0, "low": 2}
    assert stats.groups_by_status == {"open": 1, "resolved": 2, "ignored": 0}
    assert stats.open_by_severity["critical"] == 1
    assert stats.occurrences_total == 5
    assert stats.mean_resolution_seconds == pytest.approx(200)
    minute = datetime.fromtimestamp(T0, UTC)
    assert stats.per_minute == [
        (minute - timedelta(minutes=1), 0),
        (minute, 3),
        (minute + timedelta(minutes=1), 1),
        (minute + timedelta(minutes=2), 1),
    ]
    assert store.prune_minutes(datetime.fromtimestamp(T0 + 120, UTC)) == 2


def test_concurrent_writers_keep_counts_exact(store_url: str) -> None:
    """Several instances (own engines) write the same group at once: nothing lost, one creator."""
    setup = ErrorStore.from_url(store_url)
    setup.create_schema()
    setup.dispose()
    writers, batches, per_batch = 6, 15, 20
    created: list[bool] = []
    errors: list[BaseException] = []

    def instance(n: int) -> None:
        store = ErrorStore.from_url(store_url)
        try:
            for b in range(batches):
                events = [
                    event(ts=T0 + b, request_id=f"w{n}-{b}-{i}", user=f"u{i}")
                    for i in range(per_batch)
                ]
                created.extend(c.created for c in store.write_batch([batch_of(*events)]))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.dispose()

    threads = [threading.Thread(target=instance, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert created.count(True) == 1
    store = ErrorStore.from_url(store_url)
    group = store.get_group("fp-a").group  # type: ignore[union-attr]
    assert group.count == writers * batches * per_batch
    assert group.users == per_batch
    assert sum(store.get_group("fp-a").routes.values()) == group.count  # type: ignore[union-attr]
    store.dispose()


def test_create_schema_is_idempotent(store: ErrorStore) -> None:
    store.create_schema()
    assert {"error_groups", "error_occurrences"} <= set(sa.inspect(store.engine).get_table_names())


def test_unsupported_database_is_refused() -> None:
    engine = sa.create_mock_engine("mysql://", executor=lambda *args, **kwargs: None)
    with pytest.raises(ValueError, match="accepted: sqlite, postgresql"):
        ErrorStore(engine)  # type: ignore[arg-type]
