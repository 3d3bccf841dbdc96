"""Backtest alert rules: replay weeks of minutes through the real evaluator.

    run_backtest(rules, weeks=4, seed=7) -> BacktestReport        one seeded simulation
    run_backtests({name: (rules, config)}, weeks, seed)            several rule sets, one run
    run_seeds(rule_sets, seeds, weeks)                             seeds in worker processes
    replay_history(rules, history, start, end) -> ReplayReport     the platform's stored minutes

Each feeds complete minutes (`MinuteRollup`s and gauge readings) to a `MinuteStore` and lets
the real `Evaluator` (the same state machine, grouping, inhibition and flap damping as in
production) evaluate every `step_s`. Nothing is mocked but time. The simulation is
`observability.alerting.simulation`; the scoring `observability.alerting.scoring`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor

from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.notifiers.base import Notification
from observability.alerting.rules import Rule
from observability.alerting.scoring import (
    BacktestReport,
    Episode,
    ReplayReport,
    Scoring,
    episodes_from,
    score,
    signals_of,
)
from observability.alerting.simulation import Profile, Simulation
from observability.metrics.history import MetricHistory
from observability.metrics.windows import MinuteRollup
from observability.query.minutes import MinuteStore

__all__ = ["RuleSet", "replay_history", "run_backtest", "run_backtests", "run_seeds"]

_MINUTE = 60
RuleSet = tuple[Sequence[Rule], EvaluatorConfig]


class _Replay:
    """One evaluator over a shared MinuteStore, its notifications kept with their time."""

    def __init__(self, rules: Sequence[Rule], store: MinuteStore, config: EvaluatorConfig):
        self.notifications: list[tuple[float, Notification]] = []
        self.clock = 0.0
        self.evaluator = Evaluator(
            rules,
            store,
            notify=lambda n: self.notifications.append((self.clock, n)),
            config=config,
            clock=lambda: self.clock,
        )
        self.defs = {d.name: d for d in self.evaluator.definitions}

    def evaluate(self, t: float) -> None:
        self.clock = t
        self.evaluator.evaluate_once(t)

    def episodes(self) -> list[Episode]:
        return episodes_from(self.notifications, self.defs)

    def severities(self) -> dict[str, str]:
        return {name: str(d.severity) for name, d in self.defs.items()}


def _run(
    replays: Sequence[_Replay],
    start: float,
    end: float,
    step_s: int,
    feed: Callable[[float, float], None],
) -> None:
    """Evaluate every `step_s` from `start` to `end`; `feed(lo, hi)` adds the minutes of
    [lo, hi), each once it is over."""
    if step_s < 1 or (_MINUTE % step_s and step_s % _MINUTE):
        raise ValueError("step_s must divide 60 or be a multiple of 60")
    t, fed = start, start
    while t < end:
        complete = t // _MINUTE * _MINUTE
        if complete > fed:
            feed(fed, complete)
            fed = complete
        for replay in replays:
            replay.evaluate(t)
        t += step_s


def run_backtests(
    rule_sets: Mapping[str, RuleSet],
    weeks: float = 4,
    seed: int = 7,
    step_s: int = 30,
    *,
    profile: Profile | None = None,
    scoring: Scoring | None = None,
) -> dict[str, BacktestReport]:
    """Score several rule sets against the same simulated weeks (one simulation, one store,
    one evaluator per set): what a change to a rule buys, on identical data."""
    began = time.perf_counter()
    sim = Simulation(weeks, seed, profile)
    store = MinuteStore()
    replays = {name: _Replay(rules, store, config) for name, (rules, config) in rule_sets.items()}

    def feed(lo: float, hi: float) -> None:
        for minute in range(int(lo), int(hi), _MINUTE):
            rollup, gauges = sim.minute(minute)
            store.add(rollup, gauges)

    _run(list(replays.values()), sim.start, sim.end, step_s, feed)
    scoring = scoring or Scoring()
    elapsed = time.perf_counter() - began
    reports = {}
    for name, replay in replays.items():
        episodes = replay.episodes()
        watches = {n: signals_of(d, sim.profile) for n, d in replay.defs.items()}
        results = score(sim.incidents, sim.profile.incidents, episodes, watches, scoring)
        reports[name] = BacktestReport(
            weeks,
            seed,
            step_s,
            elapsed,
            sim.start,
            results,
            episodes,
            replay.severities(),
            sim.noise,
            scoring,
        )
    return reports


def run_backtest(
    rules: Sequence[Rule],
    weeks: float = 4,
    seed: int = 7,
    step_s: int = 30,
    *,
    profile: Profile | None = None,
    config: EvaluatorConfig | None = None,
    scoring: Scoring | None = None,
) -> BacktestReport:
    """Simulate `weeks` of metrics, evaluate `rules` every `step_s`, score the alerts."""
    config = config or EvaluatorConfig(log_transitions=False)
    reports = run_backtests(
        {"rules": (rules, config)}, weeks, seed, step_s, profile=profile, scoring=scoring
    )
    return reports["rules"]


def _one_seed(
    rule_sets: Mapping[str, RuleSet], weeks: float, seed: int, step_s: int
) -> dict[str, BacktestReport]:
    return run_backtests(rule_sets, weeks, seed, step_s)


def run_seeds(
    rule_sets: Mapping[str, RuleSet],
    seeds: Sequence[int],
    weeks: float = 4,
    step_s: int = 30,
    *,
    workers: int = 2,
) -> dict[int, dict[str, BacktestReport]]:
    """`run_backtests` for each seed, `workers` seeds at a time in worker processes."""
    if workers <= 1 or len(seeds) == 1:
        return {seed: _one_seed(rule_sets, weeks, seed, step_s) for seed in seeds}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {seed: pool.submit(_one_seed, rule_sets, weeks, seed, step_s) for seed in seeds}
        return {seed: future.result() for seed, future in futures.items()}


class _HistoryFeed:
    """Stored minutes into a MinuteStore in time order, read from the history in chunks (a
    week is 10,080 minutes: a query per minute would cost more than the replay)."""

    chunk_s = 6 * 3600

    def __init__(self, history: MetricHistory, store: MinuteStore) -> None:
        self.history = history
        self.store = store
        self.loaded_until: float | None = None
        self.buffer: dict[int, tuple[MinuteRollup | None, dict[str, float] | None]] = {}
        self.found: set[int] = set()  # minutes with traffic read from the history

    def _load(self, lo: float) -> None:
        hi = lo + self.chunk_s
        gauges = self.history.gauges(lo, hi)
        rollups = {r.minute_start: r for r in self.history.rollups(lo, hi)}
        self.found.update(rollups)
        for minute in sorted(set(rollups) | set(gauges)):
            self.buffer[minute] = (rollups.get(minute), gauges.get(minute))
        self.loaded_until = hi

    def feed(self, lo: float, hi: float) -> None:
        if self.loaded_until is None:
            self.loaded_until = lo
        while self.loaded_until < hi:
            self._load(self.loaded_until)
        for minute in sorted(m for m in self.buffer if lo <= m < hi):
            rollup, gauges = self.buffer.pop(minute)
            if rollup is not None:
                self.store.add(rollup, gauges)
            elif gauges:
                self.store.add_gauges(minute, gauges)


def replay_history(
    rules: Sequence[Rule],
    history: MetricHistory,
    start: float,
    end: float,
    *,
    step_s: int = 30,
    config: EvaluatorConfig | None = None,
    warmup_s: float = 3 * 86400 + 3600,
) -> ReplayReport:
    """Replay the stored minutes of [start, end) through `rules`: "would these rules have
    paged last week?". The minutes of the `warmup_s` before `start` fill the long windows
    first (nothing is evaluated over them)."""
    start, end = start // _MINUTE * _MINUTE, end // _MINUTE * _MINUTE
    store = MinuteStore()
    replay = _Replay(rules, store, config or EvaluatorConfig(log_transitions=False))
    feeder = _HistoryFeed(history, store)
    feeder.feed(start - warmup_s, start)
    _run([replay], start, end, step_s, feeder.feed)
    minutes = sum(1 for m in feeder.found if start <= m < end)
    return ReplayReport(start, end, step_s, minutes, replay.episodes(), replay.severities())
