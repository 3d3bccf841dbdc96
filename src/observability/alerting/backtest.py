"""Backtest alert rules: replay weeks of simulated per-minute metrics through the real evaluator.

    run_backtest(rules, weeks=4, seed=7, step_s=60) -> BacktestReport
    report_main(rules, config, weeks=4)  -> prints the report; 0 when every bar is met

The simulation (seeded, so every run is identical) produces what `RollingWindows` would roll up
each minute -- `MinuteRollup`s with real latency sketches, counters and gauge samples -- and
feeds them to a `MinuteStore`; the real `Evaluator` (same state machine, grouping, inhibition
and flap damping as in production) evaluates every `step_s`. Nothing is mocked but time.

The simulated service (every number is a knob of `Profile`):
- traffic: a daily cycle from 6% of the peak at 03:00 to 100% at 14:00 (peak 3,000 requests a
  minute), weekends at 60%, Poisson noise per minute; two routes (assignments 80%, event
  ingestion 20%);
- healthy behaviour: 0.02% of requests fail (a fifth of the 99.9% budget); HTTP latency
  log-normal with median 20 ms and p99 about 150 ms (0.1% over 300 ms); assignment latency
  median 3 ms, p99 about 20 ms; CPU follows traffic (25-70%), memory 55-65%, disk 60-70%;
- benign noise, which must not page: 3 deploys a week on weekday afternoons (2-5 minutes at
  1-5% errors, latency x1.5), 5 one-minute hiccups a week (10-40% errors, latency x3), 3 slow
  spells a week (latency x3-x4 for 3-8 minutes), 3 traffic peaks a week (x2-x3 traffic for
  30-90 minutes, CPU up to 85%, latency x1.3), 2 one-minute database readiness blips a week,
  3 CPU bursts a week (95% for 4-8 minutes), quiet nights;
- labelled incidents, about one of each kind a week at random times (never overlapping):
  fast burn (10-50% errors for 15-45 min), slow burn (0.25-0.55% errors, i.e. 2.5x-5.5x the
  budget rate, for 30-48 h, every other week), latency regression (median x9-x15 for 45-120
  min), dependency outage (database not ready and 60-100% errors for 3-20 min), error spike
  (8-15% errors for 6-12 min).

Scoring: an alert *episode* is a firing notification opening a group until its resolve. An
episode is attributed to an incident when its alert watches the incident's signal (error
ratio, HTTP latency, readiness) and it starts between the incident's start and 6 h after its
end (long windows echo an incident for hours); every other episode is a false alarm. An
incident is detected at the first notification of an alert expected for its kind (fast
burns: a page) before its end plus 30 minutes (slow burns: plus 6 h); otherwise missed.
Pages are critical alerts, tickets the rest.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.notifiers.base import Notification
from observability.alerting.rules import AlertDefinition, Rule, definitions
from observability.metrics.sketch import QuantileSketch
from observability.metrics.windows import MinuteRollup, RouteRollup
from observability.query.minutes import MinuteStore
from observability.query.model import (
    BurnRate,
    ErrorRatio,
    GaugeValue,
    LatencyAbove,
    LatencyQuantile,
    series_key,
)

__all__ = [
    "INCIDENT_KINDS",
    "BacktestReport",
    "Incident",
    "IncidentResult",
    "Profile",
    "RuleStats",
    "Simulation",
    "report_main",
    "run_backtest",
]

INCIDENT_KINDS = (
    "fast_burn",
    "slow_burn",
    "latency_regression",
    "dependency_outage",
    "error_spike",
)
_WEEK = 7 * 86400
_START = 1767571200  # Monday 2026-01-05 00:00 UTC
_ECHO_S = 6 * 3600


@dataclass(frozen=True)
class Profile:
    """The simulated service; names match the platform's metrics by default."""

    peak_rpm: float = 3000.0
    night_factor: float = 0.06
    weekend_factor: float = 0.6
    base_error_ratio: float = 0.0002
    latency_median_s: float = 0.020
    latency_sigma: float = 0.87
    assignment_median_s: float = 0.003
    assignment_sigma: float = 0.82
    samples_per_minute: int = 40  # latency values drawn per route and minute (sketch input)
    routes: tuple[tuple[str, float], ...] = (
        ("GET /api/v1/assignments/{experiment_key}", 0.8),
        ("POST /api/v1/events", 0.2),
    )
    assignment_distribution: str = "assignment_duration_seconds"
    ingested_counter: str = "events_ingested_total"
    ready_gauge: str = "service_ready"
    cpu_gauge: str = "system_cpu_usage_ratio"
    memory_gauge: str = "system_memory_usage_ratio"
    disk_gauge: str = "system_disk_usage_ratio"


