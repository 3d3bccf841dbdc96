"""A lost instance's last minutes reach the history: its minute recorder died with it (kill -9,
a crashed host), but its 10 s buckets are in the shared store up to its last publish. The
leader writes the minutes after the last one it recorded into the history under its name, once
per loss, so 6 h and longer views lose at most the last bucket, not its unrecorded minutes."""

from __future__ import annotations

import time
from collections.abc import Callable

from observability.fleet.registry import InstanceRegistry
from observability.fleet.rollups import FleetRollups
from observability.logging import get_logger
from observability.metrics.history import MetricHistory

__all__ = ["LostMinutes"]

log = get_logger("observability.fleet")


class LostMinutes:
    """`run()` once per leader round: each newly lost instance's minutes, recovered."""

    def __init__(
        self,
        registry: InstanceRegistry,
        rollups: FleetRollups,
        history: MetricHistory,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.rollups = rollups
        self.history = history
        self._clock = clock
        self._done: set[str] = set()
        self.recovered = 0  # minutes written for lost instances

    def run(self) -> None:
        for info in self.registry.instances():
            if info.state != "lost":
                self._done.discard(info.instance)  # back up: a later loss is a new one
                continue
            if info.instance in self._done:
                continue
            last = self.history.last_minute(info.instance)
            since = last + 60 if last is not None else self._clock() - self.rollups.keep_s
            minutes = self.rollups.minutes(info.instance, since)
            self.history.record(minutes, instance=info.instance)
            self._done.add(info.instance)
            self.recovered += len(minutes)
            log.warning(
                "fleet_lost_minutes_recovered", instance=info.instance, minutes=len(minutes)
            )
