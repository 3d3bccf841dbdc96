"""The error store: error groups, sample occurrences and counters in SQL (SQLAlchemy 2 Core).

SQLite by default, PostgreSQL when several instances share one store. Concurrent writers keep
counts exact: each batch runs in one transaction that inserts the group with ``ON CONFLICT DO
NOTHING`` (exactly one writer creates it, so exactly one "new group"), then locks the row
(``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) before updating it.

Affected users are counted exactly with a side table of (fingerprint, sha256(user_id)[:32]):
a bounded sketch (HyperLogLog) would be smaller, but operators ask "did this hit 3 users or 4?"
and the table only grows with distinct users per group, which the platform's user base bounds.
The hash keeps raw user ids out of the table (the masked id is kept on the samples).

Timestamps are stored as UNIX seconds (double precision): portable arithmetic for the
per-minute trend and resolution times on both engines. The API speaks aware UTC datetimes.
"""

from __future__ import annotations

import enum
import math
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from observability.errors.classify import Severity

__all__ = [
    "METADATA",
    "ErrorEvent",
    "ErrorGroup",
    "ErrorStats",
    "ErrorStore",
    "GroupBatch",
    "GroupChange",
    "GroupDetail",
    "GroupStatus",
    "Occurrence",
    "StoredOccurrence",
]

METADATA = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER only

