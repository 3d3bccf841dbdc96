"""The log pipeline: context -> level filter -> queue -> (writer thread) mask -> render -> sinks.

The caller's thread (the request path) only filters, merges the request context, stamps the
time and appends to a bounded queue: a few microseconds, no I/O. A single writer thread masks,
renders JSON with orjson and writes batches to every sink. Masking therefore happens once,
before any sink sees the data, and rendering is the last step.

structlog loggers and stdlib loggers (uvicorn, SQLAlchemy, httpx, botocore, ...) feed the same
queue, so every line has one shape. Global state lives in this module with `reset()` for tests.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import structlog

from observability.context import current
from observability.logging.exceptions import structure_exception
from observability.logging.levels import LevelPolicy
from observability.logging.queue import SeverityQueue
from observability.logging.sinks import NO_EVENT, LogRecordOut, PartialWrite, Sink

__all__ = ["LEVEL_NAMES", "LogPipeline", "Logger", "active_pipeline", "get_logger", "reset"]

Mask = Callable[[dict[str, Any]], dict[str, Any]]

_METHOD_LEVELS = {
    "debug": 10,
    "info": 20,
    "msg": 20,
    "warning": 30,
    "warn": 30,
    "error": 40,
    "exception": 40,
    "critical": 50,
    "fatal": 50,
}
LEVEL_NAMES = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
_FIRST_KEYS = ("timestamp", "level", "logger", "event")

# Attributes every LogRecord has; anything else came from `extra=` and is kept as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}

_pipeline: LogPipeline | None = None


def active_pipeline() -> LogPipeline | None:
    return _pipeline


def _identity(event: dict[str, Any]) -> dict[str, Any]:
    return event


# Bound once: the compiled build keeps Final names in C statics, where `orjson.dumps` and its
# option would be three attribute lookups per line (~0.8k instructions of a ~7k line).
_dumps: Final = orjson.dumps
_LINE: Final = orjson.OPT_APPEND_NEWLINE
_NON_STR_KEYS_LINE: Final = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def encode_line(event: dict[str, Any]) -> bytes:
    """One JSON line; what orjson cannot encode natively is written as its repr()."""
    try:
        # Keys are strings on almost every line, and orjson's non-string-key path costs twice
        # as much (0.66 against 0.33 us for a request line): it is the fallback.
        return _dumps(event, default=repr, option=_LINE)
    except TypeError:  # orjson.JSONEncodeError: a key that is not a string
        return _dumps(event, default=repr, option=_NON_STR_KEYS_LINE)


class LogPipeline:
    def __init__(
        self,
        sinks: Iterable[Sink],
        policy: LevelPolicy | None = None,
        mask: Mask = _identity,
        queue_size: int = 50_000,
        flush_interval: float = 0.1,
        static_fields: dict[str, Any] | None = None,
    ) -> None:
        self.sinks = list(sinks)
        # Event dicts travel to the writer only when a sink reads them (see `Sink`).
        self.keeps_events = any(getattr(sink, "needs_events", True) for sink in self.sinks)
        self.policy = policy or LevelPolicy()
        self.mask = mask
        self.queue = SeverityQueue(queue_size)
        self.flush_interval = flush_interval
        self.static_fields = dict(static_fields or {})
        self.emitted: Counter[str] = Counter()
        self.sink_errors: Counter[str] = Counter()
        self.dropped_by_writer: Counter[str] = Counter()
        # Per sink: when its failure was last reported, and records lost since (see below).
        self._failing_since: dict[str, float] = {}
        self._reported_at: dict[str, float] = {}
        self._lost_since_report: Counter[str] = Counter()
        self._ts_cache = (-1, "")
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._writer_thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._writer_thread.start()

    # --- the caller's side ----------------------------------------------------------------
    def submit(
        self, level: int, event: dict[str, Any], trusted: frozenset[str] = frozenset()
    ) -> None:
        """Mask and render here, queue the bytes; only the writes happen in the writer thread.

        Measured: rendering in the writer thread made a single-core server slower (0.52 of
        bare vs 0.8+), because two CPU-bound threads fight for the GIL; rendering costs ~10 us
        on the caller and the writer then mostly waits in write() with the GIL released."""
        self.emitted[LEVEL_NAMES.get(level, "info")] += 1
        try:
            record = self._render(level, event, trusted)
        except Exception:  # an unrenderable event is counted, never raised into the caller
            self.dropped_by_writer["render_error"] += 1
            return
        self.queue.put(level, record)

    def submit_split(self, level: int, trusted: dict[str, Any], untrusted: dict[str, Any]) -> None:
        """`submit` for a caller that keeps its trusted fields apart already (the request line):
        only `untrusted` is masked; `trusted` starts with timestamp, level, logger and event.
        Saves the per-line pops that split one dict (~5 us of a request)."""
        self.emitted[LEVEL_NAMES.get(level, "info")] += 1
        try:
            masked = self.mask(untrusted)
            stamp = trusted["timestamp"]
            if isinstance(stamp, float):
                trusted["timestamp"] = self._timestamp(stamp)
            if self.static_fields:
                ordered = {key: trusted[key] for key in _FIRST_KEYS if key in trusted}
                ordered.update(self.static_fields)
                ordered.update(masked)
                ordered.update(trusted)  # the first keys keep their places
            else:
                ordered = trusted  # ours to keep: the caller hands it over
                ordered.update(masked)
            line = encode_line(ordered)
        except Exception:  # an unrenderable event is counted, never raised into the caller
            self.dropped_by_writer["render_error"] += 1
            return
        self.queue.put(level, (level, ordered if self.keeps_events else NO_EVENT, line))

    @property
    def dropped(self) -> Counter[str]:
        return self.queue.dropped + self.dropped_by_writer

    # --- the writer's side ----------------------------------------------------------------
    def _timestamp(self, stamp: float) -> str:
        # Formatting a datetime costs more than the rest of a line's rendering: the
        # "YYYY-mm-ddTHH:MM:SS" part is computed once per second and reused.
        second = int(stamp)
        cached_second, prefix = self._ts_cache  # one tuple: threads never see a torn pair
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._ts_cache = (second, prefix)
        # Microseconds as the last 6 digits of 1_000_000 + us: no format spec (~1/3 cheaper).
        return f"{prefix}.{str(int((stamp - second) * 1_000_000) + 1_000_000)[1:]}Z"

    def _render(
        self, level: int, event: dict[str, Any], trusted: frozenset[str] = frozenset()
    ) -> LogRecordOut:
        # `trusted`: fields the toolkit produced itself from validated input (a status code, a
        # route template, a hex trace id): they skip the detectors, the rest is masked.
        kept = {key: event.pop(key) for key in trusted if key in event} if trusted else None
        event = self.mask(event)
        if kept:
            event.update(kept)
        stamp = event.get("timestamp")
        if isinstance(stamp, float):
            event["timestamp"] = self._timestamp(stamp)
        ordered = {key: event.pop(key) for key in _FIRST_KEYS if key in event}
        ordered.update(self.static_fields)
        ordered.update(event)
        line = encode_line(ordered)
        return level, ordered if self.keeps_events else NO_EVENT, line

    # A failing sink (a full disk) is reported on stderr at most this often, not per batch.
    REPORT_INTERVAL_SECONDS = 10.0

    def _write_batch(self, records: Sequence[LogRecordOut]) -> None:
        if not records:
            return
        for sink in self.sinks:
            try:
                sink.write(records)
                sink.flush()
            except Exception as exc:  # a broken sink must not starve the others
                # Whatever did not reach this sink is lost for it: counted as dropped, by sink
                # (the batch is not retried: the next batches keep coming, and a sink that
                # recovers simply takes them, so writing resumes by itself).
                written = exc.written if isinstance(exc, PartialWrite) else 0
                lost = max(0, len(records) - written)
                self.sink_errors[sink.name] += 1
                self.dropped_by_writer[f"sink_failed_{sink.name}"] += lost
                self._sink_failed(sink, exc, lost)
            else:
                if sink.name in self._failing_since:
                    self._sink_recovered(sink)

    def _sink_failed(self, sink: Sink, exc: Exception, lost: int) -> None:
        now = time.monotonic()
        self._failing_since.setdefault(sink.name, now)
        self._lost_since_report[sink.name] += lost
        last = self._reported_at.get(sink.name)
        if last is not None and now - last < self.REPORT_INTERVAL_SECONDS:
            return
        self._reported_at[sink.name] = now
        cause = exc.__cause__ if isinstance(exc, PartialWrite) else exc
        self._to_stderr(
            "error",
            "log_sink_failed",
            sink=sink.name,
            error=type(cause).__name__,
            errno=getattr(cause, "errno", None),
            dropped=self._lost_since_report.pop(sink.name, 0),
        )

    def _sink_recovered(self, sink: Sink) -> None:
        since = self._failing_since.pop(sink.name)
        self._reported_at.pop(sink.name, None)
        self._to_stderr(
            "warning",
            "log_sink_recovered",
            sink=sink.name,
            failed_seconds=round(time.monotonic() - since, 3),
            dropped=self._lost_since_report.pop(sink.name, 0),
            dropped_total=self.dropped_by_writer[f"sink_failed_{sink.name}"],
        )

    @staticmethod
    def _to_stderr(level: str, event: str, **fields: Any) -> None:
        # Straight to stderr, never back into the pipeline (that could loop forever).
        with contextlib.suppress(Exception):  # stderr itself is gone: nothing left to tell
            line = {
                "timestamp": datetime.now(UTC).isoformat(),
                "level": level,
                "logger": "observability.logging",
                "event": event,
                **fields,
            }
            sys.stderr.write(orjson.dumps(line).decode() + "\n")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.queue.wakeup.wait(self.flush_interval)
            self.queue.wakeup.clear()
            items = self.queue.drain()
            if items:
                self._idle.clear()
                self._write_batch(items)
            self._idle.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far reached the sinks."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._writer_thread.is_alive():
            if len(self.queue) == 0 and self._idle.is_set():
                self._idle.clear()
                self.queue.wakeup.set()
                # One more idle cycle guarantees the last batch has been written.
                if self._idle.wait(max(0.0, deadline - time.monotonic())):
                    return len(self.queue) == 0
            self.queue.wakeup.set()
            time.sleep(0.005)
        return len(self.queue) == 0

    def close(self, timeout: float = 5.0) -> bool:
        """Flush within the deadline, stop the writer, close the sinks (idempotent)."""
        if self._stop.is_set():
            return len(self.queue) == 0
        flushed = self.flush(timeout)
        self._stop.set()
        self.queue.wakeup.set()
        self._writer_thread.join(timeout)
        leftover = self.queue.drain()
        if leftover:
            self._write_batch(leftover)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                self.sink_errors[sink.name] += 1
        return flushed


# --- structlog and stdlib front ends ---------------------------------------------------------
class _NamedLogger:
    """What structlog wraps: only its name is used (the chain ends before any output)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _logger_factory(*args: Any) -> _NamedLogger:
    return _NamedLogger(str(args[0]) if args and args[0] else "app")


