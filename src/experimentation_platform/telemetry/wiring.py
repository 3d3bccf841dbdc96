"""How the platform is observed: its settings as an `ObservabilityConfig`, and what it adds to
the toolkit's parts (domain metrics, query timing, cache outcomes, state gauges, faults).

`app.py` calls `observability_config` and `attach`, with `observability.instrument` between
them; nothing else in the platform configures logging, errors, metrics or alerting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from experimentation_platform.container import Platform
from experimentation_platform.settings import Settings
from experimentation_platform.telemetry import alerts
from experimentation_platform.telemetry import names as domain
from experimentation_platform.telemetry.dashboards import DASHBOARDS
from experimentation_platform.telemetry.metrics import PlatformMetrics, PlatformStateCollector
from experimentation_platform.telemetry.runbook import runbook_path
from observability import (
    AlertSettings,
    CloudWatchSettings,
    LogSettings,
    NotifySettings,
    Observability,
    ObservabilityConfig,
)
from observability.errors import ClassificationRule
from observability.metrics import names
from observability.readiness import Readiness
from observability.runmarker import UNCLEAN_SHUTDOWN_DETECTED
from observability.settings import Role
from observability.severity import Severity

__all__ = [
    "CHANGE_EVENTS",
    "SELFTEST_RULE",
    "SERVICE",
    "PlatformTelemetry",
    "attach",
    "observability_config",
]

SERVICE = "experimentation-platform"

# The admin self-test error notifies like a real medium bug, so an operator can prove the
# whole path (logs, store, Slack) with one call.
SELFTEST_RULE = ClassificationRule(
    name="selftest",
    severity=Severity.MEDIUM,
    exception_types=("experimentation_platform.api.ops.SelfTestError",),
)

# The platform's log events that change behaviour: incident evidence lists them as "recent
# configuration changes".
CHANGE_EVENTS = (
    domain.EXPERIMENT_STATUS_CHANGED,
    domain.FLAG_CHANGED,
    domain.FAULT_INJECTED,
    domain.FAULT_CLEARED,
    names.SERVICE_STARTED,
    UNCLEAN_SHUTDOWN_DETECTED,  # a restart after a crash (observability/runmarker.py)
)


def observability_config(
    settings: Settings,
    *,
    readiness: Readiness | None = None,
    access: Callable[[str], Role | None] | None = None,
) -> ObservabilityConfig:
    """The platform's EP_* settings as the toolkit's config (the platform's rules and
    dashboards included)."""
    return ObservabilityConfig(
        service=SERVICE,
        data_dir=settings.var_dir,
        instance=settings.instance_id,
        environment=settings.environment,
        release=settings.release,
        metrics_token=settings.metrics_token,
        access=access,
        public_base_url=settings.base_url,
        runbook_path=runbook_path(),
        trusted_proxies=settings.trusted_proxies,
        max_body_bytes=settings.max_body_bytes,
        body_limits={"/api/v1/events": settings.max_events_body_bytes},
        database_url=settings.resolved_observability_database_url,
        heartbeat_seconds=settings.fleet_heartbeat_seconds,
        leader_lease_seconds=settings.fleet_leader_lease_seconds,
        in_app=("experimentation_platform", "observability"),
        classification_rules=(SELFTEST_RULE,),
        sentry_dsn=settings.sentry_dsn,
        sentry_sample_rate=settings.sentry_sample_rate,
        slow_query_seconds=settings.slow_query_seconds,
        memory_budget_mb=settings.memory_budget_mb,
        ops_refresh_seconds=settings.ops_refresh_seconds,
        dashboards=DASHBOARDS,
        dashboard_gauges=(domain.EXPERIMENTS, *domain.STATE_GAUGES),
        change_events=CHANGE_EVENTS,
        readiness=readiness if readiness is not None else {},
        log=LogSettings(
            level=settings.log_level,
            levels=settings.log_levels,
            stdout=settings.log_to_stdout,
            console=settings.log_console,
            to_file=settings.log_to_file,
            directory=settings.log_dir,
            file_stem=settings.log_file_stem,
            rotate_seconds=settings.log_rotate_seconds,
            retention_days=settings.log_retention_days,
            max_file_bytes=settings.log_max_file_bytes,
            queue_size=settings.log_queue_size,
            sample_rate=settings.log_sample_rate,
            slow_request_ms=settings.log_slow_request_ms,
            audit_interval_seconds=settings.log_audit_interval_seconds,
        ),
        notify=NotifySettings(
            pagerduty_routing_key=settings.pagerduty_routing_key,
            pagerduty_url=settings.pagerduty_url,
            slack_webhook_url=settings.slack_webhook_url,
            smtp_host=settings.smtp_host,
            smtp_port=settings.smtp_port,
            smtp_from=settings.smtp_from,
            smtp_to=settings.smtp_to,
            smtp_username=settings.smtp_username,
            smtp_password=settings.smtp_password,
            smtp_starttls=settings.smtp_starttls,
            sns_topic_arn=settings.sns_topic_arn,
            fallback=settings.notify_fallback,
        ),
        cloudwatch=CloudWatchSettings(
            enabled=settings.cloudwatch_enabled,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            group_prefix=settings.cloudwatch_group_prefix,
            retention_api_days=settings.cloudwatch_retention_api_days,
            retention_services_days=settings.cloudwatch_retention_services_days,
            retention_errors_days=settings.cloudwatch_retention_errors_days,
            namespace=settings.cloudwatch_namespace,
            agent=settings.cloudwatch_agent,
        ),
        alerts=AlertSettings(
            enabled=settings.alerts_enabled,
            interval_seconds=settings.alert_interval_seconds,
            window_scale=settings.alert_window_scale,
            runbook_base_url=settings.runbook_base_url,
            rules=alerts.BASE_RULES,
            grouping=alerts.BASE_GROUPING,
            inhibit_rules=alerts.INHIBIT_RULES,
            alertmanager_url=settings.alertmanager_url,
        ),
    )


def platform_access(platform: Platform) -> Callable[[str], Role | None]:
    """An API key -> its operator role: admin keys are admins, viewer keys viewers (read-only
    operators), client keys nobody. Blocking (it may read the database) unless the key was
    verified recently."""

    def role_of(key: str) -> Role | None:
        principal = platform.keys.cached(key) or platform.keys.authenticate(key)
        if principal is not None and principal.role in ("admin", "viewer"):
            return "admin" if principal.role == "admin" else "viewer"
        return None

    return role_of


@dataclass
class PlatformTelemetry:
    """What the platform adds to the toolkit: its domain metrics and the state gauges read
    from its database (started and stopped in the app's lifespan)."""

    metrics: PlatformMetrics
    state: PlatformStateCollector

    def start(self) -> None:
        self.state.start()

    def stop(self) -> None:
        self.state.stop()


def attach(observability: Observability, platform: Platform) -> PlatformTelemetry:
    """Query timing on the platform's engine, cache outcomes, domain metrics, state gauges and
    the fault hooks, on the toolkit's registry and windows."""
    observability.instrument_engine(platform.db.engine)
    platform.cache.observer = observability.cache.observe
    platform.cache.timer = observability.cache.timed
    if platform.faults.enabled:
        # After query timing: injected latency shows in db_query_duration_seconds.
        platform.faults.instrument_engine(platform.db.engine)
    state = PlatformStateCollector(lambda: _state_snapshot(platform))
    observability.registry.register(state)
    return PlatformTelemetry(
        metrics=PlatformMetrics(observability.registry, observability.windows), state=state
    )


def _state_snapshot(platform: Platform) -> dict[str, Any]:
    by_status = platform.experiments.count_by_status()
    results: dict[str, Any] = {}
    rows, _ = platform.experiments.list(0, 200, "running")
    for row in rows:
        result = platform.events.results(row.key, None)
        results[row.key] = {
            "mismatch": result["sample_ratio_mismatch"]["mismatch"],
            "variants": {
                v["key"]: {
                    "exposed": v["exposures"],
                    "converted": v["conversions"],
                    "rate": v["conversion_rate"],
                    "low": v["conversion_rate_ci"]["low"],
                    "high": v["conversion_rate_ci"]["high"],
                }
                for v in result["variants"]
            },
        }
    return {"by_status": by_status, "results": results, "at": time.time()}
