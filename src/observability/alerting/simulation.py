"""Seeded weeks of per-minute metrics for backtesting alert rules: a service with a daily cycle,
benign noise and labelled incidents. Every number is a field of `Profile`.

What `Simulation.minute(t)` returns is what `RollingWindows` would roll up for that minute --
a `MinuteRollup` with real latency sketches and counters -- and the gauge readings taken at the
minute's end. Events (noise and incidents) start and end at any second: a minute they cover
in part is split into segments, each with its own traffic, error ratio and latency, so a 30 s
hiccup weighs half a minute. Latency effects are continuous: a factor of 1.3 slows HTTP
requests by 1.3 and, through `assignment_coupling`, the assignment call too.

The defaults (docs/alerting.md describes them):
- traffic: a daily cycle from 6% of the peak at 03:00 to 100% at 15:00 (3,000 requests a
  minute), weekends at 60%, Poisson noise; two routes (assignments 80%, event ingestion 20%);
- healthy: 0.02% of requests fail (a fifth of a 99.9% budget); HTTP latency log-normal,
  median 20 ms, p99 about 150 ms; assignment latency median 3 ms; CPU follows traffic;
- benign noise, 30 s to 10 min long (the shortest incidents last 3 min): deploys, hiccups,
  slow spells, readiness blips, CPU bursts, traffic peaks;
- labelled incidents, one of each kind a week at random times, at least 8 h apart.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import MinuteRollup, RouteRollup
from observability.query.model import series_key

__all__ = [
    "DEFAULT_INCIDENTS",
    "DEFAULT_NOISE",
    "Event",
    "EventKind",
    "IncidentKind",
    "Profile",
    "Simulation",
    "profile_markdown",
]

Range = tuple[float, float]
WEEK = 7 * 86400
START = 1767571200  # Monday 2026-01-05 00:00 UTC
_DAY = 86400


@dataclass(frozen=True)
class EventKind:
    """Something that happens `per_week` times a week for `duration_s` seconds (drawn
    uniformly from the range), with the effects it names (each drawn from its range)."""

    name: str
    per_week: int
    duration_s: Range
    error_ratio: Range | None = None  # share of requests failing (the worst event wins)
    latency_factor: Range | None = None  # multiplies latency (events multiply together)
    traffic_factor: Range | None = None  # multiplies traffic
    not_ready: str | None = None  # the dependency whose readiness probe fails
    cpu: Range | None = None  # CPU usage ratio while it lasts
    hours: Range = (0.0, 24.0)  # when in the day it starts
    weekdays_only: bool = False
    every_weeks: int = 1


@dataclass(frozen=True)
class IncidentKind(EventKind):
    """An incident: what alerts must see. `signals` are what it changes (errors, latency,
    assignment_latency, readiness); it is detected by the first notification of an alert
    watching one of them within `grace_s` of its end (a page when `needs_page`)."""

    signals: frozenset[str] = frozenset()
    needs_page: bool = False
    grace_s: float = 1800.0


DEFAULT_NOISE: tuple[EventKind, ...] = (
    EventKind(
        "deploy",
        3,
        (60, 480),
        error_ratio=(0.01, 0.05),
        latency_factor=(1.2, 2.0),
        hours=(13, 17),
        weekdays_only=True,
    ),
    EventKind("hiccup", 5, (30, 300), error_ratio=(0.10, 0.40), latency_factor=(2.0, 4.0)),
    EventKind("slow_spell", 3, (60, 600), latency_factor=(2.0, 5.0)),
    EventKind(
        "traffic_peak",
        3,
        (1800, 5400),
        traffic_factor=(2.0, 3.0),
        latency_factor=(1.1, 1.5),
        hours=(10, 20),
    ),
    EventKind("readiness_blip", 2, (30, 300), not_ready="database"),
    EventKind("cpu_burst", 3, (120, 480), cpu=(0.93, 0.98)),
)

DEFAULT_INCIDENTS: tuple[IncidentKind, ...] = (
    IncidentKind(
        "fast_burn",
        1,
        (900, 2700),
        error_ratio=(0.10, 0.50),
        signals=frozenset({"errors"}),
        needs_page=True,
    ),
    IncidentKind(
        "slow_burn",
        1,
        (30 * 3600, 48 * 3600),
        error_ratio=(0.0025, 0.0055),  # 2.5x-5.5x a 99.9% budget
        every_weeks=2,
        signals=frozenset({"errors"}),
        grace_s=6 * 3600,
    ),
    IncidentKind(
        "latency_regression",
        1,
        (2700, 7200),
        latency_factor=(9.0, 15.0),
        signals=frozenset({"latency", "assignment_latency"}),
    ),
    IncidentKind(
        "dependency_outage",
        1,
        (180, 1200),
        error_ratio=(0.6, 1.0),
        not_ready="database",
        signals=frozenset({"readiness", "errors"}),
    ),
    IncidentKind(
        "error_spike", 1, (360, 720), error_ratio=(0.08, 0.15), signals=frozenset({"errors"})
    ),
)


@dataclass(frozen=True)
class Profile:
    """The simulated service; metric names match the platform's by default."""

    peak_rpm: float = 3000.0
    night_factor: float = 0.06
    weekend_factor: float = 0.6
    trough_hour: float = 3.0
    base_error_ratio: float = 0.0002
    latency_median_s: float = 0.020
    latency_sigma: float = 0.87
    assignment_median_s: float = 0.003
    assignment_sigma: float = 0.82
    assignment_coupling: float = 1.0  # share of an HTTP latency effect the assignment call feels
    samples_per_minute: int = 40  # latency values drawn per route and minute (sketch input)
    routes: tuple[tuple[str, float], ...] = (
        ("GET /api/v1/assignments/{experiment_key}", 0.8),
        ("POST /api/v1/events", 0.2),
    )
    events_per_batch: float = 20.0  # events ingested per accepted POST /events
    cpu_idle: float = 0.25
    cpu_per_load: float = 0.48  # CPU = idle + per_load x (traffic / peak) + noise
    cpu_noise: float = 0.02
    cpu_cap: float = 0.89  # busy but healthy never reaches the saturation threshold
    memory_base: float = 0.6
    memory_drift: float = 0.002  # random walk step per minute, bounded by +/- memory_drift_max
    memory_drift_max: float = 0.05
    disk_start: float = 0.6
    disk_fill: float = 0.1  # over the whole simulation
    dependencies: tuple[str, ...] = ("database", "cache")
    noise: tuple[EventKind, ...] = DEFAULT_NOISE
    incidents: tuple[IncidentKind, ...] = DEFAULT_INCIDENTS
    incident_spacing_s: float = 8 * 3600  # incidents (and their echoes) never overlap
    warmup_s: float = 12 * 3600  # no incident before the windows have filled
    # The simulated service is the experimentation platform: its domain metrics by its names
    # (experimentation_platform.telemetry.names; the toolkit cannot import them).
    assignment_distribution: str = "ep_assignment_duration_seconds"
    ingested_counter: str = "ep_events_ingested_total"
    ready_gauge: str = "service_ready"
    cpu_gauge: str = "system_cpu_usage_ratio"
    memory_gauge: str = "system_memory_usage_ratio"
    disk_gauge: str = "system_disk_usage_ratio"

    @property
    def noise_max_duration_s(self) -> float:
        return max((k.duration_s[1] for k in self.noise), default=0.0)


