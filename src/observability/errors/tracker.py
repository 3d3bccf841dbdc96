"""Error capture: fingerprint, mask, classify in the caller; store and notify in the background.

``ErrorTracker.capture`` never raises and never waits for I/O: it builds a masked event and puts
it on a bounded queue. One writer thread drains the queue, aggregates events per group in
memory and writes up to ``batch_size`` events per transaction, so a storm of identical
exceptions costs a handful of transactions and the counts stay exact. When the store is down
the writer keeps draining into its aggregate (identical errors cost no extra memory) and retries
with backoff; new groups past ``max_pending_groups`` and events past a full queue are dropped
and counted (``stats().dropped``).

Why a hand-written writer rather than sentry-sdk's worker: ours must aggregate per group and
keep the batch across failures; sentry's worker drops on failure by design.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy import exc as sa_exc

from observability.errors.classify import Classifier, Subject, tag_set
from observability.errors.fingerprint import (
    Fingerprinter,
    Frame,
    parametrize_message,
    qualified_type_names,
    type_name,
)
from observability.errors.recent import RecentGroups
from observability.errors.store import ErrorEvent, ErrorStore, GroupBatch, GroupChange, Occurrence
from observability.errors.triggers import ErrorTrigger, RateWindow, TriggerKind, TriggerPolicy

__all__ = ["ErrorTracker", "ErrorTrigger", "TrackerConfig", "TrackerStats", "TriggerKind"]

_CAPTURED_ATTR = "__observability_fingerprint__"
_log = logging.getLogger(__name__)


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    queue_size: int = 10_000  # events waiting for the writer
    batch_size: int = 500  # events drained per transaction
    linger_seconds: float = 0.05  # wait this long for a batch to fill: fewer transactions
    max_pending_groups: int = 1_000  # distinct groups held while the store is down
    sample_limit: int = 20  # sample occurrences kept per group
    max_users_per_batch: int = 10_000
    retry_initial_seconds: float = 0.5
    retry_max_seconds: float = 30.0
    spike_per_minute: float | None = 100.0  # rate_spike trigger threshold; None = off
    trigger_interval_seconds: float = 600.0  # at most one rate_spike/regression per group
    sentry_per_minute: int = 10  # per group; Sentry groups by our fingerprint anyway
    ignore_types: tuple[str, ...] = ("KeyboardInterrupt", "SystemExit", "GeneratorExit")
    capture_locals: bool = False  # in-app frame variables (masked, repr'd, truncated)
    max_message_chars: int = 2_000
    close_timeout_seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class TrackerStats:
    captured: int
    buffered: int  # queued + aggregated, not yet written
    dropped: int  # lost: queue full, too many pending groups, or left at close
    write_failures: int
    transactions: int
    written: int
    internal_errors: int  # capture/masking/trigger/sentry failures swallowed
    triggers: int


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:  # a broken __str__ must not break capture
        return f"<unprintable {type(value).__name__}>"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """Bound and simplify masked data so it stores as JSON whatever the caller passed."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clean(value[:1_000])
    if depth >= 5:
        return _safe_str(value)[:200]
    if isinstance(value, Mapping):
        return {_clean(str(k)[:100]): _jsonable(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in list(value)[:50]]
    return _clean(_safe_str(value)[:1_000])


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL: one such byte would make the whole group unwritable.
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _opt_str(value: Any) -> str | None:
    return None if value is None or value == "" else _safe_str(value)


class ErrorTracker:
    """Captures exceptions into an :class:`ErrorStore` (and optionally Sentry) without blocking.

    ``mask`` is the masking policy (any callable; identity by default) applied to the message,
    context and frames before anything is queued, stored or sent. ``context_provider`` returns
    the ambient request context (request_id, trace_id, ...) for hooks that have none to pass.
    ``on_trigger`` runs on the writer thread: keep it quick (enqueue, do not send inline).
    """

    def __init__(
        self,
        store: ErrorStore,
        *,
        mask: Callable[[Any], Any] = _identity,
        fingerprinter: Fingerprinter | None = None,
        classifier: Classifier | None = None,
        on_trigger: Callable[[ErrorTrigger], None] | None = None,
        sentry: Callable[[BaseException, Mapping[str, Any], str], object] | None = None,
        context_provider: Callable[[], Mapping[str, Any]] | None = None,
        config: TrackerConfig | None = None,
    ) -> None:
        self.store = store
        self.by_severity: Counter[str] = Counter()  # captured events, for error_events_total
        self.config = config or TrackerConfig()
        self._mask = mask
        self._fingerprinter = fingerprinter or Fingerprinter()
        self._classifier = classifier or Classifier()
        self._on_trigger = on_trigger
        self._sentry = sentry
        self._context_provider = context_provider
        self._queue: queue.Queue[ErrorEvent] = queue.Queue(maxsize=self.config.queue_size)
        self._rates = RateWindow()
        self.recent = RecentGroups()  # what incident evidence reads before the store
        self._triggers = TriggerPolicy(
            self._rates,
            spike_per_minute=self.config.spike_per_minute,
            interval_seconds=self.config.trigger_interval_seconds,
        )
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_pid = 0
        self._failing = False  # in a streak of store failures (log once per streak)
        self._counters = dict.fromkeys(
            ("captured", "dropped", "write_failures", "transactions", "written",
             "internal_errors", "triggers", "outstanding"),
            0,
        )  # fmt: skip

    # -- capture (caller thread) --------------------------------------------------------------

    def capture(
        self,
        exc: BaseException,
        context: Mapping[str, Any] | None = None,
        *,
        fingerprint: str | None = None,
    ) -> str | None:
        """Record ``exc``; return its fingerprint (None if ignored or capture itself failed).

        Capturing the same exception object twice (middleware and ``logger.exception``) counts
        it once.
        """
        try:
            already = getattr(exc, _CAPTURED_ATTR, None)
            if isinstance(already, str):
                return already
            if not qualified_type_names(type(exc)).isdisjoint(self.config.ignore_types):
                return None
            return self._capture(exc, context or {}, fingerprint)
        except Exception:
            self._count("internal_errors")
            return None

    def _capture(self, exc: BaseException, context: Mapping[str, Any], custom: str | None) -> str:
        now = time.time()
        merged: dict[str, Any] = {}
        if self._context_provider is not None:
            try:
                merged.update(self._context_provider())
            except Exception:
                self._count("internal_errors")
        merged.update(context)
        raw_user = merged.get("user_id")

        frames = self._fingerprinter.frames(exc)
        message = self._masked_message(exc)
        ctx = self._masked_context(merged)
        fp = self._fingerprinter.fingerprint(exc, frames, message, custom)
        with contextlib.suppress(Exception):  # some exceptions refuse attributes
            setattr(exc, _CAPTURED_ATTR, fp)

        rate = self._rates.hit(fp, now)
        status = ctx.get("status_code")
        verdict = self._classifier.classify(
            Subject(
                type_names=qualified_type_names(type(exc)),
                frames=frames,
                route=_opt_str(ctx.get("route")),
                tags=tag_set(ctx.get("tags")),
                status_code=status if isinstance(status, int) else None,
                rate_per_minute=rate,
            )
        )
        self.by_severity[verdict.severity.value] += 1
        event = ErrorEvent(
            fingerprint=fp,
            type_name=type_name(type(exc)),
            message=parametrize_message(message),
            severity=verdict.severity,
            rule_name=verdict.rule_name,
            user_hash=None
            if raw_user in (None, "")
            else hashlib.sha256(_safe_str(raw_user).encode()).hexdigest()[:32],
            occurrence=Occurrence(
                timestamp=now,
                message=message,
                request_id=_opt_str(ctx.get("request_id")),
                trace_id=_opt_str(ctx.get("trace_id")),
                route=_opt_str(ctx.get("route")),
                method=_opt_str(ctx.get("method")),
                user_id=_opt_str(ctx.get("user_id")),
                context=ctx,
                frames=self._masked_frames(exc, frames),
            ),
        )
        self._count("captured")
        self.recent.add(event)
        self._enqueue(event)
        if self._sentry is not None and rate <= self.config.sentry_per_minute:
            try:
                self._sentry(exc, ctx, fp)
            except Exception:
                self._count("internal_errors")
        return fp

    def _masked_message(self, exc: BaseException) -> str:
        try:
            masked = _safe_str(self._mask(_safe_str(exc)))
        except Exception:  # fail closed: a message we could not mask is not kept
            self._count("internal_errors")
            masked = "<message withheld: masking failed>"
        return _clean(masked[: self.config.max_message_chars])

    def _masked_context(self, context: Mapping[str, Any]) -> dict[str, Any]:
        try:
            masked = self._mask(dict(context))
        except Exception:
            self._count("internal_errors")
            return {"masking_failed": True}
        safe = _jsonable(masked)
        return safe if isinstance(safe, dict) else {}

    def _masked_frames(self, exc: BaseException, frames: list[Frame]) -> list[dict[str, Any]]:
        data = [f.as_dict() for f in frames]
        if self.config.capture_locals:
            tb: TracebackType | None = exc.__traceback__
            tb_frames = []
            while tb is not None:
                tb_frames.append(tb.tb_frame)
                tb = tb.tb_next
            for item, frame in zip(data, tb_frames[-len(data) :], strict=False):
                if item["in_app"]:
                    item["vars"] = {
                        k: _safe_str(v)[:200] for k, v in list(frame.f_locals.items())[:20]
                    }
        try:
            masked = _jsonable(self._mask(data))
        except Exception:
            self._count("internal_errors")
            return [{k: v for k, v in d.items() if k != "vars"} for d in data]
        return masked if isinstance(masked, list) else []

    def _enqueue(self, event: ErrorEvent) -> None:
        self._ensure_writer()
        with self._lock:
            self._counters["outstanding"] += 1
        if self._stop.is_set():  # closed: nobody will write it
            self._drop(1)
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._drop(1)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def _drop(self, n: int) -> None:
        with self._idle:
            self._counters["dropped"] += n
            self._counters["outstanding"] -= n
            self._idle.notify_all()

    # -- writer thread ------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        # Started lazily and restarted after fork (pre-fork servers copy no threads).
        if self._writer is not None and self._writer_pid == os.getpid():
            return
        with self._lock:
            if self._writer is not None and self._writer_pid == os.getpid():
                return
            if self._stop.is_set():
                return
            self._writer_pid = os.getpid()
            self._writer = threading.Thread(
                target=self._run, name="error-tracker-writer", daemon=True
            )
            self._writer.start()

    def _drain(self, pending: dict[str, GroupBatch], block: float) -> int:
        """Move up to batch_size queued events into the aggregate; return how many moved."""
        moved = 0
        try:
            event = self._queue.get(timeout=block) if block > 0 else self._queue.get_nowait()
        except queue.Empty:
            return 0
        while True:
            batch = pending.get(event.fingerprint)
            if batch is not None:
                batch.add(event)
            elif len(pending) < self.config.max_pending_groups:
                pending[event.fingerprint] = GroupBatch.start(
                    event, self.config.sample_limit, self.config.max_users_per_batch
                )
            else:
                self._drop(1)
                moved -= 1
            moved += 1
            if moved >= self.config.batch_size:
                break
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
        return moved

    def _run(self) -> None:
        pending: dict[str, GroupBatch] = {}
        backoff = 0.0
        while True:
            stopping = self._stop.is_set()
            moved = self._drain(pending, 0 if (pending or stopping) else 0.2)
            if moved and not stopping and self.config.linger_seconds > 0:
                deadline = time.monotonic() + self.config.linger_seconds
                while moved < self.config.batch_size and (left := deadline - time.monotonic()) > 0:
                    moved += self._drain(pending, left)
            if not pending:
                if stopping and self._queue.empty():
                    return
                continue
            if self._write(pending):
                pending = {}
                backoff = 0.0
                continue
            if stopping:
                return  # close() counts what is left as dropped
            backoff = min(
                max(backoff * 2, self.config.retry_initial_seconds), self.config.retry_max_seconds
            )
            deadline = time.monotonic() + backoff
            # Keep draining while waiting: identical errors merge, so the queue does not fill.
            while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
                self._drain(pending, min(left, 0.2))

    def _write(self, pending: dict[str, GroupBatch]) -> bool:
        """Write the aggregate; True when it is no longer pending (written or poison dropped)."""
        try:
            changes = self.store.write_batch(pending.values())
        except Exception as exc:
            self._count("write_failures")
            if self._store_down(exc):
                if not self._failing:
                    _log.warning("error store unavailable, buffering: %s", type(exc).__name__)
                self._failing = True
                return False
            # The store answered but refused the batch: one bad group must not block the rest.
            changes = self._write_one_by_one(pending)
        if self._failing:
            _log.info("error store available again")
            self._failing = False
        self._done(sum(b.count for b in pending.values()))
        self._emit_triggers(changes)
        return True

    @staticmethod
    def _store_down(exc: Exception) -> bool:
        # Connection-level failures are worth retrying; anything else is about the data.
        return isinstance(
            exc,
            sa_exc.OperationalError
            | sa_exc.InterfaceError
            | sa_exc.DisconnectionError
            | sa_exc.TimeoutError
            | OSError,
        ) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)

    def _write_one_by_one(self, pending: dict[str, GroupBatch]) -> list[GroupChange]:
        changes: list[GroupChange] = []
        for batch in pending.values():
            try:
                changes.extend(self.store.write_batch([batch]))
            except Exception as exc:
                _log.warning("error group dropped, the store refused it: %s", type(exc).__name__)
                with self._lock:
                    self._counters["dropped"] += batch.count
                    self._counters["written"] -= batch.count  # _done counts all as written
        return changes

    def _done(self, events: int) -> None:
        with self._idle:
            self._counters["transactions"] += 1
            self._counters["written"] += events
            self._counters["outstanding"] -= events
            self._idle.notify_all()

    # -- triggers -----------------------------------------------------------------------------

    def _emit_triggers(self, changes: Iterable[GroupChange]) -> None:
        if self._on_trigger is None:
            return
        for trigger in self._triggers.decide(changes, time.time()):
            try:
                self._on_trigger(trigger)
                self._count("triggers")
            except Exception:
                self._count("internal_errors")

    # -- lifecycle ----------------------------------------------------------------------------

    def stats(self) -> TrackerStats:
        with self._lock:
            c = dict(self._counters)
        return TrackerStats(
            captured=c["captured"],
            buffered=max(0, c["outstanding"]),
            dropped=c["dropped"],
            write_failures=c["write_failures"],
            transactions=c["transactions"],
            written=c["written"],
            internal_errors=c["internal_errors"],
            triggers=c["triggers"],
        )

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything captured so far is written (or dropped). False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._counters["outstanding"] <= 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Stop the writer after one last write attempt; whatever is left counts as dropped."""
        self._stop.set()
        writer = self._writer
        if writer is not None and writer.is_alive():
            writer.join(self.config.close_timeout_seconds if timeout is None else timeout)
        with self._lock:
            left = self._counters["outstanding"]
        if left > 0 and (writer is None or not writer.is_alive()):
            self._drop(left)

    def __enter__(self) -> ErrorTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
