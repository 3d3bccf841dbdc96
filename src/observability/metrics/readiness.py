"""Readiness as gauges, per dependency, from the latest (cached) readiness report:

    service_ready{dependency}                     1 while its check answers, 0 when it raises
    service_degraded{dependency}                  1 while it answers slower than the threshold
    readiness_check_duration_seconds{dependency}  how long its last check took

Degraded is a gauge of its own rather than a value between 0 and 1 of `service_ready`:
`dependency_not_ready` pages on `service_ready < 1`, and a slow dependency is not a missing
one. Reports are read at scrape time (and when the dashboards or rules read the gauges); the
`Readiness` cache keeps that to one check per dependency per cache period.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from observability.metrics.names import READINESS_CHECK_DURATION, SERVICE_DEGRADED, SERVICE_READY
from observability.readiness import Readiness

__all__ = ["ReadinessCollector"]


class ReadinessCollector(Collector):
    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness

    def check(self) -> dict[str, bool]:
        return {check.name: check.ok for check in self.readiness.report().checks}

    def collect(self) -> Iterator[Metric]:
        if not self.readiness.checks:
            return
        ready = GaugeMetricFamily(
            SERVICE_READY, "1 when the dependency answers", labels=["dependency"]
        )
        degraded = GaugeMetricFamily(
            SERVICE_DEGRADED,
            "1 when the dependency answers slower than the readiness threshold",
            labels=["dependency"],
        )
        seconds = GaugeMetricFamily(
            READINESS_CHECK_DURATION,
            "Duration of the dependency's last readiness check",
            labels=["dependency"],
        )
        for check in self.readiness.report().checks:
            ready.add_metric([check.name], 1.0 if check.ok else 0.0)
            degraded.add_metric([check.name], 1.0 if check.degraded else 0.0)
            seconds.add_metric([check.name], check.seconds)
        yield ready
        yield degraded
        yield seconds