@dataclass(frozen=True)
class Incident:
    kind: str
    start: float
    end: float
    magnitude: float


@dataclass(frozen=True)
class _Noise:
    kind: str
    start: float
    end: float
    magnitude: float


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


class Simulation:
    """Seeded weeks of per-minute metrics with labelled incidents and benign noise."""

    def __init__(self, weeks: float, seed: int, profile: Profile | None = None) -> None:
        self.profile = profile or Profile()
        self.start = float(_START)
        self.end = self.start + weeks * _WEEK
        self.rng = random.Random(seed)
        self.incidents = self._plan_incidents(weeks)
        self.noise = self._plan_noise(weeks)
        self._drift = 0.0

    # -- planning ---------------------------------------------------------------------------
    def _free(self, start: float, end: float, taken: list[tuple[float, float]]) -> bool:
        margin = 8 * 3600  # incidents never overlap, nor their echoes in short windows
        return all(end + margin <= s or start >= e + margin for s, e in taken)

    def _plan_incidents(self, weeks: float) -> list[Incident]:
        rng = self.rng
        plan: list[tuple[str, tuple[float, float], tuple[float, float]]] = [
            ("fast_burn", (0.10, 0.50), (15, 45)),
            ("latency_regression", (9.0, 15.0), (45, 120)),
            ("dependency_outage", (0.6, 1.0), (3, 20)),
            ("error_spike", (0.08, 0.15), (6, 12)),
        ]
        wanted: list[tuple[str, tuple[float, float], tuple[float, float]]] = []
        for week in range(math.ceil(weeks)):
            wanted.extend(plan)
            if week % 2 == 0:
                wanted.append(("slow_burn", (0.0025, 0.0055), (30 * 60, 48 * 60)))
        taken: list[tuple[float, float]] = []
        incidents: list[Incident] = []
        first = self.start + 12 * 3600  # let the windows fill first
        for kind, (lo, hi), (dmin, dmax) in wanted:
            for _ in range(200):
                duration = rng.uniform(dmin, dmax) * 60
                start = math.floor(rng.uniform(first, self.end - duration - 3600) / 60) * 60
                if start >= first and self._free(start, start + duration, taken):
                    taken.append((start, start + duration))
                    incidents.append(Incident(kind, start, start + duration, rng.uniform(lo, hi)))
                    break
        return sorted(incidents, key=lambda i: i.start)

    def _plan_noise(self, weeks: float) -> list[_Noise]:
        rng = self.rng
        noise: list[_Noise] = []
        n_weeks = math.ceil(weeks)
        day = 86400

        def at(hour_lo: float, hour_hi: float, weekday_only: bool) -> float:
            while True:
                d = rng.randrange(int(weeks * 7)) if weeks >= 1 else 0
                if weekday_only and d % 7 >= 5:
                    continue
                return self.start + d * day + rng.uniform(hour_lo, hour_hi) * 3600

        for _ in range(n_weeks):
            for _ in range(3):
                s = at(13, 17, True) // 60 * 60
                length = rng.randint(2, 5) * 60
                noise.append(_Noise("deploy", s, s + length, rng.uniform(0.01, 0.05)))
            for _ in range(5):
                s = at(0, 24, False) // 60 * 60
                noise.append(_Noise("hiccup", s, s + 60, rng.uniform(0.10, 0.40)))
            for _ in range(3):
                s = at(0, 24, False) // 60 * 60
                length = rng.randint(3, 8) * 60
                noise.append(_Noise("slow_spell", s, s + length, rng.uniform(3.0, 4.0)))
            for _ in range(3):
                s = at(10, 20, False) // 60 * 60
                noise.append(
                    _Noise("traffic_peak", s, s + rng.uniform(30, 90) * 60, rng.uniform(2, 3))
                )
            for _ in range(2):
                s = at(0, 24, False) // 60 * 60
                noise.append(_Noise("readiness_blip", s, s + 60, 0.0))
            for _ in range(3):
                s = at(0, 24, False) // 60 * 60
                noise.append(_Noise("cpu_burst", s, s + rng.uniform(4, 8) * 60, 0.95))
        return [n for n in noise if n.end <= self.end]

    # -- one minute -------------------------------------------------------------------------
    def _active(self, t: float) -> tuple[list[Incident], list[_Noise]]:
        return (
            [i for i in self.incidents if i.start <= t < i.end],
            [n for n in self.noise if n.start <= t < n.end],
        )

    def minute(self, t: float) -> tuple[MinuteRollup, dict[str, float]]:
        p, rng = self.profile, self.rng
        hour = (t - self.start) % 86400 / 3600
        weekday = int((t - self.start) // 86400) % 7
        # Smooth daily cycle: trough at 03:00, peak at 15:00.
        cycle = p.night_factor + (1 - p.night_factor) * (
            0.5 - 0.5 * math.cos((hour - 3) / 24 * 2 * math.pi)
        )
        traffic = p.peak_rpm * cycle * (p.weekend_factor if weekday >= 5 else 1.0)
        incidents, noise = self._active(t)
        error_ratio = p.base_error_ratio
        latency_factor = 1.0
        ready = {"database": 1.0, "cache": 1.0}
        cpu_extra = 0.0
        for n in noise:
            if n.kind == "deploy":
                error_ratio = max(error_ratio, n.magnitude)
                latency_factor *= 1.5
            elif n.kind == "hiccup":
                error_ratio = max(error_ratio, n.magnitude)
                latency_factor *= 3.0
            elif n.kind == "slow_spell":
                latency_factor *= n.magnitude
            elif n.kind == "traffic_peak":
                traffic *= n.magnitude
                latency_factor *= 1.3
            elif n.kind == "readiness_blip":
                ready["database"] = 0.0
            elif n.kind == "cpu_burst":
                cpu_extra = 1.0
        for i in incidents:
            if i.kind in ("fast_burn", "slow_burn", "error_spike"):
                error_ratio = max(error_ratio, i.magnitude)
            elif i.kind == "latency_regression":
                latency_factor *= i.magnitude
            elif i.kind == "dependency_outage":
                ready["database"] = 0.0
                error_ratio = max(error_ratio, i.magnitude)
        total = _poisson(rng, traffic)
        routes: dict[str, RouteRollup] = {}
        ingested = 0.0
        for key, share in p.routes:
            count = _binomial(rng, total, share) if share < 1 else total
            errors = _binomial(rng, count, error_ratio)
            sketch = QuantileSketch()
            draws = min(count, p.samples_per_minute)
            mu = math.log(p.latency_median_s * latency_factor)
            for _ in range(draws):
                sketch.add(rng.lognormvariate(mu, p.latency_sigma))
            classes = {"2xx": count - errors, "5xx": errors}
            routes[key] = RouteRollup(count, classes, sketch.to_dict())
            if key.startswith("POST") and "events" in key:
                ingested = float((count - errors) * 20)  # 20 events per accepted batch
        assignment = QuantileSketch()
        a_mu = math.log(p.assignment_median_s * (latency_factor if latency_factor > 5 else 1.0))
        for _ in range(min(total, p.samples_per_minute)):
            assignment.add(rng.lognormvariate(a_mu, p.assignment_sigma))
        counters = {p.ingested_counter: ingested} if ingested else {}
        rollup = MinuteRollup(
            int(t), routes, {p.assignment_distribution: assignment.to_dict()}, counters
        )
        load = min(traffic / p.peak_rpm, 1.25)
        self._drift = min(max(self._drift + rng.gauss(0, 0.002), -0.05), 0.05)
        cpu = 0.95 if cpu_extra else min(0.25 + 0.48 * load + rng.gauss(0, 0.02), 0.89)
        gauges = {
            p.cpu_gauge: max(cpu, 0.0),
            p.memory_gauge: 0.6 + self._drift + rng.gauss(0, 0.01),
            p.disk_gauge: 0.6 + 0.1 * (t - self.start) / max(self.end - self.start, 1),
        }
        for dep, value in ready.items():
            gauges[series_key(p.ready_gauge, {"dependency": dep})] = value
        return rollup, gauges


# -- scoring ----------------------------------------------------------------------------------
def _signals(d: AlertDefinition, profile: Profile) -> set[str]:
    """Which simulated signals an alert watches: 'errors', 'latency', 'readiness', ..."""
    out: set[str] = set()
    for clause in d.clauses:
        for c in clause:
            q = c.expr.sli if isinstance(c.expr, BurnRate) else c.expr
            if isinstance(q, ErrorRatio):
                out.add("errors")
            elif isinstance(q, LatencyAbove | LatencyQuantile):
                out.add("latency" if q.distribution is None else "assignment_latency")
            elif isinstance(q, GaugeValue) and q.name == profile.ready_gauge:
                out.add("readiness")
    return out


_AFFECTS = {
    "fast_burn": {"errors"},
    "slow_burn": {"errors"},
    "error_spike": {"errors"},
    "latency_regression": {"latency", "assignment_latency"},
    "dependency_outage": {"readiness", "errors"},
}
_EXPECTED = {
    "fast_burn": ({"errors"}, True),  # (signals, page required)
    "slow_burn": ({"errors"}, False),
    "error_spike": ({"errors"}, False),
    "latency_regression": ({"latency"}, False),
    "dependency_outage": ({"readiness", "errors"}, False),
}


@dataclass
class RuleStats:
    name: str
    severity: str
    alarms: int = 0
    false_alarms: int = 0


@dataclass(frozen=True)
class IncidentResult:
    incident: Incident
    detected_by: str | None
    detection_s: float | None


@dataclass
class BacktestReport:
    weeks: float
    seed: int
    step_s: int
    elapsed_s: float
    incidents: list[IncidentResult]
    rules: dict[str, RuleStats]
    false_pages: int
    false_tickets: int
    noise_events: dict[str, int] = field(default_factory=dict)

    @property
    def missed(self) -> list[IncidentResult]:
        return [r for r in self.incidents if r.detection_s is None]

    @property
    def false_pages_per_week(self) -> float:
        return self.false_pages / self.weeks

    @property
    def false_tickets_per_week(self) -> float:
        return self.false_tickets / self.weeks

    @property
    def false_alarms_per_week(self) -> float:
        return (self.false_pages + self.false_tickets) / self.weeks

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

    def bars(self) -> dict[str, bool]:
        fast_median, _ = self.detection("fast_burn")
        return {
            "no missed incidents": not self.missed,
            "< 1 false page per week": self.false_pages_per_week < 1,
            "median fast-burn detection < 5 min": fast_median is not None and fast_median < 300,
            "< 5 false alarms per week": self.false_alarms_per_week < 5,
        }

    def passed(self) -> bool:
        return all(self.bars().values())

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
            f"False pages per week: {self.false_pages_per_week:.2f}; false tickets per week: "
            f"{self.false_tickets_per_week:.2f}; all false alarms per week: "
            f"{self.false_alarms_per_week:.2f}.",
            "",
            "| incident kind | count | missed | median detection | max detection |",
            "|---|---|---|---|---|",
        ]
        for kind in INCIDENT_KINDS:
            results = [r for r in self.incidents if r.incident.kind == kind]
            if not results:
                continue
            med, worst = self.detection(kind)
            missed = sum(1 for r in results if r.detection_s is None)
            lines.append(
                f"| {kind} | {len(results)} | {missed} | {_minutes(med)} | {_minutes(worst)} |"
            )
        lines += ["", "| alert | severity | episodes | false |", "|---|---|---|---|"]
        for stats in sorted(self.rules.values(), key=lambda s: s.name):
            lines.append(
                f"| {stats.name} | {stats.severity} | {stats.alarms} | {stats.false_alarms} |"
            )
        if self.noise_events:
            noise = ", ".join(f"{k} {v}" for k, v in sorted(self.noise_events.items()))
            lines += ["", f"Benign noise injected: {noise}."]
        return "\n".join(lines) + "\n"


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def run_backtest(
    rules: Sequence[Rule],
    weeks: float = 4,
    seed: int = 7,
    step_s: int = 30,
    *,
    profile: Profile | None = None,
    config: EvaluatorConfig | None = None,
) -> BacktestReport:
    """Simulate `weeks` of metrics, evaluate `rules` every `step_s`, score the alerts."""
    if step_s < 1 or (60 % step_s and step_s % 60):
        raise ValueError("step_s must divide 60 or be a multiple of 60")
    began = time.perf_counter()
    sim = Simulation(weeks, seed, profile)
    store = MinuteStore()
    notifications: list[tuple[float, Notification]] = []
    clock = [sim.start]
    evaluator = Evaluator(
        rules,
        store,
        notify=lambda n: notifications.append((clock[0], n)),
        config=config or EvaluatorConfig(log_transitions=False),
        clock=lambda: clock[0],
    )
    defs = {d.name: d for d in definitions(rules)}
    t = sim.start
    next_minute = sim.start
    while t < sim.end:
        while next_minute + 60 <= t:  # a minute is fed once it is complete
            rollup, gauges = sim.minute(next_minute)
            store.add(rollup, gauges)
            next_minute += 60
        clock[0] = t
        evaluator.evaluate_once(t)
        t += step_s
    report = _score(sim, defs, notifications, weeks, seed, step_s)
    report.elapsed_s = time.perf_counter() - began
    return report


