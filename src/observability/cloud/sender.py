"""Sending journal records to CloudWatch Logs: routed lines, batches cut within the service's
limits, PutLogEvents with backoff until it succeeds (or the close deadline passes), log groups
and streams created on demand, refused events isolated and counted.

The shipper's loop (`observability.cloud.shipper`) decides what to send and when it is safe
to checkpoint; this module only knows how to send one batch and what happened.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from observability.cloud.events import (
    EDGE_MARGIN_MS,
    ERROR_LEVELS,
    EVENT_OVERHEAD_BYTES,
    LINES_GROUP,
    MAX_AGE_MS,
    MAX_BATCH_SPAN_MS,
    MAX_FUTURE_MS,
    RETRYABLE_CODES,
    RejectedCallback,
    ShipperConfig,
    iso_millis,
    truncate_message,
)
from observability.cloud.journal import JournalRecord, Position

__all__ = ["Batch", "LogSender", "Pacer", "SendCounts", "make_client"]


class Pacer(Protocol):
    """The loop's clock for a sender: has the close deadline passed; sleep until it does."""

    def expired(self) -> bool: ...

    def sleep(self, seconds: float) -> bool:
        """Sleep, cut short by the deadline; True if the deadline has passed."""
        ...


@dataclass
class Batch:
    group: str
    events: list[dict[str, Any]]
    last_position: Position
    last_start: Position | None = None  # where the stored record of the last event starts


def make_client(config: ShipperConfig) -> Any:
    # Imported here: an application shipping through the agent never loads boto3.
    import boto3
    from botocore.config import Config

    # botocore's own retries are off: this loop owns backoff, and must be able to stop at
    # the close() deadline instead of sleeping inside botocore.
    boto_config = Config(
        region_name=config.region,
        retries={"total_max_attempts": 1, "mode": "standard"},
        # The batches are built here within the API limits; botocore's per-event Python
        # validation measured ~2 us of the ~12 us each shipped event cost.
        parameter_validation=False,
        connect_timeout=config.connect_timeout_seconds,
        read_timeout=config.read_timeout_seconds,
        tcp_keepalive=True,
    )
    return boto3.session.Session().client(
        "logs", endpoint_url=config.endpoint_url, config=boto_config
    )


@dataclass(frozen=True)
class SendCounts:
    """Totals so far. `truncated`: lines cut where a stored batch of lines is split."""

    shipped: int
    retried_batches: int
    rejected: int
    clamped: int
    groups_created: int
    truncated: int
    dropped: dict[str, int]