groups_table = sa.Table(
    "error_groups",
    METADATA,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("rule_name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("first_seen", sa.Double, nullable=False),
    sa.Column("last_seen", sa.Double, nullable=False, index=True),
    sa.Column("opened_at", sa.Double, nullable=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("users_count", sa.BigInteger, nullable=False),
    sa.Column("first_request_id", sa.String(128)),
    sa.Column("resolved_at", sa.Double),
    sa.Column("resolution_seconds", sa.Double),
    sa.Column("resolutions", sa.BigInteger, nullable=False),
    sa.Column("resolution_seconds_total", sa.Double, nullable=False),
    sa.Column("regression", sa.Boolean, nullable=False),
    sa.Column("regression_count", sa.BigInteger, nullable=False),
    sa.Column("last_regressed_at", sa.Double),
)
occurrences_table = sa.Table(
    "error_occurrences",
    METADATA,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("timestamp", sa.Double, nullable=False),
    sa.Column("request_id", sa.String(128)),
    sa.Column("trace_id", sa.String(128)),
    sa.Column("route", sa.String(255)),
    sa.Column("method", sa.String(16)),
    sa.Column("user_id", sa.String(255)),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("context", sa.JSON, nullable=False),
    sa.Column("frames", sa.JSON, nullable=False),
    sa.Index("ix_error_occurrences_fingerprint_id", "fingerprint", "id"),
)
users_table = sa.Table(
    "error_group_users",
    METADATA,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("user_hash", sa.String(32), primary_key=True),
)
routes_table = sa.Table(
    "error_group_routes",
    METADATA,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("route", sa.String(255), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)
minutes_table = sa.Table(
    "error_minutes",
    METADATA,
    sa.Column("minute", sa.BigInteger, primary_key=True),  # UNIX time // 60
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

_CHUNK = 500  # rows per multi-VALUES statement, well under SQLite's bound-parameter limit


class GroupStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    IGNORED = "ignored"


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _ts(value: datetime | float | None) -> float | None:
    if value is None or isinstance(value, float | int):
        return value
    return value.timestamp()


@dataclass(slots=True)
class Occurrence:
    """One sample occurrence, already masked."""

    timestamp: float
    message: str
    request_id: str | None = None
    trace_id: str | None = None
    route: str | None = None
    method: str | None = None
    user_id: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    frames: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class ErrorEvent:
    """One captured exception, masked and classified, as the tracker queues it."""

    fingerprint: str
    type_name: str
    message: str  # masked and parametrised: the group's title
    severity: Severity
    rule_name: str
    occurrence: Occurrence
    user_hash: str | None = None


@dataclass(slots=True)
class GroupBatch:
    """Events of one group aggregated in memory: one batch = one set of statements per group."""

    fingerprint: str
    type_name: str
    message: str
    severity: Severity
    rule_name: str
    first_request_id: str | None
    first_seen: float
    last_seen: float
    sample_limit: int = 20
    max_users: int = 10_000
    count: int = 0
    user_hashes: set[str] = field(default_factory=set)
    users_dropped: int = 0
    samples: deque[Occurrence] = field(default_factory=deque)
    routes: Counter[str] = field(default_factory=Counter)
    minutes: Counter[int] = field(default_factory=Counter)

    @classmethod
    def start(
        cls, event: ErrorEvent, sample_limit: int = 20, max_users: int = 10_000
    ) -> GroupBatch:
        occ = event.occurrence
        batch = cls(
            fingerprint=event.fingerprint,
            type_name=event.type_name,
            message=event.message,
            severity=event.severity,
            rule_name=event.rule_name,
            first_request_id=occ.request_id,
            first_seen=occ.timestamp,
            last_seen=occ.timestamp,
            sample_limit=sample_limit,
            max_users=max_users,
            samples=deque(maxlen=sample_limit),
        )
        batch.add(event)
        return batch

    def add(self, event: ErrorEvent) -> None:
        occ = event.occurrence
        self.count += 1
        self.first_seen = min(self.first_seen, occ.timestamp)
        self.last_seen = max(self.last_seen, occ.timestamp)
        if event.severity.rank > self.severity.rank:  # escalate within the batch too
            self.severity, self.rule_name = event.severity, event.rule_name
        if event.user_hash is not None and event.user_hash not in self.user_hashes:
            if len(self.user_hashes) < self.max_users:
                self.user_hashes.add(event.user_hash)
            else:
                self.users_dropped += 1
        self.samples.append(occ)
        if occ.route:
            self.routes[occ.route[:255]] += 1
        self.minutes[int(occ.timestamp // 60)] += 1


@dataclass(frozen=True, slots=True)
class GroupChange:
    """What one batch did to one group; the tracker turns these into notification triggers."""

    fingerprint: str
    created: bool
    regressed: bool
    status: GroupStatus
    severity: Severity
    rule_name: str
    type_name: str
    message: str
    count: int
    first_request_id: str | None


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    fingerprint: str
    type: str
    message: str
    severity: Severity
    rule_name: str
    status: GroupStatus
    first_seen: datetime
    last_seen: datetime
    count: int
    users: int
    first_request_id: str | None
    resolved_at: datetime | None
    resolution_seconds: float | None  # of the latest resolution
    regression: bool  # open again because it recurred after being resolved
    regression_count: int

    def to_dict(self) -> dict[str, Any]:
        """The one JSON shape of a group, for every operator API and page (ISO 8601 times)."""
        return {
            "fingerprint": self.fingerprint,
            "type": self.type,
            "message": self.message,
            "severity": str(self.severity),
            "rule": self.rule_name,
            "status": str(self.status),
            "count": self.count,
            "users": self.users,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "first_request_id": self.first_request_id,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "resolution_seconds": self.resolution_seconds,
            "regression": self.regression,
            "regression_count": self.regression_count,
        }


@dataclass(frozen=True, slots=True)
class StoredOccurrence:
    id: int
    timestamp: datetime
    request_id: str | None
    trace_id: str | None
    route: str | None
    method: str | None
    user_id: str | None
    message: str
    context: dict[str, Any]
    frames: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp.isoformat(),
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "route": self.route,
            "method": self.method,
            "user_id": self.user_id,
            "message": self.message,
            "frames": self.frames,
        }


@dataclass(frozen=True, slots=True)
class GroupDetail:
    group: ErrorGroup
    occurrences: list[StoredOccurrence]  # newest first
    routes: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """The group's shape plus its routes and sample occurrences (newest first)."""
        return {
            **self.group.to_dict(),
            "routes": self.routes,
            "occurrences": [o.to_dict() for o in self.occurrences],
        }


@dataclass(frozen=True, slots=True)
class ErrorStats:
    groups_by_severity: dict[str, int]
    groups_by_status: dict[str, int]
    open_by_severity: dict[str, int]
    occurrences_total: int
    mean_resolution_seconds: float | None
    per_minute: list[tuple[datetime, int]]  # oldest first, zero-filled


def _group(row: sa.Row[Any]) -> ErrorGroup:
    m = row._mapping
    return ErrorGroup(
        fingerprint=m["fingerprint"],
        type=m["type"],
        message=m["message"],
        severity=Severity(m["severity"]),
        rule_name=m["rule_name"],
        status=GroupStatus(m["status"]),
        first_seen=datetime.fromtimestamp(m["first_seen"], UTC),
        last_seen=datetime.fromtimestamp(m["last_seen"], UTC),
        count=int(m["count"]),
        users=int(m["users_count"]),
        first_request_id=m["first_request_id"],
        resolved_at=_dt(m["resolved_at"]),
        resolution_seconds=m["resolution_seconds"],
        regression=bool(m["regression"]),
        regression_count=int(m["regression_count"]),
    )


def _chunks(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


class ErrorStore:
    """Error groups in SQLite or PostgreSQL. Thread-safe (one engine, pooled connections)."""

    def __init__(self, engine: Engine, *, sample_limit: int = 20) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(
                f"error store: unsupported database {engine.dialect.name!r} "
                "(accepted: sqlite, postgresql)"
            )
        if sample_limit < 1:
            raise ValueError("error store: sample_limit must be at least 1")
        self.engine = engine
        self.sample_limit = sample_limit
        self._pg = engine.dialect.name == "postgresql"
        if not self._pg:
            _make_sqlite_transactions_immediate(engine)

    @classmethod
    def from_url(cls, url: str, *, sample_limit: int = 20, **engine_kwargs: Any) -> ErrorStore:
        """``sqlite:///observability.db`` (default embedded) or ``postgresql+psycopg://...``."""
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            engine_kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
            if parsed.database in (None, "", ":memory:"):
                engine_kwargs.setdefault("poolclass", StaticPool)  # one shared in-memory db
        else:
            engine_kwargs.setdefault("pool_pre_ping", True)  # survive a database restart
        return cls(sa.create_engine(url, **engine_kwargs), sample_limit=sample_limit)

    def create_schema(self) -> None:
        """Create the tables if missing (idempotent, safe from several instances at start)."""
        METADATA.create_all(self.engine, checkfirst=True)

    def dispose(self) -> None:
        self.engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table) if self._pg else sqlite.insert(table)

    # -- writes -------------------------------------------------------------------------------

    def write_batch(self, batches: Iterable[GroupBatch]) -> list[GroupChange]:
        """Apply aggregated events in ONE transaction; return what changed per group.

        Groups are processed in fingerprint order so two instances lock rows in the same
        order and cannot deadlock each other.
        """
        ordered = sorted(batches, key=lambda b: b.fingerprint)
        if not ordered:
            return []
        changes: list[GroupChange] = []
        with self.engine.begin() as conn:
            for batch in ordered:
                changes.append(self._write_group(conn, batch))
        return changes

    def _write_group(self, conn: Connection, batch: GroupBatch) -> GroupChange:
        g = groups_table
        created = (
            conn.execute(
                self._insert(g)
                .values(
                    fingerprint=batch.fingerprint,
                    type=batch.type_name[:255],
                    message=batch.message,
                    severity=batch.severity.value,
                    rule_name=batch.rule_name,
                    status=GroupStatus.OPEN.value,
                    first_seen=batch.first_seen,
                    last_seen=batch.last_seen,
                    opened_at=batch.first_seen,
                    count=0,
                    users_count=0,
                    first_request_id=batch.first_request_id,
                    resolutions=0,
                    resolution_seconds_total=0.0,
                    regression=False,
                    regression_count=0,
                )
                .on_conflict_do_nothing(index_elements=["fingerprint"])
                .returning(g.c.fingerprint)
            ).first()
            is not None
        )
        row = (
            conn.execute(sa.select(g).where(g.c.fingerprint == batch.fingerprint).with_for_update())
            .one()
            ._mapping
        )

        new_users = 0
        user_rows = [{"fingerprint": batch.fingerprint, "user_hash": h} for h in batch.user_hashes]
        for chunk in _chunks(user_rows):
            stmt = self._insert(users_table).values(list(chunk)).on_conflict_do_nothing()
            new_users += len(conn.execute(stmt.returning(users_table.c.user_hash)).all())

        values: dict[str, Any] = {
            "count": g.c.count + batch.count,
            "users_count": g.c.users_count + new_users,
            "first_seen": min(row["first_seen"], batch.first_seen),
            "last_seen": max(row["last_seen"], batch.last_seen),
        }
        severity, rule_name = Severity(row["severity"]), row["rule_name"]
        if batch.severity.rank > severity.rank:
            severity, rule_name = batch.severity, batch.rule_name
            values.update(severity=severity.value, rule_name=rule_name)
        status = GroupStatus(row["status"])
        resolved_at = row["resolved_at"]
        # Only an occurrence newer than the resolution reopens it: events buffered during an
        # outage and written late do not count as a regression.
        regressed = (
            status is GroupStatus.RESOLVED
            and resolved_at is not None
            and batch.last_seen > resolved_at
        )
        if regressed:
            status = GroupStatus.OPEN
            values.update(
                status=status.value,
                regression=True,
                regression_count=g.c.regression_count + 1,
                last_regressed_at=batch.last_seen,
                opened_at=max(batch.first_seen, resolved_at),
            )
        conn.execute(sa.update(g).where(g.c.fingerprint == batch.fingerprint).values(values))

        self._write_samples(conn, batch)
        self._bump_counters(conn, batch)
        return GroupChange(
            fingerprint=batch.fingerprint,
            created=created,
            regressed=regressed,
            status=status,
            severity=severity,
            rule_name=rule_name,
            type_name=row["type"],
            message=row["message"],
            count=int(row["count"]) + batch.count,
            first_request_id=row["first_request_id"],
        )

    def _write_samples(self, conn: Connection, batch: GroupBatch) -> None:
        o = occurrences_table
        samples = list(batch.samples)[-self.sample_limit :]
        if not samples:
            return
        conn.execute(
            sa.insert(o),
            [
                {
                    "fingerprint": batch.fingerprint,
                    "timestamp": s.timestamp,
                    "request_id": (s.request_id or None) and s.request_id[:128],
                    "trace_id": (s.trace_id or None) and s.trace_id[:128],
                    "route": (s.route or None) and s.route[:255],
                    "method": (s.method or None) and s.method[:16],
                    "user_id": (s.user_id or None) and s.user_id[:255],
                    "message": s.message,
                    "context": s.context,
                    "frames": s.frames,
                }
                for s in samples
            ],
        )
        # Keep the newest `sample_limit`: find the oldest id to keep, delete below it.
        keep_from = conn.execute(
            sa.select(o.c.id)
            .where(o.c.fingerprint == batch.fingerprint)
            .order_by(o.c.id.desc())
            .offset(self.sample_limit - 1)
            .limit(1)
        ).scalar()
        if keep_from is not None:
            conn.execute(
                sa.delete(o).where(o.c.fingerprint == batch.fingerprint, o.c.id < keep_from)
            )

    def _bump_counters(self, conn: Connection, batch: GroupBatch) -> None:
        for table, key, counts in (
            (routes_table, "route", batch.routes),
            (minutes_table, "minute", batch.minutes),
        ):
            rows = [
                {"fingerprint": batch.fingerprint, key: k, "count": n} for k, n in counts.items()
            ]
            for chunk in _chunks(rows):
                stmt = self._insert(table).values(list(chunk))
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["fingerprint", key]
                        if key == "route"
                        else [key, "fingerprint"],
                        set_={"count": table.c.count + stmt.excluded.count},
                    )
                )

    def prune_minutes(self, before: datetime | float) -> int:
        """Drop per-minute counters older than ``before`` (the trend keeps what dashboards show)."""
        cutoff = int((_ts(before) or 0) // 60)
        with self.engine.begin() as conn:
            result = conn.execute(sa.delete(minutes_table).where(minutes_table.c.minute < cutoff))
            return int(result.rowcount)

    # -- status changes -----------------------------------------------------------------------

    def _set_status(self, fingerprint: str, target: GroupStatus, at: datetime | None) -> bool:
        g = groups_table
        now = _ts(at) if at is not None else time.time()
        assert now is not None
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(g).where(g.c.fingerprint == fingerprint).with_for_update()
            ).first()
            if row is None:
                return False
            current = GroupStatus(row._mapping["status"])
            if current is target:
                return True
            values: dict[str, Any] = {"status": target.value}
            if target is GroupStatus.RESOLVED:
                took = max(0.0, now - row._mapping["opened_at"])
                values.update(
                    resolved_at=now,
                    resolution_seconds=took,
                    resolutions=g.c.resolutions + 1,
                    resolution_seconds_total=g.c.resolution_seconds_total + took,
                    regression=False,
                )
            elif target is GroupStatus.OPEN:
                values.update(opened_at=now, regression=False)
            conn.execute(sa.update(g).where(g.c.fingerprint == fingerprint).values(values))
            return True

    def resolve(self, fingerprint: str, at: datetime | None = None) -> bool:
        """Mark resolved; a later occurrence reopens it as a regression. False if unknown."""
        return self._set_status(fingerprint, GroupStatus.RESOLVED, at)

    def ignore(self, fingerprint: str) -> bool:
        """Keep counting, stop notifying. False if unknown."""
        return self._set_status(fingerprint, GroupStatus.IGNORED, None)

    def reopen(self, fingerprint: str, at: datetime | None = None) -> bool:
        return self._set_status(fingerprint, GroupStatus.OPEN, at)

    # -- queries ------------------------------------------------------------------------------

    def list_groups(
        self,
        *,
        severity: Severity | str | Sequence[Severity | str] | None = None,
        status: GroupStatus | str | Sequence[GroupStatus | str] | None = None,
        route: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        sort: str = "last_seen",
        limit: int = 50,
        offset: int = 0,
    ) -> list[ErrorGroup]:
        """Groups active in [since, until], filtered, newest (or most frequent) first.

        ``route`` matches groups seen on a route whose template contains it.
        ``sort``: ``last_seen``, ``count``, ``first_seen`` or ``users``.
        """
        g = groups_table
        order = {
            "last_seen": g.c.last_seen,
            "count": g.c.count,
            "first_seen": g.c.first_seen,
            "users": g.c.users_count,
        }
        if sort not in order:
            raise ValueError(f"sort must be one of {sorted(order)}")
        query = sa.select(g)
        if severity is not None:
            wanted = [severity] if isinstance(severity, str) else list(severity)
            query = query.where(g.c.severity.in_([str(s) for s in wanted]))
        if status is not None:
            wanted_status = [status] if isinstance(status, str) else list(status)
            query = query.where(g.c.status.in_([str(s) for s in wanted_status]))
        if route:
            r = routes_table
            query = query.where(
                sa.exists().where(
                    r.c.fingerprint == g.c.fingerprint, r.c.route.contains(route, autoescape=True)
                )
            )
        if since is not None:
            query = query.where(g.c.last_seen >= since.timestamp())
        if until is not None:
            query = query.where(g.c.first_seen <= until.timestamp())
        query = query.order_by(order[sort].desc(), g.c.fingerprint).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_group(row) for row in conn.execute(query)]

    def get_group(self, fingerprint: str, occurrences: int = 20) -> GroupDetail | None:
        """One group with its newest sample occurrences (and their request_ids) and routes."""
        g, o, r = groups_table, occurrences_table, routes_table
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(g).where(g.c.fingerprint == fingerprint)).first()
            if row is None:
                return None
            samples = conn.execute(
                sa.select(o)
                .where(o.c.fingerprint == fingerprint)
                .order_by(o.c.id.desc())
                .limit(occurrences)
            ).all()
            routes = conn.execute(
                sa.select(r.c.route, r.c.count).where(r.c.fingerprint == fingerprint)
            ).all()
        return GroupDetail(
            group=_group(row),
            occurrences=[
                StoredOccurrence(
                    id=int(s.id),
                    timestamp=datetime.fromtimestamp(s.timestamp, UTC),
                    request_id=s.request_id,
                    trace_id=s.trace_id,
                    route=s.route,
                    method=s.method,
                    user_id=s.user_id,
                    message=s.message,
                    context=dict(s.context or {}),
                    frames=list(s.frames or []),
                )
                for s in samples
            ],
            routes={str(route): int(count) for route, count in routes},
        )

    def minute_counts(
        self, fingerprints: Sequence[str], start: float, end: float
    ) -> dict[str, dict[int, int]]:
        """Occurrences per minute (UNIX time // 60) of the given groups in [start, end], by
        fingerprint: one statement (incident evidence compares a baseline with the incident)."""
        if not fingerprints:
            return {}
        mt = minutes_table
        out: dict[str, dict[int, int]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(mt.c.fingerprint, mt.c.minute, mt.c.count).where(
                    mt.c.fingerprint.in_(list(fingerprints)),
                    mt.c.minute >= int(start // 60),
                    mt.c.minute <= int(end // 60),
                )
            ).all()
        for fingerprint, minute, count in rows:
            out.setdefault(str(fingerprint), {})[int(minute)] = int(count)
        return out

    def group_routes(self, fingerprints: Sequence[str]) -> dict[str, dict[str, int]]:
        """The routes each group was seen on, with counts: one statement for several groups."""
        if not fingerprints:
            return {}
        r = routes_table
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(r.c.fingerprint, r.c.route, r.c.count).where(
                    r.c.fingerprint.in_(list(fingerprints))
                )
            ).all()
        for fingerprint, route, count in rows:
            out.setdefault(str(fingerprint), {})[str(route)] = int(count)
        return out

    def stats(self, *, now: datetime | None = None, minutes: int = 60) -> ErrorStats:
        """Dashboard numbers: groups by severity/status, mean resolution time, errors per minute."""
        g, mt = groups_table, minutes_table
        end_minute = int((now.timestamp() if now else time.time()) // 60)
        start_minute = end_minute - minutes + 1
        with self.engine.connect() as conn:
            matrix = conn.execute(
                sa.select(
                    g.c.severity, g.c.status, sa.func.count(), sa.func.sum(g.c.count)
                ).group_by(g.c.severity, g.c.status)
            ).all()
            resolved = conn.execute(
                sa.select(sa.func.sum(g.c.resolution_seconds_total), sa.func.sum(g.c.resolutions))
            ).one()
            trend = conn.execute(
                sa.select(mt.c.minute, sa.func.sum(mt.c.count))
                .where(mt.c.minute >= start_minute, mt.c.minute <= end_minute)
                .group_by(mt.c.minute)
            ).all()
        by_severity: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        open_by_severity: Counter[str] = Counter()
        total = 0
        for sev, status, groups, occurrences in matrix:
            by_severity[sev] += int(groups)
            by_status[status] += int(groups)
            if status == GroupStatus.OPEN.value:
                open_by_severity[sev] += int(groups)
            total += int(occurrences or 0)
        seconds, count = resolved
        mean = float(seconds) / int(count) if count else None
        per = {int(minute): int(n) for minute, n in trend}
        return ErrorStats(
            groups_by_severity={s.value: by_severity[s.value] for s in Severity},
            groups_by_status={s.value: by_status[s.value] for s in GroupStatus},
            open_by_severity={s.value: open_by_severity[s.value] for s in Severity},
            occurrences_total=total,
            mean_resolution_seconds=None if mean is None or math.isnan(mean) else mean,
            per_minute=[
                (datetime.fromtimestamp(m * 60, UTC), per.get(m, 0))
                for m in range(start_minute, end_minute + 1)
            ],
        )


def _make_sqlite_transactions_immediate(engine: Engine) -> None:
    """Take SQLite's write lock at BEGIN, not at the first write.

    With pysqlite's default deferred BEGIN, two processes that both read a group and then try to
    write it deadlock ("database is locked"). BEGIN IMMEDIATE serialises writers up front; the
    connect timeout makes the second one wait instead of failing.
    """

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy's BEGIN below be the only one

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
