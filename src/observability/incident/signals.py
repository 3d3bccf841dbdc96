"""The toolkit's dependency signals for incident evidence, as data: what each dependency's
health is measured by, compared before and during an incident (`changes.DependencySignal`).

An app adds its own beside these (`(*default_signals(probes), MY_SIGNAL)`) through
`ObservabilityConfig.dependency_signals`.
"""

from __future__ import annotations

from collections.abc import Iterable

from observability.incident.changes import DependencySignal
from observability.metrics import names
from observability.query.model import GaugeValue, LatencyQuantile, Ratio

__all__ = ["default_signals"]

# Smaller moves are noise on a shared machine: a few ms of statement time, seconds of lag.
_DB_LATENCY_MIN_MS = 20.0
_LAG_MIN_S = 30.0
_CACHE_LATENCY_MIN_MS = 10.0
_CACHE_ERRORS_MIN = 0.05


def default_signals(readiness: Iterable[str] = ()) -> tuple[DependencySignal, ...]:
    """The database's statement latency (every statement, from the engine's own timing) and
    pool wait, the cache's operation latency and failure ratio, the CloudWatch shipping lag,
    and one readiness signal per probe (1 ready, 0 not)."""
    signals = [
        DependencySignal(
            "database",
            "statement p95",
            LatencyQuantile(0.95, distribution=names.DB_QUERY_DURATION),
            min_change=_DB_LATENCY_MIN_MS,
        ),
        DependencySignal(
            "database",
            "statement p50",
            LatencyQuantile(0.5, distribution=names.DB_QUERY_DURATION),
            min_change=_DB_LATENCY_MIN_MS,
        ),
        DependencySignal(
            "database",
            "pool wait p95",
            LatencyQuantile(0.95, distribution=names.DB_POOL_WAIT),
            min_change=_DB_LATENCY_MIN_MS,
        ),
        DependencySignal(
            "cache",
            "operation p95",
            LatencyQuantile(0.95, distribution=names.CACHE_DURATION),
            min_change=_CACHE_LATENCY_MIN_MS,
        ),
        DependencySignal(
            "cache",
            "failed operations",
            Ratio(names.CACHE_ERRORS, names.CACHE_OPERATIONS),
            unit="ratio",
            min_change=_CACHE_ERRORS_MIN,
        ),
        DependencySignal(
            "cloudwatch",
            "shipping lag",
            GaugeValue(names.CLOUDWATCH_LAG, agg="max"),
            unit="s",
            min_change=_LAG_MIN_S,
        ),
    ]
    for probe in readiness:
        signals.append(
            DependencySignal(
                probe,
                "readiness",
                GaugeValue(names.SERVICE_READY, where={"dependency": probe}, agg="min"),
                unit="state",
                worse="down",
                min_change=0.5,
            )
        )
    return tuple(signals)
