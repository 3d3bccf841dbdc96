"""The instance registry: every instance (and every worker) writes a heartbeat row to the shared
store; anyone can read who is up, who stopped cleanly and who was lost.

    up        seen within `lost_after_s` (3 heartbeats by default)
    stopped   said goodbye (`stop()`: a clean shutdown)
    lost      not seen for `lost_after_s` and never said goodbye (kill -9, a crashed host)

Rows of instances not seen for `forget_after_s` (an hour) are no longer listed: a lost instance
stays visible (and alerting) for that long, then the fleet is its survivors.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, select, update
from sqlalchemy.dialects import postgresql, sqlite

from observability.fleet.tables import instances_table
from observability.logging import get_logger
from observability.metrics import names

__all__ = ["InstanceInfo", "InstanceRegistry", "InstanceState"]

InstanceState = Literal["up", "stopped", "lost"]
log = get_logger("observability.fleet")


@dataclass(frozen=True)
class InstanceInfo:
    instance: str
    service: str
    host: str
    pid: int
    version: str
    started_at: float
    last_seen: float
    stopped_at: float | None
    state: InstanceState

    @property
    def up(self) -> bool:
        return self.state == "up"

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "up": self.up}


class InstanceRegistry(Collector):
    """Heartbeats of this instance, and the fleet as the store knows it. Also a Prometheus
    collector: `instances_up`, `instances_lost`, `instance_up{instance}` (the same numbers on
    every instance, read from the shared store at scrape time)."""

    def __init__(
        self,
        engine: Engine,
        *,
        instance: str,
        service: str,
        version: str = "",
        heartbeat_s: float = 10.0,
        lost_after_s: float | None = None,
        forget_after_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.instance = instance[:160]
        self.service = service[:100]
        self.version = version[:64]
        self.heartbeat_s = heartbeat_s
        self.lost_after_s = lost_after_s if lost_after_s is not None else 3 * heartbeat_s
        self.forget_after_s = forget_after_s
        self._clock = clock
        self._started_at = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.beat_failures = 0

    # -- this instance ------------------------------------------------------------------------
    def beat(self) -> None:
        """Say "still here" (and, the first time, "started")."""
        now = self._clock()
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(instances_table).values(
            instance=self.instance,
            service=self.service,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            version=self.version,
            started_at=self._started_at,
            last_seen=now,
            stopped_at=None,
        )
        statement = statement.on_conflict_do_update(
            index_elements=[instances_table.c.instance],
            set_={"last_seen": now, "stopped_at": None},
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def say_goodbye(self) -> None:
        """Mark this instance stopped (a clean shutdown, not a loss)."""
        now = self._clock()
        with self.engine.begin() as conn:
            conn.execute(
                update(instances_table)
                .where(instances_table.c.instance == self.instance)
                .values(last_seen=now, stopped_at=now)
            )

    def start(self) -> None:
        self._beat_logged()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fleet-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            self.say_goodbye()
        except Exception as exc:  # the store is down: the others will see us as lost
            log.warning("fleet_goodbye_failed", error=type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._beat_logged()

    def _beat_logged(self) -> None:
        try:
            self.beat()
        except Exception as exc:  # retried at the next heartbeat; never fatal
            self.beat_failures += 1
            log.warning("fleet_heartbeat_failed", error=type(exc).__name__)

    # -- the fleet ----------------------------------------------------------------------------
    def instances(self, now: float | None = None) -> list[InstanceInfo]:
        """This service's instances seen within `forget_after_s`, up ones first."""
        now = self._clock() if now is None else now
        table = instances_table.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(instances_table)
                .where(table.service == self.service)
                .where(table.last_seen >= now - self.forget_after_s)
            ).all()
        found = [
            InstanceInfo(
                instance=row.instance,
                service=row.service,
                host=row.host,
                pid=row.pid,
                version=row.version,
                started_at=row.started_at,
                last_seen=row.last_seen,
                stopped_at=row.stopped_at,
                state=self._state(row.last_seen, row.stopped_at, now),
            )
            for row in rows
        ]
        order = {"up": 0, "lost": 1, "stopped": 2}
        return sorted(found, key=lambda i: (order[i.state], i.instance))

    def _state(self, last_seen: float, stopped_at: float | None, now: float) -> InstanceState:
        if stopped_at is not None:
            return "stopped"
        return "up" if now - last_seen <= self.lost_after_s else "lost"

    def collect(self) -> Iterator[Metric]:
        try:
            fleet = self.instances()
        except Exception:  # the store is down: no fleet gauges this scrape
            return
        up = GaugeMetricFamily(names.INSTANCES_UP, "Instances with a recent heartbeat")
        up.add_metric([], float(sum(1 for i in fleet if i.up)))
        yield up
        lost = GaugeMetricFamily(
            names.INSTANCES_LOST, "Instances that stopped heartbeating without a clean stop"
        )
        lost.add_metric([], float(sum(1 for i in fleet if i.state == "lost")))
        yield lost
        each = GaugeMetricFamily(
            names.INSTANCE_UP, "1 while an instance heartbeats, 0 once lost", labels=["instance"]
        )
        for info in fleet:
            if info.state != "stopped":
                each.add_metric([info.instance], 1.0 if info.up else 0.0)
        yield each
