"""The CloudWatch Logs shipper against a real moto server: delivery, limits, outages, crashes.

Figures (delivered, duplicates, drain time) are printed; run with `-s` to see them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from observability.cloud.agent import ShippingAgent
from observability.cloud.events import (
    DEFAULT_RETENTION_DAYS,
    EVENT_OVERHEAD_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    LogShipper,
    ShipperConfig,
)
from observability.cloud.journal import Journal, Position
from observability.cloud.shipper import CloudWatchShipper
from tests.integration.faulty_proxy import FaultyProxy
from tests.support.servers import AWS_TEST_ENV, MotoServer, free_port

pytestmark = pytest.mark.integration

DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000
GROUPS = ("api", "services", "errors")


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def prefix() -> str:
    """A unique group prefix, so tests can share the session moto without resetting it."""
    return f"/ep-test-{uuid.uuid4().hex[:8]}"


def logs_client(url: str) -> Any:
    return boto3.client("logs", endpoint_url=url, region_name="us-east-1")


def make_config(journal: Path, endpoint: str, prefix: str, **overrides: Any) -> ShipperConfig:
    options: dict[str, Any] = {
        "journal_dir": journal,
        "endpoint_url": endpoint,
        "group_prefix": prefix,
        "stream_name": "test-host/i-test/1",
        "batch_wait_seconds": 0.05,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 1.0,
        "connect_timeout_seconds": 1.0,
        "read_timeout_seconds": 10.0,
    }
    options.update(overrides)
    return ShipperConfig(**options)


# The platform ships from an agent process by default (EP_CLOUDWATCH_AGENT=true) or from a thread
# of the worker; the delivery and crash tests hold both to the same bar.
SHIPPERS = ("agent", "thread")


def start_shipper(kind: str, config: ShipperConfig) -> LogShipper:
    if kind == "agent":
        return ShippingAgent(config).start()
    return CloudWatchShipper(config).start()


def read_group(client: Any, group_name: str) -> list[dict[str, Any]]:
    """Every event of a log group, all streams, following nextToken to the end."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    for _page in range(1000):  # bounded: 1000 pages of 10,000 is far past any test
        kwargs: dict[str, Any] = {"logGroupName": group_name, "limit": 10_000}
        if token:
            kwargs["nextToken"] = token
        page = client.filter_log_events(**kwargs)
        events.extend(page["events"])
        token = page.get("nextToken")
        if not token:
            return events
    raise AssertionError("filter_log_events did not stop paging")


def retention_of(client: Any, prefix: str) -> dict[str, int | None]:
    groups = client.describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]
    return {g["logGroupName"]: g.get("retentionInDays") for g in groups}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def log_line(seq: int) -> str:
    return json.dumps(
        {
            "event": "request_completed",
            "level": "info",
            "seq": seq,
            "route": "/experiments/{key}",
            "status": 200,
            "duration_ms": 12.5,
            "request_id": f"req-{seq:08d}",
        }
    )


def seq_of(message: str) -> int:
    return int(json.loads(message)["seq"])


# -- the journal on its own ---------------------------------------------------------------


def test_journal_replays_everything_past_the_checkpoint_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=64 * 1024, segment_bytes=4 * 1024)
    journal.append([("api", i, f"m{i}".encode()) for i in range(300)])  # spans many segments
    first, end = journal.read(max_records=100, max_bytes=1 << 20)
    journal.commit(end)
    journal.close()

    reopened = Journal(tmp_path, max_bytes=64 * 1024, segment_bytes=4 * 1024)
    rest, _ = reopened.read(max_records=10_000, max_bytes=1 << 20)
    assert [r.message for r in first] == [f"m{i}" for i in range(100)]
    assert [r.message for r in rest] == [f"m{i}" for i in range(100, 300)]
    reopened.close()


def test_journal_over_its_cap_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=8 * 1024, segment_bytes=2 * 1024)
    for i in range(400):
        journal.append([("api", i, f"{i:04d}".encode() + b"x" * 40)])
    records, _ = journal.read(max_records=10_000, max_bytes=1 << 20)
    dropped = journal.dropped.get("journal_full", 0)
    assert dropped > 0
    assert len(records) + dropped == 400  # every event is either readable or counted
    assert [r.timestamp_ms for r in records] == list(range(dropped, 400))  # oldest went first
    assert journal.disk_bytes <= 8 * 1024
    journal.close()


def test_journal_survives_a_torn_tail(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=64 * 1024)
    journal.append([("api", i, b"intact") for i in range(10)])
    journal.close()
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    with segment.open("ab") as handle:
        handle.write(b"\x50\x00\x00\x00garbage")  # half a record, as after a power cut

    reopened = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=64 * 1024)
    reopened.append([("api", 99, b"after restart")])
    records, _ = reopened.read(max_records=100, max_bytes=1 << 20)
    assert [r.message for r in records] == ["intact"] * 10 + ["after restart"]
    assert reopened.dropped == {"corrupt": 1}
    reopened.close()


