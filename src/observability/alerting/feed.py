"""Counters kept outside the rolling windows, copied into them so embedded rules can see them.

The error tracker counts captured errors by severity and the log pipeline counts dropped
lines; rules about those rates read the rolling windows. `CounterFeed.sync()` turns each
cumulative total into an increment of the window counter with the same series key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = ["CounterFeed", "CounterSink"]


class CounterSink(Protocol):
    def count(self, name: str, n: float = 1.0) -> None: ...


class CounterFeed:
    def __init__(
        self, windows: CounterSink, sources: list[Callable[[], Mapping[str, float]]]
    ) -> None:
        self.windows = windows
        self.sources = sources
        self._last: dict[str, float] = {}

    def sync(self) -> None:
        for source in self.sources:
            for key, total in source().items():
                delta = total - self._last.get(key, 0.0)
                if delta > 0:
                    self.windows.count(key, delta)
                self._last[key] = total
