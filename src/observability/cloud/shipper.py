"""Ship structured log lines to CloudWatch Logs without losing them.

Why not watchtower: measured against moto, watchtower 3.4 delivered 586-1,287 of 2,000 events
through a 3 s outage (no backoff, no spool, never recreates a vanished group) and drops records
logged while it creates a stream. See docs/cloudwatch.md, "Shipping".

Flow::

    submit()/submit_many()  -- any thread: validate, truncate, os.write into the journal
            |
        Journal (disk)      -- append-only segments, size-capped, checkpointed
            |
    shipper thread          -- read a chunk, split per log group into PutLogEvents batches
            |                  within the API limits, send with backoff, checkpoint each success
        CloudWatch Logs

The shipper never logs through `logging`/structlog: it is itself a log sink, so reporting its
own trouble there could feed back into it. Trouble goes to `stats()` and the callbacks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from observability.cloud.events import (
    Event,
    RejectedCallback,
    ShipperConfig,
    ShipperStats,
    default_stream_name,
)
from observability.cloud.journal import Journal, Position
from observability.cloud.producer import JournalProducer
from observability.cloud.sender import Batch, LogSender, make_client

__all__ = ["CloudWatchShipper", "JournalShipper"]

CLOSE_GRACE_SECONDS = 0.5


@dataclass
class _Chunk:
    start: Position
    end: Position
    batches: list[Batch]
    sent: int = 0
    done_groups: dict[str, Position] = field(default_factory=dict)


class JournalShipper:
    """The reader side: a background thread that drains a disk journal into CloudWatch Logs.

    `journal_role="reader"`: another process appends (the agent's application, see
    `observability.cloud.agent`); "both": an in-process producer shares the journal
    (`CloudWatchShipper`). `close(timeout)` ships within the deadline; whatever is left stays in
    the journal and is replayed on the next start.
    """

    def __init__(
        self,
        config: ShipperConfig,
        *,
        client: Any | None = None,
        on_rejected: RejectedCallback | None = None,
        clock: Callable[[], float] = time.time,
        journal_role: Literal["both", "reader"] = "reader",
    ) -> None:
        config.validate()
        self.config = config
        self._clock = clock
        self.sender = LogSender(
            config,
            client if client is not None else make_client(config),
            self,
            stream_name=config.stream_name or default_stream_name(config.instance_id),
            clock=clock,
            on_rejected=on_rejected,
        )
        # The journal routes a stored batch of lines through the sender's reading of them.
        self.journal = Journal(
            config.journal_dir,
            max_bytes=config.max_journal_bytes,
            segment_bytes=config.segment_bytes,
            clock=clock,
            role=journal_role,
            expand=self.sender.expand,
        )
        self._oldest_pending_ms: int | None = None
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._sleeper = threading.Condition()
        self._inflight = False
        self._last_committed: Position | None = None
        self._chunk: _Chunk | None = None
        self._drained = False
        self._closing = False
        self._closed = False
        self._deadline = float("inf")
        self._progress_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="cloudwatch-shipper", daemon=True)

    @property
    def stream_name(self) -> str:
        return self.sender.stream_name

    def start(self) -> JournalShipper:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Events just landed in the journal."""
        self._wake.set()

    # -- the pacer of the sender ---------------------------------------------------------

    def expired(self) -> bool:
        return self._closing and time.monotonic() >= self._deadline

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far is shipped; False if the timeout passed."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while True:
                if self._is_drained():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return self._is_drained()
                self._idle.wait(min(remaining, 0.5))

    def close(self, timeout: float = 10.0) -> bool:
        """Ship what is left within `timeout` seconds; True if nothing was left behind."""
        if self._closed:
            return self._drained
        self._deadline = time.monotonic() + timeout
        self._closing = True
        self._wake.set()
        with self._sleeper:
            self._sleeper.notify_all()  # a backoff sleep now ends at the deadline at the latest
        if self._thread.is_alive():
            # The thread stops itself at the deadline; the grace lets it get there. Only an
            # HTTP request already in flight (bounded by read_timeout) can hold it longer.
            self._thread.join(timeout + CLOSE_GRACE_SECONDS)
        done = not self._thread.is_alive() and self._is_drained()
        self._drained = done
        self._closed = True
        if not self._thread.is_alive():
            self.journal.close()
        return done

    def _is_drained(self) -> bool:
        # Order matters: the thread marks itself in flight *before* it moves the read cursor.
        return not self.journal.has_unread() and not self._inflight

    def stats(self) -> ShipperStats:
        """What this side did: shipped, retried, refused, dropped (nothing submitted: the
        producer counts that)."""
        return self.snapshot(submitted=0, truncated=0, dropped={})

    def snapshot(
        self, *, submitted: int, truncated: int, dropped: Mapping[str, int]
    ) -> ShipperStats:
        """This side's counts plus a producer's (`submitted`, `truncated`, `dropped`)."""
        sent = self.sender.counts()
        oldest = self._oldest_pending_ms
        lag = max(0.0, self._clock() - oldest / 1000.0) if oldest is not None else 0.0
        all_dropped = dict(dropped)
        for source in (sent.dropped, self.journal.dropped_snapshot()):
            for reason, count in source.items():
                all_dropped[reason] = all_dropped.get(reason, 0) + count
        return ShipperStats(
            submitted=submitted,
            shipped=sent.shipped,
            retried_batches=sent.retried_batches,
            spooled_bytes=self.journal.pending_bytes,
            dropped=all_dropped,
            rejected=sent.rejected,
            truncated=truncated + sent.truncated,
            clamped=sent.clamped,
            groups_created=sent.groups_created,
            lag_seconds=lag,
            last_error=self.sender.last_error,
        )

    # -- shipper thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                if not self._cycle():
                    return
            except Exception as exc:  # the thread must survive its own bugs
                self.sender.last_error = type(exc).__name__
                if self.sleep(self.config.backoff_max_seconds):
                    return

    def _cycle(self) -> bool:
        """Ship one chunk; False when the thread should stop.

        The chunk lives on `self._chunk` until its last checkpoint is written, so an exception
        half-way (disk full while checkpointing, a bug) resumes it instead of skipping it.
        """
        if self._chunk is None:
            self._wake.clear()
            self._inflight = True
            records, end = self.journal.read(
                max_records=4 * self.config.max_batch_events,
                max_bytes=4 * self.config.max_batch_bytes,
            )
            if not records:
                return self._idle_cycle(end)
            self._oldest_pending_ms = min(r.appended_at_ms for r in records)
            self._chunk = _Chunk(records[0].position, end, self.sender.build_batches(records))
        chunk = self._chunk
        while chunk.sent < len(chunk.batches):
            batch = chunk.batches[chunk.sent]
            if not self.sender.send(batch):
                return False  # close deadline passed; the journal replays the rest later
            chunk.sent += 1
            if chunk.sent < len(chunk.batches):
                # Checkpoint after every successful PutLogEvents, so a crash re-sends at most
                # the one batch that was in flight.
                chunk.done_groups[batch.group] = batch.last_position
                self._commit(chunk.start, chunk.done_groups)
        self._commit(chunk.end)
        self._chunk = None
        self._oldest_pending_ms = None
        self._inflight = False
        return True

    def _idle_cycle(self, end: Position) -> bool:
        if end != self._last_committed:
            self._commit(end)  # skipped or corrupt records still move the checkpoint
        self._inflight = False
        with self._idle:
            self._idle.notify_all()
        if self._closing:
            # Events may have landed between the read and now: go round once more.
            return self.journal.has_unread() and time.monotonic() < self._deadline
        self._wake.wait(1.0)
        if not self._closing and self.config.batch_wait_seconds > 0:
            # Let a burst build up into fewer, fuller batches.
            self.sleep(self.config.batch_wait_seconds)
        return True

    def _commit(self, start: Position, groups: Mapping[str, Position] | None = None) -> None:
        self.journal.commit(start, groups)
        self._progress_at = time.monotonic()
        if not groups:
            self._last_committed = start

    def backlog(self) -> tuple[bool, float]:
        """(events waiting to be shipped?, monotonic time of the last checkpoint written)."""
        return (self._inflight or self.journal.has_unread()), self._progress_at

    def sleep(self, seconds: float) -> bool:
        """Sleep, cut short by the close deadline; True if the deadline has passed."""
        until = time.monotonic() + seconds
        with self._sleeper:
            while True:
                now = time.monotonic()
                stop = min(until, self._deadline)
                if now >= stop:
                    break
                self._sleeper.wait(stop - now)
        return time.monotonic() >= self._deadline


