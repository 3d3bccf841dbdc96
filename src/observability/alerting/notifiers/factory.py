"""Receivers from settings: the notifiers that are configured, and one dispatcher over them,
shared by error tracking and alerting."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from observability.alerting.notifiers.base import Notifier
from observability.alerting.notifiers.dispatcher import (
    DEFAULT_ROUTES,
    Deduplicator,
    Dispatcher,
    Route,
)
from observability.alerting.notifiers.email import EmailNotifier
from observability.alerting.notifiers.log import NotificationLog
from observability.alerting.notifiers.pagerduty import PagerDutyNotifier
from observability.alerting.notifiers.slack import SlackNotifier
from observability.alerting.notifiers.sns import SnsNotifier
from observability.settings import NotifySettings

__all__ = [
    "DEDUP_WINDOW_S",
    "MIN_DEDUP_WINDOW_S",
    "build_dispatcher",
    "build_notifiers",
    "dedup_window_seconds",
]

# A repeat of the same notification key and status within this window is not sent again.
DEDUP_WINDOW_S: Final = 300.0
# Shortened windows still swallow an immediate double send; 3 s is the scaled group_interval
# at the game-day scale (0.01), so a group's update is not mistaken for a duplicate there.
MIN_DEDUP_WINDOW_S: Final = 3.0


def dedup_window_seconds(scale: float) -> float:
    """The de-duplication window at alert window scale `scale`: it shrinks with the rule
    windows and grouping timers, so a game day that fires the same alert group twice within
    a few minutes gets both notifications."""
    return max(MIN_DEDUP_WINDOW_S, DEDUP_WINDOW_S * scale)


def build_notifiers(
    settings: NotifySettings, *, aws_region: str = "us-east-1", aws_endpoint_url: str = ""
) -> list[Notifier]:
    """One notifier per receiver whose setting is given."""
    notifiers: list[Notifier] = []
    if settings.pagerduty_routing_key:
        notifiers.append(
            PagerDutyNotifier(settings.pagerduty_routing_key, url=settings.pagerduty_url)
        )
    if settings.slack_webhook_url:
        notifiers.append(SlackNotifier(settings.slack_webhook_url))
    if settings.smtp_host and settings.smtp_to:
        notifiers.append(
            EmailNotifier(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.smtp_from,
                recipients=[a.strip() for a in settings.smtp_to.split(",") if a.strip()],
                starttls=settings.smtp_starttls,
                username=settings.smtp_username or None,
                password=settings.smtp_password or None,
            )
        )
    if settings.sns_topic_arn:
        notifiers.append(
            SnsNotifier(
                settings.sns_topic_arn,
                region_name=aws_region,
                endpoint_url=aws_endpoint_url or None,
            )
        )
    return notifiers


def build_dispatcher(
    settings: NotifySettings,
    *,
    mask: Callable[[str], str],
    log: NotificationLog | None = None,
    routes: Sequence[Route] = DEFAULT_ROUTES,
    window_scale: float = 1.0,
    aws_region: str = "us-east-1",
    aws_endpoint_url: str = "",
) -> Dispatcher:
    """Routes by severity (default: critical -> PagerDuty; high -> Slack + e-mail; medium ->
    Slack; low -> dashboard only). Receivers that are not configured are reported as failures,
    so the fallback (if any) takes over. De-duplication follows `window_scale`."""
    notifiers = build_notifiers(settings, aws_region=aws_region, aws_endpoint_url=aws_endpoint_url)
    names = {n.name for n in notifiers}
    fallback = settings.fallback if settings.fallback in names else None
    return Dispatcher(
        notifiers,
        routes=routes,
        fallback=fallback,
        mask=mask,
        log=log or NotificationLog(),
        dedup=Deduplicator(window_seconds=dedup_window_seconds(window_scale)),
    )
