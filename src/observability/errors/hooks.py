"""Capture points outside the request path, all opt-in: uncaught exceptions of the main thread
and of worker threads, failed asyncio background tasks, and `logger.exception(...)` calls
through stdlib logging or structlog. Each hands the exception to an `ErrorTracker`."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from types import TracebackType
from typing import Any

from observability.errors.tracker import ErrorTracker

__all__ = [
    "CONTEXT_KEYS",
    "ErrorLogHandler",
    "StructlogErrorCapture",
    "asyncio_exception_handler",
    "install_hooks",
]

CONTEXT_KEYS = ("request_id", "trace_id", "route", "method", "principal", "user_id", "tags")


def install_hooks(
    tracker: ErrorTracker, *, sys_hook: bool = True, threading_hook: bool = True
) -> Callable[[], None]:
    """Capture uncaught exceptions of the main thread and of worker threads.

    The previous hooks still run (tracebacks still print). Returns an ``uninstall`` function.
    """
    previous_sys = sys.excepthook
    previous_threading = threading.excepthook

    def _sys_hook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        tracker.capture(exc, {"tags": {"source": "sys.excepthook"}})
        previous_sys(exc_type, exc, tb)

    def _threading_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            thread = args.thread.name if args.thread is not None else "?"
            tracker.capture(args.exc_value, {"tags": {"source": "thread", "thread": thread}})
        previous_threading(args)

    if sys_hook:
        sys.excepthook = _sys_hook
    if threading_hook:
        threading.excepthook = _threading_hook

    def uninstall() -> None:
        if sys.excepthook is _sys_hook:
            sys.excepthook = previous_sys
        if threading.excepthook is _threading_hook:
            threading.excepthook = previous_threading

    return uninstall


def asyncio_exception_handler(
    tracker: ErrorTracker,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """A handler for ``loop.set_exception_handler``: background task failures get captured."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            tracker.capture(exc, {"tags": {"source": "asyncio"}})
        loop.default_exception_handler(context)

    return handler


def _context_from(source: Mapping[str, Any] | object, tag: str, logger_name: str) -> dict[str, Any]:
    ctx: dict[str, Any] = {}
    for key in CONTEXT_KEYS:
        value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
        if value is not None:
            ctx[key] = value
    tags = ctx.get("tags")
    ctx["tags"] = {
        **(tags if isinstance(tags, Mapping) else {}),
        "source": tag,
        "logger": logger_name,
    }
    return ctx


class ErrorLogHandler(logging.Handler):
    """Opt-in stdlib handler: ``logger.exception(...)`` records become captured errors."""

    def __init__(self, tracker: ErrorTracker, level: int = logging.ERROR) -> None:
        super().__init__(level)
        self._tracker = tracker

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self._tracker.capture(record.exc_info[1], _context_from(record, "logging", record.name))


class StructlogErrorCapture:
    """Opt-in structlog processor; place it before ``format_exc_info`` (which consumes exc_info)."""

    def __init__(self, tracker: ErrorTracker) -> None:
        self._tracker = tracker

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        exc_info = event_dict.get("exc_info")
        exc: BaseException | None = None
        if isinstance(exc_info, BaseException):
            exc = exc_info
        elif isinstance(exc_info, tuple) and len(exc_info) == 3:
            exc = exc_info[1]
        elif exc_info is True:
            exc = sys.exc_info()[1]
        if exc is not None:
            name = str(event_dict.get("logger") or getattr(logger, "name", "structlog"))
            self._tracker.capture(exc, _context_from(event_dict, "structlog", name))
        return event_dict