def _to_queue(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The whole structlog chain in one processor (for `structlog.get_logger` loggers)."""
    pipeline = _pipeline
    if pipeline is None:
        raise structlog.DropEvent
    level = _METHOD_LEVELS.get(method, 20)
    name = event_dict.get("logger") or getattr(logger, "name", "app")
    if level >= pipeline.policy.threshold(name):
        # structlog hands every call a fresh dict: it becomes the event, no copy.
        _enqueue(pipeline, method, level, name, event_dict)  # type: ignore[arg-type]
    raise structlog.DropEvent


def _enqueue(
    pipeline: LogPipeline, method: str, level: int, name: str, event: dict[str, Any]
) -> None:
    event["logger"] = name
    event["timestamp"] = time.time()
    event["level"] = LEVEL_NAMES.get(level, method)
    ctx = current()
    if ctx is not None:
        for key, value in ctx.as_dict().items():
            event.setdefault(key, value)
    exc_info = event.pop("exc_info", None)
    if method == "exception" and exc_info is None:
        exc_info = True
    if exc_info:
        exc = sys.exc_info()[1] if exc_info is True else exc_info
        if isinstance(exc, tuple):
            exc = exc[1]
        if isinstance(exc, BaseException):
            event["exception"] = structure_exception(exc)
    pipeline.submit(level, event)


class Logger:
    """What `get_logger` returns: structlog's calling convention (``log.info("event",
    key=value)``, ``bind``), straight into the active pipeline. Measured: structlog's lazy
    proxy, bound logger and processor chain cost more per line than masking and rendering
    together. With no pipeline installed it hands the call to structlog's own logger."""

    __slots__ = ("_context", "name")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self.name = name
        self._context = context or {}

    def bind(self, **values: Any) -> Logger:
        return Logger(self.name, {**self._context, **values})

    def new(self, **values: Any) -> Logger:
        return Logger(self.name, dict(values))

    def unbind(self, *keys: str) -> Logger:
        return Logger(self.name, {k: v for k, v in self._context.items() if k not in keys})

    def _log(self, method: str, event: Any, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
        pipeline = _pipeline
        if pipeline is None:
            bound = structlog.get_logger(self.name).bind(**self._context)
            getattr(bound, method)(event, *args, **fields)
            return
        level = _METHOD_LEVELS.get(method, 20)
        if level < pipeline.policy.threshold(self.name):
            return
        if self._context:
            fields = {**self._context, **fields}
        fields["event"] = event % args if args else event
        _enqueue(pipeline, method, level, fields.pop("logger", None) or self.name, fields)

    def debug(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("debug", event, args, fields)

    def info(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("info", event, args, fields)

    def warning(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("warning", event, args, fields)

    def error(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("error", event, args, fields)

    def exception(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("exception", event, args, fields)

    def critical(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("critical", event, args, fields)

    # Defined, not aliased (`warn = warning`): aliases in a class body break the compiled
    # build (observability.compiled).
    def warn(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("warning", event, args, fields)

    def msg(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("info", event, args, fields)

    def fatal(self, event: Any = None, *args: Any, **fields: Any) -> None:
        self._log("critical", event, args, fields)


class StdlibBridge(logging.Handler):
    """Routes stdlib LogRecords into the same queue, in the caller's thread and context."""

    def emit(self, record: logging.LogRecord) -> None:
        pipeline = _pipeline
        if pipeline is None:
            return
        try:
            event: dict[str, Any] = {
                "event": record.getMessage(),
                "logger": record.name,
                "timestamp": record.created,
                "level": LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
            }
            for key, value in record.__dict__.items():
                if key not in _RECORD_ATTRS and not key.startswith("_"):
                    event[key] = value
            ctx = current()
            if ctx is not None:
                for key, value in ctx.as_dict().items():
                    event.setdefault(key, value)
            if record.exc_info and record.exc_info[1] is not None:
                event["exception"] = structure_exception(record.exc_info[1])
            pipeline.submit(record.levelno, event)
        except Exception:
            self.handleError(record)


def get_logger(name: str) -> Any:
    """A logger whose lines carry `logger=name` (structlog's calling convention)."""
    return Logger(name)


_bridge = StdlibBridge()


def install(pipeline: LogPipeline, capture_stdlib: bool = True) -> None:
    """Make `pipeline` the process's log pipeline (replacing any previous one)."""
    global _pipeline
    previous, _pipeline = _pipeline, pipeline
    structlog.configure(
        processors=[_to_queue],
        # Real methods per level (no __getattr__ partials): the cheapest structlog front end.
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=_logger_factory,
        # Not cached: module-level loggers must follow a reconfiguration (tests capture logs
        # with structlog's own tools after a pipeline was installed and reset).
        cache_logger_on_first_use=False,
    )
    if capture_stdlib:
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(_bridge)
        # Libraries that install their own handlers (uvicorn) would print plain text.
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn", "alembic"):
            library = logging.getLogger(name)
            library.handlers.clear()
            library.propagate = True
        logging.captureWarnings(True)
    pipeline.policy.apply_to_stdlib()
    if previous is not None and previous is not pipeline:
        previous.close(timeout=2.0)


def reset() -> None:
    """Forget the pipeline (tests): flush and close it, detach the stdlib bridge."""
    global _pipeline
    previous, _pipeline = _pipeline, None
    logging.getLogger().removeHandler(_bridge)
    logging.captureWarnings(False)
    if previous is not None:
        previous.close(timeout=2.0)
