"""Slack incoming webhook: a readable Block Kit message plus fallback text.

A firing message says what, the value against its threshold, since when, the severity and
links to the runbook, dashboard and evidence; a resolved message is visibly different (a
check mark, when it resolved and after how long). The webhook URL is the credential, so it
never appears in an error text. Slack answers 429 with Retry-After when a channel is flooded;
the wait is passed on (capped) to the dispatcher's retry.
"""

from __future__ import annotations

from typing import Any

import httpx

from observability.alerting.notifiers.base import (
    Notification,
    format_since,
    format_value_line,
    post_json,
    truncate,
)

__all__ = ["SlackNotifier", "escape_mrkdwn"]

# Block Kit limits: header text 150 chars, section text 3000, field text 2000, 10 fields.
_HEADER_LIMIT = 150
_SECTION_LIMIT = 3000
_FIELD_LIMIT = 2000
_FIRING_ICON = {
    "critical": ":red_circle:",
    "high": ":large_orange_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":white_circle:",
}


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack treats as control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier:
    """Posts notifications to a Slack incoming webhook."""

    def __init__(
        self,
        webhook_url: str,
        *,
        name: str = "slack",
        timeout: float = 10.0,
        max_retry_after: float = 30.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        if not webhook_url:
            raise ValueError("webhook_url must be set (the Slack incoming webhook URL)")
        self.name = name
        self._url = webhook_url
        self._max_retry_after = max_retry_after
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=timeout)

    def __repr__(self) -> str:  # the webhook URL is the credential
        return f"SlackNotifier(name={self.name!r})"

    def build_message(self, notification: Notification) -> dict[str, Any]:
        """The webhook body: `text` (notifications, old clients) and `blocks` (the message)."""
        if notification.firing:
            return self._firing(notification)
        return self._resolved(notification)

    def _firing(self, n: Notification) -> dict[str, Any]:
        severity = n.severity.upper()
        header = f"{_FIRING_ICON[n.severity]} [{severity}] {n.title}"
        text = f"[{severity}] FIRING: {n.title}: {n.summary}"
        body = f"*{escape_mrkdwn(n.summary)}*"
        if n.description:
            body += "\n" + escape_mrkdwn(n.description)
        fields = [("Severity", severity), ("Status", "FIRING"), ("Source", n.source)]
        value_line = format_value_line(n)
        if value_line is not None:
            fields.append(("Value", value_line))
        since = format_since(n)
        if since is not None:
            fields.append(("Started", since))
        blocks: list[dict[str, Any]] = [
            _header(header),
            _section(body),
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": truncate(f"*{k}*\n{escape_mrkdwn(v)}", _FIELD_LIMIT)}
                    for k, v in fields[:10]
                ],
            },
        ]
        blocks.extend(_labels_and_links(n))
        return {"text": text, "blocks": blocks}

    def _resolved(self, n: Notification) -> dict[str, Any]:
        header = f":white_check_mark: RESOLVED: {n.title}"
        text = f"RESOLVED: {n.title}: {n.summary}"
        body = f"*{escape_mrkdwn(n.summary)}*"
        since = format_since(n)
        if since is not None:
            body += f"\n{escape_mrkdwn(since[:1].upper() + since[1:])}"
        body += f"\nSeverity was {n.severity.upper()}."
        blocks: list[dict[str, Any]] = [_header(header), _section(body)]
        blocks.extend(_labels_and_links(n))
        return {"text": text, "blocks": blocks}

    def send(self, notification: Notification) -> None:
        post_json(
            self._client,
            self._url,
            self.build_message(notification),
            receiver=self.name,
            max_retry_after=self._max_retry_after,
        )

    def close(self) -> None:
        if self._owns_client:
            self._client.close()


def _header(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(text, _HEADER_LIMIT), "emoji": True},
    }


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(mrkdwn, _SECTION_LIMIT)}}


def _labels_and_links(n: Notification) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    links = " · ".join(f"<{escape_mrkdwn(url)}|{text}>" for text, url in n.links)
    if links:
        blocks.append(_section(links))
    if n.labels:
        labels = "  ".join(f"`{escape_mrkdwn(k)}={escape_mrkdwn(v)}`" for k, v in n.labels.items())
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(labels, 2000)}]}
        )
    return blocks