class CloudWatchShipper:
    """Shipping from a thread of the application: a `JournalProducer` and a `JournalShipper`
    over one journal. `submit_many()` never raises and never waits on the network; the same
    interface as the shipping agent (`LogShipper`)."""

    def __init__(
        self,
        config: ShipperConfig,
        *,
        client: Any | None = None,
        on_rejected: RejectedCallback | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.shipper = JournalShipper(
            config, client=client, on_rejected=on_rejected, clock=clock, journal_role="both"
        )
        self.producer = JournalProducer(config, self.shipper.journal, on_append=self.shipper.wake)

    @property
    def stream_name(self) -> str:
        return self.shipper.stream_name

    def start(self) -> CloudWatchShipper:
        self.shipper.start()
        return self

    def submit(self, group: str, timestamp_ms: int, message: str) -> None:
        self.producer.submit(group, timestamp_ms, message)

    def submit_many(self, events: Iterable[Event]) -> None:
        self.producer.submit_many(events)

    def submit_lines(self, lines: bytes, events: int) -> None:
        self.producer.submit_lines(lines, events)

    def flush(self, timeout: float) -> bool:
        return self.shipper.flush(timeout)

    def close(self, timeout: float = 10.0) -> bool:
        return self.shipper.close(timeout)

    def backlog(self) -> tuple[bool, float]:
        return self.shipper.backlog()

    def stats(self) -> ShipperStats:
        produced = self.producer.counts()
        return self.shipper.snapshot(
            submitted=produced.submitted, truncated=produced.truncated, dropped=produced.dropped
        )
