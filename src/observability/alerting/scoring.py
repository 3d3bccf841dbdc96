"""Scoring a backtest: alert episodes, attribution to incidents, bars, and the reports.

An alert *episode* is a notification group from its first firing message to its resolve. An
episode is attributed to an incident when its alert watches one of the incident's signals
(error ratio, HTTP latency, assignment latency, readiness) and it starts between the
incident's start and its end plus `late_page_after_s` (30 min) for a page, or
`late_ticket_after_s` (6 h: long windows echo an incident) for a ticket; every other episode
is a false alarm, a false page when critical. An incident is detected by the first
notification of an alert watching its signals within its kind's grace after its end (a page
when the kind needs one); otherwise it is missed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from observability.alerting.notifiers.base import Notification
from observability.alerting.rules import AlertDefinition
from observability.alerting.simulation import Event, IncidentKind, Profile
from observability.query.model import (
    BurnRate,
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    MetricTerm,
)

__all__ = [
    "BARS",
    "BacktestReport",
    "Episode",
    "IncidentResult",
    "ReplayReport",
    "Scoring",
    "episodes_from",
    "score",
    "seeds_markdown",
    "signals_of",
    "tradeoff_markdown",
]

_WEEK = 7 * 86400


@dataclass(frozen=True)
class Scoring:
    late_page_after_s: float = 1800.0  # a page this long after an incident ended is false
    late_ticket_after_s: float = 6 * 3600.0  # tickets may echo an incident this long
    noise_bar_s: float = 180.0  # the noise must hold bursts at least this long


# The bars the platform's rules must meet on seeds they were not tuned on.
BARS: dict[str, str] = {
    "missed": "no missed incidents",
    "false_pages": "< 1 false page per week",
    "false_alarms": "< 5 false alarms per week",
    "noise": "noise bursts of at least 3 minutes",
}


@dataclass
class Episode:
    alert: str
    severity: str
    start: float
    end: float | None = None  # None: still open when the run ended
    incident: str | None = None  # the incident kind it is attributed to; None: false

    @property
    def page(self) -> bool:
        return self.severity == "critical"

    @property
    def false(self) -> bool:
        return self.incident is None

    def to_dict(self, since: float) -> dict[str, Any]:
        return {
            "start": self.start,
            "offset_s": round(self.start - since),
            "duration_s": None if self.end is None else round(self.end - self.start),
            "incident": self.incident,
        }


@dataclass(frozen=True)
class IncidentResult:
    incident: Event
    detected_by: str | None
    detection_s: float | None


def signals_of(d: AlertDefinition, profile: Profile) -> set[str]:
    """The simulated signals an alert watches: errors, latency, assignment_latency, readiness."""
    out: set[str] = set()
    for term in d.terms():
        inner: MetricTerm = term.sli if isinstance(term, BurnRate) else term
        if isinstance(inner, ErrorRatio):
            out.add("errors")
        elif isinstance(inner, LatencyAbove | LatencyQuantile):
            if inner.distribution is None:
                out.add("latency")
            elif inner.distribution == profile.assignment_distribution:
                out.add("assignment_latency")
        elif isinstance(inner, GaugeValue) and inner.name == profile.ready_gauge:
            out.add("readiness")
    return out


def episodes_from(
    notifications: Sequence[tuple[float, Notification]], defs: Mapping[str, AlertDefinition]
) -> list[Episode]:
    """Group notifications into episodes: a group's first firing message to its resolve."""
    open_: dict[str, Episode] = {}
    episodes: list[Episode] = []
    for at, n in notifications:
        if n.status == "resolved":
            episode = open_.pop(n.key, None)
            if episode is not None:
                episode.end = at
            continue
        if n.key in open_:
            continue  # an update or a repeat of an open episode
        name = n.labels.get("alertname", "")
        severity = str(defs[name].severity) if name in defs else str(n.severity)
        open_[n.key] = Episode(name, severity, at)
        episodes.append(open_[n.key])
    return episodes


def score(
    incidents: Sequence[Event],
    kinds: Sequence[IncidentKind],
    episodes: Sequence[Episode],
    watches: Mapping[str, set[str]],
    scoring: Scoring,
) -> list[IncidentResult]:
    """Attribute episodes to incidents (in place) and find each incident's detection."""
    by_name = {k.name: k for k in kinds}
    for e in episodes:
        late = scoring.late_page_after_s if e.page else scoring.late_ticket_after_s
        for incident in incidents:
            signals = by_name[incident.kind].signals
            if incident.start <= e.start <= incident.end + late and watches[e.alert] & signals:
                e.incident = incident.kind
                break
    results = []
    for incident in incidents:
        kind = by_name[incident.kind]
        hit = next(
            (
                e
                for e in episodes
                if incident.start <= e.start <= incident.end + kind.grace_s
                and watches[e.alert] & kind.signals
                and (e.page or not kind.needs_page)
            ),
            None,
        )
        if hit is None:
            results.append(IncidentResult(incident, None, None))
        else:
            results.append(IncidentResult(incident, hit.alert, hit.start - incident.start))
    return results


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