def test_journal_group_checkpoint_skips_only_what_was_shipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=64 * 1024)
    journal.append([(("api", "errors")[i % 2], i, f"m{i}".encode()) for i in range(10)])
    records, _ = journal.read(max_records=100, max_bytes=1 << 20)
    # The chunk's api batch went out, its errors batch did not; then the process died.
    last_api = [r for r in records if r.group == "api"][-1]
    journal.commit(records[0].position, {"api": last_api.next_position})
    journal.close()

    reopened = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=64 * 1024)
    replay, _ = reopened.read(max_records=100, max_bytes=1 << 20)
    assert [r.message for r in replay] == [f"m{i}" for i in range(1, 10, 2)]
    assert isinstance(replay[0].position, Position)
    reopened.close()


# -- delivery against moto ---------------------------------------------------------------


def test_delivers_to_three_groups_with_retention_and_recreates_a_deleted_group(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    client = logs_client(moto.url)
    shipper = CloudWatchShipper(make_config(tmp_path / "j", moto.url, prefix)).start()
    now = int(time.time() * 1000)
    shipper.submit("api", now, '{"event": "request_completed"}')
    shipper.submit("services", now, '{"event": "experiment_created"}')
    shipper.submit("errors", now, '{"event": "request_failed", "level": "error"}')
    shipper.submit("nonsense", now, "a logical group nobody configured")
    shipper.submit("api", "not a number", None)  # type: ignore[arg-type]  # never raises
    assert shipper.flush(20)

    retention = {
        g["logGroupName"]: g.get("retentionInDays")
        for g in client.describe_log_groups(logGroupNamePrefix=prefix)["logGroups"]
    }
    assert retention == {f"{prefix}/api": 30, f"{prefix}/services": 90, f"{prefix}/errors": 180}
    stream = client.get_log_events(
        logGroupName=f"{prefix}/errors", logStreamName="test-host/i-test/1", startFromHead=True
    )
    assert [e["message"] for e in stream["events"]] == [
        '{"event": "request_failed", "level": "error"}'
    ]

    # Someone deletes a group under a running shipper: it is recreated, retention included.
    client.delete_log_group(logGroupName=f"{prefix}/errors")
    shipper.submit("errors", now + 1, '{"event": "request_failed", "n": 2}')
    assert shipper.close(20)

    stats = shipper.stats()
    assert stats.shipped == 4
    assert stats.dropped == {"unknown_group": 1, "submit_error": 1}
    assert stats.groups_created == 4
    assert [e["message"] for e in read_group(client, f"{prefix}/errors")] == [
        '{"event": "request_failed", "n": 2}'
    ]
    recreated = client.describe_log_groups(logGroupNamePrefix=f"{prefix}/errors")["logGroups"]
    assert recreated[0]["retentionInDays"] == 180


def test_batches_stay_within_put_log_events_limits(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    rng = random.Random(3)
    now = int(time.time() * 1000)
    small = [("api", now + i % 1000, f"small {i}") for i in range(25_000)]
    big = [("services", now + i, f"big {i} " + "b" * 200_000) for i in range(12)]
    huge = [("services", now + 50, "h" * 600_000)]
    offsets = [-3 * DAY_MS, -2 * DAY_MS, -DAY_MS - 5, -HOUR_MS, 0, HOUR_MS]
    mixed = [("errors", now + rng.choice(offsets) + i, f"mixed {i}") for i in range(60)]
    out_of_range = [("errors", now - 20 * DAY_MS, "too old"), ("errors", now + 5 * HOUR_MS, "new")]

    with FaultyProxy(upstream_port=moto.port) as proxy:
        shipper = CloudWatchShipper(make_config(tmp_path / "j", proxy.url, prefix))
        shipper.submit_many(small + big + huge + mixed + out_of_range)
        shipper.start()
        assert shipper.close(60)

    stats = shipper.stats()
    assert (stats.truncated, stats.clamped, stats.dropped) == (1, 2, {})
    assert stats.shipped == len(small) + len(big) + len(huge) + len(mixed) + len(out_of_range)
    assert len(proxy.batches) >= 3 + 3 + 2  # count, byte and 24 h span cuts all happened
    for batch in proxy.batches:
        events = batch["logEvents"]
        stamps = [e["timestamp"] for e in events]
        assert len(events) <= MAX_BATCH_EVENTS
        assert sum(len(e["message"].encode()) + EVENT_OVERHEAD_BYTES for e in events) <= (
            MAX_BATCH_BYTES
        )
        assert stamps == sorted(stamps)
        assert stamps[-1] - stamps[0] <= DAY_MS
        assert all(len(e["message"].encode()) <= 256 * 1024 - 26 for e in events)

    client = logs_client(moto.url)
    services = [e["message"] for e in read_group(client, f"{prefix}/services")]
    truncated = [m for m in services if m.startswith("hhh")]
    assert len(services) == 13
    assert truncated[0].endswith("[truncated by shipper: original 600000 bytes]")
    assert len(read_group(client, f"{prefix}/api")) == 25_000
    errors = read_group(client, f"{prefix}/errors")
    assert len(errors) == 62
    clamped = {e["message"]: e["timestamp"] for e in errors if e["message"] in ("too old", "new")}
    assert now - 14 * DAY_MS < clamped["too old"] < now - 13 * DAY_MS
    assert now < clamped["new"] < now + 2 * HOUR_MS


def test_out_of_range_events_are_dropped_visibly_and_rejections_reported(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    real_now = int(time.time() * 1000)
    reports: list[tuple[str, int, Mapping[str, int]]] = []
    # The host clock runs a day behind: the shipper's own window check lets through events the
    # service then refuses as too old, which must come back as rejectedLogEventsInfo.
    shipper = CloudWatchShipper(
        make_config(tmp_path / "j", moto.url, prefix, out_of_range="drop"),
        on_rejected=lambda group, count, info: reports.append((group, count, info)),
        clock=lambda: time.time() - 86_400,
    ).start()
    shipper.submit_many(
        [("api", real_now - 14 * DAY_MS - HOUR_MS, f"refused {i}") for i in range(3)]
        + [("api", real_now - DAY_MS, f"fine {i}") for i in range(5)]
        + [("api", real_now - 20 * DAY_MS, "too old even for the skewed clock")]
        + [("api", real_now + 3 * HOUR_MS, "too new for the skewed clock")]
    )
    assert shipper.close(20)

    stats = shipper.stats()
    assert stats.dropped == {"too_old": 1, "too_new": 1}
    stored = [e["message"] for e in read_group(logs_client(moto.url), f"{prefix}/api")]
    assert sorted(stored) == [f"fine {i}" for i in range(5)]
    assert len(reports) == 1
    assert reports[0][0] == f"{prefix}/api"
    assert "tooOldLogEventEndIndex" in reports[0][2]
    # AWS documents tooOldLogEventEndIndex as exclusive; moto reports the last too-old index
    # (inclusive). The shipper follows AWS, so against moto it counts one fewer.
    assert stats.rejected == reports[0][1]
    assert stats.rejected in (2, 3)


def test_close_respects_its_deadline_and_the_next_start_replays(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    dead_endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    down = CloudWatchShipper(make_config(tmp_path / "j", dead_endpoint, prefix)).start()
    now = int(time.time() * 1000)
    down.submit_many([("services", now + i, log_line(i)) for i in range(500)])
    wait_until(lambda: down.stats().lag_seconds > 0.2, 10, "the shipping lag to show")
    started = time.monotonic()
    assert down.close(timeout=1.0) is False
    assert time.monotonic() - started < 5  # bounded by the deadline, not by the outage
    stats = down.stats()
    assert stats.shipped == 0
    assert stats.retried_batches > 0
    assert stats.spooled_bytes > 0

    up = CloudWatchShipper(make_config(tmp_path / "j", moto.url, prefix)).start()
    assert up.close(20)
    shipped = read_group(logs_client(moto.url), f"{prefix}/services")
    assert sorted(seq_of(e["message"]) for e in shipped) == list(range(500))


def test_a_failure_inside_the_shipper_thread_resumes_the_same_chunk(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    real = logs_client(moto.url)
    calls = {"put": 0}

    class FlakyClient:
        """The real client, except that the first PutLogEvents blows up like a bug would."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put_log_events(self, **kwargs: Any) -> Any:
            calls["put"] += 1
            if calls["put"] == 1:
                raise RuntimeError("unexpected")
            return real.put_log_events(**kwargs)

    config = make_config(tmp_path / "j", moto.url, prefix, backoff_max_seconds=0.2)
    shipper = CloudWatchShipper(config, client=FlakyClient()).start()
    now = int(time.time() * 1000)
    shipper.submit_many([("api", now, log_line(i)) for i in range(100)])
    assert shipper.close(20)
    assert shipper.stats().last_error == "RuntimeError"
    shipped = read_group(real, f"{prefix}/api")
    assert sorted(seq_of(e["message"]) for e in shipped) == list(range(100))


def test_an_event_the_service_calls_invalid_is_isolated_and_counted(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    real = logs_client(moto.url)

    class PickyClient:
        """The real client, except that PutLogEvents refuses any batch holding "poison"."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put_log_events(self, **kwargs: Any) -> Any:
            if any(e["message"] == "poison" for e in kwargs["logEvents"]):
                error = {"Code": "InvalidParameterException", "Message": "bad event"}
                meta = {"HTTPStatusCode": 400}
                raise ClientError({"Error": error, "ResponseMetadata": meta}, "PutLogEvents")
            return real.put_log_events(**kwargs)

    shipper = CloudWatchShipper(
        make_config(tmp_path / "j", moto.url, prefix), client=PickyClient()
    ).start()
    now = int(time.time() * 1000)
    shipper.submit_many([("api", now, "poison" if i == 37 else log_line(i)) for i in range(100)])
    assert shipper.close(20)
    assert shipper.stats().dropped == {"invalid": 1}
    shipped = read_group(real, f"{prefix}/api")
    assert sorted(seq_of(e["message"]) for e in shipped) == [i for i in range(100) if i != 37]


# -- nothing lost: outages, throttling, a moto restart -----------------------------------


@pytest.fixture
def own_moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", SHIPPERS)
def test_fifty_thousand_events_survive_outages_throttling_and_a_moto_restart(
    own_moto: MotoServer, tmp_path: Path, kind: str
) -> None:
    """Every one of 50,000 events reaches CloudWatch; duplicates are counted.

    How "nothing lost" is proven: moto forgets every group and event when it restarts, so
    reading moto at the end cannot account for what was delivered before the restart. The
    faulty proxy therefore keeps a ledger of every event inside a PutLogEvents that moto
    answered 200 to, tagged with the moto incarnation ("generation"). Then:
      1. every one of the 50,000 sequence numbers is in the ledger (delivered), and
         ledger size minus distinct numbers is the duplicate count;
      2. the ledger's entries for the current incarnation equal, as a multiset, what moto
         returns from filter_log_events, which shows the ledger records real storage and
         not just traffic, so its entries for the lost incarnation are trustworthy too.
    Outage 1 (20 s) is the endpoint refusing connections (the proxy's listener closed);
    outage 2 is moto itself stopped and restarted empty (exercises group recreation).
    """
    total = 50_000
    prefix = "/experimentation-platform"
    expected_retention = {f"{prefix}/{g}": d for g, d in DEFAULT_RETENTION_DAYS.items()}
    proxy = FaultyProxy(upstream_port=own_moto.port).start()
    shipper = start_shipper(
        kind, make_config(tmp_path / "journal", proxy.url, prefix, stream_name="host-a/i-1/4242")
    )
    seq = 0

    def submit(count: int) -> None:
        nonlocal seq
        now = int(time.time() * 1000)
        shipper.submit_many(
            (GROUPS[0 if n % 10 < 6 else 1 if n % 10 < 9 else 2], now, log_line(n))
            for n in range(seq, seq + count)
        )
        seq += count

    try:
        submit(5_000)
        wait_until(lambda: proxy.accepted_count() > 0, 20, "first delivery")

        proxy.stop()  # outage 1: connection refused for 20 s, events keep coming
        for _second in range(20):
            submit(1_000)
            time.sleep(1.0)
        proxy.start()
        wait_until(lambda: proxy.count("forwarded_200") > 6, 20, "recovery after outage 1")

        proxy.mode = "throttle"  # 400 ThrottlingException for every request, 3 s
        for _tick in range(6):
            submit(1_000)
            time.sleep(0.5)
        proxy.mode, proxy.fail_ratio = "unavailable", 0.5  # then half the requests get 503s
        for _tick in range(4):
            submit(1_000)
            time.sleep(0.5)
        proxy.mode, proxy.fail_ratio = "pass", 1.0
        # Groups created while requests were failing still got their retention.
        wait_until(
            lambda: retention_of(logs_client(own_moto.url), prefix) == expected_retention,
            20,
            "all three groups with their retention",
        )

        own_moto.stop()  # outage 2: moto gone; it comes back empty on the same port
        proxy.generation = 1
        submit(total - seq - 5_000)
        time.sleep(2.0)
        before_restart = shipper.stats()
        restarted = time.monotonic()
        own_moto.start()
        submit(5_000)
        assert seq == total
        assert shipper.close(timeout=60)
        drain_seconds = time.monotonic() - restarted
    finally:
        proxy.stop()

    stats = shipper.stats()
    ledger = Counter(seq_of(event.message) for event in proxy.accepted)
    duplicates = sum(ledger.values()) - len(ledger)
    print(
        f"\n[cloudwatch shipper, {kind}] delivered {len(ledger)}/{total} distinct, "
        f"{duplicates} duplicates; backlog when moto came back: "
        f"{before_restart.submitted - before_restart.shipped} events "
        f"({before_restart.spooled_bytes} bytes, lag {before_restart.lag_seconds:.1f}s), "
        f"drained {drain_seconds:.1f}s later; "
        f"proxy outcomes {dict(proxy.outcomes)}; stats {stats}"
    )
    assert set(ledger) == set(range(total))  # every event delivered
    assert duplicates == 0  # no crash happened, so no duplicate is excused
    assert proxy.count("rejected_batches") == 0
    assert proxy.count("throttle") > 0
    assert proxy.count("unavailable") > 0
    assert proxy.count("upstream_down") > 0

    client = logs_client(own_moto.url)
    in_moto = Counter()
    for group in GROUPS:
        in_moto.update(e["message"] for e in read_group(client, f"{prefix}/{group}"))
    ledger_now = Counter(e.message for e in proxy.accepted if e.generation == 1)
    assert in_moto == ledger_now
    assert len(in_moto) > 0
    assert retention_of(client, prefix) == expected_retention
    assert stats.submitted == total
    assert stats.shipped == total + duplicates
    assert stats.dropped == {}
    assert stats.retried_batches > 0
    assert stats.groups_created == 6  # three at start, three again after the restart


# -- nothing lost: SIGKILL mid-stream -----------------------------------------------------

# Lines per stored record in "+lines" mode: not a divisor of what fills a batch, so batches get
# cut inside a record (a record whose lines span two PutLogEvents calls).
LINES_PER_RECORD = 199
CHILD = """
import dataclasses, json, sys, time
from pathlib import Path
from observability.cloud.agent import ShippingAgent
from observability.cloud.events import ShipperConfig
from observability.cloud.shipper import CloudWatchShipper

journal, endpoint, prefix, stream, mode, kind = sys.argv[1:7]
config = ShipperConfig(
    journal_dir=Path(journal), endpoint_url=endpoint, group_prefix=prefix, stream_name=stream,
    batch_wait_seconds=0.02, backoff_base_seconds=0.05, backoff_max_seconds=0.5,
)
shipper = (ShippingAgent if kind.startswith("agent") else CloudWatchShipper)(config).start()
if mode == "produce":
    seq = 0
    while seq < 2_000_000:
        now = int(time.time() * 1000)
        if kind.endswith("+lines"):  # the platform's way: rendered lines, routed by the reader
            shipper.submit_lines(
                "".join(
                    json.dumps({"seq": n, "logger": "observability.request" if n % 3 else "app"})
                    + "\\n"
                    for n in range(seq, seq + LINES_PER_RECORD)
                ).encode(),
                LINES_PER_RECORD,
            )
            seq += LINES_PER_RECORD
            print(seq, flush=True)  # submit_lines returned: these are in the journal
            time.sleep(0.002)
            continue
        shipper.submit_many(
            ("api" if n % 3 else "services", now, json.dumps({"seq": n}))
            for n in range(seq, seq + 200)
        )
        seq += 200
        print(seq, flush=True)  # submit_many returned: these are in the journal
        time.sleep(0.002)
else:
    done = shipper.close(timeout=30)
    print(json.dumps({"done": done, "stats": dataclasses.asdict(shipper.stats())}), flush=True)
""".replace("LINES_PER_RECORD", str(LINES_PER_RECORD))


@contextlib.contextmanager
def child(tmp_path: Path, name: str, args: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A child shipper process writing its stdout to tmp_path/name.log; killed on exit."""
    env = {**os.environ, **AWS_TEST_ENV}
    with (tmp_path / f"{name}.log").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", CHILD, *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def last_line(path: Path) -> str:
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    complete = [line.strip() for line in lines if line.endswith("\n") and line.strip()]
    return complete[-1] if complete else ""


@pytest.mark.slow
@pytest.mark.parametrize("kind", [*SHIPPERS, "agent+lines"])
def test_sigkill_mid_stream_loses_nothing_the_next_process_replays(
    moto: MotoServer, prefix: str, tmp_path: Path, kind: str
) -> None:
    """SIGKILL to the whole process group (the application and, in agent mode, its agent) while
    a PutLogEvents is on its way: the proxy still delivers it to moto, which stores it, but the
    dead process never writes its checkpoint. docs/cloudwatch.md: at most that one batch is
    sent again."""
    journal = str(tmp_path / "journal")
    progress = tmp_path / "first.log"
    with FaultyProxy(upstream_port=moto.port, delay=0.05) as proxy:  # slow shipping: a backlog
        args = [journal, proxy.url, prefix, "host/i-1/1", "produce", kind]
        with child(tmp_path, "first", args) as first:
            wait_until(
                lambda: (
                    last_line(progress).isdigit()
                    and int(last_line(progress)) >= 20_000
                    and proxy.accepted_count() > 0
                    and proxy.puts_in_flight > 0
                ),
                30,
                "the child to submit 20,000 events, ship some and send another batch",
            )
            os.killpg(first.pid, signal.SIGKILL)  # mid-submit and mid-ship
            first.wait(timeout=10)
        submitted = int(last_line(progress))
        wait_until(lambda: proxy.puts_in_flight == 0, 10, "the batch in flight to reach moto")
    first_ledger = list(proxy.accepted)
    in_flight = max(e.batch for e in first_ledger)  # stored after the process died
    in_flight_seqs = {seq_of(e.message) for e in first_ledger if e.batch == in_flight}

    args = [journal, moto.url, prefix, "host/i-1/2", "drain", kind]
    with child(tmp_path, "second", args) as second:
        second.wait(timeout=60)
    result = json.loads(last_line(tmp_path / "second.log"))
    assert result["done"] is True

    client = logs_client(moto.url)
    seen = Counter(
        seq_of(e["message"])
        for group in ("api", "services")
        for e in read_group(client, f"{prefix}/{group}")
    )
    twice = {seq for seq, count in seen.items() if count > 1}
    missing = set(range(submitted)) - set(seen)
    print(
        f"\n[cloudwatch shipper crash, {kind}] child reported {submitted} submitted, "
        f"{len(first_ledger)} stored before the replay ({len(in_flight_seqs)} of them in the "
        f"batch in flight at SIGKILL); replay shipped {result['stats']['shipped']}; in "
        f"CloudWatch {len(seen)} distinct, {len(twice)} duplicates "
        f"({len(twice - in_flight_seqs)} outside the batch in flight), {len(missing)} missing"
    )
    assert not missing
    assert len(first_ledger) < submitted  # the kill really left a backlog to replay
    assert result["stats"]["shipped"] > 0
    # The batch in flight at the kill is stored twice: never checkpointed, replayed whole.
    # Nothing three times. With submit_many (one event per stored record) nothing else; with
    # submit_lines, also the lines of the one stored record whose lines the previous call cut
    # (its group's checkpoint stops before that record, so the record is shipped again whole).
    assert set(seen.values()) <= {1, 2}
    assert in_flight_seqs <= twice
    extra = twice - in_flight_seqs
    if kind.endswith("+lines"):
        assert len({seq // LINES_PER_RECORD for seq in extra}) <= 1, sorted(extra)
    else:
        assert not extra, sorted(extra)
    assert max(seen) < submitted + 200 * 50  # nothing invented


@pytest.mark.parametrize("kind", SHIPPERS)
def test_an_answer_lost_after_cloudwatch_stored_the_batch_stores_it_once_more(
    moto: MotoServer, prefix: str, tmp_path: Path, kind: str
) -> None:
    """The fault that fails *after* the service did its work: moto stores the batch, the
    answer never arrives (the proxy closes the connection). PutLogEvents has no idempotency
    key, so the retry stores the batch again: docs/cloudwatch.md says each lost answer costs
    exactly one duplicate of that batch, and nothing is lost."""
    with FaultyProxy(upstream_port=moto.port) as proxy:
        proxy.lose_put_responses = 3  # consecutive: a retry's answer can be lost again
        shipper = start_shipper(kind, make_config(tmp_path / "journal", proxy.url, prefix))
        try:
            submit_range(shipper, 0, 3_000)
            assert shipper.flush(60)
            retried = shipper.stats().retried_batches
        finally:
            assert shipper.close(10)
    assert len(proxy.lost_batches) == 3
    assert proxy.count("response_lost") == 3
    lost_copies = Counter(
        seq_of(e.message) for e in proxy.accepted if e.batch in proxy.lost_batches
    )
    seen = stored_seqs(logs_client(moto.url), prefix)
    assert set(seen) == set(range(3_000))
    # Every event is stored once, plus once per lost answer of a call that carried it.
    assert {seq: count - 1 for seq, count in seen.items() if count > 1} == dict(lost_copies)
    assert retried >= 3
    print(
        f"\n[cloudwatch lost answers, {kind}] 3 answers lost: "
        f"{sum(seen.values()) - len(seen)} duplicate events, all from those calls"
    )


# -- the shipping agent: a process of its own --------------------------------------------------


def agent_pid(journal: Path) -> int:
    stats = json.loads((journal / "agent-stats.json").read_text())
    return int(stats["pid"])


def stored_seqs(client: Any, prefix: str) -> Counter[int]:
    return Counter(
        seq_of(e["message"]) for group in GROUPS for e in read_group(client, f"{prefix}/{group}")
    )


def submit_range(shipper: LogShipper, start: int, count: int) -> None:
    now = int(time.time() * 1000)
    shipper.submit_many((GROUPS[n % 3], now, log_line(n)) for n in range(start, start + count))


def test_a_killed_agent_is_restarted_and_loses_nothing(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    agent = ShippingAgent(make_config(journal, moto.url, prefix)).start()
    try:
        submit_range(agent, 0, 3_000)
        assert agent.flush(30)
        first = agent_pid(journal)
        os.kill(first, signal.SIGKILL)
        submit_range(agent, 3_000, 3_000)  # written while no agent runs
        wait_until(
            lambda: (journal / "agent-stats.json").exists() and agent_pid(journal) != first,
            30,
            "a new agent",
        )
        assert agent.flush(30)
        assert "restarted" in (agent.stats().last_error or "")
    finally:
        assert agent.close(10)
    seen = stored_seqs(logs_client(moto.url), prefix)
    assert set(seen) == set(range(6_000))
    assert sum(seen.values()) - len(seen) <= MAX_BATCH_EVENTS  # only an in-flight batch twice
    assert agent.stats().submitted == 6_000


def test_an_unreachable_endpoint_spools_reports_lag_and_delivers_after(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    with FaultyProxy(upstream_port=moto.port) as proxy:
        agent = ShippingAgent(make_config(tmp_path / "journal", proxy.url, prefix)).start()
        try:
            submit_range(agent, 0, 100)
            assert agent.flush(30)
            proxy.stop()  # connections refused from here on
            submit_range(agent, 100, 100)
            wait_until(lambda: agent.stats().lag_seconds >= 2.0, 20, "lag to grow")
            during = agent.stats()
            assert during.spooled_bytes > 0
            assert during.last_error == "EndpointConnectionError"
            assert not agent.flush(0.5)
            proxy.start()  # the same port again
            assert agent.flush(30)
            assert agent.stats().lag_seconds < 2.0
        finally:
            assert agent.close(10)
    assert set(stored_seqs(logs_client(moto.url), prefix)) == set(range(200))


CRASHING_APP = """
import sys, time
from pathlib import Path
from observability.cloud.agent import ShippingAgent
from observability.cloud.events import ShipperConfig

journal, endpoint, prefix = sys.argv[1:4]
agent = ShippingAgent(ShipperConfig(journal_dir=Path(journal), endpoint_url=endpoint,
    group_prefix=prefix, stream_name="host/i-1/9", batch_wait_seconds=0.05)).start()
now = int(time.time() * 1000)
agent.submit_many(("api", now, '{"seq": %d}' % n) for n in range(5000))
print("submitted", flush=True)
time.sleep(60)
"""


def test_when_the_application_is_killed_its_agent_ships_the_rest_and_exits(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    with (
        FaultyProxy(upstream_port=moto.port, delay=0.3) as proxy,  # slow: a backlog at the kill
        subprocess.Popen(
            [sys.executable, "-c", CRASHING_APP, str(journal), proxy.url, prefix],
            env={**os.environ, **AWS_TEST_ENV},
            stdout=subprocess.PIPE,
        ) as app,
    ):
        try:
            assert app.stdout is not None
            assert app.stdout.readline().strip() == b"submitted"
            wait_until(lambda: (journal / "agent-stats.json").exists(), 30, "the agent")
            pid = agent_pid(journal)
            app.kill()  # the application alone: its agent lives on
            app.wait(10)
            wait_until(lambda: not _alive(pid), 60, "the orphaned agent to drain and exit")
        finally:
            if app.poll() is None:
                app.kill()
    seen = Counter(seq_of(e["message"]) for e in read_group(logs_client(moto.url), f"{prefix}/api"))
    assert set(seen) == set(range(5_000))
    assert sum(seen.values()) == 5_000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by its dead parent yet) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return False


def test_the_journal_cap_holds_with_the_reader_in_another_process(
    prefix: str, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: everything stays spooled
    config = make_config(
        tmp_path / "journal", dead, prefix, max_journal_bytes=2 << 20, segment_bytes=256 << 10
    )
    agent = ShippingAgent(config).start()
    try:
        for start in range(0, 40_000, 1_000):
            submit_range(agent, start, 1_000)
        stats = agent.stats()
        on_disk = sum(p.stat().st_size for p in (tmp_path / "journal").glob("*.seg"))
        assert on_disk <= (2 << 20) + (256 << 10)  # the cap, plus the live segment's last write
        assert stats.dropped.get("journal_full", 0) > 0
        assert stats.submitted == 40_000
    finally:
        assert not agent.close(1)  # nothing could be shipped


# -- batches of rendered lines (submit_lines: what the platform's log sink sends) ------------


def rendered(n: int, logger: str, level: str, stamp: str, pad: int = 0) -> str:
    fields = {"timestamp": stamp, "level": level, "logger": logger, "event": "e", "seq": n}
    if pad:
        fields["pad"] = "x" * pad
    return json.dumps(fields)


@pytest.mark.parametrize("kind", SHIPPERS)
def test_lines_are_routed_to_their_groups_with_their_own_timestamps(
    moto: MotoServer, prefix: str, tmp_path: Path, kind: str
) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 60))
    lines = [
        rendered(0, "observability.request", "info", f"{stamp}.123456Z"),
        rendered(1, "experimentation_platform.api", "info", f"{stamp}.500000Z"),
        rendered(2, "observability.request", "error", f"{stamp}.900001Z"),  # api and errors
        rendered(3, "experimentation_platform.api", "critical", f"{stamp}.000000Z"),
        "not json at all",  # still shipped, to services
        rendered(5, "experimentation_platform.api", "info", f"{stamp}.250000Z", pad=5_000),
    ]
    config = make_config(tmp_path / "j", moto.url, prefix, max_event_bytes=2_048)
    shipper = start_shipper(kind, config)
    shipper.submit_lines("".join(line + "\n" for line in lines).encode(), len(lines) + 2)
    assert shipper.close(20)
    client = logs_client(moto.url)
    stored = {g: read_group(client, f"{prefix}/{g}") for g in GROUPS}
    messages = {g: [e["message"] for e in events] for g, events in stored.items()}
    assert messages["api"] == [lines[0], lines[2]]
    assert messages["errors"] == [lines[3], lines[2]]  # sorted by time: .000 before .900
    # By time: .000, .250 (cut to the limit, visibly), .500, then the non-JSON line, which
    # has no timestamp of its own and takes the time it was written.
    services = messages["services"]
    assert len(services) == 4
    assert [services[0], services[2], services[3]] == [lines[3], lines[1], lines[4]]
    assert len(services[1].encode()) <= 2_048
    assert services[1].startswith(lines[5][:100])
    assert services[1] != lines[5]
    expected_ms = {0: ".123", 2: ".900"}
    base = epoch_ms(f"{stamp}.000000Z")
    for event in stored["api"]:
        assert event["timestamp"] == base + int(expected_ms[seq_of(event["message"])][1:])
    stats = shipper.stats()
    assert stats.submitted == 8
    assert stats.shipped == 8
    assert stats.truncated == 1


def epoch_ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def test_a_batch_of_lines_cut_across_put_log_events_calls_is_not_checkpointed_early(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    """25 lines in one stored record, 10 events per PutLogEvents: the first two calls must
    leave the record's group checkpoint before the record (a crash re-sends, never skips)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    config = make_config(tmp_path / "j", moto.url, prefix, max_batch_events=10)
    shipper = CloudWatchShipper(config)  # not started: batches are built by hand here
    try:
        data = "".join(
            rendered(n, "observability.request", "info", stamp) + "\n" for n in range(25)
        )
        shipper.submit_lines(data.encode(), 25)
        records, _end = shipper.shipper.journal.read(max_records=100, max_bytes=1 << 20)
        batches = shipper.shipper.sender.build_batches(records)
        assert [len(b.events) for b in batches] == [10, 10, 5]
        start = records[0].position
        assert [b.last_position for b in batches] == [start, start, records[0].next_position]
    finally:
        shipper.close(0)
    shipper = CloudWatchShipper(config).start()  # the same journal, shipped for real
    assert shipper.close(20)
    api = read_group(logs_client(moto.url), f"{prefix}/api")
    assert [seq_of(e["message"]) for e in api] == list(range(25))


def test_counters_of_another_agent_on_the_same_journal_are_not_ours(
    moto: MotoServer, prefix: str, tmp_path: Path
) -> None:
    """A previous worker's agent may still be draining the journal this worker took over; its
    reports land in the same agent-stats.json and must not be read as this agent's."""
    journal = tmp_path / "journal"
    agent = ShippingAgent(make_config(journal, moto.url, prefix)).start()
    try:
        submit_range(agent, 0, 10)
        assert agent.flush(30)
        assert agent.stats().shipped == 10
        stranger = {"pid": 1, "shipped": 999_999, "dropped": {}, "written_at": time.time()}
        (journal / "agent-stats.json").write_text(json.dumps(stranger))
        # Ours is 0 until our agent reports again (every 0.5 s), then 10; never the stranger's.
        assert agent.stats().shipped in (0, 10)
        wait_until(lambda: agent.stats().shipped == 10, 10, "our agent's next report")
    finally:
        agent.close(10)
