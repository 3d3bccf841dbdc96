"""Notifiers shared by error tracking and alerting, and the dispatcher that routes to them.

from observability.alerting.notifiers import Dispatcher, Notification, SlackNotifier

dispatcher = Dispatcher([SlackNotifier(url)], mask=masker.mask_text, fallback="slack")
dispatcher.submit(Notification(key=..., status="firing", severity="high", ...))
"""

from observability.alerting.notifiers.base import (
    SEVERITIES,
    Notification,
    Notifier,
    NotifierError,
    Severity,
    Status,
    mask_notification,
)
from observability.alerting.notifiers.dispatcher import (
    DEFAULT_ROUTES,
    Deduplicator,
    Dispatcher,
    DispatchResult,
    ReceiverOutcome,
    RetryPolicy,
    Route,
    resolve_receivers,
    routes_from_table,
)
from observability.alerting.notifiers.email import EmailNotifier
from observability.alerting.notifiers.log import (
    NotificationLog,
    NotificationRecord,
    notification_log_metadata,
    notification_log_table,
)
from observability.alerting.notifiers.pagerduty import DEFAULT_EVENTS_URL, PagerDutyNotifier
from observability.alerting.notifiers.slack import SlackNotifier
from observability.alerting.notifiers.sns import SnsNotifier

__all__ = [
    "DEFAULT_EVENTS_URL",
    "DEFAULT_ROUTES",
    "SEVERITIES",
    "Deduplicator",
    "DispatchResult",
    "Dispatcher",
    "EmailNotifier",
    "Notification",
    "NotificationLog",
    "NotificationRecord",
    "Notifier",
    "NotifierError",
    "PagerDutyNotifier",
    "ReceiverOutcome",
    "RetryPolicy",
    "Route",
    "Severity",
    "SlackNotifier",
    "SnsNotifier",
    "Status",
    "mask_notification",
    "notification_log_metadata",
    "notification_log_table",
    "resolve_receivers",
    "routes_from_table",
]
