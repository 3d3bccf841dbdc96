"""Fault injection for game days: off unless EP_FAULT_INJECTION=true, and only for admin keys.

Each fault acts where the real failure would: database latency and outages in the SQLAlchemy
engine's cursor events, a cache outage in the cache's calls, an error burst in the assignment
path, memory pressure as a real allocation. (CloudWatch being unreachable is not simulated in
here: the game day breaks the network path itself, see `gameday.netfault`.) Turning a fault
off restores normal behaviour at once; every change is logged (`fault_injected`,
`fault_cleared`) so incident evidence shows it.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from redis import ConnectionError as RedisConnectionError
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

from experimentation_platform.storage.cache import CacheObserver, CacheTimer, ConfigCache
from observability.logging import get_logger

__all__ = ["FaultInjectedError", "FaultState", "Faults", "FaultyCache"]

log = get_logger("experimentation_platform.faults")


class FaultInjectedError(RuntimeError):
    """Raised by an injected fault on the assignment path."""


@dataclass
class FaultState:
    db_latency_ms: float = 0.0
    db_unavailable: bool = False
    cache_unavailable: bool = False
    assignment_error_rate: float = 0.0  # share of assignments that raise, 0..1
    memory_pressure_mb: int = 0

    def active(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v}


@dataclass
class Faults:
    enabled: bool
    state: FaultState = field(default_factory=FaultState)
    _ballast: bytearray = field(default_factory=bytearray)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, **changes: Any) -> FaultState:
        """Apply fault changes (all or none)."""
        with self._lock:
            for name in changes:
                if not hasattr(self.state, name):
                    raise ValueError(f"unknown fault '{name}'")
            before = self.state.active()
            for name, value in changes.items():
                setattr(self.state, name, value)
            self._apply_memory_pressure()
            after = self.state.active()
        for name, value in after.items():
            if before.get(name) != value:
                log.warning("fault_injected", fault=name, value=value)
        for name in before.keys() - after.keys():
            log.warning("fault_cleared", fault=name)
        return self.state

    def clear(self) -> FaultState:
        return self.update(**asdict(FaultState()))

    def _apply_memory_pressure(self) -> None:
        wanted = self.state.memory_pressure_mb * 1024 * 1024
        if len(self._ballast) == wanted:
            return
        # One block, every page written: resident at once. glibc's malloc maps a block over
        # 32 MiB on its own, so freeing it (the old one first) hands the memory back to the OS
        # (measured: 512 MB on, RSS +512 MB; cleared, back to where it was).
        self._ballast = bytearray()
        self._ballast = bytearray(b"\x01") * wanted

    # --- hooks -------------------------------------------------------------------------------
    def instrument_engine(self, engine: Engine) -> None:
        def before_execute(*_args: Any) -> None:
            state = self.state
            if state.db_unavailable:
                raise OperationalError(
                    "fault injection", None, ConnectionRefusedError("database unavailable")
                )
            if state.db_latency_ms > 0:
                time.sleep(state.db_latency_ms / 1000.0)

        event.listen(engine, "before_cursor_execute", before_execute)

    def maybe_fail_assignment(self) -> None:
        rate = self.state.assignment_error_rate
        if rate > 0 and random.random() < rate:
            raise FaultInjectedError("injected fault: assignment backend failure")


class FaultyCache:
    """Wraps the configuration cache: while the cache fault is on, it fails like a Redis that
    went away (reads miss, invalidation and the readiness ping raise) and reports it as one
    would: every call an error of its operation in the cache metrics."""

    def __init__(self, inner: ConfigCache, faults: Faults) -> None:
        self.inner = inner
        self.faults = faults
        self.backend = inner.backend

    @property
    def local(self) -> bool:
        return self.inner.local and not self.faults.state.cache_unavailable

    @property
    def observer(self) -> CacheObserver:
        return self.inner.observer

    @observer.setter
    def observer(self, observer: CacheObserver) -> None:
        self.inner.observer = observer

    @property
    def timer(self) -> CacheTimer:
        return self.inner.timer

    @timer.setter
    def timer(self, timer: CacheTimer) -> None:
        self.inner.timer = timer

    def _down(self, operation: str) -> bool:
        if not self.faults.state.cache_unavailable:
            return False
        self.inner.timer(self.backend, operation, 0.0, True)  # as RedisCache reports a failure
        return True

    def get(self, key: str) -> dict[str, Any] | None:
        if self._down("get"):
            self.inner.observer(self.backend, "error")
            return None
        return self.inner.get(key)

    def set(self, key: str, value: dict[str, Any]) -> None:
        if not self._down("set"):
            self.inner.set(key, value)

    def delete(self, *keys: str) -> None:
        if self._down("delete"):
            raise RedisConnectionError("fault injection: cache unavailable")
        self.inner.delete(*keys)

    def ping(self) -> None:
        if self._down("ping"):
            raise RedisConnectionError("fault injection: cache unavailable")
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()