@dataclass(frozen=True)
class Event:
    kind: str
    start: float
    end: float
    error_ratio: float | None = None
    latency_factor: float = 1.0
    traffic_factor: float = 1.0
    not_ready: str | None = None
    cpu: float | None = None
    incident: bool = False

    @property
    def magnitude(self) -> float:
        """The headline number: the error ratio, else the latency factor, else traffic."""
        if self.error_ratio is not None:
            return self.error_ratio
        if self.latency_factor != 1.0:
            return self.latency_factor
        return self.traffic_factor


@dataclass
class _State:
    error_ratio: float
    latency_factor: float = 1.0
    traffic_factor: float = 1.0
    not_ready: set[str] = field(default_factory=set)
    cpu: float | None = None


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 30:  # Knuth: exact for small means
        limit, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1
    return max(0, round(rng.gauss(lam, math.sqrt(lam))))


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n * p < 30:
        return min(n, _poisson(rng, n * p))
    return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))


def _draw(rng: random.Random, bounds: Range | None) -> float | None:
    return None if bounds is None else rng.uniform(*bounds)


class Simulation:
    """Seeded weeks of per-minute metrics with labelled incidents and benign noise."""

    def __init__(self, weeks: float, seed: int, profile: Profile | None = None) -> None:
        self.profile = profile or Profile()
        self.weeks = weeks
        self.start = float(START)
        self.end = self.start + weeks * WEEK
        self.rng = random.Random(seed)
        self.incidents = self._plan_incidents()
        self.noise = self._plan_noise()
        self._drift = 0.0

    # -- planning ---------------------------------------------------------------------------
    def _event(self, kind: EventKind, start: float, incident: bool) -> Event:
        rng = self.rng
        duration = rng.uniform(*kind.duration_s)
        return Event(
            kind.name,
            start,
            start + duration,
            error_ratio=_draw(rng, kind.error_ratio),
            latency_factor=_draw(rng, kind.latency_factor) or 1.0,
            traffic_factor=_draw(rng, kind.traffic_factor) or 1.0,
            not_ready=kind.not_ready,
            cpu=_draw(rng, kind.cpu),
            incident=incident,
        )

    def _plan_incidents(self) -> list[Event]:
        p, rng = self.profile, self.rng
        taken: list[Event] = []
        first = self.start + p.warmup_s
        for week in range(math.ceil(self.weeks)):
            for kind in p.incidents:
                if week % kind.every_weeks:
                    continue
                for _ in range(kind.per_week):
                    for _attempt in range(200):
                        latest = self.end - kind.duration_s[1] - 3600
                        if latest <= first:
                            break
                        event = self._event(kind, float(int(rng.uniform(first, latest))), True)
                        if all(
                            event.end + p.incident_spacing_s <= other.start
                            or event.start >= other.end + p.incident_spacing_s
                            for other in taken
                        ):
                            taken.append(event)
                            break
        return sorted(taken, key=lambda e: e.start)

    def _plan_noise(self) -> list[Event]:
        rng = self.rng
        days = max(1, int(self.weeks * 7))
        noise: list[Event] = []
        for _week in range(math.ceil(self.weeks)):
            for kind in self.profile.noise:
                for _ in range(kind.per_week):
                    day = rng.randrange(days)
                    while kind.weekdays_only and day % 7 >= 5:
                        day = rng.randrange(days)
                    start = self.start + day * _DAY + rng.uniform(*kind.hours) * 3600
                    noise.append(self._event(kind, float(int(start)), False))
        return sorted((n for n in noise if n.end <= self.end), key=lambda e: e.start)

    # -- one minute -------------------------------------------------------------------------
    def _state(self, t: float, events: Sequence[Event]) -> _State:
        state = _State(self.profile.base_error_ratio)
        for e in events:
            if not e.start <= t < e.end:
                continue
            if e.error_ratio is not None:
                state.error_ratio = max(state.error_ratio, e.error_ratio)
            state.latency_factor *= e.latency_factor
            state.traffic_factor *= e.traffic_factor
            if e.not_ready:
                state.not_ready.add(e.not_ready)
            if e.cpu is not None:
                state.cpu = max(state.cpu or 0.0, e.cpu)
        return state

    def _segments(self, t: float, events: Sequence[Event]) -> list[tuple[float, _State]]:
        """(share of the minute, state) for each stretch of the minute with the same events."""
        cuts = sorted({t, t + 60, *(x for e in events for x in (e.start, e.end) if t < x < t + 60)})
        return [
            ((b - a) / 60.0, self._state((a + b) / 2, events)) for a, b in itertools.pairwise(cuts)
        ]

    def _traffic(self, t: float) -> float:
        p = self.profile
        hour = (t - self.start) % _DAY / 3600
        weekday = int((t - self.start) // _DAY) % 7
        cycle = p.night_factor + (1 - p.night_factor) * (
            0.5 - 0.5 * math.cos((hour - p.trough_hour) / 24 * 2 * math.pi)
        )
        return p.peak_rpm * cycle * (p.weekend_factor if weekday >= 5 else 1.0)

    def events_at(self, t: float) -> list[Event]:
        """Every incident and noise event overlapping the minute starting at `t`."""
        return [e for e in (*self.incidents, *self.noise) if e.start < t + 60 and e.end > t]

    def minute(self, t: float) -> tuple[MinuteRollup, dict[str, float]]:
        p, rng = self.profile, self.rng
        traffic = self._traffic(t)
        segments = self._segments(t, self.events_at(t))
        counts = [_poisson(rng, traffic * share * s.traffic_factor) for share, s in segments]
        total = max(1, sum(counts))
        routes: dict[str, RouteRollup] = {}
        ingested = 0.0
        for key, route_share in p.routes:
            requests = errors = 0
            sketch = QuantileSketch()
            for n, (_, state) in zip(counts, segments, strict=True):
                count = _binomial(rng, n, route_share) if route_share < 1 else n
                requests += count
                errors_here = _binomial(rng, count, state.error_ratio)
                errors += errors_here
                if key.startswith("POST") and "events" in key:
                    ingested += (count - errors_here) * p.events_per_batch
                draws = round(p.samples_per_minute * n / total)
                mu = math.log(p.latency_median_s * state.latency_factor)
                for _ in range(min(count, draws)):
                    sketch.add(rng.lognormvariate(mu, p.latency_sigma))
            routes[key] = RouteRollup(
                requests, {"2xx": requests - errors, "5xx": errors}, sketch.to_dict()
            )
        assignment = QuantileSketch()
        for n, (_, state) in zip(counts, segments, strict=True):
            factor = 1.0 + (state.latency_factor - 1.0) * p.assignment_coupling
            mu = math.log(p.assignment_median_s * max(factor, 0.01))
            for _ in range(min(n, round(p.samples_per_minute * n / total))):
                assignment.add(rng.lognormvariate(mu, p.assignment_sigma))
        counters = {p.ingested_counter: ingested} if ingested else {}
        rollup = MinuteRollup(
            int(t), routes, {p.assignment_distribution: assignment.to_dict()}, counters
        )
        return rollup, self._gauges(t, traffic, segments[-1][1])

    def _gauges(self, t: float, traffic: float, state: _State) -> dict[str, float]:
        """Readings at the minute's end: a gauge sees what holds when it is read."""
        p, rng = self.profile, self.rng
        load = min(traffic * state.traffic_factor / p.peak_rpm, 1.25)
        self._drift = min(
            max(self._drift + rng.gauss(0, p.memory_drift), -p.memory_drift_max),
            p.memory_drift_max,
        )
        cpu = state.cpu
        if cpu is None:
            cpu = min(p.cpu_idle + p.cpu_per_load * load + rng.gauss(0, p.cpu_noise), p.cpu_cap)
        gauges = {
            p.cpu_gauge: max(cpu, 0.0),
            p.memory_gauge: p.memory_base + self._drift + rng.gauss(0, 0.01),
            p.disk_gauge: p.disk_start + p.disk_fill * (t - self.start) / (self.end - self.start),
        }
        for dependency in p.dependencies:
            ready = 0.0 if dependency in state.not_ready else 1.0
            gauges[series_key(p.ready_gauge, {"dependency": dependency})] = ready
        return gauges


def _span(bounds: Range, unit: str = "") -> str:
    lo, hi = bounds
    return f"{lo:g}{unit}" if lo == hi else f"{lo:g}-{hi:g}{unit}"


def _seconds(bounds: Range) -> str:
    lo, hi = bounds
    if hi >= 7200:
        return f"{lo / 3600:g}-{hi / 3600:g} h"
    if hi >= 120:
        return f"{lo / 60:g}-{hi / 60:g} min" if lo >= 60 else f"{lo:g} s-{hi / 60:g} min"
    return f"{lo:g}-{hi:g} s"


def _effects(kind: EventKind) -> str:
    parts = []
    if kind.error_ratio:
        parts.append(f"{_span(tuple(100 * x for x in kind.error_ratio), '%')} of requests fail")  # type: ignore[arg-type]
    if kind.latency_factor:
        parts.append(f"latency x{_span(kind.latency_factor)}")
    if kind.traffic_factor:
        parts.append(f"traffic x{_span(kind.traffic_factor)}")
    if kind.not_ready:
        parts.append(f"{kind.not_ready} not ready")
    if kind.cpu:
        parts.append(f"CPU {_span(tuple(100 * x for x in kind.cpu), '%')}")  # type: ignore[arg-type]
    return ", ".join(parts)


def profile_markdown(profile: Profile) -> str:
    """The simulation's noise and incidents as Markdown tables (the docs show this)."""
    lines = [
        "| benign noise | per week | lasts | effect | when |",
        "|---|---|---|---|---|",
    ]
    for k in profile.noise:
        when = f"{_span(k.hours)} h" + (", weekdays" if k.weekdays_only else "")
        lines.append(
            f"| {k.name} | {k.per_week} | {_seconds(k.duration_s)} | {_effects(k)} | {when} |"
        )
    lines += [
        "",
        "| incident | per week | lasts | effect | detected by | within |",
        "|---|---|---|---|---|---|",
    ]
    for k in profile.incidents:
        per_week = f"{k.per_week}" + (f" every {k.every_weeks} weeks" if k.every_weeks > 1 else "")
        by = "a page" if k.needs_page else "any alert"
        watched = ", ".join(sorted(k.signals))
        lines.append(
            f"| {k.name} | {per_week} | {_seconds(k.duration_s)} | {_effects(k)} | {by} on "
            f"{watched} | {k.grace_s / 60:g} min of its end |"
        )
    return "\n".join(lines) + "\n"
