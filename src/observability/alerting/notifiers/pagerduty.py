"""PagerDuty Events API v2: a firing notification triggers, a resolved one resolves.

Both carry the same `dedup_key` (a digest of the notification key), so PagerDuty pairs them
into one incident. The API answers 202 when it accepted the event, 400 for a malformed event
(never retried), 429 when throttled and 5xx when unavailable (both retried by the dispatcher).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from observability.alerting.notifiers.base import (
    Notification,
    Severity,
    format_value_line,
    post_json,
    stable_hash,
    truncate,
)

__all__ = ["DEFAULT_EVENTS_URL", "PAGERDUTY_SEVERITY", "PagerDutyNotifier", "PagerDutySeverity"]

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PagerDutySeverity = Literal["critical", "error", "warning", "info"]
PAGERDUTY_SEVERITY: Mapping[Severity, PagerDutySeverity] = {
    Severity.CRITICAL: "critical",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
}
_SUMMARY_LIMIT = 1024  # the API rejects longer summaries


class PagerDutyNotifier:
    """Sends notifications as PagerDuty Events API v2 `trigger` / `resolve` events."""

    def __init__(
        self,
        routing_key: str,
        *,
        url: str = DEFAULT_EVENTS_URL,
        name: str = "pagerduty",
        source: str = "observability",
        client_name: str = "observability",
        timeout: float = 10.0,
        max_retry_after: float = 60.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        if not routing_key:
            raise ValueError("routing_key must be set (the PagerDuty integration key)")
        self.name = name
        self.url = url
        self._routing_key = routing_key
        self._source = source
        self._client_name = client_name
        self._max_retry_after = max_retry_after
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=timeout)

    def __repr__(self) -> str:  # the routing key is a credential: keep it out of reprs and logs
        return f"PagerDutyNotifier(name={self.name!r}, url={self.url!r})"

    def build_event(self, notification: Notification) -> dict[str, Any]:
        """The Events API v2 body for `notification` (a trigger or a resolve)."""
        event: dict[str, Any] = {
            "routing_key": self._routing_key,
            "dedup_key": stable_hash(notification.key),
        }
        if not notification.firing:
            # A resolve needs only the key; PagerDuty closes the incident it opened.
            event["event_action"] = "resolve"
            return event
        labels = notification.labels
        summary = f"[{notification.severity.upper()}] {notification.title}: {notification.summary}"
        details: dict[str, Any] = {
            "summary": notification.summary,
            "source": notification.source,
            "notification_key": notification.key,
            "labels": dict(labels),
        }
        if notification.description:
            details["description"] = notification.description
        value_line = format_value_line(notification)
        if value_line is not None:
            details["value"] = notification.value
            details["threshold"] = notification.threshold
            details["value_line"] = value_line
        payload: dict[str, Any] = {
            "summary": truncate(summary, _SUMMARY_LIMIT),
            "source": labels.get("instance") or labels.get("host") or self._source,
            "severity": PAGERDUTY_SEVERITY[notification.severity],
            "timestamp": _timestamp(notification.started_at),
            "class": labels.get("alertname") or notification.source,
            "custom_details": details,
        }
        component = labels.get("component") or labels.get("service")
        if component:
            payload["component"] = component
        group = labels.get("group") or labels.get("team")
        if group:
            payload["group"] = group
        event["event_action"] = "trigger"
        event["payload"] = payload
        event["client"] = self._client_name
        if notification.dashboard_url:
            event["client_url"] = notification.dashboard_url
        links = [{"href": url, "text": text} for text, url in notification.links]
        if links:
            event["links"] = links
        return event

    def send(self, notification: Notification) -> None:
        post_json(
            self._client,
            self.url,
            self.build_event(notification),
            receiver=self.name,
            secrets=[self._routing_key],
            max_retry_after=self._max_retry_after,
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _timestamp(moment: datetime | None) -> str:
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()
