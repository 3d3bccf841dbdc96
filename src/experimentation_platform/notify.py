"""Notification receivers from settings: one Dispatcher shared by error tracking and alerting."""

from __future__ import annotations

from sqlalchemy import Engine

from experimentation_platform.settings import Settings
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

__all__ = ["build_dispatcher"]


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


def build_dispatcher(settings: Settings, masker: Masker, log_engine: Engine | None) -> Dispatcher:
    """Routes by severity (critical -> PagerDuty; high -> Slack + e-mail; medium -> Slack;
    low -> dashboard only). Receivers that are not configured are reported as failures,
    so the fallback (if any) takes over."""
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
        dedup=Deduplicator(window_seconds=300),
    )
