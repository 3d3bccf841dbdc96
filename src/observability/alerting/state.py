"""Alert and notification-group state, and its persistence in SQL.

    inactive --condition--> pending --held for `for`--> firing --cleared--> resolved
        ^                      |                                               |
        +------cleared---------+                        (forgotten once notified/retained)

An alert instance is one rule plus one label set (`key`). A group is what one notification
talks about (Alertmanager's group: severity plus the `group_by` label values). Both are plain
dataclasses the evaluator mutates; `StateStore` writes the changed ones after each evaluation
so a restart resumes mid-incident (no duplicate page, no lost resolve).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson
from sqlalchemy import Column, Engine, Float, MetaData, String, Table, Text, delete, insert, select

__all__ = [
    "AlertInstance",
    "AlertState",
    "GroupState",
    "StateStore",
    "find_alert",
    "state_metadata",
]

AlertState = Literal["inactive", "pending", "firing", "resolved"]

state_metadata = MetaData()
_alerts = Table(
    "alert_instances",
    state_metadata,
    Column("key", String(1024), primary_key=True),
    Column("data", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)
_groups = Table(
    "alert_groups",
    state_metadata,
    Column("key", String(1024), primary_key=True),
    Column("data", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)


@dataclass
class AlertInstance:
    key: str
    name: str
    rule: str
    severity: str
    labels: dict[str, str]
    state: AlertState = "inactive"
    active_since: float | None = None  # the condition started holding (pending start)
    fired_at: float | None = None
    resolved_at: float | None = None
    last_true: float | None = None  # the condition was last seen holding
    value: float | None = None
    threshold: float | None = None
    summary: str = ""
    description: str = ""
    transitions: list[float] = field(default_factory=list)  # firing/resolved changes
    flapping: bool = False
    muted_by: list[str] = field(default_factory=list)  # silence ids or "inhibited"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AlertInstance:
        return cls(**dict(data))

    def view(self) -> dict[str, Any]:
        """JSON-ready summary for the operations UI and the CLI."""
        return {
            "key": self.key,
            "alertname": self.name,
            "rule": self.rule,
            "severity": self.severity,
            "state": self.state,
            "labels": dict(self.labels),
            "value": self.value,
            "threshold": self.threshold,
            "summary": self.summary,
            "active_since": self.active_since,
            "fired_at": self.fired_at,
            "resolved_at": self.resolved_at,
            "flapping": self.flapping,
            "muted_by": list(self.muted_by),
        }


@dataclass
class GroupState:
    key: str
    labels: dict[str, str]
    severity: str
    created_at: float
    next_flush: float
    last_sent: float | None = None
    last_status: str | None = None
    notified: list[str] = field(default_factory=list)  # alert keys in the last firing message

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupState:
        return cls(**dict(data))


class StateStore:
    """Alert instances and groups as JSON rows keyed by their key (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        state_metadata.create_all(self.engine)

    def load(self) -> tuple[dict[str, AlertInstance], dict[str, GroupState]]:
        with self.engine.connect() as conn:
            alerts = {
                row.key: AlertInstance.from_dict(orjson.loads(row.data))
                for row in conn.execute(select(_alerts))
            }
            groups = {
                row.key: GroupState.from_dict(orjson.loads(row.data))
                for row in conn.execute(select(_groups))
            }
        return alerts, groups

    def save(
        self,
        now: float,
        alerts: Iterable[AlertInstance],
        groups: Iterable[GroupState],
        removed_alerts: Iterable[str] = (),
        removed_groups: Iterable[str] = (),
    ) -> None:
        """Upsert the given rows and delete the removed keys, in one transaction."""
        alert_rows = [
            {"key": a.key, "data": orjson.dumps(a.to_dict()).decode(), "updated_at": now}
            for a in alerts
        ]
        group_rows = [
            {"key": g.key, "data": orjson.dumps(g.to_dict()).decode(), "updated_at": now}
            for g in groups
        ]
        alert_gone = [r["key"] for r in alert_rows] + list(removed_alerts)
        group_gone = [r["key"] for r in group_rows] + list(removed_groups)
        with self.engine.begin() as conn:
            # delete + insert is the one upsert SQLite and PostgreSQL share in SQLAlchemy Core.
            if alert_gone:
                conn.execute(delete(_alerts).where(_alerts.c.key.in_(alert_gone)))
            if group_gone:
                conn.execute(delete(_groups).where(_groups.c.key.in_(group_gone)))
            if alert_rows:
                conn.execute(insert(_alerts), alert_rows)
            if group_rows:
                conn.execute(insert(_groups), group_rows)


_STATE_ORDER = {"firing": 0, "pending": 1, "resolved": 2, "inactive": 3}


def find_alert(alerts: Mapping[str, AlertInstance], wanted: str) -> AlertInstance | None:
    """The alert whose key or name is `wanted`: firing before pending before resolved, then
    the most recent."""
    matches = [a for a in alerts.values() if wanted in (a.key, a.name)]
    if not matches:
        return None
    return min(
        matches,
        key=lambda a: (_STATE_ORDER.get(a.state, 9), -(a.fired_at or a.active_since or 0.0)),
    )