class LogSender:
    """Sends batches for one log stream; thread-compatible (one shipper thread uses it), its
    counters are read from any thread through `counts()`."""

    def __init__(
        self,
        config: ShipperConfig,
        client: Any,
        pacer: Pacer,
        *,
        stream_name: str,
        clock: Callable[[], float] = time.time,
        on_rejected: RejectedCallback | None = None,
    ) -> None:
        self.config = config
        self.stream_name = stream_name
        self._client = client
        self._pacer = pacer
        self._clock = clock
        self._on_rejected = on_rejected
        self._stats_lock = threading.Lock()
        self._shipped = self._retried = self._rejected = 0
        self._clamped = self._groups_created = self._truncated = 0
        self._dropped: dict[str, int] = {}
        self.last_error: str | None = None
        self._ready: set[str] = set()
        self._retention_due: set[str] = set()

    def counts(self) -> SendCounts:
        with self._stats_lock:
            return SendCounts(
                shipped=self._shipped,
                retried_batches=self._retried,
                rejected=self._rejected,
                clamped=self._clamped,
                groups_created=self._groups_created,
                truncated=self._truncated,
                dropped=dict(self._dropped),
            )

    def _drop(self, reason: str, count: int) -> None:
        if count > 0:
            with self._stats_lock:
                self._dropped[reason] = self._dropped.get(reason, 0) + count

    def expand(self, record: JournalRecord) -> Sequence[JournalRecord]:
        """A batch of lines (`submit_lines`) becomes one event per line and group."""
        if record.group != LINES_GROUP:
            return (record,)
        out: list[JournalRecord] = []
        request_logger = self.config.request_logger
        limit = self.config.max_event_bytes
        truncated = 0
        for line in record.message.split("\n"):
            if not line:
                continue
            try:
                fields = orjson.loads(line)
            except orjson.JSONDecodeError:
                fields = None  # not one of ours: still shipped, as a service line
            if not isinstance(fields, dict):
                fields = {}
            data = line.encode("utf-8")
            if len(data) > limit:  # routed by the whole line, shipped cut (visibly)
                data = truncate_message(data, limit)
                line = data.decode("utf-8", "replace")
                truncated += 1
            ts = iso_millis(fields.get("timestamp"), record.timestamp_ms)
            group = "api" if fields.get("logger") == request_logger else "services"
            event = replace(
                record, group=group, timestamp_ms=ts, message=line, message_bytes=len(data)
            )
            out.append(event)
            if fields.get("level") in ERROR_LEVELS:
                out.append(replace(event, group="errors"))
        if truncated:
            with self._stats_lock:
                self._truncated += truncated
        return out

    def _timestamp(self, ts: int, now_ms: int) -> int | None:
        low = now_ms - MAX_AGE_MS + EDGE_MARGIN_MS
        high = now_ms + MAX_FUTURE_MS - EDGE_MARGIN_MS
        if low <= ts <= high:
            return ts
        reason = "too_old" if ts < low else "too_new"
        if self.config.out_of_range == "drop":
            self._drop(reason, 1)
            return None
        with self._stats_lock:
            self._clamped += 1
        return low if ts < low else high

    def build_batches(self, records: list[JournalRecord]) -> list[Batch]:
        """Per group, in journal order, cut batches at the count, byte and 24 h span limits."""
        now_ms = int(self._clock() * 1000)
        cfg = self.config
        open_batches: dict[str, Batch] = {}
        sizes: dict[str, tuple[int, int, int]] = {}  # bytes, min ts, max ts
        out: list[Batch] = []
        for record in records:
            ts = self._timestamp(record.timestamp_ms, now_ms)
            batch = open_batches.get(record.group)
            if ts is None:
                if batch is not None:
                    batch.last_position = record.next_position
                continue
            cost = record.message_bytes + EVENT_OVERHEAD_BYTES
            if batch is not None:
                used, low, high = sizes[record.group]
                if (
                    len(batch.events) >= cfg.max_batch_events
                    or used + cost > cfg.max_batch_bytes
                    or max(high, ts) - min(low, ts) > MAX_BATCH_SPAN_MS
                ):
                    if batch.last_start == record.position:
                        # One stored record (a batch of lines) continues in the next batch:
                        # this one's checkpoint must not claim that record done.
                        batch.last_position = record.position
                    out.append(batch)
                    batch = None
            if batch is None:
                batch = Batch(record.group, [], record.next_position)
                open_batches[record.group] = batch
                sizes[record.group] = (0, ts, ts)
            used, low, high = sizes[record.group]
            sizes[record.group] = (used + cost, min(low, ts), max(high, ts))
            batch.events.append({"timestamp": ts, "message": record.message})
            batch.last_position = record.next_position
            batch.last_start = record.position
        out.extend(batch for batch in open_batches.values() if batch.events)
        for batch in out:
            # Stable sort: equal timestamps keep journal order.
            batch.events.sort(key=lambda event: event["timestamp"])
        return out

    def send(self, batch: Batch) -> bool:
        """PutLogEvents until it succeeds; False only when the close deadline passes."""
        name = self.config.group_name(batch.group)
        attempt = 0
        missing_in_a_row = 0
        while True:
            if self._pacer.expired():
                return False
            stage = "setup"
            try:
                self._ensure_destination(batch.group)
                stage = "put"
                response = self._client.put_log_events(
                    logGroupName=name, logStreamName=self.stream_name, logEvents=batch.events
                )
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", "ClientError"))
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                self.last_error = code
                if code == "ResourceNotFoundException":
                    # The group or stream vanished (deleted, or a fresh endpoint): recreate both
                    # and resend at once; back off only if it keeps vanishing.
                    self._ready.discard(batch.group)
                    missing_in_a_row += 1
                    if missing_in_a_row == 1:
                        self._count_retry()
                        continue
                elif code == "DataAlreadyAcceptedException":
                    return self._accepted(batch, name, {})
                elif code == "InvalidParameterException" and status < 500 and stage == "put":
                    # Only the events can be at fault here (a bad group or stream name fails
                    # in setup, and is retried slowly below instead of dropping everything).
                    return self._split_or_drop(batch)
                elif code not in RETRYABLE_CODES and status < 500:
                    # Access denied, bad credentials...: not fixable here, but the journal keeps
                    # the events while an operator fixes it, so keep trying slowly.
                    attempt = max(attempt, 5)
            except BotoCoreError as exc:  # connection refused/reset, timeouts
                self.last_error = type(exc).__name__
            else:
                return self._accepted(batch, name, response)
            self._count_retry()
            delay = random.uniform(  # full jitter
                0,
                min(self.config.backoff_max_seconds, self.config.backoff_base_seconds * 2**attempt),
            )
            attempt += 1
            if self._pacer.sleep(delay):
                return False

    def _count_retry(self) -> None:
        with self._stats_lock:
            self._retried += 1

    def _accepted(self, batch: Batch, name: str, response: Mapping[str, Any]) -> bool:
        info = response.get("rejectedLogEventsInfo") or {}
        rejected = _rejected_count(info, len(batch.events))
        with self._stats_lock:
            self._shipped += len(batch.events) - rejected
            self._rejected += rejected
        if rejected and self._on_rejected is not None:
            try:
                self._on_rejected(name, rejected, dict(info))
            except Exception:  # a broken callback must not stop shipping
                self.last_error = "on_rejected callback failed"
        return True

    def _split_or_drop(self, batch: Batch) -> bool:
        """The service refused the batch as invalid: isolate the bad event(s) by halving."""
        if len(batch.events) == 1:
            self._drop("invalid", 1)
            return True
        middle = len(batch.events) // 2
        for part in (batch.events[:middle], batch.events[middle:]):
            half = Batch(batch.group, part, batch.last_position)
            if not self.send(half):
                return False
        return True

    def _ensure_destination(self, group: str) -> None:
        if group in self._ready:
            return
        client = self._client
        name = self.config.group_name(group)
        try:
            client.create_log_group(logGroupName=name)
            # Remembered until it succeeds: if PutRetentionPolicy fails, the retry finds the
            # group "already existing" and must still set the retention.
            self._retention_due.add(group)
            with self._stats_lock:
                self._groups_created += 1
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceAlreadyExistsException":
                pass
            elif not str(code).startswith("AccessDenied"):
                raise
            # AccessDenied: groups may be provisioned by CloudFormation; try the stream anyway.
        if group in self._retention_due:
            # Only a group we created gets our retention: never fight a provisioned setting.
            client.put_retention_policy(
                logGroupName=name, retentionInDays=self.config.retention_days[group]
            )
            self._retention_due.discard(group)
        try:
            client.create_log_stream(logGroupName=name, logStreamName=self.stream_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                raise
        self._ready.add(group)


def _rejected_count(info: Mapping[str, Any], total: int) -> int:
    """Events refused per rejectedLogEventsInfo (old/expired: end exclusive; new: start incl.)."""
    if not info:
        return 0
    too_old = max(
        int(info.get("tooOldLogEventEndIndex", 0)), int(info.get("expiredLogEventEndIndex", 0))
    )
    new_start = info.get("tooNewLogEventStartIndex")
    too_new = total - int(new_start) if new_start is not None else 0
    return max(0, min(total, too_old + too_new))
