"""A label guard: the first N distinct values of a label pass, later ones fold into one value.

Per-experiment and per-flag labels are bounded only by what operators create; one runaway
script creating 100,000 experiments must not create 100,000 time series in every instrument
that carries the label. prometheus_client has no such limit, so this small class provides it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from observability.metrics.names import CARDINALITY_OVERFLOW

__all__ = ["CARDINALITY_OVERFLOW", "LabelGuard", "LabelOverflowCounter"]


OverflowHook = Callable[[str], None]


def _ignore(_metric: str) -> None:
    return


class LabelGuard:
    """Admit at most `max_values` distinct values of one label; fold the rest.

    `guard(value)` returns the value itself while it is one of the first `max_values` distinct
    values seen, and `overflow_value` afterwards. Every fold calls `on_overflow(metric)`, the
    name of the metric this guard protects (never the folded value: it is unbounded and may be
    sensitive). Thread-safe: values already admitted are answered without taking the lock.
    """

    __slots__ = ("_lock", "_seen", "max_values", "metric", "on_overflow", "overflow_value")

    def __init__(
        self,
        max_values: int,
        overflow_value: str = "__other__",
        on_overflow: OverflowHook | None = None,
        *,
        metric: str = "unknown",
    ) -> None:
        if max_values < 0:
            raise ValueError("max_values must be >= 0")
        self.max_values = max_values
        self.overflow_value = overflow_value
        self.on_overflow: OverflowHook = on_overflow or _ignore
        self.metric = metric
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:  # set membership is atomic: the hot path takes no lock
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.max_values and value != self.overflow_value:
                self._seen.add(value)
                return value
        # telemetry never raises into its host: the fold happens even if the hook fails
        with contextlib.suppress(Exception):
            self.on_overflow(self.metric)
        return self.overflow_value

    @property
    def admitted(self) -> int:
        """How many distinct values passed so far."""
        return len(self._seen)

    def reset(self) -> None:
        with self._lock:
            self._seen.clear()


class LabelOverflowCounter:
    """`metric_label_overflow_total{metric}`: one increment per folded label value.

    Callable as the `on_overflow` hook of any number of guards; `guard()` builds one wired to it.
    """

    def __init__(self, registry: CollectorRegistry, *, name: str = CARDINALITY_OVERFLOW) -> None:
        self.counter = Counter(
            name,
            "Label values folded into the overflow value by a cardinality guard",
            ["metric"],
            registry=registry,
        )
        self._children: dict[str, Counter] = {}

    def __call__(self, metric: str) -> None:
        child = self._children.get(metric)
        if child is None:
            child = self._children[metric] = self.counter.labels(metric=metric)
        child.inc()

    def guard(self, metric: str, max_values: int, overflow_value: str = "__other__") -> LabelGuard:
        return LabelGuard(max_values, overflow_value, self, metric=metric)
