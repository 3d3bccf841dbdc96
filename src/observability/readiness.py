"""Readiness from named checks of what requests need, cached briefly.

A check is a plain callable that raises when its dependency cannot serve requests and may
return a short detail (a schema revision, say). `Readiness.report()` runs every check at most
once per `cache_seconds` (load balancers poll often; a check costs a query) and says which
dependency failed and why, by exception type and the check's own message, never a traceback.

Every check's latency is reported. A check that answers but takes longer than
`degraded_seconds` marks its dependency *degraded*: the report's status is "degraded" and the
instance stays in rotation (`ok` is still true: a slow database is not a missing one, and
taking every instance out because all share the slow database would turn slow into down).

    readiness = Readiness({"database": db_check, "cache": cache.ping}, degraded_seconds=0.25)
    report = readiness.report()
    status = 200 if report.ok else 503   # report.status: ok | degraded | unavailable
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CheckFailed", "CheckResult", "Readiness", "ReadinessReport"]

Check = Callable[[], object]


class CheckFailed(Exception):
    """Raised by a check whose message is safe to show to anyone (no secret, no path)."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str  # "ok", the check's detail, or "unavailable: <why>"
    seconds: float  # how long the check took (slow dependencies show here)
    degraded: bool = False  # answered, but slower than the degraded threshold


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    checks: tuple[CheckResult, ...]
    checked_at: float  # wall clock of the run this report comes from

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    @property
    def degraded(self) -> list[str]:
        return [check.name for check in self.checks if check.degraded]

    @property
    def status(self) -> str:
        """unavailable (a check failed), degraded (one answered slowly) or ok."""
        if not self.ok:
            return "unavailable"
        return "degraded" if self.degraded else "ok"

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "checks": {check.name: check.detail for check in self.checks},
            "latency_ms": {check.name: round(check.seconds * 1000, 1) for check in self.checks},
        }
        if not self.ok:
            body["failing"] = self.failing
        if self.degraded:
            body["degraded"] = self.degraded
        return body


def _run(name: str, check: Check, degraded_seconds: float | None) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = check()
    except CheckFailed as exc:
        return CheckResult(name, False, f"unavailable: {exc}", time.perf_counter() - started)
    except Exception as exc:  # any failure means not ready; its type names it, not its text
        reason = f"unavailable: {type(exc).__name__}"
        return CheckResult(name, False, reason, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    shown = "ok" if detail is None or detail is True else str(detail)
    slow = degraded_seconds is not None and seconds > degraded_seconds
    return CheckResult(name, True, shown, seconds, degraded=slow)


class Readiness:
    def __init__(
        self,
        checks: Mapping[str, Check],
        *,
        cache_seconds: float = 1.0,
        degraded_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = dict(checks)
        self.cache_seconds = cache_seconds
        self.degraded_seconds = degraded_seconds  # None: never degraded, only ok or not
        self.clock = clock
        self._report: ReadinessReport | None = None
        self._fresh_until = 0.0
        self._lock = threading.Lock()
        self.runs = 0

    def report(self) -> ReadinessReport:
        """The latest report, re-checked when older than `cache_seconds` (one caller checks,
        concurrent callers wait for its result instead of checking again)."""
        with self._lock:
            if self._report is not None and self.clock() < self._fresh_until:
                return self._report
            report = ReadinessReport(
                tuple(
                    _run(name, check, self.degraded_seconds) for name, check in self.checks.items()
                ),
                time.time(),
            )
            self.runs += 1
            self._report = report
            self._fresh_until = self.clock() + self.cache_seconds
            return report

    def invalidate(self) -> None:
        """Forget the cached report (a known change, e.g. an injected fault, just happened)."""
        with self._lock:
            self._fresh_until = 0.0
