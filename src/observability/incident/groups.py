"""Error groups for incident evidence: new or spiking since the onset, ranked; groups that
predate the incident and merely go on, apart.

Two sources: this process's recent groups in memory (`errors.recent`, exact to 10 s, read
first: the store may be the slow database) and the error store (every instance, the groups'
real age, counts per minute). Where both know a group, the store says how old it is and the
memory how often it happened since the onset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from observability.errors.recent import RecentGroups
from observability.errors.store import ErrorStore
from observability.incident.changes import Windows

__all__ = ["ErrorGroupEvidence", "rank_groups", "recent_groups", "stored_groups"]

_SPIKE_FACTOR = 3.0  # occurrences per second since the onset against the baseline's
_SPIKE_MIN = 5
_GROUPS_READ = 50  # active groups read (one statement); the top few get their routes
_MINUTE = 60


@dataclass(frozen=True)
class ErrorGroupEvidence:
    fingerprint: str
    type: str
    message: str
    severity: str
    rule: str
    count: int
    first_seen: float
    last_seen: float
    new: bool  # first seen once the incident began (its onset)
    routes: dict[str, int]
    first_request_id: str | None
    during: int | None = None  # occurrences since the onset, None: unknown
    before: int | None = None  # occurrences in the baseline window
    spiking: bool = False  # older than the incident, but far more frequent since it began
    source: str = "store"  # or "memory": first seen by this instance, the store unread


def _is_new(first_seen: float, onset_at: float, windows: Windows) -> bool:
    """First seen once the incident began. The onset is read in steps over a two-step window:
    the move it dates began up to a step before it, and so may the group it brought (a fault
    injected 3 s before a 5 s step's onset is still this incident's)."""
    return first_seen >= onset_at - windows.step_s


def _spiking(new: bool, during: int, before: int, during_s: float, before_s: float) -> bool:
    if new or during < _SPIKE_MIN:
        return False
    return during / max(during_s, 1.0) >= _SPIKE_FACTOR * before / max(before_s, 1.0)


def recent_groups(
    recent: RecentGroups, windows: Windows, onset_at: float
) -> list[ErrorGroupEvidence]:
    """The groups this process captured in the baseline and incident windows."""
    end = windows.incident_end
    rows = []
    for g in recent.since(windows.baseline_start):
        new = _is_new(g.first_seen, onset_at, windows)
        # Buckets starting at or after the onset: a bucket holding the onset holds what came
        # just before it too. A new group has no "before" (a 10 s bucket straddling the
        # baseline's end would lend it some).
        during = g.count if new else g.between(onset_at, math.inf)
        before = 0 if new else g.between(windows.baseline_start, windows.baseline_end)
        rows.append(
            ErrorGroupEvidence(
                fingerprint=g.fingerprint,
                type=g.type,
                message=g.message,
                severity=g.severity,
                rule=g.rule,
                count=g.count,
                first_seen=g.first_seen,
                last_seen=g.last_seen,
                new=new,
                routes=dict(g.routes),
                first_request_id=g.first_request_id,
                during=during,
                before=before,
                spiking=_spiking(new, during, before, end - onset_at, windows.baseline_s),
                source="memory",
            )
        )
    return rows


def stored_groups(
    errors: ErrorStore,
    windows: Windows,
    onset_at: float,
    memory: Sequence[ErrorGroupEvidence] = (),
) -> list[ErrorGroupEvidence]:
    """The store's groups active in the baseline and incident windows, merged with `memory`.
    Two statements (groups, minute counts): the store may be the slow database."""
    groups = errors.list_groups(
        since=datetime.fromtimestamp(windows.baseline_start, UTC),
        sort="last_seen",
        limit=_GROUPS_READ,
    )
    known = {g.fingerprint: g for g in memory}
    counts = errors.minute_counts(
        [g.fingerprint for g in groups], windows.baseline_start, windows.incident_end
    )
    # Minutes: only whole minutes from the onset on are "during".
    onset_minute = math.ceil(onset_at / _MINUTE)
    base_lo = int(windows.baseline_start // _MINUTE)
    base_hi = int(windows.baseline_end // _MINUTE)
    rows = []
    for g in groups:
        first_seen = g.first_seen.timestamp()
        new = _is_new(first_seen, onset_at, windows)
        mine = known.pop(g.fingerprint, None)
        if mine is not None and mine.during is not None and mine.before is not None:
            during, before = mine.during, mine.before  # this instance's, to 10 s
            during_s, before_s = windows.incident_end - onset_at, float(windows.baseline_s)
        else:
            minutes = counts.get(g.fingerprint, {})
            during = g.count if new else sum(n for m, n in minutes.items() if m >= onset_minute)
            before = 0 if new else sum(n for m, n in minutes.items() if base_lo <= m < base_hi)
            during_s = windows.incident_end - onset_minute * _MINUTE
            before_s = (base_hi - base_lo) * _MINUTE
        rows.append(
            ErrorGroupEvidence(
                fingerprint=g.fingerprint,
                type=g.type,
                message=g.message,
                severity=str(g.severity),
                rule=g.rule_name,
                count=g.count,
                first_seen=first_seen,
                last_seen=g.last_seen.timestamp(),
                new=new,
                routes=mine.routes if mine is not None else {},
                first_request_id=g.first_request_id,
                during=during,
                before=before,
                spiking=_spiking(new, during, before, during_s, before_s),
            )
        )
    # Groups the store has not written yet (its writer lags behind a slow database).
    return [*rows, *known.values()]


def rank_groups(
    rows: Sequence[ErrorGroupEvidence], top: int
) -> tuple[list[ErrorGroupEvidence], list[ErrorGroupEvidence]]:
    """(new or spiking, most occurrences since the onset first; the others, latest first)."""
    ranked = sorted(
        (r for r in rows if r.new or r.spiking), key=lambda r: (-(r.during or 0), -r.count)
    )
    earlier = sorted((r for r in rows if not (r.new or r.spiking)), key=lambda r: -r.last_seen)
    return ranked[:top], earlier[:top]


def with_routes(
    rows: list[ErrorGroupEvidence], routes: Mapping[str, Mapping[str, int]]
) -> list[ErrorGroupEvidence]:
    return [
        replace(r, routes=dict(routes[r.fingerprint])) if r.fingerprint in routes else r
        for r in rows
    ]
