"""The notification log: what was sent to whom, when, and how it went.

Every delivery attempt the dispatcher makes ends in one record (receiver, outcome, number of
attempts, masked error text). Records live in a bounded in-memory ring (always) and, when an
engine is given, in the `notification_log` table too, so the operations UI can show them
across restarts and instances. A database failure never reaches the dispatcher: it is counted
and the ring keeps working.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)

__all__ = [
    "NotificationLog",
    "NotificationRecord",
    "Outcome",
    "notification_log_metadata",
    "notification_log_table",
]

Outcome = Literal["delivered", "failed", "suppressed", "unrouted", "dropped"]

# Own MetaData: the toolkit's tables never mix with the host application's models.
notification_log_metadata = MetaData()
notification_log_table = Table(
    "notification_log",
    notification_log_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("key", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("receiver", String(64), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("title", String(512), nullable=False),
    Column("fallback", Boolean, nullable=False),
    Column("elapsed_seconds", Float, nullable=False),
    Index("ix_notification_log_at", "at"),
    Index("ix_notification_log_receiver_at", "receiver", "at"),
)


@dataclass(frozen=True)
class NotificationRecord:
    """One receiver's outcome for one notification (or a suppressed / unrouted notification)."""

    at: datetime
    key: str
    status: str
    severity: str
    receiver: str
    outcome: Outcome
    attempts: int = 0
    error: str | None = None
    title: str = ""
    fallback: bool = False
    elapsed_seconds: float = 0.0


class NotificationLog:
    """A bounded ring of recent records, optionally persisted with SQLAlchemy Core."""

    def __init__(self, capacity: int = 1000, *, engine: Engine | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._ring: deque[NotificationRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._engine = engine
        self.persist_failures = 0
        self.read_failures = 0

    def create_schema(self) -> None:
        """Create the `notification_log` table (and its indexes) if it does not exist."""
        if self._engine is None:
            raise RuntimeError("NotificationLog has no engine: nothing to create")
        notification_log_metadata.create_all(self._engine)

    def record(self, record: NotificationRecord) -> None:
        """Keep `record` in the ring and, if configured, in the database. Never raises."""
        with self._lock:
            self._ring.append(record)
        if self._engine is None:
            return
        try:
            with self._engine.begin() as connection:
                connection.execute(insert(notification_log_table).values(**_row(record)))
        except Exception:  # a broken database must not break notification delivery
            with self._lock:
                self.persist_failures += 1

    def recent(self, limit: int = 50, receiver: str | None = None) -> list[NotificationRecord]:
        """The newest records first, optionally for one receiver only.

        Read from the database when one is configured (it spans restarts and instances),
        from the in-memory ring otherwise or when the database cannot be read.
        """
        limit = max(limit, 0)
        if self._engine is not None:
            try:
                return self._recent_from_db(limit, receiver)
            except Exception:  # fall back to what this process remembers
                with self._lock:
                    self.read_failures += 1
        with self._lock:
            records = [
                r for r in reversed(self._ring) if receiver is None or r.receiver == receiver
            ]
        return records[:limit]

    def _recent_from_db(self, limit: int, receiver: str | None) -> list[NotificationRecord]:
        table = notification_log_table
        query = select(table).order_by(table.c.at.desc(), table.c.id.desc()).limit(limit)
        if receiver is not None:
            query = query.where(table.c.receiver == receiver)
        with self._engine.connect() as connection:  # type: ignore[union-attr]
            rows = connection.execute(query).mappings().all()
        return [
            NotificationRecord(
                at=_aware(row["at"]),
                key=row["key"],
                status=row["status"],
                severity=row["severity"],
                receiver=row["receiver"],
                outcome=row["outcome"],
                attempts=row["attempts"],
                error=row["error"],
                title=row["title"],
                fallback=bool(row["fallback"]),
                elapsed_seconds=float(row["elapsed_seconds"]),
            )
            for row in rows
        ]


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone=True columns; we store UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _row(record: NotificationRecord) -> dict[str, object]:
    # Cut to the column sizes: PostgreSQL rejects overflow where SQLite silently stores it.
    return {
        "at": record.at,
        "key": record.key[:512],
        "status": record.status[:16],
        "severity": record.severity[:16],
        "receiver": record.receiver[:64],
        "outcome": record.outcome,
        "attempts": record.attempts,
        "error": record.error,
        "title": record.title[:512],
        "fallback": record.fallback,
        "elapsed_seconds": record.elapsed_seconds,
    }
