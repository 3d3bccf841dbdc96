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
from observability.query.model import series_key

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
        self._overflow_value = self._experiment.overflow_value
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
            "Events attributed to an experiment, by the variant the user was exposed to",
            ["experiment", "variant"],
            registry=registry,
        )
        self.events_ingested = Counter(domain.EVENTS_INGESTED, "Events stored", registry=registry)

    def _count(self, name: str, labels: dict[str, str], value: float = 1.0) -> None:
        # The windows hold the same labelled series as Prometheus (and no unlabelled total
        # beside them: a sum over the series is the total, an extra one would count twice).
        self.windows.count(series_key(name, labels), value)

    def _variant(self, experiment: str, variant: str) -> str:
        # A folded experiment folds its variants too: their names are unbounded across
        # experiments (each experiment has at most 20, so the guard bounds the rest).
        return self._overflow_value if experiment == self._overflow_value else variant

    def assignment(
        self, experiment: str, outcome: str, seconds: float, exposed_variant: str | None
    ) -> None:
        key = self._experiment(experiment)
        self.assignments.labels(key, outcome).inc()
        self.assignment_seconds.observe(seconds)
        self._count(domain.ASSIGNMENTS, {"experiment": key, "outcome": outcome})
        self.windows.observe(domain.ASSIGNMENT_DURATION, seconds)
        if exposed_variant is not None:
            variant = self._variant(key, exposed_variant)
            self.exposures.labels(key, variant).inc()
            self._count(domain.EXPOSURES, {"experiment": key, "variant": variant})

    def flag_evaluation(self, flag: str, enabled: bool, seconds: float) -> None:
        result = "on" if enabled else "off"
        key = self._flag(flag)
        self.flag_evaluations.labels(key, result).inc()
        self.flag_seconds.observe(seconds)
        self._count(domain.FLAG_EVALUATIONS, {"flag": key, "result": result})
        self.windows.observe(domain.FLAG_EVALUATION_DURATION, seconds)

    def experiment_created(self) -> None:
        self.experiments_created.inc()
        self.windows.count(domain.EXPERIMENTS_CREATED)

    def events(self, stored: int, by_variant: dict[tuple[str, str], int]) -> None:
        """`by_variant`: events attributed to an experiment, per (experiment, variant)."""
        self.events_ingested.inc(stored)
        self.windows.count(domain.EVENTS_INGESTED, stored)
        for (experiment, variant), count in by_variant.items():
            key = self._experiment(experiment)
            labels = {"experiment": key, "variant": self._variant(key, variant)}
            self.conversions.labels(**labels).inc(count)
            self._count(domain.CONVERSION_EVENTS, labels, count)


class PlatformStateCollector(Collector):
    """Gauges read from the database, not counters that drift: experiments by status, the
    sample-ratio check and, per variant of running experiments, exposed and converted users,
    the conversion rate and its 95% Wilson interval.

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
        per_variant = [
            ("exposed", domain.EXPOSED_USERS, "Users exposed to the variant"),
            ("converted", domain.CONVERTED_USERS, "Exposed users who converted since exposure"),
            ("rate", domain.CONVERSION_RATE, "Converting users / exposed users"),
            ("low", domain.CONVERSION_RATE_LOW, "Conversion rate, 95% Wilson interval, low end"),
            ("high", domain.CONVERSION_RATE_HIGH, "Conversion rate, 95% Wilson interval, high"),
        ]
        families = {
            field: GaugeMetricFamily(name, text, labels=["experiment", "variant"])
            for field, name, text in per_variant
        }
        for experiment, result in state.get("results", {}).items():
            srm.add_metric([experiment], 1.0 if result["mismatch"] else 0.0)
            for variant, values in result["variants"].items():
                for field, family in families.items():
                    family.add_metric([experiment, variant], float(values[field]))
        yield srm
        yield from families.values()
        age = GaugeMetricFamily(
            domain.STATE_AGE, "Age of the database snapshot behind these gauges"
        )
        age.add_metric([], time.time() - state.get("at", time.time()))
        yield age
