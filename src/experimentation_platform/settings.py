"""Configuration from `EP_*` environment variables (and an optional `.env` file).

Every setting has a safe default for the embedded mode (SQLite, in-process cache, local files).
A bad value fails at start with a message naming the variable and what it accepts.
"""

from __future__ import annotations

import re
import socket
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from observability.logging.levels import parse_levels
from observability.metrics.system import cgroup_memory_limit

__all__ = ["DEFAULT_MEMORY_BUDGET_MB", "Settings", "SettingsError", "load_settings"]

# Values of these settings may hold credentials: never echo them in an error message.
_SECRETISH = re.compile(r"URL|TOKEN|DSN|KEY|PASSWORD|SECRET")

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Without a container limit: measured, one `ep serve` process holds 140-150 MB of resident
# memory under demo traffic (20 and 100 requests/s, 3 minutes each, CloudWatch shipping on),
# flat over time. 1 GiB is ~7x that: 90% of it (920 MB) is a leak or a stuck ballast, not load.
DEFAULT_MEMORY_BUDGET_MB = 1024


class SettingsError(ValueError):
    """A setting is invalid; the message names the EP_* variable and the accepted values."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EP_", env_file=".env", extra="ignore", validate_default=True
    )

    environment: str = "local"
    release: str = "0.1.0"
    instance_id: str = Field(default="", description="Defaults to host:pid at start")
    var_dir: Path = Path("./var")

    # Storage
    database_url: str = ""  # empty: a SQLite file under var_dir
    redis_url: str = ""  # empty: the in-process cache
    cache_prefix: str = "ep:cfg:"  # Redis key prefix (several platforms can share one Redis)
    cache_ttl_seconds: float = Field(default=5.0, ge=0.0, le=3600.0)
    db_pool_size: int = Field(default=10, ge=1, le=200)

    # HTTP
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    trusted_proxies: str = ""  # comma-separated IPs or CIDRs whose X-Forwarded-For we believe
    # Request bodies: checked in the ASGI layer before anything reads them (413 past the bound).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    # POST /api/v1/events takes up to 1,000 events: its worst legal batch (every field at its
    # maximum length, non-ASCII escaped as JSON libraries do by default) is ~4.9 MB.
    max_events_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)

    # Authentication
    key_cache_seconds: float = Field(default=30.0, ge=0.0, le=3600.0)  # revocation bound
    auth_max_failures: int = Field(default=20, ge=1, le=100_000)  # per client address...
    auth_failure_window_seconds: float = Field(default=60.0, gt=0.0, le=86_400.0)  # ...in this
    auth_backoff_seconds: float = Field(default=30.0, ge=0.0, le=86_400.0)  # then 429 this long

    # Event timestamps outside [now - max age, now + max future skew] are rejected (422).
    event_max_future_seconds: float = Field(default=3600.0, ge=0.0, le=31 * 86_400.0)
    event_max_age_days: float = Field(default=30.0, gt=0.0, le=3650.0)

    # /health/ready re-checks its dependencies at most this often (load balancers poll it).
    readiness_cache_seconds: float = Field(default=1.0, ge=0.0, le=60.0)
    # A readiness check slower than this reports its dependency degraded (HTTP 200 still).
    readiness_degraded_seconds: float = Field(default=0.25, gt=0.0, le=60.0)

    # Logging
    log_level: LogLevel = "INFO"
    log_levels: str = ""  # "sqlalchemy.engine=WARNING,uvicorn.access=ERROR"
    log_dir: Path = Path("./var/log")
    log_to_file: bool = True
    log_file_stem: str = "platform"
    log_rotate_seconds: float = Field(default=86_400.0, ge=1.0)
    log_to_stdout: bool = True
    # stdout for people or machines: "pretty" coloured lines, "json", or "auto" (pretty when
    # stdout is a terminal); files and CloudWatch are JSON either way.
    log_console: Literal["auto", "json", "pretty"] = "auto"
    log_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    log_slow_request_ms: float = Field(default=500.0, ge=0.0)
    log_retention_days: int = Field(default=14, ge=1, le=3650)
    log_max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    log_queue_size: int = Field(default=50_000, ge=100)
    # The background audit of stored logs and errors for secrets (0 turns it off).
    log_audit_interval_seconds: float = Field(default=300.0, ge=0.0)

    # Metrics and operator endpoints
    metrics_token: str = ""  # a scraper's bearer token; admin API keys are accepted too
    slow_query_seconds: float = Field(default=0.5, gt=0.0)
    alerts_enabled: bool = True  # the embedded evaluator (off when Prometheus evaluates)
    alert_interval_seconds: float = Field(default=30.0, ge=1.0, le=600.0)
    # The fleet: heartbeats to the shared store; one instance leads alerting at a time.
    fleet_heartbeat_seconds: float = Field(default=10.0, ge=0.1, le=300.0)
    fleet_leader_lease_seconds: float = Field(default=15.0, ge=1.0, le=600.0)
    # Game days and tests: every rule window, hold time and grouping timer times this.
    alert_window_scale: float = Field(default=1.0, gt=0.0, le=1.0)
    fault_injection: bool = False  # game days only: /api/v1/ops/faults for admin keys
    ops_refresh_seconds: int = Field(default=30, ge=2, le=3600)  # built-in UI auto-refresh
    # What process_memory_usage_ratio divides by; 0: the cgroup v2 limit, else the default.
    memory_budget_mb: int = Field(default=0, ge=0, le=4 * 1024 * 1024)

    # Errors, alert state, silences, notification log, metric history (one store)
    observability_database_url: str = ""  # empty: the platform database if PostgreSQL, else
    # var/observability.db (an existing var/errors.db of an earlier release is renamed to it)
    errors_database_url: str = ""  # the earlier name of the setting above; still honoured
    sentry_dsn: str = ""
    sentry_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    capture_logged_errors: bool = False  # also capture logger.exception(...) calls

    # Notifications (a receiver is on when its setting is given)
    public_base_url: str = ""  # links in notifications; default http://host:port
    runbook_base_url: str = ""  # where alert links find the runbook; default $BASE/ops/runbook
    pagerduty_routing_key: str = ""
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    slack_webhook_url: str = ""
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "experimentation-platform@localhost"
    smtp_to: str = ""  # comma-separated
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    sns_topic_arn: str = ""
    notify_fallback: str = ""  # receiver used when every receiver of a route failed
    # Set: the alerting leader posts alerts to this Alertmanager instead of the receivers above
    alertmanager_url: str = ""

    # AWS / CloudWatch
    aws_region: str = "us-east-1"
    aws_endpoint_url: str = ""  # a local moto server in tests
    cloudwatch_enabled: bool = False
    # Ship from a separate low-priority process (true) or a thread of the worker (false).
    cloudwatch_agent: bool = True
    cloudwatch_group_prefix: str = "/experimentation-platform"
    cloudwatch_retention_api_days: int = 30
    cloudwatch_retention_services_days: int = 90
    cloudwatch_retention_errors_days: int = 180
    cloudwatch_namespace: str = "ExperimentationPlatform"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_levels")
    @classmethod
    def _logger_levels(cls, value: str) -> str:
        parse_levels(value)  # raises ValueError naming the bad part
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'platform.db').as_posix()}"

    @cached_property
    def resolved_observability_database_url(self) -> str:
        if self.observability_database_url or self.errors_database_url:
            return self.observability_database_url or self.errors_database_url
        if not self.is_sqlite:
            return self.resolved_database_url
        return f"sqlite:///{(self.var_dir / 'observability.db').as_posix()}"

    @cached_property
    def resolved_memory_budget_bytes(self) -> int:
        """EP_MEMORY_BUDGET_MB, else the container's memory limit, else 1 GiB."""
        if self.memory_budget_mb:
            return self.memory_budget_mb * 1024 * 1024
        return cgroup_memory_limit() or DEFAULT_MEMORY_BUDGET_MB * 1024 * 1024

    def ensure_directories(self) -> None:
        """Create the var directory, the log directory and every SQLite file's directory,
        whatever the database URLs say (a SQLite file elsewhere must not leave EP_VAR_DIR,
        where the error store and journals live, uncreated)."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        if self.log_to_file:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for url in (self.resolved_database_url, self.resolved_observability_database_url):
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        """EP_PUBLIC_BASE_URL, else the bound host and port (a wildcard bind: the host's name,
        what another machine would use)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning pydantic's error into one that names the EP_* variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "EP_" + "_".join(str(part) for part in error["loc"]).upper()
            shown = "" if _SECRETISH.search(name) else f" (got {error.get('input')!r})"
            problems.append(f"{name}: {error['msg']}{shown}")
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
