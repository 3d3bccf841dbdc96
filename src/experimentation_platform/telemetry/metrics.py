"""The platform's own instruments: domain and business metrics, in Prometheus and in the
rolling windows (which feed the built-in dashboards and the embedded alert evaluator).

Per-experiment and per-flag labels go through a cardinality guard: past the cap, new values
fold into "__other__" and every fold is counted (metric_label_overflow_total{metric}).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from experimentation_platform.telemetry import names as domain
from observability.metrics.cardinality import LabelOverflowCounter
from observability.metrics.windows import RollingWindows

__all__ = ["PlatformMetrics", "PlatformStateCollector"]

FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class PlatformMetrics:
    def __init__(
        self, registry: CollectorRegistry, windows: RollingWindows, max_label_values: int = 200
    ) -> None:
        self.windows = windows
        overflow = LabelOverflowCounter(registry)
        self._experiment = overflow.guard(domain.ASSIGNMENTS, max_label_values)
        self._flag = overflow.guard(domain.FLAG_EVALUATIONS, max_label_values)
        self.assignments = Counter(
            domain.ASSIGNMENTS,
            "Assignment decisions by outcome",
            ["experiment", "outcome"],
            registry=registry,
        )
        self.exposures = Counter(
            domain.EXPOSURES,
            "First exposures recorded",
            ["experiment", "variant"],
            registry=registry,
        )
        self.assignment_seconds = Histogram(
            domain.ASSIGNMENT_DURATION,
            "Assignment, the domain operation",
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.flag_evaluations = Counter(
            domain.FLAG_EVALUATIONS,
            "Flag evaluations by result",
            ["flag", "result"],
            registry=registry,
        )
        self.flag_seconds = Histogram(
            domain.FLAG_EVALUATION_DURATION,
            "Flag evaluation, the domain operation",
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.experiments_created = Counter(
            domain.EXPERIMENTS_CREATED, "Experiments created", registry=registry
        )
        self.conversions = Counter(
            domain.CONVERSION_EVENTS,
            "Events attributed to an experiment",
            ["experiment"],
            registry=registry,
        )
        self.events_ingested = Counter(domain.EVENTS_INGESTED, "Events stored", registry=registry)

    def assignment(
        self, experiment: str, outcome: str, seconds: float, exposed_variant: str | None
    ) -> None:
        key = self._experiment(experiment)
        self.assignments.labels(key, outcome).inc()
        self.assignment_seconds.observe(seconds)
        self.windows.count(domain.ASSIGNMENTS)
        self.windows.count(f'{domain.ASSIGNMENTS}{{outcome="{outcome}"}}')
        self.windows.observe(domain.ASSIGNMENT_DURATION, seconds)
        if exposed_variant is not None:
            self.exposures.labels(key, exposed_variant).inc()
            self.windows.count(domain.EXPOSURES)

    def flag_evaluation(self, flag: str, enabled: bool, seconds: float) -> None:
        result = "on" if enabled else "off"
        self.flag_evaluations.labels(self._flag(flag), result).inc()
        self.flag_seconds.observe(seconds)
        self.windows.count(domain.FLAG_EVALUATIONS)
        self.windows.count(f'{domain.FLAG_EVALUATIONS}{{result="{result}"}}')
        self.windows.observe(domain.FLAG_EVALUATION_DURATION, seconds)

    def experiment_created(self) -> None:
        self.experiments_created.inc()
        self.windows.count(domain.EXPERIMENTS_CREATED)

    def events(self, stored: int, by_experiment: dict[str, int]) -> None:
        self.events_ingested.inc(stored)
        self.windows.count(domain.EVENTS_INGESTED, stored)
        for experiment, count in by_experiment.items():
            self.conversions.labels(self._experiment(experiment)).inc(count)
            self.windows.count(domain.CONVERSION_EVENTS, count)


class PlatformStateCollector(Collector):
    """Gauges read from the database, not counters that drift: experiments by status, the
    sample-ratio check and conversion rate of running experiments.

    The database is read by a background thread every `interval` seconds; a scrape only
    copies the last snapshot (a slow database never slows a scrape)."""

    def __init__(
        self,
        snapshot: Callable[[], dict[str, Any]],
        interval: float = 30.0,
    ) -> None:
        self._snapshot_fn = snapshot
        self.interval = interval
        self._state: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = 0

    def refresh(self) -> None:
        try:
            self._state = self._snapshot_fn()
        except Exception:  # the database is down: keep the last snapshot, readiness says why
            self.failures += 1

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.refresh()
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="platform-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def collect(self) -> Iterator[Metric]:
        state = self._state
        experiments = GaugeMetricFamily(
            domain.EXPERIMENTS, "Experiments by status", labels=["status"]
        )
        for status in ("draft", "running", "paused", "completed"):
            experiments.add_metric([status], float(state.get("by_status", {}).get(status, 0)))
        yield experiments
        srm = GaugeMetricFamily(
            domain.SAMPLE_RATIO_MISMATCH,
            "1 when a running experiment fails the SRM check",
            labels=["experiment"],
        )
        rate = GaugeMetricFamily(
            domain.CONVERSION_RATE,
            "Converting users / exposed users",
            labels=["experiment", "variant"],
        )
        for experiment, result in state.get("results", {}).items():
            srm.add_metric([experiment], 1.0 if result["mismatch"] else 0.0)
            for variant, value in result["rates"].items():
                rate.add_metric([experiment, variant], value)
        yield srm
        yield rate
        age = GaugeMetricFamily(
            "platform_state_age_seconds", "Age of the database snapshot behind these gauges"
        )
        age.add_metric([], time.time() - state.get("at", time.time()))
        yield age
