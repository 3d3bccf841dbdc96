"""The error groups this process captured lately, in memory: what incident evidence reads
before the error store, which may share the database that is the incident.

Each group keeps its title, severity, first/last capture by this process, routes and counts in
10 s buckets for 70 minutes; at most `max_groups` groups (the least recently seen go first).
"first seen" here means first seen *by this process*: the store knows the group's real age.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from observability.errors.store import ErrorEvent

__all__ = ["BUCKET_S", "RecentGroup", "RecentGroups"]

BUCKET_S = 10
_RETENTION_S = 70 * 60
_MAX_ROUTES = 20


@dataclass
class RecentGroup:
    fingerprint: str
    type: str
    message: str
    severity: str
    rule: str
    first_seen: float
    last_seen: float
    first_request_id: str | None
    count: int = 0
    buckets: dict[int, int] = field(default_factory=dict)  # start second -> occurrences
    routes: Counter[str] = field(default_factory=Counter)

    def between(self, start: float, end: float) -> int:
        """Occurrences in buckets that start within [start, end)."""
        return sum(n for at, n in self.buckets.items() if start <= at < end)


class RecentGroups:
    """Thread-safe; `add` is on the capture path and never raises."""

    def __init__(self, max_groups: int = 500, retention_s: float = _RETENTION_S) -> None:
        self._groups: OrderedDict[str, RecentGroup] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_groups
        self._retention_s = retention_s
        self.internal_errors = 0

    def add(self, event: ErrorEvent) -> None:
        try:
            occ = event.occurrence
            at = int(occ.timestamp // BUCKET_S * BUCKET_S)
            with self._lock:
                group = self._groups.get(event.fingerprint)
                if group is None:
                    group = RecentGroup(
                        event.fingerprint,
                        event.type_name,
                        event.message,
                        str(event.severity),
                        event.rule_name,
                        occ.timestamp,
                        occ.timestamp,
                        occ.request_id,
                    )
                    self._groups[event.fingerprint] = group
                    if len(self._groups) > self._max:
                        self._groups.popitem(last=False)
                else:
                    self._groups.move_to_end(event.fingerprint)
                group.count += 1
                group.last_seen = max(group.last_seen, occ.timestamp)
                group.severity, group.rule = str(event.severity), event.rule_name
                group.buckets[at] = group.buckets.get(at, 0) + 1
                if occ.route and (occ.route in group.routes or len(group.routes) < _MAX_ROUTES):
                    group.routes[occ.route] += 1
                old = [b for b in group.buckets if b < at - self._retention_s]
                for b in old:
                    del group.buckets[b]
        except Exception:  # telemetry never raises into the capture path
            self.internal_errors += 1

    def since(self, start: float) -> list[RecentGroup]:
        """Copies of the groups seen at or after `start`, most recently seen first."""
        with self._lock:
            found = [g for g in self._groups.values() if g.last_seen >= start]
            copies = [
                RecentGroup(
                    g.fingerprint,
                    g.type,
                    g.message,
                    g.severity,
                    g.rule,
                    g.first_seen,
                    g.last_seen,
                    g.first_request_id,
                    g.count,
                    dict(g.buckets),
                    Counter(g.routes),
                )
                for g in found
            ]
        return sorted(copies, key=lambda g: -g.last_seen)
