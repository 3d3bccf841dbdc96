"""Leadership: one instance of the fleet leads (evaluates alert rules and notifies), the others
follow. The leader holds a `Lease`; it renews it every third of its time to live, and steps down
on its own once it could not renew for a whole time to live (a leader cut off from the store
must not keep notifying while another one takes over)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from observability.fleet.lease import Lease
from observability.logging import get_logger

__all__ = ["Leadership"]

log = get_logger("observability.fleet")


class Leadership:
    def __init__(
        self,
        lease: Lease,
        *,
        on_elected: Callable[[], object],
        on_deposed: Callable[[], object],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lease = lease
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._clock = clock
        self._leading = False
        self._renewed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.elections = 0
        self.renew_failures = 0

    @property
    def leading(self) -> bool:
        return self._leading

    def step(self) -> bool:
        """One round: acquire or renew, or step down; True while leading."""
        try:
            held = self.lease.try_acquire()
        except Exception as exc:  # the store is away: keep leading until the lease would end
            self.renew_failures += 1
            log.warning("fleet_lease_renew_failed", error=type(exc).__name__)
            held = self._leading and self._clock() - self._renewed_at < self.lease.ttl_s
        else:
            if held:
                self._renewed_at = self._clock()
        if held and not self._leading:
            self._leading = True
            self.elections += 1
            log.info("fleet_leader_elected", instance=self.lease.holder, lease=self.lease.name)
            self._on_elected()
        elif not held and self._leading:
            self._leading = False
            log.warning("fleet_leader_deposed", instance=self.lease.holder, lease=self.lease.name)
            self._on_deposed()
        return self._leading

    def start(self) -> None:
        self._stop.clear()
        self.step()
        self._thread = threading.Thread(target=self._run, name="fleet-leadership", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.lease.ttl_s / 3):
            self.step()

    def stop(self) -> None:
        """Stop competing; a leader steps down and frees the lease for the next one at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._leading:
            self._leading = False
            self._on_deposed()
            try:
                self.lease.release()
            except Exception as exc:  # the lease then ends by itself
                log.warning("fleet_lease_release_failed", error=type(exc).__name__)
