"""`service_ready{dependency}`: 1 while a dependency's readiness probe answers, 0 when it
raises. Probes run at scrape time (and when the dashboards or rules read the gauges)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from observability.metrics.names import SERVICE_READY

__all__ = ["ReadinessCollector"]


class ReadinessCollector(Collector):
    def __init__(self, probes: Mapping[str, Callable[[], object]]) -> None:
        self.probes = dict(probes)

    def check(self) -> dict[str, bool]:
        status = {}
        for name, probe in self.probes.items():
            try:
                probe()
                status[name] = True
            except Exception:  # any failure means not ready; /health/ready says why
                status[name] = False
        return status

    def collect(self) -> Iterator[Metric]:
        if not self.probes:
            return
        ready = GaugeMetricFamily(
            SERVICE_READY, "1 when the dependency answers", labels=["dependency"]
        )
        for dependency, ok in self.check().items():
            ready.add_metric([dependency], 1.0 if ok else 0.0)
        yield ready