def _score(
    sim: Simulation,
    defs: dict[str, AlertDefinition],
    notifications: list[tuple[float, Notification]],
    weeks: float,
    seed: int,
    step_s: int,
) -> BacktestReport:
    profile = sim.profile
    watches = {name: _signals(d, profile) for name, d in defs.items()}
    rules = {name: RuleStats(name, d.severity) for name, d in defs.items()}
    open_groups: set[str] = set()
    episodes: list[tuple[float, str, str]] = []  # (time, alert name, severity)
    for at, n in notifications:
        if n.status == "resolved":
            open_groups.discard(n.key)
            continue
        if n.key in open_groups:
            continue  # an update or a repeat of an open episode
        open_groups.add(n.key)
        episodes.append((at, n.labels.get("alertname", ""), n.severity))
    false_pages = false_tickets = 0
    for at, name, severity in episodes:
        stats = rules.get(name)
        if stats is not None:
            stats.alarms += 1
        attributed = any(
            i.start <= at <= i.end + _ECHO_S and watches.get(name, set()) & _AFFECTS[i.kind]
            for i in sim.incidents
        )
        if attributed:
            continue
        if stats is not None:
            stats.false_alarms += 1
        if severity == "critical":
            false_pages += 1
        else:
            false_tickets += 1
    results = []
    for incident in sim.incidents:
        signals, page = _EXPECTED[incident.kind]
        grace = _ECHO_S if incident.kind == "slow_burn" else 1800
        hit = next(
            (
                (at, name)
                for at, name, severity in episodes
                if incident.start <= at <= incident.end + grace
                and watches.get(name, set()) & signals
                and (severity == "critical" or not page)
            ),
            None,
        )
        if hit is None:
            results.append(IncidentResult(incident, None, None))
        else:
            results.append(IncidentResult(incident, hit[1], hit[0] - incident.start))
    noise: dict[str, int] = {}
    for item in sim.noise:
        noise[item.kind] = noise.get(item.kind, 0) + 1
    return BacktestReport(
        weeks, seed, step_s, 0.0, results, rules, false_pages, false_tickets, noise
    )


def report_main(
    rules: Sequence[Rule],
    config: EvaluatorConfig,
    *,
    weeks: float = 4,
    seed: int = 7,
    step_s: int = 30,
) -> int:
    """Run the backtest of `rules`, print its report; 0 when every bar is met, else 1."""
    report = run_backtest(rules, weeks, seed, step_s, config=config)
    sys.stdout.write(report.to_markdown())
    return 0 if report.passed() else 1
