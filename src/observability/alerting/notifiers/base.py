"""The notification model every notifier receives, the notifier contract and its error.

Error tracking (a new error group) and alerting (a firing or resolved alert) both build a
`Notification`; notifiers turn it into one wire format each and raise `NotifierError` when the
receiver did not take it. Whether a failure is worth retrying is decided here, once, from the
HTTP status (or transport failure), so every HTTP notifier classifies alike:

    NotifierError
      retryable=True   transport failure (refused, reset, timeout), 408, 429, 5xx
      retryable=False  any other 4xx (bad payload, revoked key), missing configuration
"""

from __future__ import annotations

import email.utils
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import httpx

from observability.severity import SEVERITIES, Severity

__all__ = [
    "SEVERITIES",
    "Notification",
    "Notifier",
    "NotifierError",
    "Severity",
    "Status",
    "facts",
    "format_since",
    "format_value_line",
    "mask_notification",
    "plain_text",
    "post_json",
    "redact",
    "stable_hash",
    "truncate",
]

Status = Literal["firing", "resolved"]
_STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True)
class Notification:
    """One thing worth telling a human: an alert that fired or resolved, or a new error group.

    `key` is stable across the life of the incident (alert rule + labels, or the error
    fingerprint), so a receiver can pair the resolve with its trigger.
    """

    key: str
    status: Status
    severity: Severity
    title: str
    summary: str
    description: str = ""
    source: str = "alert"
    labels: Mapping[str, str] = field(default_factory=dict)
    value: float | None = None
    threshold: float | None = None
    started_at: datetime | None = None
    resolved_at: datetime | None = None
    runbook_url: str | None = None
    dashboard_url: str | None = None
    evidence_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        if self.status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, got {self.status!r}")
        if not self.key:
            raise ValueError("key must not be empty: receivers pair trigger and resolve by it")
        # A read-only copy: the caller's dict may change after the notification was queued.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    @property
    def links(self) -> list[tuple[str, str]]:
        """(text, url) of the runbook, dashboard and evidence links that are set."""
        pairs = [
            ("Runbook", self.runbook_url),
            ("Dashboard", self.dashboard_url),
            ("Evidence", self.evidence_url),
        ]
        return [(text, url) for text, url in pairs if url]


@runtime_checkable
class Notifier(Protocol):
    """A receiver of notifications. `send` raises `NotifierError` when it was not delivered."""

    name: str

    def send(self, notification: Notification) -> None: ...


class NotifierError(Exception):
    """A notification was not delivered. `retryable` says whether trying again may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status_code = status_code


def stable_hash(key: str) -> str:
    """A stable, fixed-length digest of a key (64 hex chars; PagerDuty accepts up to 255)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def truncate(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` characters, marking the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + "…"


def redact(text: str, secrets: Sequence[str]) -> str:
    """Remove configured secrets (webhook URLs, routing keys) from an error text."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def mask_notification(notification: Notification, mask: Callable[[str], str]) -> Notification:
    """Apply `mask` to every free-text field, label keys and values, and the links."""

    def opt(value: str | None) -> str | None:
        return None if value is None else mask(value)

    return replace(
        notification,
        key=mask(notification.key),
        title=mask(notification.title),
        summary=mask(notification.summary),
        description=mask(notification.description),
        source=mask(notification.source),
        labels={mask(k): mask(v) for k, v in notification.labels.items()},
        runbook_url=opt(notification.runbook_url),
        dashboard_url=opt(notification.dashboard_url),
        evidence_url=opt(notification.evidence_url),
    )


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def format_value_line(notification: Notification) -> str | None:
    """'value 0.07 (threshold 0.05)', or None when the notification carries no value."""
    if notification.value is None:
        return None
    line = f"value {_number(notification.value)}"
    if notification.threshold is not None:
        line += f" (threshold {_number(notification.threshold)})"
    return line


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_since(notification: Notification, now: datetime | None = None) -> str | None:
    """When it started (and for how long), or when it resolved after how long."""
    started = notification.started_at
    if notification.status == "resolved" and notification.resolved_at is not None:
        text = f"resolved at {_iso(notification.resolved_at)}"
        if started is not None:
            lasted = (_aware(notification.resolved_at) - _aware(started)).total_seconds()
            text += f" after {_duration(lasted)}"
        return text
    if started is None:
        return None
    now = now or datetime.now(UTC)
    return f"since {_iso(started)} ({_duration((now - _aware(started)).total_seconds())} ago)"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _retry_after(value: str | None, cap: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), capped at `cap`."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (_aware(when) - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def post_json(
    client: httpx.Client,
    url: str,
    payload: Mapping[str, Any],
    *,
    receiver: str,
    secrets: Sequence[str] = (),
    max_retry_after: float = 60.0,
) -> httpx.Response:
    """POST `payload` as JSON; return the 2xx response or raise a classified `NotifierError`.

    Error texts never carry the URL or other `secrets` (a Slack webhook URL *is* the
    credential), and the transport exception is not chained for the same reason.
    """
    try:
        response = client.post(url, json=payload)
    except httpx.HTTPError as exc:  # refused, reset, timeout: the receiver may come back
        text = redact(f"{receiver}: {type(exc).__name__}: {exc}", [url, *secrets])
        raise NotifierError(text, retryable=True) from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    body = redact(truncate(response.text.strip(), 200), [url, *secrets])
    message = f"{receiver}: HTTP {status}" + (f": {body}" if body else "")
    if status == 429:
        wait = _retry_after(response.headers.get("Retry-After"), max_retry_after)
        raise NotifierError(message, retryable=True, retry_after=wait, status_code=status)
    retryable = status == 408 or status >= 500
    raise NotifierError(message, retryable=retryable, status_code=status)


def facts(n: Notification) -> list[tuple[str, str]]:
    """(name, value) pairs every readable format shows: severity, status, value, time, labels."""
    pairs = [("Severity", n.severity.upper()), ("Status", n.status.upper()), ("Source", n.source)]
    value_line = format_value_line(n)
    if value_line is not None:
        pairs.append(("Value", value_line))
    since = format_since(n)
    if since is not None:
        pairs.append(("Resolved" if n.status == "resolved" else "Started", since))
    pairs.extend((f"Label {k}", v) for k, v in n.labels.items())
    return pairs


def plain_text(n: Notification) -> str:
    """A plain-text rendering (e-mail body, SNS message): title, summary, facts, links."""
    lines = [n.title, "", n.summary]
    if n.description:
        lines += ["", n.description]
    lines.append("")
    lines += [f"{name}: {value}" for name, value in facts(n)]
    if n.links:
        lines.append("")
        lines += [f"{text}: {url}" for text, url in n.links]
    return "\n".join(lines) + "\n"
