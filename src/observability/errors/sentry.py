"""The Sentry bridge: our fingerprint, our correlation ids, our masking, on every Sentry event.

``init_sentry`` configures sentry-sdk with a ``before_send`` (and ``before_breadcrumb``) that
applies the same masking policy as the error store to every part of an event that can carry
user data: message, log entry, exception values, frame variables and source lines, request
(url, query, data, headers, cookies), extra, contexts, tags, user and breadcrumbs. If masking
fails the event is dropped: losing an event beats leaking a secret.

Sentry's own automatic capture integrations are off by default (``default_integrations=False``):
the :class:`~observability.errors.tracker.ErrorTracker` is the one capture path and calls
:func:`capture_to_sentry`, so every event carries our fingerprint and nothing is reported twice.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sentry_sdk

__all__ = [
    "capture_to_sentry",
    "init_sentry",
    "make_before_send",
    "sentry_failures",
    "shutdown_sentry",
]

_REQUEST_KEYS = {
    "headers": "headers",
    "body": "data",
    "data": "data",
    "query_string": "query_string",
    "cookies": "cookies",
    "url": "url",
}
_TAG_KEYS = ("request_id", "trace_id", "route", "method")
_FRAME_TEXT = ("context_line", "pre_context", "post_context", "vars")

_failures = 0
_failures_lock = threading.Lock()


def sentry_failures() -> int:
    """Events dropped because masking failed, plus capture calls that raised (both swallowed)."""
    return _failures


def _fail() -> None:
    global _failures
    with _failures_lock:
        _failures += 1


def _identity(value: Any) -> Any:
    return value


def _scrub_frames(container: Any, mask: Callable[[Any], Any]) -> None:
    if not isinstance(container, dict):
        return
    stacktrace = container.get("stacktrace")
    if not isinstance(stacktrace, dict):
        return
    for frame in stacktrace.get("frames") or []:
        if isinstance(frame, dict):
            for key in _FRAME_TEXT:
                if key in frame:
                    frame[key] = mask(frame[key])


def _scrub_event(event: dict[str, Any], mask: Callable[[Any], Any]) -> dict[str, Any]:
    """Mask every user-data section of a Sentry event in place (one step per section)."""
    if isinstance(event.get("message"), str):
        event["message"] = mask(event["message"])
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        for key in ("message", "formatted", "params"):
            if key in logentry:
                logentry[key] = mask(logentry[key])
    for section in ("exception", "threads"):
        values = (event.get(section) or {}).get("values") or []
        for item in values:
            if isinstance(item, dict):
                if "value" in item:
                    item["value"] = mask(item["value"])
                _scrub_frames(item, mask)
    for section in ("request", "extra", "contexts", "tags", "user"):
        if event.get(section):
            event[section] = mask(event[section])
    breadcrumbs = event.get("breadcrumbs")
    crumbs = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else breadcrumbs
    for crumb in crumbs or []:
        _scrub_crumb(crumb, mask)
    return event


def _scrub_crumb(crumb: Any, mask: Callable[[Any], Any]) -> None:
    if isinstance(crumb, dict):
        for key in ("message", "data"):
            if crumb.get(key):
                crumb[key] = mask(crumb[key])


def make_before_send(
    mask: Callable[[Any], Any],
) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]:
    """The ``before_send`` hook: mask the event, or drop it if masking fails."""

    def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return _scrub_event(event, mask)
        except Exception:
            _fail()
            return None

    return before_send


def _make_before_breadcrumb(
    mask: Callable[[Any], Any],
) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]:
    def before_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        try:
            _scrub_crumb(crumb, mask)
            return crumb
        except Exception:
            _fail()
            return None

    return before_breadcrumb


def init_sentry(
    dsn: str,
    environment: str,
    release: str | None = None,
    mask: Callable[[Any], Any] = _identity,
    *,
    sample_rate: float = 1.0,
    default_integrations: bool = False,
    **options: Any,
) -> None:
    """Configure sentry-sdk for this process. ``options`` pass through to ``sentry_sdk.init``
    (e.g. ``integrations``, ``traces_sample_rate``, ``transport``)."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        sample_rate=sample_rate,
        default_integrations=default_integrations,
        before_send=make_before_send(mask),  # type: ignore[arg-type]
        before_breadcrumb=_make_before_breadcrumb(mask),
        # Frame locals hold raw request bodies as bytes reprs with escaped JSON inside, which
        # no value detector can parse reliably: they stay out of Sentry unless asked for.
        **{"include_local_variables": False, **options},
    )


def capture_to_sentry(
    exc: BaseException, context: Mapping[str, Any], fingerprint: str
) -> str | None:
    """Send ``exc`` to Sentry grouped by OUR fingerprint, tagged with the correlation ids.

    ``context`` keys used: request_id, trace_id, route, method (tags), tags (tags), user_id
    (user id), headers/body/query_string/cookies/url (request), the rest (context
    ``request_context``). Returns the Sentry event id, or None (not sent, or failed).
    """
    try:
        # sentry-sdk scrubs in place (AnnotatedValue objects): it must not touch the caller's data.
        context = copy.deepcopy(dict(context))
        with sentry_sdk.new_scope() as scope:
            scope.fingerprint = [fingerprint]
            scope.set_tag("error_fingerprint", fingerprint)
            for key in _TAG_KEYS:
                if context.get(key):
                    scope.set_tag(key, str(context[key]))
            tags = context.get("tags")
            if isinstance(tags, Mapping):
                for key, value in list(tags.items())[:20]:
                    scope.set_tag(str(key), str(value))
            if context.get("user_id"):
                scope.set_user({"id": str(context["user_id"])})
            request = {
                target: context[key] for key, target in _REQUEST_KEYS.items() if key in context
            }
            if context.get("method"):
                request["method"] = str(context["method"])
            rest = {
                k: v
                for k, v in context.items()
                if k not in _REQUEST_KEYS and k not in (*_TAG_KEYS, "tags", "user_id")
            }
            if rest:
                scope.set_context("request_context", rest)
            if request:

                def add_request(event: Any, hint: Any) -> Any:
                    event["request"] = {**(event.get("request") or {}), **request}
                    return event

                scope.add_event_processor(add_request)
            return scope.capture_exception(exc)
    except Exception:
        _fail()
        return None


def shutdown_sentry(timeout: float = 2.0) -> None:
    """Flush pending events and close the client (tests, graceful shutdown)."""
    client = sentry_sdk.get_client()
    client.flush(timeout=timeout)
    client.close(timeout=timeout)
    sentry_sdk.get_global_scope().set_client(None)
