"""Notification receivers from settings: one Dispatcher shared by error tracking and alerting."""

from __future__ import annotations

from typing import Final

from sqlalchemy import Engine

from experimentation_platform.settings import Settings
from experimentation_platform.telemetry.alerts import WINDOW_SCALE
from observability.alerting.notifiers import (
    Deduplicator,
    Dispatcher,
    EmailNotifier,
    NotificationLog,
    Notifier,
    PagerDutyNotifier,
    SlackNotifier,
    SnsNotifier,
)
from observability.masking import Masker

__all__ = ["DEDUP_WINDOW_S", "MIN_DEDUP_WINDOW_S", "build_dispatcher", "dedup_window_seconds"]

# A repeat of the same notification key and status within this window is not sent again.
DEDUP_WINDOW_S: Final = 300.0
# Shortened windows still swallow an immediate double send; 3 s is the scaled group_interval
# at the game-day scale (0.01), so a group's update is not mistaken for a duplicate there.
MIN_DEDUP_WINDOW_S: Final = 3.0


def dedup_window_seconds(scale: float) -> float:
    """The de-duplication window at EP_ALERT_WINDOW_SCALE `scale`: it shrinks with the rule
    windows and grouping timers, so a game day that fires the same alert group twice within
    a few minutes gets both notifications."""
    return max(MIN_DEDUP_WINDOW_S, DEDUP_WINDOW_S * scale)


def build_notifiers(settings: Settings) -> list[Notifier]:
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
                region_name=settings.aws_region,
                endpoint_url=settings.aws_endpoint_url or None,
            )
        )
    return notifiers


def build_dispatcher(
    settings: Settings,
    masker: Masker,
    log_engine: Engine | None,
    *,
    window_scale: float = WINDOW_SCALE,
) -> Dispatcher:
    """Routes by severity (critical -> PagerDuty; high -> Slack + e-mail; medium -> Slack;
    low -> dashboard only). Receivers that are not configured are reported as failures,
    so the fallback (if any) takes over. De-duplication follows `window_scale`
    (EP_ALERT_WINDOW_SCALE by default)."""
    log = NotificationLog(engine=log_engine)
    if log_engine is not None:
        log.create_schema()
    notifiers = build_notifiers(settings)
    names = {n.name for n in notifiers}
    fallback = settings.notify_fallback if settings.notify_fallback in names else None
    return Dispatcher(
        notifiers,
        fallback=fallback,
        mask=masker.mask_text,
        log=log,
        dedup=Deduplicator(window_seconds=dedup_window_seconds(window_scale)),
    )
