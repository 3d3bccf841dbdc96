"""`ObservabilityConfig`: everything `instrument()` needs, typed, with safe defaults.

Scalars come from code or from the environment (`ObservabilityConfig.from_env(prefix="OBS_")`);
the parts only code can give (alert rules, dashboards, readiness probes, an access callable)
are fields too. Groups of related settings are nested dataclasses (`log`, `notify`,
`cloudwatch`, `alerts`), so a field of a group is spelled ``OBS_LOG_LEVEL`` or
``OBS_NOTIFY_SLACK_WEBHOOK_URL`` in the environment.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from pydantic import TypeAdapter, ValidationError

from observability.alerting.grouping import Grouping, InhibitRule
from observability.alerting.rules import Rule
from observability.dashboards.model import Dashboard
from observability.errors.classify import ClassificationRule
from observability.incident.changes import DependencySignal
from observability.readiness import Readiness
from observability.settings import (
    AccessCheck,
    CloudWatchSettings,
    ConfigError,
    LogSettings,
    NotifySettings,
    Role,
    check,
)

__all__ = [
    "AccessCheck",
    "AlertSettings",
    "CloudWatchSettings",
    "ConfigError",
    "LogSettings",
    "NotifySettings",
    "ObservabilityConfig",
    "Role",
]


@dataclass(frozen=True)
class AlertSettings:
    """The embedded evaluator. `rules`/`grouping`/`inhibit_rules` None: the toolkit's defaults
    for an HTTP service (`observability.defaults`)."""

    enabled: bool = True
    interval_seconds: float = 30.0
    # Shortens every rule window, hold time and grouping timer (game days, tests): 0 < s <= 1.
    window_scale: float = 1.0
    runbook_base_url: str = ""
    rules: Sequence[Rule] | None = None
    grouping: Grouping | None = None
    inhibit_rules: Sequence[InhibitRule] | None = None
    # Set: the leader posts alerts to this Alertmanager (v2 API) instead of notifying itself;
    # Alertmanager's grouping, silences, inhibition and receivers apply (docs/alerting.md).
    alertmanager_url: str = ""

    def __post_init__(self) -> None:
        check(0.0 < self.window_scale <= 1.0, "alerts.window_scale", "must be in (0, 1]")
        check(
            not self.alertmanager_url or self.alertmanager_url.startswith(("http://", "https://")),
            "alerts.alertmanager_url",
            "must be an http:// or https:// URL",
        )
        check(self.interval_seconds >= 0.05, "alerts.interval_seconds", "must be >= 0.05")


@dataclass(frozen=True)
class ObservabilityConfig:
    """What to observe and where to send it. Only `service` matters for a first try: every
    other field has a default that works on one machine (files under `data_dir`)."""

    service: str = "service"
    data_dir: Path = Path("./var/observability")
    instance: str = ""  # default host:pid
    environment: str = "local"
    release: str = ""
    # Access. /metrics takes `metrics_token` or an operator; /ops takes an operator: a bearer
    # `admin_token` / `viewer_token`, or whatever `access` says of the token.
    metrics_token: str = ""
    admin_token: str = ""
    viewer_token: str = ""
    access: AccessCheck | None = None
    public_base_url: str = ""  # links in notifications; default http://127.0.0.1:8000
    # A Markdown runbook served at <ops_prefix>/runbook; alert links point there unless
    # alerts.runbook_base_url names another place.
    runbook_path: Path | None = None
    trusted_proxies: str = ""  # comma-separated IPs/CIDRs whose X-Forwarded-For we believe
    # Request bodies are bounded before anything reads them (413 with the request_id).
    max_body_bytes: int = 1024 * 1024
    body_limits: Mapping[str, int] = field(default_factory=dict)  # exact path -> its own bound
    # Storage of errors, alert state, silences, notifications and metric history.
    database_url: str = ""  # empty: a SQLite file <data_dir>/observability.db
    # The fleet: every instance heartbeats to the store; one leads (evaluates and notifies).
    heartbeat_seconds: float = 10.0  # an instance is lost after three missed heartbeats
    leader_lease_seconds: float = 15.0  # a dead leader is replaced within this (+ a third)
    # Errors
    in_app: tuple[str, ...] = ()  # top-level packages of the app (fingerprints, "raised in app")
    classification_rules: Sequence[ClassificationRule] = ()  # before the default rules
    sentry_dsn: str = ""
    sentry_sample_rate: float = 1.0
    # Metrics
    metrics_path: str = "/metrics"
    operator_paths: tuple[str, ...] = ("/ops", "/metrics", "/health")  # not product traffic
    slow_query_seconds: float = 0.5
    memory_budget_mb: int = 0  # 0: the cgroup v2 limit, else 1 GiB
    # Dashboards and the operations UI
    ops_prefix: str = "/ops"
    ops_refresh_seconds: int = 30
    dashboards: Sequence[Dashboard] | None = None  # None: the toolkit's HTTP dashboards
    # Gauge names shown on dashboards and kept in history, besides the toolkit's own.
    dashboard_gauges: tuple[str, ...] = ()
    # Incident evidence: log events that change behaviour ("recent configuration changes").
    change_events: tuple[str, ...] = ()
    # Incident evidence: dependency signals compared before/during an incident; None: the
    # toolkit's (`observability.incident.signals.default_signals` over the readiness probes).
    dependency_signals: Sequence[DependencySignal] | None = None
    # Readiness: dependency name -> probe (raises when the dependency does not answer), or a
    # `Readiness` the app also serves (one cached report for /health/ready and the gauges).
    readiness: Mapping[str, Callable[[], object]] | Readiness = field(default_factory=dict)
    # A probe that answers slower than this marks its dependency degraded (probes given as a
    # mapping; a `Readiness` brings its own threshold).
    readiness_degraded_seconds: float = 0.25
    log: LogSettings = field(default_factory=LogSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    cloudwatch: CloudWatchSettings = field(default_factory=CloudWatchSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)

    def __post_init__(self) -> None:
        check(bool(self.service.strip()), "service", "must not be empty")
        check(0.0 <= self.sentry_sample_rate <= 1.0, "sentry_sample_rate", "must be in [0, 1]")
        check(self.slow_query_seconds > 0, "slow_query_seconds", "must be positive")
        check(self.heartbeat_seconds >= 0.1, "heartbeat_seconds", "must be >= 0.1")
        check(self.max_body_bytes >= 1, "max_body_bytes", "must be >= 1")
        check(self.leader_lease_seconds >= 1, "leader_lease_seconds", "must be >= 1")
        check(self.ops_refresh_seconds >= 1, "ops_refresh_seconds", "must be >= 1")
        for name in ("metrics_path", "ops_prefix"):
            value = getattr(self, name)
            check(value.startswith("/") and len(value) > 1, name, "must start with '/'")

    # -- derived values ---------------------------------------------------------------------
    @property
    def instance_id(self) -> str:
        return self.instance or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def member_id(self) -> str:
        """This process as a member of the fleet (lease holder, heartbeat row, published
        rollups, history rows): the instance id, plus the pid when the workers of one
        multi-process server share an explicit `instance` (they would otherwise all hold
        the one lease, and overwrite each other's heartbeat, rollups and history)."""
        # Set by the parent of multi-process workers (observability.metrics.prometheus).
        if self.instance and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return f"{self.instance}/{os.getpid()}"
        return self.instance_id

    @property
    def log_directory(self) -> Path:
        return self.log.directory if self.log.directory is not None else self.data_dir / "log"

    @property
    def log_file_stem(self) -> str:
        return self.log.file_stem or self.service

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'observability.db').as_posix()}"

    @property
    def base_url(self) -> str:
        return (self.public_base_url or "http://127.0.0.1:8000").rstrip("/")

    def replace(self, **changes: Any) -> ObservabilityConfig:
        return dataclasses.replace(self, **changes)

    # -- from the environment ----------------------------------------------------------------
    @classmethod
    def from_env(
        cls,
        prefix: str = "OBS_",
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> ObservabilityConfig:
        """Scalars from ``{prefix}{FIELD}`` (``{prefix}{GROUP}_{FIELD}`` for the nested
        groups); `overrides` (code-only parts: rules, dashboards, access...) on top.
        A value that does not parse raises ConfigError naming the variable."""
        env = os.environ if environ is None else environ
        values = _read_env(cls, prefix, env)
        for group_name, group_type in _GROUPS.items():
            group = _read_env(group_type, f"{prefix}{group_name.upper()}_", env)
            given = overrides.pop(group_name, None)
            if given is not None:
                values[group_name] = dataclasses.replace(given, **group)
            elif group:
                values[group_name] = _build(group_type, group, f"{prefix}{group_name.upper()}_")
        values.update(overrides)
        return _build(cls, values, prefix)


_GROUPS: dict[str, type] = {
    "log": LogSettings,
    "notify": NotifySettings,
    "cloudwatch": CloudWatchSettings,
    "alerts": AlertSettings,
}
_T = TypeVar("_T")


def _read_env(kind: type, prefix: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The fields of `kind` that can be spelled in the environment and are set there."""
    hints = get_type_hints(kind)
    out: dict[str, Any] = {}
    for item in dataclasses.fields(kind):
        if item.name in _GROUPS:
            continue
        variable = f"{prefix}{item.name.upper()}"
        if variable not in env:
            continue
        hint = hints[item.name]
        if not _env_spellable(hint):
            raise ConfigError(f"{variable}: {item.name} can only be given in code")
        raw = env[variable]
        try:
            if hint == tuple[str, ...]:
                out[item.name] = tuple(p.strip() for p in raw.split(",") if p.strip())
            else:
                out[item.name] = TypeAdapter(hint).validate_python(raw, strict=False)
        except ValidationError as exc:
            # Text fields (tokens, URLs, keys) always parse: a value shown here is never one.
            problem = exc.errors()[0]["msg"]
            raise ConfigError(f"{variable}: {problem} (got {raw!r})") from None
    return out


def _env_spellable(hint: Any) -> bool:
    return hint in (str, int, float, bool, Path, Path | None, tuple[str, ...])


def _build(kind: type[_T], values: dict[str, Any], prefix: str) -> _T:
    try:
        return kind(**values)
    except ConfigError as exc:
        name = exc.field.rpartition(".")[2]
        if name not in values:  # not from the environment: the message names the field
            raise
        variable = f"{prefix}{name.upper()}"
        raise ConfigError(
            f"{variable}: {exc.problem} (got {values[name]!r})", field=exc.field
        ) from None