@dataclass
class BacktestReport:
    weeks: float
    seed: int
    step_s: int
    elapsed_s: float
    start: float
    incidents: list[IncidentResult]
    episodes: list[Episode]
    severities: dict[str, str]  # every alert the rules define -> its severity
    noise: list[Event]
    scoring: Scoring = field(default_factory=Scoring)

    @property
    def missed(self) -> list[IncidentResult]:
        return [r for r in self.incidents if r.detection_s is None]

    @property
    def false_pages(self) -> int:
        return sum(1 for e in self.episodes if e.false and e.page)

    @property
    def false_tickets(self) -> int:
        return sum(1 for e in self.episodes if e.false and not e.page)

    @property
    def false_pages_per_week(self) -> float:
        return self.false_pages / self.weeks

    @property
    def false_alarms_per_week(self) -> float:
        return (self.false_pages + self.false_tickets) / self.weeks

    @property
    def noise_max_duration_s(self) -> float:
        """The longest noise event of the run that failed requests or a readiness probe."""
        failing = [n.end - n.start for n in self.noise if n.error_ratio or n.not_ready]
        return max(failing, default=0.0)

    def detection(self, kind: str) -> tuple[float | None, float | None]:
        """(median, max) detection time in seconds for one incident kind."""
        times = [
            r.detection_s
            for r in self.incidents
            if r.incident.kind == kind and r.detection_s is not None
        ]
        if not times:
            return None, None
        return statistics.median(times), max(times)

    def kinds(self) -> list[str]:
        return sorted({r.incident.kind for r in self.incidents})

    def bars(self) -> dict[str, bool]:
        return {
            BARS["missed"]: not self.missed,
            BARS["false_pages"]: self.false_pages_per_week < 1,
            BARS["false_alarms"]: self.false_alarms_per_week < 5,
            BARS["noise"]: self.noise_max_duration_s >= self.scoring.noise_bar_s,
        }

    def passed(self) -> bool:
        return all(self.bars().values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of `ep alerts backtest --json`."""
        alerts: dict[str, Any] = {}
        for name, severity in sorted(self.severities.items()):
            mine = [e for e in self.episodes if e.alert == name]
            alerts[name] = {
                "severity": severity,
                "episodes": len(mine),
                "false": sum(1 for e in mine if e.false),
                "list": [e.to_dict(self.start) for e in mine],
            }
        noise: dict[str, dict[str, float]] = {}
        for n in self.noise:
            entry = noise.setdefault(n.kind, {"count": 0, "max_duration_s": 0.0})
            entry["count"] += 1
            entry["max_duration_s"] = max(entry["max_duration_s"], round(n.end - n.start))
        return {
            "source": "simulation",
            "weeks": self.weeks,
            "seed": self.seed,
            "step_s": self.step_s,
            "elapsed_s": round(self.elapsed_s, 1),
            "passed": self.passed(),
            "bars": self.bars(),
            "missed": len(self.missed),
            "false_pages": self.false_pages,
            "false_tickets": self.false_tickets,
            "false_pages_per_week": round(self.false_pages_per_week, 2),
            "false_alarms_per_week": round(self.false_alarms_per_week, 2),
            "noise_max_duration_s": round(self.noise_max_duration_s),
            "late_page_after_s": self.scoring.late_page_after_s,
            "late_ticket_after_s": self.scoring.late_ticket_after_s,
            "detection_s": {
                kind: dict(zip(("median", "max"), self.detection(kind), strict=True))
                for kind in self.kinds()
            },
            "incidents": [
                {
                    "kind": r.incident.kind,
                    "offset_s": round(r.incident.start - self.start),
                    "duration_s": round(r.incident.end - r.incident.start),
                    "magnitude": round(r.incident.magnitude, 4),
                    "detected_by": r.detected_by,
                    "detection_s": r.detection_s,
                }
                for r in self.incidents
            ],
            "alerts": alerts,
            "noise": noise,
        }

    def to_markdown(self) -> str:
        lines = [
            f"Backtest: {self.weeks:g} weeks, seed {self.seed}, evaluated every {self.step_s} s "
            f"({self.elapsed_s:.1f} s to run).",
            "",
            "| bar | result |",
            "|---|---|",
        ]
        lines += [f"| {bar} | {'pass' if ok else 'FAIL'} |" for bar, ok in self.bars().items()]
        lines += [
            "",
            f"False pages per week: {self.false_pages_per_week:.2f}; all false alarms per "
            f"week: {self.false_alarms_per_week:.2f}. Longest failing noise: "
            f"{self.noise_max_duration_s / 60:.1f} min. A page later than "
            f"{self.scoring.late_page_after_s / 60:g} min after an incident counts as false.",
            "",
            "| incident kind | count | missed | median detection | max detection |",
            "|---|---|---|---|---|",
        ]
        for kind in self.kinds():
            results = [r for r in self.incidents if r.incident.kind == kind]
            med, worst = self.detection(kind)
            missed = sum(1 for r in results if r.detection_s is None)
            lines.append(
                f"| {kind} | {len(results)} | {missed} | {_minutes(med)} | {_minutes(worst)} |"
            )
        lines += ["", "| alert | severity | episodes | false |", "|---|---|---|---|"]
        for name, severity in sorted(self.severities.items()):
            mine = [e for e in self.episodes if e.alert == name]
            false = sum(1 for e in mine if e.false)
            lines.append(f"| {name} | {severity} | {len(mine)} | {false} |")
        return "\n".join(lines) + "\n"


@dataclass
class ReplayReport:
    """What the rules would have done over stored minutes: every episode, pages per week."""

    start: float
    end: float
    step_s: int
    minutes: int  # minutes of history found in the range
    episodes: list[Episode]
    severities: dict[str, str]

    @property
    def weeks(self) -> float:
        return (self.end - self.start) / _WEEK

    def to_dict(self) -> dict[str, Any]:
        pages = [e for e in self.episodes if e.page]
        alerts: dict[str, Any] = {}
        for name, severity in sorted(self.severities.items()):
            mine = [e for e in self.episodes if e.alert == name]
            if mine:
                alerts[name] = {
                    "severity": severity,
                    "episodes": len(mine),
                    "list": [e.to_dict(self.start) for e in mine],
                }
        weeks = self.weeks
        return {
            "source": "history",
            "start": self.start,
            "end": self.end,
            "minutes": self.minutes,
            "step_s": self.step_s,
            "pages": len(pages),
            "alarms": len(self.episodes),
            "pages_per_week": round(len(pages) / weeks, 2) if weeks else None,
            "alarms_per_week": round(len(self.episodes) / weeks, 2) if weeks else None,
            "alerts": alerts,
        }

    def to_markdown(self) -> str:
        data = self.to_dict()
        lines = [
            f"Replay of stored history: {self.minutes} minutes with traffic between "
            f"{_iso(self.start)} and {_iso(self.end)}, evaluated every {self.step_s} s.",
            "",
            f"Pages: {data['pages']}; all alarms: {data['alarms']}.",
        ]
        if self.episodes:
            lines += ["", "| alert | severity | started | lasted |", "|---|---|---|---|"]
            for e in self.episodes:
                lasted = "still firing" if e.end is None else _minutes(e.end - e.start)
                lines.append(f"| {e.alert} | {e.severity} | {_iso(e.start)} | {lasted} |")
        return "\n".join(lines) + "\n"


def _iso(stamp: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def seeds_markdown(reports: Sequence[BacktestReport]) -> str:
    """One row per seed: the bars' numbers and the detection times of each incident kind."""
    kinds = sorted({k for r in reports for k in r.kinds()})
    head = ["seed", "weeks", "missed", "false pages/week", "false alarms/week", "longest noise"]
    head += [f"{kind} median" for kind in kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in reports:
        row = [
            str(r.seed),
            f"{r.weeks:g}",
            str(len(r.missed)),
            f"{r.false_pages_per_week:.2f}",
            f"{r.false_alarms_per_week:.2f}",
            _minutes(r.noise_max_duration_s),
        ]
        row += [_minutes(r.detection(kind)[0]) for kind in kinds]
        lines.append("| " + " | ".join(row) + " |")
    false: dict[str, int] = {}
    for r in reports:
        for e in r.episodes:
            if e.false:
                false[e.alert] = false.get(e.alert, 0) + 1
    weeks = sum(r.weeks for r in reports)
    if false:
        parts = ", ".join(f"`{name}` {n / weeks:.2f}" for name, n in sorted(false.items()))
        lines += ["", f"False alarms per week by alert, over all seeds: {parts}."]
    return "\n".join(lines) + "\n"


def tradeoff_markdown(curves: Mapping[str, Sequence[BacktestReport]], kind: str) -> str:
    """For each variant (a rule with another hold time): false pages per week and the median
    detection of `kind` over every seed."""
    lines = [
        f"| variant | false pages/week | median {kind} detection | missed {kind} |",
        "|---|---|---|---|",
    ]
    for name, reports in curves.items():
        weeks = sum(r.weeks for r in reports)
        pages = sum(r.false_pages for r in reports)
        times = [
            x.detection_s
            for r in reports
            for x in r.incidents
            if x.incident.kind == kind and x.detection_s is not None
        ]
        missed = sum(1 for r in reports for x in r.missed if x.incident.kind == kind)
        median = statistics.median(times) if times else None
        lines.append(f"| {name} | {pages / weeks:.2f} | {_minutes(median)} | {missed} |")
    return "\n".join(lines) + "\n"
