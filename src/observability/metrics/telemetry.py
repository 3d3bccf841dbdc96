"""Telemetry about telemetry: the log pipeline, error tracker, notifier and CloudWatch shipper
report their own counters here, read at scrape time from the stats they already keep.

The parts are passed in and typed by what is read of them (protocols below), so this module
imports none of them: metrics sit below logging, errors, alerting and cloud in the toolkit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sized
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["OpenGroupsCollector", "TelemetryCollector"]


class LogPipelineStats(Protocol):
    @property
    def emitted(self) -> Mapping[str, int]: ...
    @property
    def sink_errors(self) -> Mapping[str, int]: ...
    @property
    def dropped(self) -> Mapping[str, int]: ...
    @property
    def queue(self) -> Sized: ...


class _TrackerStats(Protocol):
    @property
    def dropped(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def write_failures(self) -> int: ...


class ErrorTrackerStats(Protocol):
    @property
    def by_severity(self) -> Mapping[str, int]: ...
    def stats(self) -> _TrackerStats: ...


class DispatcherStats(Protocol):
    def stats(self) -> Mapping[str, int]: ...


class _ShipperStats(Protocol):
    @property
    def shipped(self) -> int: ...
    @property
    def retried_batches(self) -> int: ...
    @property
    def dropped(self) -> Mapping[str, int]: ...
    @property
    def spooled_bytes(self) -> int: ...
    @property
    def lag_seconds(self) -> float: ...


class ShipperStats(Protocol):
    def stats(self) -> _ShipperStats: ...


class TelemetryCollector(Collector):
    def __init__(
        self,
        logs: Callable[[], LogPipelineStats | None],
        errors: ErrorTrackerStats | None = None,
        dispatcher: DispatcherStats | None = None,
        shipper: ShipperStats | None = None,
    ) -> None:
        self._logs = logs
        self._errors = errors
        self._dispatcher = dispatcher
        self._shipper = shipper

    def collect(self) -> Iterator[Metric]:
        yield from self._log_metrics()
        if self._errors is not None:
            stats = self._errors.stats()
            captured = CounterMetricFamily(
                "error_events", "Exceptions captured, by severity", labels=["severity"]
            )
            for severity in ("critical", "high", "medium", "low"):
                captured.add_metric([severity], self._errors.by_severity.get(severity, 0))
            yield captured
            lost = CounterMetricFamily(
                "error_events_dropped", "Error events lost (buffer full, store down too long)"
            )
            lost.add_metric([], stats.dropped)
            yield lost
            buffered = GaugeMetricFamily(
                "error_events_buffered", "Error events waiting for the error store"
            )
            buffered.add_metric([], stats.buffered)
            yield buffered
            failures = CounterMetricFamily(
                "error_store_write_failures", "Failed writes to the error store"
            )
            failures.add_metric([], stats.write_failures)
            yield failures
        if self._dispatcher is not None:
            sent = CounterMetricFamily(
                "notifications_dispatched", "Notifier dispatcher outcomes", labels=["outcome"]
            )
            for outcome, value in sorted(self._dispatcher.stats().items()):
                sent.add_metric([outcome], value)
            yield sent
        if self._shipper is not None:
            yield from self._shipper_metrics(self._shipper)

    def _log_metrics(self) -> Iterator[Metric]:
        pipeline = self._logs()
        if pipeline is None:
            return
        emitted = CounterMetricFamily(
            "observability_log_events", "Log events produced, by level", labels=["level"]
        )
        for level, value in sorted(pipeline.emitted.items()):
            emitted.add_metric([level], value)
        yield emitted
        dropped = CounterMetricFamily(
            "observability_log_events_dropped", "Log events dropped, by reason", labels=["reason"]
        )
        dropped.add_metric(["none"], 0)  # the series exists before the first drop
        for reason, value in sorted(pipeline.dropped.items()):
            dropped.add_metric([reason], value)
        yield dropped
        sink_errors = CounterMetricFamily(
            "observability_log_sink_errors", "Failed writes, by sink", labels=["sink"]
        )
        for sink, value in sorted(pipeline.sink_errors.items()):
            sink_errors.add_metric([sink], value)
        yield sink_errors
        queued = GaugeMetricFamily("observability_log_queue_depth", "Log events waiting")
        queued.add_metric([], len(pipeline.queue))
        yield queued

    @staticmethod
    def _shipper_metrics(shipper: ShipperStats) -> Iterator[Metric]:
        stats = shipper.stats()
        shipped = CounterMetricFamily("cloudwatch_events_shipped", "Events accepted by CloudWatch")
        shipped.add_metric([], stats.shipped)
        yield shipped
        retried = CounterMetricFamily("cloudwatch_batches_retried", "PutLogEvents retries")
        retried.add_metric([], stats.retried_batches)
        yield retried
        dropped = CounterMetricFamily(
            "cloudwatch_events_dropped", "Events lost, by reason", labels=["reason"]
        )
        dropped.add_metric(["none"], 0)
        for reason, value in sorted(stats.dropped.items()):
            dropped.add_metric([reason], value)
        yield dropped
        spooled = GaugeMetricFamily("cloudwatch_spooled_bytes", "Bytes waiting in the journal")
        spooled.add_metric([], stats.spooled_bytes)
        yield spooled
        lag = GaugeMetricFamily(
            "cloudwatch_shipping_lag_seconds", "Age of the oldest event not yet shipped"
        )
        lag.add_metric([], stats.lag_seconds)
        yield lag


class OpenGroupsCollector(Collector):
    """`error_groups_open{severity}`: open error groups read from the error store (shared by
    every instance, so each reports the same value; dashboards take the max).

    A scrape reads the store at most once per `max_age_s` and otherwise answers from the last
    reading; a failing read keeps the last one (the store's own health is readiness's job)."""

    SEVERITIES = ("critical", "high", "medium", "low")

    def __init__(
        self,
        open_by_severity: Callable[[], Mapping[str, int]],
        name: str = "error_groups_open",
        max_age_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = open_by_severity
        self.name = name
        self.max_age_s = max_age_s
        self._clock = clock
        self._last: Mapping[str, int] = {}
        self._read_at: float | None = None
        self._lock = threading.Lock()
        self.failures = 0

    def _current(self) -> Mapping[str, int]:
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.max_age_s:
                self._read_at = now
                try:
                    self._last = dict(self._read())
                except Exception:  # never fail a scrape over it
                    self.failures += 1
            return self._last

    def collect(self) -> Iterator[Metric]:
        counts = self._current()
        family = GaugeMetricFamily(self.name, "Open error groups, by severity", labels=["severity"])
        for severity in self.SEVERITIES:
            family.add_metric([severity], float(counts.get(severity, 0)))
        yield family
