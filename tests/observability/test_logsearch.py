"""Local log search over files written by the real pipeline and RotatingFileSink.

The logs are produced by a real LogPipeline writing to a RotatingFileSink with a tiny
`max_bytes`, so the directory holds what production holds: many rotated, gzipped files and an
active file. Every search result is checked against an independent reading of the files
(gzip + json in plain Python), and the Python matcher used by `follow` must agree with the SQL.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import observability.logging
from observability.context import RequestContext, request_context
from observability.logging import LogPipeline, RotatingFileSink, get_logger
from observability.logging.pipeline import install
from observability.logsearch import (
    Follower,
    LogQuery,
    LogSearch,
    NoLogsError,
    QueryError,
    log_files,
    parse_condition,
    parse_time,
)

TARGET = "req-target-0001"
ROUTES = ("/api/v1/assignments", "/api/v1/flags/{key}", "/api/v1/experiments/{key}")


@dataclass
class Written:
    directory: Path
    lines: list[str]  # every valid line, oldest first, as written

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(raw, json.loads(raw)) for raw in self.lines]


def read_directory(directory: Path) -> list[str]:
    """The ground truth: every JSON object line of every finished file, by timestamp."""
    lines: list[str] = []
    for path in directory.iterdir():
        if path.name.endswith(".log.gz"):
            text = gzip.decompress(path.read_bytes()).decode()
        elif path.name.endswith(".log"):
            text = path.read_text()
        else:
            continue
        for raw in text.split("\n"):
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and "timestamp" in event:
                lines.append(raw)
    return sorted(lines, key=lambda raw: json.loads(raw)["timestamp"])


def _one_request(log: Any, i: int, request_id: str) -> None:
    route = ROUTES[i % len(ROUTES)]
    ctx = RequestContext(
        request_id=request_id,
        trace_id=f"trace-{i:04d}",
        span_id=f"span-{i:04d}",
        user_id=f"u_{i % 4}",
        principal="key_0001",
        method="POST" if i % 2 else "GET",
        route=route,
        client_ip="127.0.0.1",
    )
    with request_context(ctx):
        log.info(
            "assignment_made", experiment=f"exp-{i % 3}", variant="control", cached=bool(i % 2)
        )
        if i % 7 == 3:
            log.warning("upstream_slow", status="503", note='caf\u00e9 "quoted" \\ slash')
        if i % 11 == 5:  # a field of another meaning under the same name: text, not a number
            log.info("alert_noted", status="firing")
        if i % 9 == 4:
            log.error(
                "request_failed",
                status=500,
                exception={"type": "KeyError" if i % 2 else "TimeoutError", "message": "x"},
            )
            log.error("request_completed", status=500, duration_ms=float(i) * 1.5)
        else:
            log.info("request_completed", status=200 if i % 5 else 404, duration_ms=i * 1.5)


def write_logs(directory: Path, requests: int = 45, max_bytes: int = 4096) -> Written:
    """Many rotated gzipped files plus the active one; TARGET spans oldest, middle, active."""
    sink = RotatingFileSink(directory, max_bytes=max_bytes)
    pipeline = LogPipeline([sink], flush_interval=0.005)
    install(pipeline, capture_stdlib=False)
    log = get_logger("tests.logsearch")
    try:
        for i in range(requests):
            target = i in (0, requests // 2, requests - 1)
            _one_request(log, i, TARGET if target else f"req-{i:04d}")
            assert pipeline.flush()  # small batches, so the sink rotates between requests
        log.warning("cache_stale", entries=12)  # no request context at all
        assert pipeline.flush()
    finally:
        observability.logging.reset()  # closes the sink: waits for the compression threads
    return Written(directory, read_directory(directory))


@pytest.fixture
def written(tmp_path: Path) -> Written:
    return write_logs(tmp_path / "log")


def _search(directory: Path, **query: Any) -> list[str]:
    return [line.raw for line in LogSearch(directory).search(LogQuery(**query))]


def test_request_id_finds_every_line_across_gzipped_rotated_and_active_files(
    written: Written,
) -> None:
    files = log_files(written.directory)
    assert sum(p.name.endswith(".log.gz") for p in files) >= 5
    assert files[-1].name == "platform.log"
    holding = {
        p.name
        for p in files
        if TARGET
        in (gzip.decompress(p.read_bytes()).decode() if p.suffix == ".gz" else p.read_text())
    }
    assert "platform.log" in holding
    assert len([n for n in holding if n.endswith(".gz")]) >= 2  # oldest and middle files

    expected = [raw for raw, event in written.events() if event.get("request_id") == TARGET]
    found = _search(written.directory, request_id=TARGET)
    assert len(expected) >= 6
    assert sorted(found) == sorted(expected)
    stamps = [json.loads(raw)["timestamp"] for raw in found]
    assert stamps == sorted(stamps)  # oldest first, newest last


def _cases(written: Written) -> list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bool]]]:
    stamps = sorted(event["timestamp"] for _, event in written.events())
    since, until = stamps[len(stamps) // 3], stamps[2 * len(stamps) // 3]
    levels = ("warning", "error", "critical")
    return [
        ("trace_id", {"trace_id": "trace-0007"}, lambda e: e.get("trace_id") == "trace-0007"),
        ("user_id", {"user_id": "u_2"}, lambda e: e.get("user_id") == "u_2"),
        ("min level", {"level": "warning"}, lambda e: e["level"] in levels),
        ("level error", {"level": "ERROR"}, lambda e: e["level"] in levels[1:]),
        ("route", {"route": ROUTES[1]}, lambda e: e.get("route") == ROUTES[1]),
        ("event", {"event": "request_failed"}, lambda e: e["event"] == "request_failed"),
        (
            "since+until",
            {"since": parse_time(since), "until": parse_time(until)},
            lambda e: since <= e["timestamp"] <= until,
        ),
        (
            "where number",
            {"where": (parse_condition("status=500"),)},
            lambda e: str(e.get("status")) == "500",
        ),
        (
            "where string that looks like a number",
            {"where": (parse_condition("status=503"),)},
            lambda e: e.get("status") == "503",
        ),
        (
            "numeric >= matches numbers only: never 'firing', never the string '503'",
            {"where": (parse_condition("status>=500"),)},
            lambda e: type(e.get("status")) in (int, float) and e["status"] >= 500,
        ),
        (
            "text < matches text only, never a number",
            {"where": (parse_condition("status<zzz"),)},
            lambda e: isinstance(e.get("status"), str) and e["status"] < "zzz",
        ),
        (
            "numeric != compares numbers as numbers and text as text",
            {"where": (parse_condition("status!=200"),)},
            lambda e: "status" in e and str(e["status"]) != "200",
        ),
        (
            "where numeric >=, not string order",
            {"where": (parse_condition("duration_ms>=30"),)},
            lambda e: isinstance(e.get("duration_ms"), float) and e["duration_ms"] >= 30,
        ),
        (
            "where != and bool",
            {"where": (parse_condition("variant!=treatment"), parse_condition("cached=true"))},
            lambda e: e.get("variant") == "control" and e.get("cached") is True,
        ),
        (
            "where nested",
            {"where": (parse_condition("exception.type=KeyError"),)},
            lambda e: (e.get("exception") or {}).get("type") == "KeyError",
        ),
        (
            "where escaped value",
            {"where": (parse_condition('note=caf\u00e9 "quoted" \\ slash'),)},
            lambda e: "note" in e,
        ),
        (
            "combined",
            {"level": "info", "route": ROUTES[0], "event": "request_completed", "user_id": "u_0"},
            lambda e: (
                e["level"] in ("info", *levels)
                and e.get("route") == ROUTES[0]
                and e["event"] == "request_completed"
                and e.get("user_id") == "u_0"
            ),
        ),
    ]


def test_every_filter_matches_an_independent_reading_and_the_python_matcher(
    written: Written,
) -> None:
    for name, options, predicate in _cases(written):
        query = LogQuery(limit=10_000, **options)
        expected = [raw for raw, event in written.events() if predicate(event)]
        assert expected, f"{name}: the fixture has no such lines"
        found = _search(written.directory, limit=10_000, **options)
        assert sorted(found) == sorted(expected), name
        # `follow` filters in Python: it must agree with the SQL line for line.
        assert [raw for raw, event in written.events() if query.matches(event)] == expected, name


def test_limit_keeps_the_newest_matches_newest_last(written: Written) -> None:
    found = _search(written.directory, event="request_completed", limit=5)
    expected = [raw for raw, e in written.events() if e["event"] == "request_completed"][-5:]
    assert found == expected


def test_torn_and_garbage_lines_are_skipped_everywhere(written: Written) -> None:
    directory = written.directory
    before = _search(directory, request_id=TARGET)
    old = directory / "platform.20000101T000000.000000Z.log.gz"
    other = next(raw for raw in written.lines if TARGET not in raw)
    old.write_bytes(gzip.compress(b"garbage in a gzip\n" + other.encode() + b"\n\x00\x01\n"))
    with open(directory / "platform.log", "ab") as active:
        active.write(b"not json at all\n\xff\xfe\x00 binary\n[1, 2, 3]\n\n")
        active.write(f'{{"event":"no_timestamp","request_id":"{TARGET}"}}\n'.encode())
        torn = f'{{"timestamp":"2099-01-01T00:00:00.000000Z","request_id":"{TARGET}","lev'
        active.write(torn.encode())  # the writer died mid-line
    assert _search(directory, request_id=TARGET) == before
    everything = _search(directory, limit=1_000_000)
    assert len(everything) == len(written.lines) + 1  # + the valid line copied into the old gz


def test_a_rotation_in_progress_is_read_once_and_partial_gzips_never(written: Written) -> None:
    directory = written.directory
    rotated = next(p for p in log_files(directory) if p.name.endswith(".gz"))
    # Between the sink's os.replace(.partial -> .gz) and unlink(.log) both exist for a moment.
    plain = rotated.with_name(rotated.name.removesuffix(".gz"))
    plain.write_bytes(gzip.decompress(rotated.read_bytes()))
    shutil.copy(rotated, rotated.with_name(rotated.name + ".partial"))
    assert sorted(_search(directory, limit=1_000_000)) == sorted(written.lines)


def test_time_filters_skip_whole_rotated_files_without_losing_lines(written: Written) -> None:
    stamps = [json.loads(raw)["timestamp"] for raw in written.lines]
    recent = stamps[-3]
    found = _search(written.directory, since=parse_time(recent))
    assert found == written.lines[-3:]
    oldest = _search(written.directory, until=parse_time(stamps[2]))
    assert oldest == written.lines[:3]


def test_follow_sees_new_lines_across_rotations_without_gaps_or_repeats(tmp_path: Path) -> None:
    directory = tmp_path / "log"
    written = write_logs(directory, requests=3)
    sink = RotatingFileSink(directory, max_bytes=1500)
    pipeline = LogPipeline([sink], flush_interval=0.005)
    install(pipeline, capture_stdlib=False)
    log = get_logger("tests.follow")
    follower = LogSearch(directory).watch()
    files_before = len(log_files(directory))

    def produce() -> None:
        for n in range(60):
            log.info("tick", n=n)
            log.info("noise", n=n)
            pipeline.flush()

    producer = threading.Thread(target=produce)
    producer.start()
    got: list[int] = []
    try:
        for line in follower.lines(
            LogQuery(event="tick"),
            seconds=60,  # a bound only: the loop ends when all ticks arrived
            poll_interval=0.01,
            should_stop=lambda: len(got) >= 60,
        ):
            got.append(line.fields["n"])
    finally:
        follower.close()
        producer.join(30)
        observability.logging.reset()
    assert got == list(range(60))
    assert len(log_files(directory)) >= files_before + 3  # it really followed rotations
    assert written.lines  # the older lines were never replayed
    assert all(json.loads(raw)["event"] != "tick" for raw in written.lines)


def test_follower_waits_for_a_whole_line_and_drains_the_old_file_on_rotation(
    tmp_path: Path,
) -> None:
    active = tmp_path / "platform.log"
    line = '{{"timestamp":"2024-05-01T00:00:0{n}.000000Z","level":"info","event":"e{n}"}}\n'
    active.write_text(line.format(n=0))
    follower = Follower(tmp_path)
    try:
        assert follower.read_lines() == []  # starts at the end: old lines are the search's job
        with open(active, "a") as handle:
            handle.write(line.format(n=1)[:20])
            handle.flush()
            assert follower.read_lines() == []  # half a line is not a line yet
            handle.write(line.format(n=1)[20:] + line.format(n=2))
        assert follower.read_lines() == [line.format(n=1).strip(), line.format(n=2).strip()]
        with open(active, "a") as handle:
            handle.write(line.format(n=3))  # written just before the rotation
        os.replace(active, tmp_path / "platform.20240501T000003.000000Z.log")
        active.write_text(line.format(n=4))
        assert follower.read_lines() == [line.format(n=3).strip(), line.format(n=4).strip()]
        # Two rotations between polls, the middle file already gzipped: nothing is lost.
        with open(active, "a") as handle:
            handle.write(line.format(n=5))
        os.replace(active, tmp_path / "platform.20240501T000005.000000Z.log")
        middle = line.format(n=6) + line.format(n=7)
        (tmp_path / "platform.20240501T000007.000000Z.log.gz").write_bytes(
            gzip.compress(middle.encode())
        )
        active.write_text(line.format(n=8))
        assert follower.read_lines() == [line.format(n=n).strip() for n in (5, 6, 7, 8)]
        assert follower.read_lines() == []
    finally:
        follower.close()


def test_missing_directory_or_no_files_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NoLogsError, match="does not exist"):
        LogSearch(tmp_path / "nowhere").search(LogQuery())
    (tmp_path / "platform.20240501T000000.000000Z.log.gz.partial").write_bytes(b"")
    (tmp_path / "other.txt").write_text("hello")
    with pytest.raises(NoLogsError, match="no log files"):
        LogSearch(tmp_path).search(LogQuery())


@pytest.mark.parametrize("spec", ["novalue", "=x", "a..b=1", 'a"b=1', " "])
def test_bad_where_is_a_query_error(spec: str) -> None:
    with pytest.raises(QueryError, match="bad --where"):
        parse_condition(spec)


def test_bad_time_level_and_ranges_are_query_errors() -> None:
    with pytest.raises(QueryError, match="bad time"):
        parse_time("yesterday")
    with pytest.raises(QueryError, match="bad level"):
        LogQuery(level="loud")
    with pytest.raises(QueryError, match="later than"):
        LogQuery(since=parse_time("1h"), until=parse_time("2h"))


def test_times_parse_relative_iso_and_naive_as_utc() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_time("15m", now) == now - timedelta(minutes=15)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("1d", now) == now - timedelta(days=1)
    assert parse_time("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_time("2024-05-01T10:00:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert parse_time("2024-05-01T12:00:00+02:00") == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_user_input_never_becomes_sql(written: Written) -> None:
    hostile = "x') UNION SELECT 1, 2; DROP TABLE t; --"
    assert _search(written.directory, request_id=hostile) == []
    assert _search(written.directory, where=(parse_condition(f"route={hostile}"),)) == []
