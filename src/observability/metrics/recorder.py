"""Once a minute: complete minutes of the rolling windows into the history store, with the
gauges of that minute, and (when CloudWatch is on) both as EMF lines.

A background thread wakes every 15 s; a failed write is retried on the next round and logged,
never fatal. `stop()` persists the last complete minutes, so a clean shutdown loses none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from observability.logging import get_logger
from observability.metrics.emf import EmfPublisher
from observability.metrics.history import MetricHistory
from observability.metrics.windows import RollingWindows

__all__ = ["EmfSink", "MinuteRecorder"]

log = get_logger("observability.metrics")

# (log group key, timestamp in ms, line): what a CloudWatch shipper's submit_many takes.
EmfSink = Callable[[Sequence[tuple[str, int, str]]], None]
_HISTORY_DAYS = 7


class MinuteRecorder:
    def __init__(
        self,
        windows: RollingWindows,
        history: MetricHistory,
        *,
        gauges: Callable[[], Mapping[str, float]] | None = None,
        emf: EmfPublisher | None = None,
        emf_sink: EmfSink | None = None,
        interval_s: float = 15.0,
    ) -> None:
        self.windows = windows
        self.history = history
        self.gauges = gauges
        self.emf = emf if emf_sink is not None else None
        self.emf_sink = emf_sink
        self.interval_s = interval_s
        self._last_minute = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def persist_minutes(self) -> int:
        """Write the complete minutes not written yet; how many."""
        rollups = self.windows.completed_minutes(since=self._last_minute)
        if not rollups:
            return 0
        self.history.record(rollups)
        self._last_minute = max(r.minute_start for r in rollups) + 60
        gauges = self.gauges() if self.gauges is not None else None
        if gauges is not None:
            self.history.record_gauges(rollups[-1].minute_start, gauges)
        if self.emf is not None and self.emf_sink is not None:
            stamp = int(time.time() * 1000)
            lines = self.emf.lines_for_rollups(rollups, gauges)
            self.emf_sink([("services", stamp, line) for line in lines])
        return len(rollups)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="metrics-minute", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.persist_minutes()  # the last complete minutes are not lost at shutdown
        except Exception as exc:
            log.warning("metrics_history_failed", error=type(exc).__name__)

    def _loop(self) -> None:
        last_prune = 0.0
        while not self._stop.wait(self.interval_s):
            try:
                self.persist_minutes()
                if time.time() - last_prune > 3600:
                    self.history.prune(time.time() - _HISTORY_DAYS * 86400)
                    last_prune = time.time()
            except Exception as exc:  # a failed write is retried next round, never fatal
                log.warning("metrics_history_failed", error=type(exc).__name__)
