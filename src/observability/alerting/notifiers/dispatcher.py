"""Route notifications to receivers by severity and labels; deliver with retries and fallback.

    dispatch(n) -> DispatchResult   synchronous: waits for every receiver, returns outcomes
    submit(n)   -> Future | None     asynchronous: returns at once (bounded number in flight)

Steps for one notification: mask every text field (secrets never reach a receiver or the
log) -> optional dedup (same key + status within a window is suppressed) -> routes pick the
receiver names -> each receiver runs on its *own* small thread pool, so a slow or dead
receiver only backs up its own queue -> retries with exponential backoff and jitter, bounded
in attempts and total time, honouring Retry-After -> if every receiver failed, the fallback
receiver -> one log record per receiver. Nothing here raises into the caller.
"""

from __future__ import annotations

import functools
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry, Counter

from observability.alerting.notifiers.base import (
    SEVERITIES,
    Notification,
    Notifier,
    NotifierError,
    Severity,
    mask_notification,
    stable_hash,
)
from observability.alerting.notifiers.log import NotificationLog, NotificationRecord, Outcome

__all__ = [
    "DEFAULT_ROUTES",
    "Deduplicator",
    "DispatchResult",
    "Dispatcher",
    "ReceiverOutcome",
    "RetryPolicy",
    "Route",
    "resolve_receivers",
    "routes_from_table",
]

_logger = structlog.get_logger("observability.alerting.notifiers")


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True)
class Route:
    """Which receivers get notifications matching every given condition.

    Routes are tried in order; the first match wins unless it sets `continue_matching`
    (then later routes add their receivers too), like Alertmanager's `continue`.
    """

    receivers: tuple[str, ...]
    severities: frozenset[Severity] | None = None  # None: any severity
    labels: Mapping[str, str] = field(default_factory=dict)  # label == value
    label_patterns: Mapping[str, str] = field(default_factory=dict)  # label fully matches regex
    source: str | None = None  # "alert" or "error"; None: both
    continue_matching: bool = False
    _compiled: Mapping[str, re.Pattern[str]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "receivers", tuple(self.receivers))
        if self.severities is not None:
            unknown = set(self.severities) - set(SEVERITIES)
            if unknown:
                raise ValueError(f"unknown severities {sorted(unknown)}; use {SEVERITIES}")
        compiled = {k: re.compile(p) for k, p in self.label_patterns.items()}
        object.__setattr__(self, "_compiled", compiled)

    def matches(self, notification: Notification) -> bool:
        if self.severities is not None and notification.severity not in self.severities:
            return False
        if self.source is not None and notification.source != self.source:
            return False
        labels = notification.labels
        if any(labels.get(k) != v for k, v in self.labels.items()):
            return False
        return all(p.fullmatch(labels.get(k, "")) for k, p in self._compiled.items())


def routes_from_table(table: Mapping[Severity, Sequence[str]]) -> tuple[Route, ...]:
    """One route per severity from a `severity -> receiver names` table."""
    return tuple(Route(tuple(names), severities=frozenset({sev})) for sev, names in table.items())


# critical pages someone; high goes to chat and mail; medium to chat; low stays on dashboards.
DEFAULT_ROUTES: tuple[Route, ...] = routes_from_table(
    {
        Severity.CRITICAL: ["pagerduty"],
        Severity.HIGH: ["slack", "email"],
        Severity.MEDIUM: ["slack"],
        Severity.LOW: [],
    }
)


def resolve_receivers(routes: Iterable[Route], notification: Notification) -> tuple[str, ...]:
    """The receiver names for `notification`, in route order, without duplicates."""
    names: list[str] = []
    for route in routes:
        if not route.matches(notification):
            continue
        names.extend(name for name in route.receivers if name not in names)
        if not route.continue_matching:
            break
    return tuple(names)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by total time per receiver."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 10.0
    max_elapsed: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt number `attempt` (1-based): half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        # Jitter spreads retries of many instances hitting the same receiver at once.
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


