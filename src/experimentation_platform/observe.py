"""How the platform is observed: the one place that turns settings into observability parts.

`app.py` calls this; nothing else in the platform configures logging, errors or shipping.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experimentation_platform.notify import build_dispatcher
from experimentation_platform.settings import Settings
from observability.alerting.notifiers import Dispatcher, Notification
from observability.asgi import RequestObserver, RequestRecord
from observability.cloud.agent import ShippingAgent
from observability.cloud.journal import JournalLockedError
from observability.cloud.shipper import CloudWatchShipper, LogShipper, ShipperConfig
from observability.cloud.sink import cloudwatch_sink
from observability.context import snapshot
from observability.errors import (
    DEFAULT_RULES,
    ClassificationRule,
    Classifier,
    ErrorStore,
    ErrorTracker,
    ErrorTrigger,
    Fingerprinter,
    Severity,
    install_hooks,
)
from observability.errors.sentry import capture_to_sentry, init_sentry, shutdown_sentry
from observability.logging import (
    LoggingConfig,
    LogPipeline,
    RequestLogObserver,
    Sink,
    configure_logging,
)
from observability.masking import Masker, default_masker

__all__ = ["Observability", "setup_observability"]

REQUEST_LOGGER = "observability.request"

# The admin self-test error notifies like a real medium bug, so an operator can prove the
# whole path (logs, store, Slack) with one call.
SELFTEST_RULE = ClassificationRule(
    name="selftest",
    severity=Severity.MEDIUM,
    exception_types=("experimentation_platform.api.ops.SelfTestError",),
)


@dataclass
class Observability:
    settings: Settings
    masker: Masker
    logs: LogPipeline
    errors: ErrorTracker
    dispatcher: Dispatcher
    shipper: LogShipper | None = None
    request_observers: list[RequestObserver] = field(default_factory=list)
    _closers: list[Any] = field(default_factory=list)

    def close(self, timeout: float = 5.0) -> None:
        for closer in reversed(self._closers):
            closer()
        self.errors.close()
        self.dispatcher.close()
        self.errors.store.dispose()  # after the dispatcher: its notification log shares it
        self.logs.close(timeout)  # after the others: their last words still reach the sinks
        if self.shipper is not None:
            self.shipper.close(timeout)
        if self.settings.sentry_dsn:
            shutdown_sentry()


def instance_id(settings: Settings) -> str:
    return settings.instance_id or f"{socket.gethostname()}:{os.getpid()}"


def logging_config(settings: Settings) -> LoggingConfig:
    return LoggingConfig(
        level=settings.log_level,
        levels=settings.log_levels,
        directory=settings.log_dir if settings.log_to_file else None,
        file_stem=settings.log_file_stem,
        stdout=settings.log_to_stdout,
        max_file_bytes=settings.log_max_file_bytes,
        rotate_seconds=settings.log_rotate_seconds,
        retention_days=settings.log_retention_days,
        queue_size=settings.log_queue_size,
        static_fields={"service": "experimentation-platform", "instance": instance_id(settings)},
    )


def build_shipper(settings: Settings) -> LogShipper:
    """One journal per worker slot: the first slot whose journal no live process holds. A
    restarted worker takes a free slot and replays what its predecessor left unshipped."""
    for slot in range(256):
        try:
            return _shipper(settings, settings.var_dir / "cloudwatch" / f"worker-{slot}")
        except JournalLockedError:
            continue
    raise RuntimeError("256 CloudWatch journals are held by live processes")


def _shipper(settings: Settings, journal_dir: Path) -> LogShipper:
    config = ShipperConfig(
        journal_dir=journal_dir,
        region=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url or None,
        group_prefix=settings.cloudwatch_group_prefix,
        retention_days={
            "api": settings.cloudwatch_retention_api_days,
            "services": settings.cloudwatch_retention_services_days,
            "errors": settings.cloudwatch_retention_errors_days,
        },
        instance_id=instance_id(settings).replace(":", "-"),
        request_logger=REQUEST_LOGGER,
    )
    if settings.cloudwatch_agent:
        return ShippingAgent(config).start()
    return CloudWatchShipper(config).start()


def _error_observer(tracker: ErrorTracker) -> RequestObserver:
    def observe(record: RequestRecord) -> None:
        if record.exception is None:
            return
        context = record.context.as_dict()
        context.update(route=record.route, method=record.method, status_code=record.status)
        tracker.capture(record.exception, context)

    return observe


def _notify_trigger(dispatcher: Dispatcher, settings: Settings) -> Any:
    titles = {
        "new_group": "New error group",
        "regression": "Error regression",
        "rate_spike": "Error rate spike",
    }

    notified: dict[str, float] = {}

    def on_trigger(trigger: ErrorTrigger) -> None:
        # Storm-safe: a spike of a group we just announced adds nothing the on-call person
        # does not know yet; it notifies only once the announcement is 10 minutes old.
        now = time.monotonic()
        last = notified.get(trigger.fingerprint)
        if trigger.kind == "rate_spike" and last is not None and now - last < 600:
            return
        if len(notified) > 10_000:
            notified.clear()
        notified[trigger.fingerprint] = now
        rate = f", {trigger.rate_per_minute:.0f}/min" if trigger.rate_per_minute else ""
        dispatcher.submit(
            Notification(
                key=f"error:{trigger.fingerprint}:{trigger.kind}",
                status="firing",
                severity=trigger.severity,
                title=f"{titles.get(trigger.kind, trigger.kind)}: {trigger.type_name}",
                summary=f"{trigger.message} ({trigger.count} so far{rate})",
                description=(
                    f"Classified {trigger.severity} by rule '{trigger.rule_name}'. "
                    f"First request_id: {trigger.first_request_id}. "
                    f"Search its log lines: ep logs --request-id {trigger.first_request_id}"
                ),
                source="error",
                labels={"fingerprint": trigger.fingerprint, "kind": trigger.kind},
                evidence_url=f"{settings.base_url}/ops/errors/{trigger.fingerprint}",
            )
        )

    return on_trigger


def setup_observability(settings: Settings, extra_sinks: list[Sink] | None = None) -> Observability:
    masker = default_masker()
    sinks = list(extra_sinks or [])
    shipper = build_shipper(settings) if settings.cloudwatch_enabled else None
    if shipper is not None:
        sinks.append(cloudwatch_sink(shipper))
    logs = configure_logging(logging_config(settings), mask=masker.mask_event, extra_sinks=sinks)

    store = ErrorStore.from_url(settings.resolved_errors_database_url)
    store.create_schema()
    dispatcher = build_dispatcher(settings, masker, store.engine)
    if settings.sentry_dsn:
        init_sentry(
            settings.sentry_dsn,
            settings.environment,
            settings.release,
            masker.mask,
            sample_rate=settings.sentry_sample_rate,
        )
    tracker = ErrorTracker(
        store,
        mask=masker.mask,
        fingerprinter=Fingerprinter(["experimentation_platform", "observability"]),
        classifier=Classifier([SELFTEST_RULE, *DEFAULT_RULES]),
        on_trigger=_notify_trigger(dispatcher, settings),
        sentry=capture_to_sentry if settings.sentry_dsn else None,
        context_provider=snapshot,
    )
    request_log = RequestLogObserver(
        logger_name=REQUEST_LOGGER,
        sample_rate=settings.log_sample_rate,
        slow_ms=settings.log_slow_request_ms,
        mask_header=masker.mask_header,
    )
    observability = Observability(
        settings=settings,
        masker=masker,
        logs=logs,
        errors=tracker,
        dispatcher=dispatcher,
        shipper=shipper,
        request_observers=[request_log, _error_observer(tracker)],
    )
    observability._closers.append(install_hooks(tracker))
    return observability
