"""The log pipeline's promises: bounded queue shedding the least severe first, levels per
logger changeable at runtime, sampling that keeps what matters, flush on close."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog

from observability.asgi import RequestRecord
from observability.context import RequestContext
from observability.logging import (
    CallbackSink,
    LevelPolicy,
    LoggingConfig,
    MemorySink,
    RequestLogObserver,
    configure_logging,
    get_logger,
    parse_levels,
)
from observability.logging.pipeline import LogPipeline, install
from observability.logging.queue import SeverityQueue
from observability.logging.sinks import LogRecordOut


def test_queue_sheds_least_severe_first_and_never_errors_for_less() -> None:
    queue = SeverityQueue(maxsize=10, error_reserve=5)
    for n in range(5):
        assert queue.put(10, ("debug", n))
        assert queue.put(20, ("info", n))
    assert queue.put(30, ("warning", 0))  # full: the oldest debug line makes room
    assert queue.dropped == {"overflow_level_0": 1}
    for n in range(3):
        queue.put(40, ("error", n))
    assert queue.dropped == {"overflow_level_0": 4}  # still debug lines to shed
    for n in range(3, 10):
        queue.put(40, ("error", n))
    # Shed in order: every debug line, then every info line, then the warning.
    assert queue.dropped == {"overflow_level_0": 5, "overflow_level_1": 5, "overflow_level_2": 1}
    for n in range(10, 17):  # nothing less severe left: errors use their reserve of 5
        queue.put(40, ("error", n))
    assert queue.dropped["overflow_level_3"] == 2  # past the reserve, counted
    assert [n for _, n in queue.drain()] == list(range(15))


def test_queue_drops_an_event_no_more_severe_than_anything_queued() -> None:
    queue = SeverityQueue(maxsize=2, error_reserve=0)
    assert queue.put(20, "a")
    assert queue.put(20, "b")
    assert not queue.put(20, "c")
    assert not queue.put(10, "d")
    assert queue.dropped == {"overflow_level_1": 1, "overflow_level_0": 1}
    assert queue.drain() == ["a", "b"]  # order kept


class _ReferenceQueue:
    """The shedding rules written plainly: every item with its sequence number in one list."""

    def __init__(self, maxsize: int, error_reserve: int) -> None:
        self.maxsize, self.reserve = maxsize, error_reserve
        self.items: list[tuple[int, int, object]] = []  # (seq, bucket, item)
        self.seq = 0
        self.dropped: dict[str, int] = {}

    def put(self, level: int, item: object) -> bool:
        bucket = 3 if level >= 40 else 2 if level >= 30 else 1 if level >= 20 else 0
        if len(self.items) >= self.maxsize:
            lower = [entry for entry in self.items if entry[1] < bucket]
            if lower:
                oldest = min(lower, key=lambda entry: (entry[1], entry[0]))
                self.items.remove(oldest)
                self._drop(oldest[1])
            elif not (bucket == 3 and len(self.items) < self.maxsize + self.reserve):
                self._drop(bucket)
                return False
        self.seq += 1
        self.items.append((self.seq, bucket, item))
        return True

    def _drop(self, bucket: int) -> None:
        key = f"overflow_level_{bucket}"
        self.dropped[key] = self.dropped.get(key, 0) + 1

    def drain(self) -> list[object]:
        taken, self.items = self.items, []
        return [item for _, _, item in taken]


@pytest.mark.parametrize("seed", range(12))
def test_queue_keeps_put_order_and_sheds_as_the_plain_rules_say(seed: int) -> None:
    import random

    rng = random.Random(seed)
    maxsize = rng.choice([1, 2, 5, 16, 40])
    reserve = rng.choice([0, 3, maxsize])
    queue = SeverityQueue(maxsize=maxsize, error_reserve=reserve)
    reference = _ReferenceQueue(maxsize, reserve)
    # Runs of one severity (the usual batch) and mixed stretches, floods past the bound, drains
    # at random points.
    for step in range(3_000):
        if rng.random() < 0.03:
            assert queue.drain() == reference.drain(), f"step {step}"
            continue
        level = rng.choice([20] * 6 + [10, 30, 40]) if rng.random() < 0.5 else 20
        assert queue.put(level, (level, step)) == reference.put(level, (level, step))
        assert len(queue) == len(reference.items)
    assert queue.drain() == reference.drain()
    assert dict(queue.dropped) == reference.dropped


def test_queue_memory_stays_bounded_while_a_stalled_writer_sheds_a_flood() -> None:
    import random

    rng = random.Random(7)
    queue = SeverityQueue(maxsize=100, error_reserve=10)
    for n in range(100_000):  # no drain: past the bound each put sheds a less severe line or itself
        level = rng.choice([10, 20, 20, 30, 40])
        queue.put(level, (level, n))
    # What the queue keeps to restore the order of a mixed batch grows with what it holds, not
    # with what it was offered.
    assert queue._order is not None
    assert len(queue._order) <= 4 * (100 + 10)
    drained = queue.drain()
    assert {level for level, _ in drained} == {40}  # errors only, the reserve used
    assert len(drained) == 110
    assert drained == sorted(drained)  # in put order
    assert sum(queue.dropped.values()) == 100_000 - 110


def test_queue_wakes_its_writer_once_a_batch_waits_and_again_after_each_drain() -> None:
    queue = SeverityQueue(maxsize=40)  # a batch is a quarter of the bound: 10
    for n in range(9):
        queue.put(20, n)
    assert not queue.wakeup.is_set()
    queue.put(20, 9)
    assert queue.wakeup.is_set()
    queue.wakeup.clear()  # the writer woke; until it drains, more lines join the batch
    for n in range(10, 15):
        queue.put(20, n)
    assert not queue.wakeup.is_set()  # once per batch: not again for each of them
    assert len(queue.drain()) == 15
    for n in range(10):
        queue.put(20, n)
    assert queue.wakeup.is_set()  # the next batch wakes it again


def test_a_full_batch_is_written_without_waiting_for_the_flush_interval() -> None:
    memory = MemorySink()
    pipeline = LogPipeline([memory], queue_size=40, flush_interval=60.0)
    try:
        for n in range(10):
            pipeline.submit(20, {"event": "line", "n": n})
        deadline = time.monotonic() + 10.0
        while len(memory.lines) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(memory.lines) == 10
    finally:
        pipeline.close()


def test_parse_levels_names_the_bad_part() -> None:
    assert parse_levels("sqlalchemy.engine=warning, uvicorn.access=ERROR") == {
        "sqlalchemy.engine": 30,
        "uvicorn.access": 40,
    }
    with pytest.raises(ValueError, match="bad logger level 'x=LOUD'"):
        parse_levels("a=INFO,x=LOUD")


def test_levels_per_logger_most_specific_prefix_wins_and_change_at_runtime() -> None:
    policy = LevelPolicy(logging.INFO, {"noisy": logging.WARNING, "noisy.useful": logging.DEBUG})
    assert policy.threshold("noisy.sub") == logging.WARNING
    assert policy.threshold("noisy.useful.deeper") == logging.DEBUG
    assert policy.threshold("other") == logging.INFO
    policy.set(levels={"noisy": logging.ERROR})
    assert policy.threshold("noisy.sub") == logging.ERROR
    assert logging.getLogger("noisy").level == logging.ERROR  # stdlib loggers follow
    policy.reset_logger("noisy")
    assert policy.threshold("noisy.sub") == logging.INFO
    assert logging.getLogger("noisy").level == logging.NOTSET


def test_structlog_and_stdlib_share_one_shape_and_levels(tmp_path: Path) -> None:
    memory = MemorySink()
    pipeline = configure_logging(
        LoggingConfig(directory=tmp_path, stdout=False, levels="quiet=ERROR"),
        extra_sinks=[memory],
    )
    get_logger("app.module").info("thing_happened", count=3)
    get_logger("quiet.child").warning("not_shown")
    logging.getLogger("lib.client").warning("stdlib says %s", "hello", extra={"peer": "db"})
    logging.getLogger("quiet").error("shown")
    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("lib.client").exception("lookup_failed")
    assert pipeline.flush(5)
    events = {e["event"]: e for e in memory.events}
    assert set(events) == {"thing_happened", "stdlib says hello", "shown", "lookup_failed"}
    assert events["thing_happened"]["logger"] == "app.module"
    assert events["thing_happened"]["count"] == 3
    assert events["stdlib says hello"]["peer"] == "db"
    assert events["lookup_failed"]["exception"]["type"] == "KeyError"
    lines = (tmp_path / "platform.log").read_text().splitlines()
    assert [json.loads(line)["event"] for line in lines] == [e["event"] for e in memory.events]


def test_a_broken_sink_is_counted_and_the_others_still_write() -> None:
    class Broken:
        name = "broken"

        def write(self, records: object) -> None:
            raise OSError("disk gone")

        def flush(self) -> None:
            return

        def close(self) -> None:
            return

    memory = MemorySink()
    pipeline = LogPipeline([Broken(), memory])
    install(pipeline)
    get_logger("x").error("still_written")
    assert pipeline.flush(5)
    assert memory.events[0]["event"] == "still_written"
    assert pipeline.sink_errors["broken"] == 1


def test_close_flushes_everything_queued() -> None:
    memory = MemorySink()
    pipeline = LogPipeline([memory], flush_interval=10.0)  # the writer would sleep 10 s
    install(pipeline)
    log = get_logger("x")
    for n in range(1000):
        log.info("line", n=n)
    assert pipeline.close(timeout=5)
    assert [e["n"] for e in memory.events] == list(range(1000))
    structlog.reset_defaults()


def test_fields_with_keys_that_are_not_strings_are_written_not_dropped() -> None:
    """Lines are encoded on orjson's string-key path first (half the cost); a field holding
    a mapping with int or None keys still reaches the sink, keys written as strings, on the
    request line as on any other."""
    memory = MemorySink()
    pipeline = LogPipeline([memory])
    install(pipeline)
    get_logger("x").info("counts", by_status={200: 3, None: 1})
    record = _record(200, 0.01)
    record.context.extra["shards"] = {7: "a"}
    RequestLogObserver()(record)
    assert pipeline.close(5)
    assert pipeline.dropped_by_writer["render_error"] == 0
    first, request = (json.loads(line) for line in memory.lines)
    assert first["by_status"] == {"200": 3, "null": 1}
    assert request["event"] == "request_completed"
    assert request["shards"] == {"7": "a"}
    structlog.reset_defaults()


def test_event_dicts_reach_the_writer_only_when_a_sink_reads_them() -> None:
    """Line-only sinks (files, stdout, CloudWatch): the queue holds no event dicts, so a
    request's dict is freed as soon as its line is rendered; a sink that reads events (the
    console, memory, an unknown sink) still gets every one of them."""
    seen: list[tuple[dict[str, object], bytes]] = []

    def lines_only(records: Sequence[LogRecordOut]) -> None:
        seen.extend((event, line) for _, event, line in records)

    pipeline = LogPipeline([CallbackSink("lines", lines_only, needs_events=False)])
    install(pipeline)
    assert not pipeline.keeps_events
    get_logger("x").info("a_line", n=1)
    RequestLogObserver()(_record(200, 0.01))
    assert pipeline.close(5)
    assert [event for event, _ in seen] == [{}, {}]
    assert [json.loads(line)["event"] for _, line in seen] == ["a_line", "request_completed"]

    memory = MemorySink()
    pipeline = LogPipeline([CallbackSink("lines", lines_only, needs_events=False), memory])
    install(pipeline)
    assert pipeline.keeps_events
    get_logger("x").info("a_line", n=2)
    RequestLogObserver()(_record(200, 0.01))
    assert pipeline.close(5)
    assert [e["event"] for e in memory.events] == ["a_line", "request_completed"]
    assert memory.events[0]["n"] == 2
    structlog.reset_defaults()


def _record(status: int, duration_s: float) -> RequestRecord:
    ctx = RequestContext(request_id="r1", trace_id="t1", method="GET", route="/x")
    return RequestRecord(
        "GET",
        "/x",
        "/x",
        status,
        duration_s,
        0,
        10,
        0.0,
        ctx,
        {"authorization": "Bearer abcdefghijklmnop1234"},
    )


def test_sampling_keeps_errors_and_slow_requests_and_marks_sampled_lines() -> None:
    memory = MemorySink()
    pipeline = LogPipeline([memory])
    install(pipeline)
    rolls = iter([0.9, 0.05] * 100)
    observer = RequestLogObserver(sample_rate=0.1, slow_ms=500, random_source=lambda: next(rolls))
    observer(_record(200, 0.01))  # roll 0.9: sampled out
    observer(_record(200, 0.01))  # roll 0.05: kept, marked
    observer(_record(404, 0.01))
    observer(_record(500, 0.01))
    observer(_record(200, 0.9))  # slow: always kept
    assert pipeline.flush(5)
    kept = [(e["status"], e.get("sample_rate"), e.get("slow")) for e in memory.events]
    assert kept == [(200, 0.1, None), (404, None, None), (500, None, None), (200, None, True)]
    assert observer.sampled_out == 1
    assert [e["level"] for e in memory.events] == ["info", "warning", "error", "info"]
    # the default header masker is the toolkit's masker: the last 4 characters at most
    assert memory.events[0]["headers"]["authorization"] == "Bearer [MASKED:last4=1234]"
