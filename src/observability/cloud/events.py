"""The vocabulary of shipping logs to CloudWatch Logs: where and how (`ShipperConfig`), what
was done (`ShipperStats`), the service's limits, and turning submitted events into journal
items (`prepare_events`). Both sides use it: the application that appends to the journal and
the shipper that drains it (in a thread, or in the agent process)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "EVENT_OVERHEAD_BYTES",
    "LINES_GROUP",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "Event",
    "LogShipper",
    "PreparedEvents",
    "RejectedCallback",
    "ShipperConfig",
    "ShipperStats",
    "default_stream_name",
    "iso_millis",
    "prepare_events",
    "truncate_message",
]

# PutLogEvents limits (API reference, botocore logs-2014-03-28 model, checked 2025).
EVENT_OVERHEAD_BYTES = 26
MAX_BATCH_BYTES = 1_048_576
MAX_BATCH_EVENTS = 10_000
MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
MAX_AGE_MS = 14 * 24 * 3600 * 1000
MAX_FUTURE_MS = 2 * 3600 * 1000
# Keep clear of the edges: the service judges age by its own clock when the request lands.
EDGE_MARGIN_MS = 5 * 60 * 1000
# The per-event limit was 256 KiB until AWS raised it to 1 MB in April 2025; the conservative
# default still fits every region and every downstream consumer (subscriptions, Insights).
DEFAULT_MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD_BYTES

DEFAULT_RETENTION_DAYS: Mapping[str, int] = {"api": 30, "services": 90, "errors": 180}

# A journal record holding a batch of rendered JSON log lines (`submit_lines`): the reader
# routes each line to its group, so the producer does no per-line work at all.
LINES_GROUP = "*lines"
ERROR_LEVELS = frozenset({"error", "critical"})

RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerError",
        "InvalidSequenceTokenException",  # ignored by the service today; retry is harmless
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

RejectedCallback = Callable[[str, int, Mapping[str, int]], None]
"""on_rejected(log_group_name, rejected_event_count, rejectedLogEventsInfo)."""


@dataclass(frozen=True)
class ShipperConfig:
    """Where and how to ship. Every field has a default fit for production except the dir."""

    journal_dir: Path
    region: str = "us-east-1"
    endpoint_url: str | None = None
    group_prefix: str = "/experimentation-platform"
    retention_days: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RETENTION_DAYS))
    stream_name: str | None = None
    instance_id: str | None = None
    max_journal_bytes: int = 256 * 1024 * 1024
    segment_bytes: int = 8 * 1024 * 1024
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_batch_bytes: int = MAX_BATCH_BYTES
    max_batch_events: int = MAX_BATCH_EVENTS
    out_of_range: Literal["clamp", "drop"] = "clamp"
    # Lines of `submit_lines`: this logger's go to "api", the others to "services", and lines
    # at error level or above also to "errors".
    request_logger: str = "observability.request"
    batch_wait_seconds: float = 1.0
    backoff_base_seconds: float = 0.2
    backoff_max_seconds: float = 10.0
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 15.0

    def group_name(self, group: str) -> str:
        return f"{self.group_prefix.rstrip('/')}/{group}"

    def validate(self) -> None:
        if not 1024 <= self.max_event_bytes <= self.max_batch_bytes - EVENT_OVERHEAD_BYTES:
            raise ValueError("max_event_bytes must be within 1024..max_batch_bytes - 26")
        if not 1 <= self.max_batch_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"max_batch_events must be within 1..{MAX_BATCH_EVENTS}")
        if self.max_batch_bytes > MAX_BATCH_BYTES:
            raise ValueError(f"max_batch_bytes must be <= {MAX_BATCH_BYTES}")
        if self.out_of_range not in ("clamp", "drop"):
            raise ValueError("out_of_range must be 'clamp' or 'drop'")
        if not self.retention_days:
            raise ValueError("retention_days must name at least one logical group")


@dataclass(frozen=True)
class ShipperStats:
    """A point-in-time snapshot; counters are totals since this process started the shipper."""

    submitted: int
    shipped: int
    retried_batches: int
    spooled_bytes: int
    dropped: Mapping[str, int]
    rejected: int
    truncated: int
    clamped: int
    groups_created: int
    lag_seconds: float
    last_error: str | None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


def default_stream_name(instance_id: str | None = None, pid: int | None = None) -> str:
    """`{hostname}/{instance_id}/{pid}`; ':' and '*' are not allowed in stream names."""
    instance = instance_id or os.environ.get("EP_INSTANCE_ID") or "local"
    raw = f"{socket.gethostname()}/{instance}/{pid if pid is not None else os.getpid()}"
    return raw.replace(":", "_").replace("*", "_")[:512]


def truncate_message(message: bytes, limit: int) -> bytes:
    """Cut `message` to `limit` UTF-8 bytes, ending with a visible marker and the original size."""
    marker = f" ...[truncated by shipper: original {len(message)} bytes]".encode()
    keep = max(0, limit - len(marker))
    # decode/encode with "ignore" drops a character cut in half at the boundary.
    head = message[:keep].decode("utf-8", "ignore").encode("utf-8")
    return head + marker


@dataclass
class PreparedEvents:
    """What `prepare_events` made of a submission: journal items plus what it refused."""

    items: list[tuple[str, int, bytes]] = field(default_factory=list)
    unknown: int = 0
    invalid: int = 0
    truncated: int = 0


Event = tuple[str, int, str | bytes]
"""(group, timestamp_ms, message): the message as text, or as UTF-8 bytes (no re-encoding)."""


def prepare_events(events: Iterable[Event], config: ShipperConfig) -> PreparedEvents:
    """Validate (group, timestamp_ms, message) events, encode them and truncate the oversized
    ones visibly; one malformed event never costs the others."""
    out = PreparedEvents()
    groups = config.retention_days
    limit = config.max_event_bytes
    append = out.items.append
    for event in events:
        try:
            group, timestamp_ms, message = event
            if group not in groups:
                out.unknown += 1
                continue
            if isinstance(message, bytes):
                data = message
            else:
                data = message.encode("utf-8", "backslashreplace")
            if len(data) > limit:
                data = truncate_message(data, limit)
                out.truncated += 1
            append((group, int(timestamp_ms), data))
        except Exception:
            out.invalid += 1
    return out


_second_cache: tuple[str, int] = ("", 0)


def iso_millis(stamp: object, default_ms: int) -> int:
    """Epoch milliseconds of an ISO-8601 timestamp, `default_ms` if it is not one. Lines come
    in bursts within one second: the date-time part is parsed once per second and the
    milliseconds read off the text (the renderer's form: 2026-11-27T15:00:00.123456Z)."""
    global _second_cache
    if not isinstance(stamp, str):
        return default_ms
    if len(stamp) >= 24 and stamp[19] == "." and stamp[-1] == "Z" and stamp[20:23].isdigit():
        second, base = _second_cache
        if stamp[:19] != second:
            try:
                base = int(datetime.fromisoformat(stamp[:19] + "+00:00").timestamp()) * 1000
            except ValueError:
                return default_ms
            _second_cache = (stamp[:19], base)
        return base + int(stamp[20:23])
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return default_ms


class LogShipper(Protocol):
    """What the application holds: the in-process shipper or the shipping agent."""

    def submit_many(self, events: Iterable[Event]) -> None: ...
    def submit_lines(self, lines: bytes, events: int) -> None: ...
    def flush(self, timeout: float) -> bool: ...
    def close(self, timeout: float = 10.0) -> bool: ...
    def stats(self) -> ShipperStats: ...