class Deduplicator:
    """Suppresses a repeat of the same key and status within `window_seconds`.

    Thread-safe and bounded (the oldest keys are forgotten first). A status change
    (firing -> resolved) always passes. The window counts from the last notification let
    through, so an alert that keeps firing is re-sent once per window.
    """

    def __init__(
        self,
        window_seconds: float = 300.0,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window_seconds = window_seconds
        self._max_keys = max_keys
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()
        self.suppressed = 0

    def allow(self, key: str, status: str) -> bool:
        """True (and remembered) if this key + status was not let through within the window."""
        now = self._clock()
        with self._lock:
            last = self._seen.get((key, status))
            if last is not None and now - last < self.window_seconds:
                self.suppressed += 1
                return False
            self._seen[(key, status)] = now
            self._seen.move_to_end((key, status))
            while len(self._seen) > self._max_keys:
                self._seen.popitem(last=False)
            return True

    def forget(self, key: str, status: str) -> None:
        """Let the next identical notification through (e.g. nothing was delivered)."""
        with self._lock:
            self._seen.pop((key, status), None)


@dataclass(frozen=True)
class ReceiverOutcome:
    receiver: str
    delivered: bool
    attempts: int
    error: str | None = None
    fallback: bool = False
    elapsed_seconds: float = 0.0


@dataclass(frozen=True)
class DispatchResult:
    """What happened to one notification. `key` is the masked key."""

    key: str
    status: str
    severity: str
    outcomes: tuple[ReceiverOutcome, ...] = ()
    suppressed: bool = False
    error: str | None = None  # set when the notification could not be processed at all

    @property
    def delivered(self) -> bool:
        return any(o.delivered for o in self.outcomes)

    @property
    def fallback_used(self) -> bool:
        return any(o.fallback for o in self.outcomes)

    def outcome(self, receiver: str) -> ReceiverOutcome | None:
        return next((o for o in self.outcomes if o.receiver == receiver), None)


_STAT_NAMES = (
    "dispatched",
    "delivered",
    "failed",
    "retries",
    "suppressed",
    "unrouted",
    "fallback_used",
    "dropped",
    "internal_errors",
)


class Dispatcher:
    """Delivers notifications to the receivers their route names. Never raises."""

    def __init__(
        self,
        notifiers: Mapping[str, Notifier] | Iterable[Notifier],
        *,
        routes: Sequence[Route] = DEFAULT_ROUTES,
        fallback: str | None = None,
        retry: RetryPolicy | None = None,
        mask: Callable[[str], str] = _identity,
        log: NotificationLog | None = None,
        dedup: Deduplicator | None = None,
        workers_per_receiver: int = 2,
        max_pending: int = 1000,
        wait_margin: float = 30.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if isinstance(notifiers, Mapping):
            self._notifiers: dict[str, Notifier] = dict(notifiers)
        else:
            self._notifiers = {n.name: n for n in notifiers}
        if fallback is not None and fallback not in self._notifiers:
            raise ValueError(
                f"fallback receiver {fallback!r} is not configured; have {sorted(self._notifiers)}"
            )
        self.routes = tuple(routes)
        self.fallback = fallback
        self.retry = retry or RetryPolicy()
        self.log = log if log is not None else NotificationLog()
        self.dedup = dedup
        self._mask = mask
        self._max_pending = max_pending
        # How long `dispatch` waits: the retry budget of the receivers and of the fallback,
        # plus a margin for one slow final attempt each.
        self._wait_timeout = 2 * (self.retry.max_elapsed + wait_margin)
        # One pool per receiver: a slow or dead receiver only backs up its own queue.
        self._pools = {
            name: ThreadPoolExecutor(workers_per_receiver, thread_name_prefix=f"notify-{name}")
            for name in self._notifiers
        }
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._stats = dict.fromkeys(_STAT_NAMES, 0)
        self._counter: Counter | None = None
        if registry is not None:
            self._counter = Counter(
                "notifications_total",
                "Notification deliveries by receiver and outcome.",
                ["receiver", "outcome"],
                registry=registry,
            )

    @property
    def receivers(self) -> tuple[str, ...]:
        return tuple(self._notifiers)

    @property
    def unknown_receivers(self) -> tuple[str, ...]:
        """Receiver names routes mention but nobody configured (worth a warning at start)."""
        named = {name for route in self.routes for name in route.receivers}
        return tuple(sorted(named - set(self._notifiers)))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    # -- entry points -------------------------------------------------------------------

    def submit(self, notification: Notification) -> Future[DispatchResult] | None:
        """Start delivering `notification` and return at once.

        The future resolves with the `DispatchResult` once every receiver (and the fallback,
        if used) succeeded or gave up; it never holds an exception. None means the
        notification was dropped: too many in flight, or the dispatcher is closed (counted).
        """
        with self._lock:
            if self._closing.is_set() or self._pending >= self._max_pending:
                self._stats["dropped"] += 1
                return None
            self._pending += 1
        future: Future[DispatchResult] = Future()
        future.add_done_callback(self._release)
        try:
            self._start(notification, future)
        except Exception as exc:  # the guard: never raise into the host
            self._count("internal_errors")
            _logger.error("notification_dispatch_crashed", error_type=type(exc).__name__)
            if not future.done():
                future.set_result(
                    _failed_result(notification, f"internal error: {type(exc).__name__}")
                )
        return future

    def dispatch(self, notification: Notification) -> DispatchResult:
        """Deliver `notification`; return once every receiver succeeded or gave up."""
        future = self.submit(notification)
        if future is None:
            return _failed_result(notification, "dropped: dispatcher closed or queue full")
        try:
            return future.result(timeout=self._wait_timeout)
        except TimeoutError:  # delivery goes on in the background; the caller may not wait
            return _failed_result(notification, "gave up waiting for the receivers")

    def close(self, *, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting work. With `drain`, notifications in flight finish first."""
        with self._idle:
            if drain:
                self._idle.wait_for(
                    lambda: self._pending == 0, timeout=timeout or self._wait_timeout
                )
            self._closing.set()  # refuses new work and cuts short any backoff sleep
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------

    def _release(self, _future: Future[DispatchResult]) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _start(self, original: Notification, future: Future[DispatchResult]) -> None:
        self._count("dispatched")
        try:
            notification = mask_notification(original, self._mask)
        except Exception as exc:  # unmasked text must never go out: drop it
            self._count("internal_errors")
            _logger.error("notification_masking_failed", error_type=type(exc).__name__)
            future.set_result(_failed_result(original, f"masking failed: {type(exc).__name__}"))
            return
        n = notification
        if self.dedup is not None and not self.dedup.allow(n.key, n.status):
            self._count("suppressed")
            self._record(n, "-", "suppressed")
            future.set_result(DispatchResult(n.key, n.status, n.severity, suppressed=True))
            return
        names = resolve_receivers(self.routes, n)
        if not names:  # e.g. low severity: dashboards only
            self._count("unrouted")
            self._record(n, "-", "unrouted")
            future.set_result(DispatchResult(n.key, n.status, n.severity))
            return
        _Delivery(self, n, names, future).start(names, fallback=False)

    def _deliver(
        self, name: str, notifier: Notifier, notification: Notification, fallback: bool
    ) -> ReceiverOutcome:
        """Send to one receiver with bounded retries. Runs on that receiver's pool."""
        policy = self.retry
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            retry_after: float | None = None
            try:
                notifier.send(notification)
                elapsed = time.monotonic() - started
                return ReceiverOutcome(name, True, attempts, None, fallback, elapsed)
            except NotifierError as exc:
                error, retryable, retry_after = str(exc), exc.retryable, exc.retry_after
            except Exception as exc:  # a buggy notifier is a failed delivery
                self._count("internal_errors")
                error, retryable = f"{name}: unexpected {type(exc).__name__}: {exc}", False
            if not retryable or attempts >= policy.max_attempts:
                break
            delay = max(policy.backoff(attempts), retry_after or 0.0)
            if time.monotonic() - started + delay > policy.max_elapsed:
                break
            self._count("retries")
            if self._closing.wait(delay):
                break
        elapsed = time.monotonic() - started
        return ReceiverOutcome(name, False, attempts, self._safe_mask(error), fallback, elapsed)

    def _finish(self, notification: Notification, outcome: ReceiverOutcome) -> None:
        result: Outcome = "delivered" if outcome.delivered else "failed"
        self._count(result)
        if self._counter is not None:
            self._counter.labels(outcome.receiver, result).inc()
        fields = {
            "receiver": outcome.receiver,
            "key": notification.key,
            "severity": notification.severity,
            # Not `status`: that is a request line's HTTP status; `--where status>=500` must
            # never find a notification (docs/logging-standards.md, field names).
            "alert_status": notification.status,
            "attempts": outcome.attempts,
            "fallback": outcome.fallback,
        }
        if outcome.delivered:
            _logger.debug("notification_delivered", **fields)
        else:
            _logger.warning("notification_failed", error=outcome.error, **fields)
        self._record(notification, outcome.receiver, result, outcome)

    def _record(
        self,
        notification: Notification,
        receiver: str,
        outcome: Outcome,
        detail: ReceiverOutcome | None = None,
    ) -> None:
        try:
            self.log.record(
                NotificationRecord(
                    at=datetime.now(UTC),
                    key=notification.key,
                    status=notification.status,
                    severity=notification.severity,
                    receiver=receiver,
                    outcome=outcome,
                    attempts=detail.attempts if detail else 0,
                    error=detail.error if detail else None,
                    title=notification.title,
                    fallback=detail.fallback if detail else False,
                    elapsed_seconds=detail.elapsed_seconds if detail else 0.0,
                )
            )
        except Exception:  # a custom log must not break delivery
            self._count("internal_errors")

    def _safe_mask(self, text: str) -> str:
        try:
            return self._mask(text)
        except Exception:  # never let an unmasked error text through
            return "[error text withheld: masking failed]"

    def _count(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1


class _Delivery:
    """One notification in flight: collects receiver outcomes, then fallback, then finishes.

    Driven by completion callbacks on the receivers' pools, so no thread sits waiting for a
    slow receiver; `Dispatcher.dispatch` is just `submit(...).result()`.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        notification: Notification,
        names: Sequence[str],
        future: Future[DispatchResult],
    ) -> None:
        self._dispatcher = dispatcher
        self._notification = notification
        self._primary = tuple(names)
        self._future = future
        self._lock = threading.Lock()
        self._outcomes: list[ReceiverOutcome] = []
        self._remaining = 0

    def start(self, names: Sequence[str], *, fallback: bool) -> None:
        d = self._dispatcher
        with self._lock:
            self._remaining = len(names)
        for name in names:
            notifier = d._notifiers.get(name)
            if notifier is None:
                self._done(ReceiverOutcome(name, False, 0, "receiver not configured", fallback))
                continue
            try:
                task = d._pools[name].submit(
                    d._deliver, name, notifier, self._notification, fallback
                )
            except RuntimeError:  # the pool is shut down
                self._done(ReceiverOutcome(name, False, 0, "dispatcher closed", fallback))
                continue
            task.add_done_callback(functools.partial(self._collect, name, fallback))

    def _collect(self, name: str, fallback: bool, task: Future[ReceiverOutcome]) -> None:
        if task.cancelled():
            outcome = ReceiverOutcome(name, False, 0, "cancelled: dispatcher closed", fallback)
        elif task.exception() is not None:  # _deliver guards itself; belt and braces
            outcome = ReceiverOutcome(name, False, 0, "internal error", fallback)
        else:
            outcome = task.result()
        self._done(outcome)

    def _done(self, outcome: ReceiverOutcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)
            self._remaining -= 1
            if self._remaining > 0:
                return
        try:
            self._stage_finished(fallback_stage=outcome.fallback)
        except Exception as exc:  # the future must resolve whatever happens
            self._dispatcher._count("internal_errors")
            if not self._future.done():
                self._future.set_result(
                    _failed_result(self._notification, f"internal error: {type(exc).__name__}")
                )

    def _stage_finished(self, *, fallback_stage: bool) -> None:
        d, n = self._dispatcher, self._notification
        delivered = any(o.delivered for o in self._outcomes)
        if not delivered and not fallback_stage and d.fallback not in (None, *self._primary):
            d._count("fallback_used")
            self.start((str(d.fallback),), fallback=True)
            return
        if d.dedup is not None and not delivered:
            d.dedup.forget(n.key, n.status)  # nothing got through: let the next one try
        order = {name: i for i, name in enumerate(self._primary)}
        outcomes = tuple(
            sorted(self._outcomes, key=lambda o: (o.fallback, order.get(o.receiver, 0)))
        )
        for outcome in outcomes:
            d._finish(n, outcome)
        self._future.set_result(DispatchResult(n.key, n.status, n.severity, outcomes=outcomes))


def _failed_result(notification: Notification, error: str) -> DispatchResult:
    # The key may hold unmasked text here: report its digest only.
    return DispatchResult(
        key=stable_hash(str(getattr(notification, "key", ""))),
        status=str(getattr(notification, "status", "")),
        severity=str(getattr(notification, "severity", "")),
        error=error,
    )
