"""The tracker end to end: storms, outages, masking, triggers, hooks; a real store behind it."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog

from observability.errors import (
    ErrorLogHandler,
    ErrorTracker,
    ErrorTrigger,
    StructlogErrorCapture,
    TrackerConfig,
    TriggerKind,
    install_hooks,
)
from observability.errors.fingerprint import Fingerprinter, hash_parts
from observability.errors.store import METADATA, ErrorStore, GroupBatch, GroupChange, GroupStatus
from observability.masking import Masker
from tests.observability.errors import (
    CANARIES,
    canary_mask,
    create_database,
    drop_database,
    pg_database,
    pg_url,
)

FINGERPRINTER = Fingerprinter(in_app_prefixes=[__name__])


class Recorder:
    """on_trigger callback that records (thread-safe: it runs on the writer thread)."""

    def __init__(self) -> None:
        self.triggers: list[ErrorTrigger] = []
        self._lock = threading.Lock()

    def __call__(self, trigger: ErrorTrigger) -> None:
        with self._lock:
            self.triggers.append(trigger)

    def kinds(self, kind: TriggerKind) -> list[ErrorTrigger]:
        with self._lock:
            return [t for t in self.triggers if t.kind is kind]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ErrorStore]:
    store = ErrorStore.from_url(f"sqlite:///{tmp_path / 'errors.db'}")
    store.create_schema()
    yield store
    store.dispose()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll a condition in a bounded loop (the writer thread works asynchronously)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def make_tracker(store: ErrorStore, recorder: Recorder, **kwargs: Any) -> ErrorTracker:
    config = kwargs.pop("config", None) or TrackerConfig(retry_initial_seconds=0.05)
    return ErrorTracker(
        store, fingerprinter=FINGERPRINTER, on_trigger=recorder, config=config, **kwargs
    )


def charge_card(order_id: int) -> None:
    raise ValueError(f"card declined for order {order_id}")


def capture_charge(tracker: ErrorTracker, order_id: int, **context: Any) -> str | None:
    try:
        charge_card(order_id)
    except ValueError as exc:
        return tracker.capture(exc, {"request_id": f"req-{order_id}", **context})
    raise AssertionError("unreachable")


def test_storm_from_16_threads_is_one_group_exact_count_one_trigger(
    store: ErrorStore, recorder: Recorder
) -> None:
    tracker = make_tracker(store, recorder)
    fingerprints: set[str | None] = set()
    lock = threading.Lock()

    def worker(n: int) -> None:
        seen = {
            capture_charge(tracker, n * 1000 + i, user_id=f"user-{i % 5}", route="/pay")
            for i in range(625)
        }
        with lock:
            fingerprints.update(seen)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tracker.flush(timeout=60)
    tracker.close()

    assert len(fingerprints) == 1
    [group] = store.list_groups()
    assert group.fingerprint in fingerprints
    assert group.count == 10_000
    assert group.users == 5
    assert group.message == "card declined for order <num>"
    stats = tracker.stats()
    assert (stats.captured, stats.written, stats.dropped, stats.buffered) == (10_000, 10_000, 0, 0)
    assert stats.transactions <= 1_000  # batched: far fewer transactions than events
    assert len(recorder.kinds(TriggerKind.NEW_GROUP)) == 1
    assert len(recorder.kinds(TriggerKind.RATE_SPIKE)) == 1  # once per interval, not per batch
    new = recorder.kinds(TriggerKind.NEW_GROUP)[0]
    assert new.fingerprint == group.fingerprint
    assert new.first_request_id is not None
    assert new.first_request_id.startswith("req-")
    assert new.message == "card declined for order <num>"
    assert store.get_group(group.fingerprint).routes == {"/pay": 10_000}  # type: ignore[union-attr]


@pytest.fixture
def pg_outage() -> Iterator[str]:
    with pg_database("errors_outage_test") as name:
        yield name


def test_store_down_capture_returns_and_buffers_then_recovers(
    pg_outage: str, recorder: Recorder
) -> None:
    store = ErrorStore.from_url(pg_url(pg_outage))
    store.create_schema()
    drop_database(pg_outage)  # the database disappears under a running service
    tracker = make_tracker(store, recorder)
    try:
        fps = {capture_charge(tracker, i) for i in range(300)}
        assert len(fps) == 1
        assert None not in fps
        wait_until(lambda: tracker.stats().write_failures >= 1)
        assert not tracker.flush(timeout=0.2)  # cannot be written while the store is down
        stats = tracker.stats()
        assert stats.buffered == 300
        assert stats.dropped == 0  # identical errors merge while buffered: nothing lost

        create_database(pg_outage)  # the database comes back (empty)
        store.create_schema()
        assert tracker.flush(timeout=60)
        [group] = store.list_groups()
        assert group.count == 300
        assert len(recorder.kinds(TriggerKind.NEW_GROUP)) == 1
    finally:
        tracker.close()
        store.dispose()


def test_buffer_is_bounded_and_overflow_is_counted(pg_outage: str, recorder: Recorder) -> None:
    store = ErrorStore.from_url(pg_url(pg_outage))
    drop_database(pg_outage)
    config = TrackerConfig(queue_size=20, max_pending_groups=10, retry_initial_seconds=0.05)
    tracker = make_tracker(store, recorder, config=config)
    try:
        returned = [
            tracker.capture(RuntimeError("distinct"), fingerprint=f"group-{i}") for i in range(200)
        ]
        assert all(fp is not None for fp in returned)  # capture answered every call
        stats = tracker.stats()
        assert stats.dropped > 0
        assert stats.buffered <= 20 + 10
        assert stats.dropped + stats.buffered == 200
    finally:
        tracker.close(timeout=2)
        store.dispose()


def test_masking_happens_before_storage(store: ErrorStore, recorder: Recorder) -> None:
    tracker = make_tracker(store, recorder, mask=canary_mask)
    password, token, body = CANARIES

    def login() -> None:
        secret = token  # a frame local holding a secret  # noqa: F841
        raise PermissionError(f"login failed with password {password}")

    try:
        login()
    except PermissionError as exc:
        fp = tracker.capture(
            exc,
            {
                "request_id": "req-1",
                "headers": {"Authorization": f"Bearer {token}", "X-Note": body},
                "body": {"password": password, "comment": body},
            },
        )
    assert tracker.flush()
    detail = store.get_group(fp or "")
    assert detail is not None
    assert "[MASKED]" in detail.occurrences[0].message
    with store.engine.connect() as conn:
        dump = repr([conn.execute(sa.select(t)).all() for t in METADATA.sorted_tables])
    for canary in CANARIES:
        assert canary not in dump
    tracker.close()


def test_locals_are_masked_when_captured(store: ErrorStore, recorder: Recorder) -> None:
    config = TrackerConfig(capture_locals=True)
    tracker = make_tracker(store, recorder, mask=canary_mask, config=config)

    def handler() -> None:
        api_key = CANARIES[1]  # noqa: F841
        raise RuntimeError("boom")

    try:
        handler()
    except RuntimeError as exc:
        fp = tracker.capture(exc)
    assert tracker.flush()
    frames = store.get_group(fp or "").occurrences[0].frames  # type: ignore[union-attr]
    assert frames[-1]["vars"]["api_key"] == "[MASKED]"
    tracker.close()


def test_capture_never_raises(store: ErrorStore, recorder: Recorder) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    def broken_mask(value: Any) -> Any:
        raise RuntimeError("mask is broken")

    def broken_provider() -> dict[str, Any]:
        raise RuntimeError("no context")

    tracker = make_tracker(store, recorder, mask=broken_mask, context_provider=broken_provider)
    fp = tracker.capture(Unprintable())  # never raised: no traceback at all
    assert fp is not None
    assert tracker.flush()
    detail = store.get_group(fp)
    assert detail is not None
    # Masking failed: fail closed, keep nothing unmasked.
    assert detail.occurrences[0].message == "<message withheld: masking failed>"
    assert detail.occurrences[0].context == {"masking_failed": True}
    assert tracker.stats().internal_errors >= 2
    tracker.close()


def test_regression_and_rate_spike_triggers_are_rate_limited(
    store: ErrorStore, recorder: Recorder
) -> None:
    config = TrackerConfig(spike_per_minute=None, retry_initial_seconds=0.05)
    tracker = make_tracker(store, recorder, config=config)
    fp = capture_charge(tracker, 1)
    assert fp is not None
    assert tracker.flush()
    for _ in range(2):
        store.resolve(fp)
        capture_charge(tracker, 2)
        assert tracker.flush()
    group = store.get_group(fp).group  # type: ignore[union-attr]
    assert group.status is GroupStatus.OPEN
    assert group.regression_count == 2
    # Two regressions inside one trigger interval: one notification.
    assert len(recorder.kinds(TriggerKind.REGRESSION)) == 1
    assert len(recorder.kinds(TriggerKind.NEW_GROUP)) == 1
    assert recorder.kinds(TriggerKind.RATE_SPIKE) == []
    tracker.close()


def test_ignored_groups_do_not_notify(store: ErrorStore, recorder: Recorder) -> None:
    tracker = make_tracker(store, recorder, config=TrackerConfig(spike_per_minute=1))
    fp = capture_charge(tracker, 1)
    assert fp is not None
    assert tracker.flush()
    store.ignore(fp)
    before = len(recorder.triggers)
    for i in range(5):
        capture_charge(tracker, i)
    assert tracker.flush()
    assert len(recorder.triggers) == before
    tracker.close()


def test_same_exception_object_counts_once_and_control_flow_is_ignored(
    store: ErrorStore, recorder: Recorder
) -> None:
    tracker = make_tracker(store, recorder)
    try:
        charge_card(5)
    except ValueError as exc:
        first = tracker.capture(exc, {"request_id": "a"})
        second = tracker.capture(exc, {"request_id": "a"})  # e.g. middleware + logger.exception
    assert first == second
    assert tracker.capture(SystemExit(0)) is None
    assert tracker.capture(KeyboardInterrupt()) is None
    assert tracker.flush()
    assert store.get_group(first or "").group.count == 1  # type: ignore[union-attr]
    tracker.close()
    assert tracker.capture(RuntimeError("after close")) is not None
    assert tracker.stats().dropped == 1


def test_context_provider_and_classification_flow_into_the_group(
    store: ErrorStore, recorder: Recorder
) -> None:
    tracker = make_tracker(
        store,
        recorder,
        context_provider=lambda: {"request_id": "ambient", "trace_id": "t-1", "route": "/x"},
    )
    try:
        raise RuntimeError("write lost")
    except RuntimeError as exc:
        fp = tracker.capture(exc, {"route": "/assignments/{key}", "tags": {"lost_write": True}})
    assert tracker.flush()
    detail = store.get_group(fp or "")
    assert detail is not None
    assert (detail.group.severity, detail.group.rule_name) == ("critical", "lost-write")
    occurrence = detail.occurrences[0]
    assert (occurrence.request_id, occurrence.trace_id, occurrence.route) == (
        "ambient",
        "t-1",
        "/assignments/{key}",
    )
    [trigger] = recorder.kinds(TriggerKind.NEW_GROUP)
    assert trigger.severity == "critical"
    assert trigger.rule_name == "lost-write"
    tracker.close()


def test_hooks_capture_thread_and_main_thread_errors(
    store: ErrorStore, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    chained: list[str] = []
    # Stand-ins for the hooks already installed (pytest has its own): they must still run.
    monkeypatch.setattr(sys, "excepthook", lambda *args: chained.append("sys"))
    monkeypatch.setattr(threading, "excepthook", lambda args: chained.append("thread"))
    previous_sys, previous_threading = sys.excepthook, threading.excepthook
    tracker = make_tracker(store, recorder)
    uninstall = install_hooks(tracker)
    try:
        thread = threading.Thread(target=charge_card, args=(7,), name="worker-7")
        thread.start()
        thread.join()
        try:
            raise LookupError("uncaught in main")
        except LookupError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        uninstall()
    assert (sys.excepthook, threading.excepthook) == (previous_sys, previous_threading)
    assert sorted(chained) == ["sys", "thread"]
    assert tracker.flush()
    groups = {g.type: g for g in store.list_groups()}
    assert set(groups) == {"ValueError", "LookupError"}
    thread_detail = store.get_group(groups["ValueError"].fingerprint)
    assert thread_detail is not None
    assert thread_detail.occurrences[0].context["tags"] == {
        "source": "thread",
        "thread": "worker-7",
    }
    tracker.close()


def test_logging_and_structlog_hooks(store: ErrorStore, recorder: Recorder) -> None:
    tracker = make_tracker(store, recorder)
    logger = logging.getLogger("tests.errors.hook")
    logger.propagate = False
    handler = ErrorLogHandler(tracker)
    logger.addHandler(handler)
    try:
        try:
            charge_card(1)
        except ValueError:
            logger.exception("charge failed", extra={"request_id": "log-req"})
        logger.error("no exception here")
    finally:
        logger.removeHandler(handler)

    processor = StructlogErrorCapture(tracker)
    log = structlog.wrap_logger(
        structlog.testing.ReturnLogger(),
        processors=[processor, structlog.processors.format_exc_info],
    )
    try:
        raise KeyError("slot")
    except KeyError:
        log.exception("lookup failed", request_id="sl-req")
    assert tracker.flush()
    request_ids = sorted(
        o.request_id
        for g in store.list_groups()
        for o in store.get_group(g.fingerprint).occurrences  # type: ignore[union-attr]
    )
    assert request_ids == ["log-req", "sl-req"]
    tracker.close()


def test_pg_store_behind_the_tracker(recorder: Recorder) -> None:
    with pg_database("errors_tracker_test") as name:
        store = ErrorStore.from_url(pg_url(name))
        store.create_schema()
        tracker = make_tracker(store, recorder)
        for i in range(50):
            capture_charge(tracker, i, user_id=f"u{i % 2}")
        # PostgreSQL text refuses NUL bytes: they must not make a group unwritable.
        nul = tracker.capture(RuntimeError("bad\x00byte"), {"note": "a\x00b", "k\x00": 1})
        assert tracker.flush()
        tracker.close()
        groups = {g.fingerprint: g for g in store.list_groups()}
        assert len(groups) == 2
        assert groups[nul or ""].message == "bad\ufffdbyte"
        [charge] = [g for g in groups.values() if g.fingerprint != nul]
        assert (charge.count, charge.users) == (50, 2)
        assert tracker.stats().dropped == 0
        store.dispose()


class RefusingStore(ErrorStore):
    """A real SQLite store that refuses one group, as a database refuses a bad row."""

    def write_batch(self, batches: Iterable[GroupBatch]) -> list[GroupChange]:
        batches = list(batches)
        if any(b.fingerprint == POISON for b in batches):
            raise sa.exc.StatementError("value rejected", "INSERT ...", {}, ValueError("bad"))
        return super().write_batch(batches)


POISON = hash_parts(["custom", "poison"])


def test_a_group_the_store_refuses_does_not_block_the_others(
    tmp_path: Path, recorder: Recorder
) -> None:
    store = RefusingStore(sa.create_engine(f"sqlite:///{tmp_path / 'errors.db'}"))
    store.create_schema()
    tracker = make_tracker(store, recorder, config=TrackerConfig(linger_seconds=0.5))
    for i in range(10):
        capture_charge(tracker, i)
        tracker.capture(RuntimeError("poison"), fingerprint="poison")
    assert tracker.flush()
    tracker.close()
    [group] = store.list_groups()
    assert group.count == 10
    stats = tracker.stats()
    assert (stats.written, stats.dropped) == (10, 10)
    store.dispose()


def test_the_platform_masking_policy_plugs_in(store: ErrorStore, recorder: Recorder) -> None:
    tracker = make_tracker(store, recorder, mask=Masker().mask)
    try:
        raise PermissionError("login failed for alice@example.com with password=hunter2-Secret")
    except PermissionError as exc:
        fp = tracker.capture(
            exc,
            {
                "request_id": "req-m",
                "headers": {"Authorization": "Bearer abcdef0123456789abcdef"},
                "body": {"password": "hunter2-Secret", "name": "ok"},
            },
        )
    assert tracker.flush()
    tracker.close()
    detail = store.get_group(fp or "")
    assert detail is not None
    assert detail.occurrences[0].context["body"]["name"] == "ok"
    with store.engine.connect() as conn:
        dump = repr([conn.execute(sa.select(t)).all() for t in METADATA.sorted_tables])
    for secret in ("alice@example.com", "hunter2-Secret", "abcdef0123456789abcdef"):
        assert secret not in dump
