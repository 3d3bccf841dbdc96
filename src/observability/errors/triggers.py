"""When a written error group deserves a human: new, regressed, or spiking.

The store says what changed in each written group (`GroupChange`); `TriggerPolicy` turns that
and the group's rate over the last minute into `ErrorTrigger`s, at most one regression or
spike per group per `interval_seconds` (a new group triggers exactly once: the store creates
it once).
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from observability.errors.store import GroupChange
from observability.severity import Severity

__all__ = ["ErrorTrigger", "RateWindow", "TriggerKind", "TriggerPolicy"]


class TriggerKind(enum.StrEnum):
    NEW_GROUP = "new_group"
    REGRESSION = "regression"
    RATE_SPIKE = "rate_spike"


@dataclass(frozen=True, slots=True)
class ErrorTrigger:
    """A reason to notify someone. Carries masked data only."""

    kind: TriggerKind
    fingerprint: str
    severity: Severity
    type_name: str
    message: str
    count: int
    first_request_id: str | None
    rule_name: str
    rate_per_minute: float
    at: datetime


class RateWindow:
    """Occurrences per group over the last 60 s, in per-second buckets (bounded LRU of groups)."""

    def __init__(self, max_groups: int = 10_000) -> None:
        self._buckets: OrderedDict[str, deque[list[int]]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_groups

    def hit(self, key: str, now: float) -> float:
        second = int(now)
        with self._lock:
            buckets = self._buckets.get(key)
            if buckets is None:
                buckets = self._buckets[key] = deque()
                if len(self._buckets) > self._max:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            if buckets and buckets[-1][0] == second:
                buckets[-1][1] += 1
            else:
                buckets.append([second, 1])
            return self._sum(buckets, second)

    def rate(self, key: str, now: float) -> float:
        with self._lock:
            buckets = self._buckets.get(key)
            return 0.0 if buckets is None else self._sum(buckets, int(now))

    @staticmethod
    def _sum(buckets: deque[list[int]], second: int) -> float:
        while buckets and buckets[0][0] <= second - 60:
            buckets.popleft()
        return float(sum(n for _, n in buckets))


class TriggerPolicy:
    def __init__(
        self,
        rates: RateWindow,
        *,
        spike_per_minute: float | None,
        interval_seconds: float,
        max_keys: int = 10_000,
    ) -> None:
        self.rates = rates
        self.spike_per_minute = spike_per_minute
        self.interval_seconds = interval_seconds
        self._max_keys = max_keys
        self._last: OrderedDict[tuple[str, TriggerKind], float] = OrderedDict()

    def _allow(self, key: tuple[str, TriggerKind], now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval_seconds:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        if len(self._last) > self._max_keys:
            self._last.popitem(last=False)
        return True

    def decide(self, changes: Iterable[GroupChange], now: float) -> list[ErrorTrigger]:
        """The triggers of these written changes (one writer thread calls this)."""
        out: list[ErrorTrigger] = []
        for change in changes:
            if change.status == "ignored":
                continue
            rate = self.rates.rate(change.fingerprint, now)
            kinds: list[TriggerKind] = []
            if change.created:
                kinds.append(TriggerKind.NEW_GROUP)
            elif change.regressed and self._allow(
                (change.fingerprint, TriggerKind.REGRESSION), now
            ):
                kinds.append(TriggerKind.REGRESSION)
            spike = self.spike_per_minute
            if (
                spike is not None
                and rate >= spike
                and self._allow((change.fingerprint, TriggerKind.RATE_SPIKE), now)
            ):
                kinds.append(TriggerKind.RATE_SPIKE)
            out.extend(
                ErrorTrigger(
                    kind=kind,
                    fingerprint=change.fingerprint,
                    severity=change.severity,
                    type_name=change.type_name,
                    message=change.message,
                    count=change.count,
                    first_request_id=change.first_request_id,
                    rule_name=change.rule_name,
                    rate_per_minute=rate,
                    at=datetime.fromtimestamp(now, UTC),
                )
                for kind in kinds
            )
        return out
