"""Helpers shared by the notifier tests: a sample notification and a real SMTP server."""

from __future__ import annotations

import contextlib
import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from observability.alerting.notifiers import Notification
from tests.support.servers import LOOPBACK, free_port


def make_notification(**overrides: Any) -> Notification:
    """A firing, high-severity alert with every optional field set."""
    started = datetime.now(UTC) - timedelta(minutes=12)
    fields: dict[str, Any] = {
        "key": "error_rate_high|service=api",
        "status": "firing",
        "severity": "high",
        "title": "API error rate above 5%",
        "summary": "5xx ratio 7.3% vs threshold 5% over 5m",
        "description": "More than one request in twenty fails.",
        "source": "alert",
        "labels": {"service": "api", "team": "platform", "alertname": "ErrorRateHigh"},
        "value": 0.073,
        "threshold": 0.05,
        "started_at": started,
        "runbook_url": "http://127.0.0.1/runbook#error-rate",
        "dashboard_url": "http://127.0.0.1/dashboards/api",
        "evidence_url": "http://127.0.0.1/logs?q=status%3E%3D500",
    }
    fields.update(overrides)
    return Notification(**fields)


@dataclass
class RecordingSMTPHandler:
    """An aiosmtpd handler that keeps every accepted message."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._arrived:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: RecordingSMTPHandler


@contextlib.contextmanager
def smtp_server(**controller_options: Any) -> Iterator[SMTPServer]:
    """A real aiosmtpd server on a free loopback port, stopped on exit."""
    handler = RecordingSMTPHandler()
    port = free_port()
    controller = Controller(handler, hostname=LOOPBACK, port=port, **controller_options)
    controller.start()
    try:
        yield SMTPServer(LOOPBACK, port, handler)
    finally:
        controller.stop()
