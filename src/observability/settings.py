"""Settings of the toolkit that are plain values (log sinks, notification receivers, CloudWatch
shipping) and the vocabulary of access. `observability.config` puts them together with what only
code can give (rules, dashboards) in `ObservabilityConfig`; the parts that need only a group of
settings (the notifier factory, the shipper) import it from here, low in the toolkit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "AccessCheck",
    "CloudWatchSettings",
    "ConfigError",
    "LogSettings",
    "NotifySettings",
    "Role",
    "check",
]

Role = Literal["admin", "viewer"]
# A bearer token (an API key, a shared secret) -> the operator role it grants, or None.
AccessCheck = Callable[[str], "Role | None"]


class ConfigError(ValueError):
    """A setting is invalid; the message names it (and its environment variable)."""

    def __init__(self, message: str, *, field: str = "", problem: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem or message


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    levels: str = ""  # per logger: "sqlalchemy.engine=WARNING,uvicorn.access=ERROR"
    stdout: bool = True
    console: str = "auto"  # stdout: "json", "pretty" (coloured lines) or "auto" (pretty on a tty)
    to_file: bool = True
    directory: Path | None = None  # None: <data_dir>/log
    file_stem: str = ""  # empty: the service's name
    rotate_seconds: float = 86_400.0
    retention_days: int = 14
    max_file_bytes: int = 100 * 1024 * 1024
    queue_size: int = 50_000
    sample_rate: float = 1.0  # share of fast successful requests logged (errors always are)
    slow_request_ms: float = 500.0  # slower requests are always logged, marked slow
    # How often the log audit re-reads new lines and error rows for secrets; 0 turns it off.
    audit_interval_seconds: float = 300.0

    def __post_init__(self) -> None:
        check(0.0 <= self.sample_rate <= 1.0, "log.sample_rate", "must be between 0 and 1")
        check(self.audit_interval_seconds >= 0, "log.audit_interval_seconds", "must be >= 0")
        check(self.queue_size >= 100, "log.queue_size", "must be at least 100")
        check(self.retention_days >= 1, "log.retention_days", "must be at least 1")
        check(
            self.console in ("auto", "json", "pretty"),
            "log.console",
            "must be 'auto', 'json' or 'pretty'",
        )


@dataclass(frozen=True)
class NotifySettings:
    """Receivers are on when their setting is given. Routing by severity: critical ->
    PagerDuty; high -> Slack and e-mail; medium -> Slack; low -> dashboards only."""

    pagerduty_routing_key: str = ""
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    slack_webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_from: str = "observability@localhost"
    smtp_to: str = ""  # comma-separated
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    sns_topic_arn: str = ""
    fallback: str = ""  # receiver used when every receiver of a route failed


@dataclass(frozen=True)
class CloudWatchSettings:
    """Log shipping to CloudWatch Logs and EMF metrics (off unless `enabled`)."""

    enabled: bool = False
    region: str = "us-east-1"
    endpoint_url: str = ""  # a local moto server in tests
    group_prefix: str = "/service"
    retention_api_days: int = 30
    retention_services_days: int = 90
    retention_errors_days: int = 180
    namespace: str = "Service"
    agent: bool = True  # ship from a low-priority process (False: a thread of the worker)


def check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{name} {problem}", field=name, problem=problem)
