"""The producer side of shipping: events in, journal appended, refusals counted. Used by the
in-process shipper and by the application side of the shipping agent; it never talks to
CloudWatch and never waits on the network."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from observability.cloud.events import LINES_GROUP, Event, ShipperConfig, prepare_events
from observability.cloud.journal import Journal, JournalClosedError

__all__ = ["JournalProducer", "ProducerCounts"]


@dataclass(frozen=True)
class ProducerCounts:
    """Totals so far: events submitted, truncated, and dropped before the journal by reason."""

    submitted: int
    truncated: int
    dropped: dict[str, int]


class JournalProducer:
    """The producer side of shipping: events in, journal appended, refusals counted.
    Shared by the in-process shipper and the application side of the shipping agent."""

    def __init__(
        self,
        config: ShipperConfig,
        journal: Journal,
        *,
        on_append: Callable[[], object] | None = None,
    ) -> None:
        self.config = config
        self._journal = journal
        self._on_append = on_append
        self._stats_lock = threading.Lock()
        self._submitted = self._truncated = 0
        self._dropped: dict[str, int] = {}

    def submit(self, group: str, timestamp_ms: int, message: str) -> None:
        """Accept one event into the journal. Never raises; failures are counted as drops."""
        self.submit_many(((group, timestamp_ms, message),))

    def submit_many(self, events: Iterable[Event]) -> None:
        """Accept (group, timestamp_ms, message) events with one write. Never raises."""
        try:
            prepared = prepare_events(events, self.config)
            items = prepared.items
            with self._stats_lock:
                self._submitted += len(items) + prepared.unknown + prepared.invalid
                self._truncated += prepared.truncated
            self._drop("unknown_group", prepared.unknown)
            self._drop("submit_error", prepared.invalid)
            if items:
                self._append(items, len(items))
        except Exception:  # e.g. `events` itself is not iterable; still never raise
            self._drop("submit_error", 1)

    def submit_lines(self, lines: bytes, events: int) -> None:
        """Accept a batch of rendered JSON lines (each ending in a newline) with one write and
        no per-line work: the shipper routes them (see `ShipperConfig.request_logger`).
        `events` is what they count for in `submitted` (lines, plus error lines' copies).
        Never raises."""
        try:
            now_ms = int(time.time() * 1000)
            items = [(LINES_GROUP, now_ms, part) for part in _split_lines(lines)]
            with self._stats_lock:
                self._submitted += events
            self._append(items, events)
        except Exception:
            self._drop("submit_error", events)

    def _append(self, items: list[tuple[str, int, bytes]], events: int) -> None:
        """One journal write; a failure counts `events` as dropped instead of raising."""
        try:
            self._journal.append(items)
        except JournalClosedError:
            self._drop("closed", events)
            return
        except Exception:  # disk full, I/O error: count, never raise
            self._drop("journal_error", events)
            return
        self._appended()

    def _appended(self) -> None:
        """Events just landed in the journal (wakes an in-process shipper)."""
        if self._on_append is not None:
            self._on_append()

    def counts(self) -> ProducerCounts:
        with self._stats_lock:
            return ProducerCounts(self._submitted, self._truncated, dict(self._dropped))

    def _drop(self, reason: str, count: int) -> None:
        if count > 0:
            with self._stats_lock:
                self._dropped[reason] = self._dropped.get(reason, 0) + count


def _split_lines(data: bytes, limit: int = 4 * 1024 * 1024) -> list[bytes]:
    """`data` in parts of at most `limit` bytes, cut at line ends (a journal record's bound)."""
    parts = []
    while len(data) > limit:
        cut = data.rfind(b"\n", 0, limit) + 1 or limit
        parts.append(data[:cut])
        data = data[cut:]
    if data:
        parts.append(data)
    return parts
