"""`Observability`: every part of the toolkit for one process, built from one config.

It owns the parts and their order: logging first (the others' last words must reach the
sinks), then the store, notifications, error tracking, metrics, alerting and dashboards;
`start()`/`stop()` run the background work inside the app's lifespan and `close()` releases
everything in reverse. `instrument()` builds one and wires it into an app; tests and tools may
build one directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from observability import defaults
from observability.alerting.alertmanager_client import AlertmanagerClient
from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.feed import CounterFeed
from observability.alerting.notifiers.error_triggers import ErrorNotifier
from observability.alerting.notifiers.factory import build_dispatcher
from observability.alerting.scaling import scale_grouping, scale_rules
from observability.alerting.state import AlertInstance, find_alert
from observability.asgi import FailureObserver, RequestObserver, RequestRecord
from observability.cloud.events import LogShipper, ShipperConfig
from observability.cloud.sink import cloudwatch_sink
from observability.cloud.slots import open_shipper
from observability.config import ObservabilityConfig
from observability.context import snapshot
from observability.dashboards.data import DashboardData, registry_values
from observability.errors import (
    DEFAULT_RULES,
    Classifier,
    ErrorTracker,
    Fingerprinter,
    install_hooks,
)
from observability.errors.sentry import capture_to_sentry, init_sentry, shutdown_sentry
from observability.fleet.leadership import Leadership
from observability.fleet.lease import Lease
from observability.fleet.registry import InstanceRegistry
from observability.fleet.rollups import FleetPublisher, FleetRollups
from observability.fleet.salvage import LostMinutes
from observability.incident import gather_evidence
from observability.incident.signals import default_signals
from observability.logaudit import AuditFinding, LogAuditor
from observability.logging import (
    LoggingConfig,
    LogPipeline,
    RequestLogObserver,
    Sink,
    configure_logging,
    get_logger,
)
from observability.logsearch import LogQuery, LogSearch, LogSearchError
from observability.masking import Masker, default_masker
from observability.metrics import names
from observability.metrics.cache import CacheMetrics
from observability.metrics.emf import EmfPublisher
from observability.metrics.prometheus import (
    HttpMetrics,
    build_registry,
    mark_worker_dead,
)
from observability.metrics.readiness import ReadinessCollector
from observability.metrics.recorder import MinuteRecorder
from observability.metrics.sqlalchemy import SlowQuery, instrument_engine
from observability.metrics.system import RuntimeMetrics
from observability.metrics.telemetry import OpenGroupsCollector, TelemetryCollector
from observability.metrics.windows import RequestWindowsObserver, RollingWindows
from observability.query.fleet import FleetSource
from observability.query.live import LiveSource
from observability.readiness import Readiness
from observability.runmarker import UNCLEAN_SHUTDOWN_DETECTED, RunMarker
from observability.store import ObservabilityStore

__all__ = ["REQUEST_LOGGER", "Observability"]

REQUEST_LOGGER: Final = "observability.request"
_DEFAULT_MEMORY_BUDGET = 1024 * 1024 * 1024
# Gauges every dashboard and rule may read, kept in history once a minute.
TOOLKIT_GAUGES: Final = (
    names.SYSTEM_CPU,
    names.SYSTEM_MEMORY,
    names.SYSTEM_DISK,
    names.SYSTEM_NETWORK,
    names.EVENT_LOOP_LAG,
    names.PROCESS_MEMORY,
    names.SERVICE_READY,
    names.SERVICE_DEGRADED,
    names.READINESS_CHECK_DURATION,
    names.DB_POOL_IN_USE,
    names.DB_POOL_OVERFLOW,
    names.CLOUDWATCH_LAG,
    names.INSTANCES_UP,
    names.INSTANCES_LOST,
    names.INSTANCE_UP,
    names.ERROR_GROUPS_OPEN,
)

log = get_logger("observability")


class Observability:
    """Logs, errors, metrics, alerting and dashboards of one process (see module docstring)."""

    def __init__(self, config: ObservabilityConfig, *, extra_sinks: Iterable[Sink] = ()) -> None:
        self.config = cfg = config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self._closers: list[Callable[[], object]] = []
        self.masker: Masker = default_masker()

        # Logs (and their CloudWatch sink) first: every later part logs through them.
        self.shipper: LogShipper | None = self._open_shipper() if cfg.cloudwatch.enabled else None
        sinks = list(extra_sinks)
        if self.shipper is not None:
            sinks.append(cloudwatch_sink(self.shipper))
        self.logs: LogPipeline = configure_logging(
            logging_config(cfg), mask=self.masker.mask_event, extra_sinks=sinks
        )

        self.store = ObservabilityStore.open(cfg.resolved_database_url, instance=cfg.member_id)
        self.store.migrate()
        self.dispatcher = build_dispatcher(
            cfg.notify,
            mask=self.masker.mask_text,
            log=self.store.notifications,
            window_scale=cfg.alerts.window_scale,
            aws_region=cfg.cloudwatch.region,
            aws_endpoint_url=cfg.cloudwatch.endpoint_url,
        )
        self.errors = self._error_tracker()
        self._closers.append(install_hooks(self.errors))

        # Metrics
        self.registry: CollectorRegistry = build_registry()
        self.windows = RollingWindows()
        self.http = HttpMetrics(self.registry)
        self.cache = CacheMetrics(self.registry, self.windows)
        self.runtime = RuntimeMetrics(
            self.registry,
            disk_paths=[str(cfg.data_dir)],
            memory_budget=(cfg.memory_budget_mb * 1024 * 1024) or _default_memory_budget(),
        )
        self.registry.register(
            TelemetryCollector(
                lambda: self.logs,
                errors=self.errors,
                dispatcher=self.dispatcher,
                shipper=self.shipper,
            )
        )
        self.open_groups = OpenGroupsCollector(
            lambda: self.store.errors.stats(minutes=1).open_by_severity,
            name=names.ERROR_GROUPS_OPEN,
        )
        self.registry.register(self.open_groups)
        probes = cfg.readiness
        self.readiness_checks = (
            probes
            if isinstance(probes, Readiness)
            else Readiness(probes, degraded_seconds=cfg.readiness_degraded_seconds)
        )
        self.readiness = ReadinessCollector(self.readiness_checks)
        self.registry.register(self.readiness)
        self.fleet = InstanceRegistry(
            self.store.engine,
            instance=cfg.member_id,
            service=cfg.service,
            version=cfg.release,
            heartbeat_s=cfg.heartbeat_seconds,
        )
        self.registry.register(self.fleet)
        self.gauge_names = (*TOOLKIT_GAUGES, *cfg.dashboard_gauges)
        emf = (
            EmfPublisher(cfg.cloudwatch.namespace, {"Service": cfg.service})
            if self.shipper is not None
            else None
        )
        self.recorder = MinuteRecorder(
            self.windows,
            self.store.history,
            gauges=self.gauges,
            emf=emf,
            emf_sink=self.shipper.submit_many if self.shipper is not None else None,
        )

        # Each finished request, once: its log line, error capture, RED metrics, windows.
        self.request_log = RequestLogObserver(
            logger_name=REQUEST_LOGGER,
            sample_rate=cfg.log.sample_rate,
            slow_ms=cfg.log.slow_request_ms,
            mask_header=self.masker.mask_header,
        )
        self.observers: list[RequestObserver] = [
            self.request_log,
            FailureObserver(self._capture_request_error),
            self.http,
            RequestWindowsObserver(self.windows, cfg.operator_paths),
        ]

        # Alerting: the rules at the configured window scale (1.0 leaves them as they are).
        base = f"{cfg.base_url}{cfg.ops_prefix}"
        scale = cfg.alerts.window_scale
        rules = cfg.alerts.rules if cfg.alerts.rules is not None else defaults.rules(cfg.service)
        # The periodic audit of what reached the log files and the store (masking's check).
        self.auditor = (
            LogAuditor(
                cfg.log_directory if cfg.log.to_file else None,
                cfg.log_file_stem,
                store_engine=self.store.engine,
                registry=self.registry,
                interval=cfg.log.audit_interval_seconds,
                masker=self.masker,
                on_findings=_report_audit_findings,
            )
            if cfg.log.audit_interval_seconds > 0
            else None
        )
        feed = CounterFeed(
            self.windows, [self._errors_by_severity, self._log_drops, self._audit_findings]
        )
        # Several processes share a server store (PostgreSQL): each publishes its recent
        # buckets, and rules and panels read the fleet's. SQLite: one process, its windows.
        self.fleet_rollups: FleetRollups | None = None
        self.fleet_publisher: FleetPublisher | None = None
        live = LiveSource(self.windows, history=self.store.history, gauges=self.gauges)
        self.live_source = live  # this process's view (its remembered gauge readings too)
        source: LiveSource | FleetSource = live
        if self.store.engine.dialect.name != "sqlite":
            self.fleet_rollups = FleetRollups(
                self.store.engine, service=cfg.service, instance=cfg.member_id
            )
            self.fleet_publisher = FleetPublisher(
                self.windows, self.fleet_rollups, before_publish=feed.sync
            )
            source = FleetSource(self.fleet_rollups, live)
            self.lost_minutes = LostMinutes(self.fleet, self.fleet_rollups, self.store.history)
        # Alertmanager mode: alerts go there (it notifies); else the dispatcher notifies.
        self.alertmanager = self._alertmanager_client(base) if cfg.alerts.alertmanager_url else None
        self.evaluator = Evaluator(
            scale_rules(tuple(rules), scale),
            source,
            dispatcher=self.dispatcher if self.alertmanager is None else None,
            publish=self.alertmanager.publish if self.alertmanager is not None else None,
            config=EvaluatorConfig(
                interval_s=cfg.alerts.interval_seconds,
                flap_window_s=max(1.0, 3600 * scale),
                flap_quiet_s=max(1.0, 900 * scale),
                resolved_retention_s=max(1.0, 900 * scale),
                grouping=scale_grouping(cfg.alerts.grouping or defaults.GROUPING, scale),
                inhibit_rules=tuple(cfg.alerts.inhibit_rules or defaults.INHIBIT_RULES),
                runbook_base_url=cfg.alerts.runbook_base_url
                or (f"{base}/runbook" if cfg.runbook_path is not None else "docs/runbook.md"),
                dashboard_base_url=f"{base}/dashboards",
                evidence_url_template=f"{base}/incidents/{{alertname}}",
            ),
            state_store=self.store.alerts,
            silences=self.store.silences,
            # With a fleet the publisher copies the counters (one thread does it), and the
            # leader recovers lost instances' last minutes into the history.
            before_round=feed.sync if self.fleet_publisher is None else self._recover_lost,
        )
        # One instance of the fleet evaluates and notifies; the others read its state.
        self.leadership = Leadership(
            Lease(
                self.store.engine,
                f"{cfg.service}:alert-evaluator",
                cfg.member_id,
                ttl_s=cfg.leader_lease_seconds,
            ),
            on_elected=self._lead,
            on_deposed=self.evaluator.stop,
        )

        # Dashboards and the log drill-down
        self.dashboards = DashboardData(
            cfg.dashboards if cfg.dashboards is not None else defaults.dashboards(),
            windows=self.windows,
            history=self.store.history,
            errors=self.store.errors,
            instance=cfg.instance_id,
            gauges=self.gauges,
            fleet=self.fleet_rollups,
        )
        self.log_search = LogSearch(cfg.log_directory, cfg.log_file_stem)
        self.dependency_signals = (
            tuple(cfg.dependency_signals)
            if cfg.dependency_signals is not None
            else default_signals(self.readiness_checks.checks)
        )
        # One marker per worker slot under data_dir/run: left behind only by a process that
        # did not shut down cleanly (kill -9, OOM, power loss); the next start reports it.
        self.run_marker = RunMarker(cfg.data_dir / "run", instance=cfg.instance_id)
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Background work: process metrics, minute history, heartbeats, the alert evaluator;
        and the run marker that tells the next start whether this one stopped cleanly."""
        if self._started:
            return
        self._started = True
        self._mark_run()
        await self.runtime.start()
        self.recorder.start()
        self.fleet.start()
        if self.fleet_publisher is not None:
            self.fleet_publisher.start()
        if self.config.alerts.enabled:
            self.leadership.start()
        if self.auditor is not None:
            self.auditor.start()

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self.auditor is not None:
            self.auditor.stop()
        if self.config.alerts.enabled:
            self.leadership.stop()
        await self.runtime.stop()
        self.recorder.stop()
        if self.fleet_publisher is not None:
            self.fleet_publisher.stop()  # the last partial bucket reaches the fleet
        self.fleet.stop()
        mark_worker_dead()  # multi-process mode: this worker's live gauges leave the sum

    def close(self, timeout: float = 5.0) -> None:
        """Release everything, the logs last (the other parts' last words reach the sinks)."""
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()
        self.errors.close()
        self.dispatcher.close()
        if self.alertmanager is not None:
            self.alertmanager.close()
        self.store.dispose()  # after the dispatcher: its notification log lives there
        log.info(names.SERVICE_STOPPED, service=self.config.service)
        self.run_marker.stop()  # a clean shutdown: the next start of this slot reports nothing
        self.logs.close(timeout)
        if self.shipper is not None:
            self.shipper.close(timeout)
        if self.config.sentry_dsn:
            shutdown_sentry()

    # -- what an app adds --------------------------------------------------------------------
    def instrument_engine(self, engine: Engine) -> None:
        """Query timing, slow-query lines and pool gauges for an SQLAlchemy engine."""

        def slow(query: SlowQuery) -> None:
            log.warning(
                names.SLOW_QUERY,
                statement=query.statement,
                operation=query.operation,
                duration_ms=round(query.duration_s * 1000, 1),
            )

        instrument_engine(
            engine,
            self.registry,
            slow_query_seconds=self.config.slow_query_seconds,
            on_slow_query=slow,
            windows=self.windows,
        )

    def gauges(self) -> dict[str, float]:
        """The dashboard gauges' current values, keyed ``name{labels}``."""
        return dict(registry_values(self.registry, self.gauge_names))

    def _mark_run(self) -> None:
        try:
            previous = self.run_marker.start()
        except OSError as exc:  # an unwritable data dir costs this evidence, not the service
            log.warning("run_marker_unavailable", error=type(exc).__name__)
            return
        if previous is not None:
            log.warning(UNCLEAN_SHUTDOWN_DETECTED, **previous.fields())

    def _recover_lost(self) -> None:
        try:
            self.lost_minutes.run()
        except Exception as exc:  # retried next round; the round's evaluation goes on
            log.warning("fleet_lost_minutes_failed", error=type(exc).__name__)

    def _lead(self) -> None:
        self.evaluator.reload_state()  # what the previous leader left: nothing is re-sent
        self.evaluator.start()

    def _fleet_view(self) -> None:
        """A follower shows the leader's alerts: their state comes from the store."""
        if not self.leadership.leading:
            self.evaluator.reload_state()

    def alerts(self) -> dict[str, Any]:
        """Firing and pending alerts, silences and recent notifications (the /ops Alerts page)."""
        self._fleet_view()
        active = list(self.evaluator.active_alerts())
        return {
            "firing": [a for a in active if a.get("state") == "firing"],
            "pending": [a for a in active if a.get("state") == "pending"],
            "silences": [s.to_dict() for s in self.evaluator.silences()],
            "notifications": [record.__dict__ for record in self.store.notifications.recent(50)],
        }

    def request_lines(self, request_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """Every log line of one request (the drill-down), oldest first."""
        self.logs.flush(1.0)  # the request just happened: its lines may still be queued
        try:
            lines = self.log_search.search(LogQuery(request_id=request_id, limit=limit))
            return [line.fields for line in lines]
        except LogSearchError:
            return []

    def evidence(self, alert: str) -> dict[str, Any] | None:
        """Evidence for `alert` (name or key) from this process: its evaluator's alerts and
        rules, live windows, the store and the log files; JSON-ready, with the runbook and
        dashboard links under "links". None when no such alert is known here."""
        self._fleet_view()
        found = find_alert(self.evaluator.alert_instances(), alert)
        if found is None:
            return None
        self.logs.flush(0.5)  # the failing requests just happened: lines may be queued
        evidence = gather_evidence(
            found,
            definitions=self.evaluator.definitions,
            windows=self.windows,
            history=self.store.history,
            # The evaluator's remembered gauge readings answer without pinging the
            # dependencies again (which may be what is slow).
            gauges=self.live_source,
            dependency_signals=self.dependency_signals,
            errors=self.store.errors,
            recent_errors=self.errors.recent,
            logs=self.log_search,
            config_events=self.config.change_events,
            mask=self.masker.mask,
        )
        result = evidence.to_dict()
        definition = next((d for d in self.evaluator.definitions if d.name == found.name), None)
        runbook, dashboard = self.evaluator.config.links(definition)
        result["links"] = {"runbook": runbook, "dashboard": dashboard}
        return result

    # -- parts ---------------------------------------------------------------------------------
    def _alertmanager_client(self, base: str) -> AlertmanagerClient:
        cfg = self.config

        def annotations(alert: AlertInstance) -> dict[str, str]:
            definition = next((d for d in self.evaluator.definitions if d.name == alert.name), None)
            runbook, dashboard = self.evaluator.config.links(definition)
            return {"runbook_url": runbook or "", "dashboard_url": dashboard or ""}

        # As Prometheus: a firing alert ends by itself 4 rounds (or lease times) after the last
        # post, long enough for a new leader to take over and post it again.
        hold = 4 * max(cfg.alerts.interval_seconds, cfg.leader_lease_seconds)
        return AlertmanagerClient(
            cfg.alerts.alertmanager_url,
            hold_s=hold,
            annotations=annotations,
            generator_url=lambda alert: f"{base}/incidents/{alert.name}",
        )

    def _open_shipper(self) -> LogShipper:
        cw = self.config.cloudwatch
        base = ShipperConfig(
            journal_dir=self.config.data_dir / "cloudwatch",
            region=cw.region,
            endpoint_url=cw.endpoint_url or None,
            group_prefix=cw.group_prefix,
            retention_days={
                "api": cw.retention_api_days,
                "services": cw.retention_services_days,
                "errors": cw.retention_errors_days,
            },
            instance_id=self.config.instance_id.replace(":", "-"),
            request_logger=REQUEST_LOGGER,
        )
        return open_shipper(base, self.config.data_dir / "cloudwatch", agent=cw.agent)

    def _error_tracker(self) -> ErrorTracker:
        cfg = self.config
        if cfg.sentry_dsn:
            init_sentry(
                cfg.sentry_dsn,
                cfg.environment,
                cfg.release or None,
                self.masker.mask,
                sample_rate=cfg.sentry_sample_rate,
            )
        base = f"{cfg.base_url}{cfg.ops_prefix}"
        return ErrorTracker(
            self.store.errors,
            mask=self.masker.mask,
            fingerprinter=Fingerprinter(list(cfg.in_app)),
            classifier=Classifier([*cfg.classification_rules, *DEFAULT_RULES]),
            on_trigger=ErrorNotifier(
                self.dispatcher.submit,
                evidence_url=lambda fingerprint: f"{base}/errors/{fingerprint}",
                search_hint=lambda request_id: f"Its log lines: {base}/requests/{request_id}",
            ),
            sentry=capture_to_sentry if cfg.sentry_dsn else None,
            context_provider=snapshot,
        )

    def _capture_request_error(self, record: RequestRecord) -> None:
        if record.exception is None:  # (FailureObserver passes failed requests only)
            return
        context = record.context.as_dict()
        context.update(route=record.route, method=record.method, status_code=record.status)
        self.errors.capture(record.exception, context)

    def _errors_by_severity(self) -> Mapping[str, float]:
        return {
            f'{names.ERROR_EVENTS}{{severity="{severity}"}}': float(count)
            for severity, count in self.errors.by_severity.items()
        }

    def _log_drops(self) -> Mapping[str, float]:
        return {names.LOG_EVENTS_DROPPED: float(sum(self.logs.dropped.values()))}

    def _audit_findings(self) -> Mapping[str, float]:
        # The rule counts findings of any detector (/metrics keeps the detector label).
        found = sum(self.auditor.found.values()) if self.auditor is not None else 0
        return {names.LOG_AUDIT_FINDINGS: float(found)}


def _report_audit_findings(findings: list[AuditFinding]) -> None:
    # Where and which detector, never the value: the line itself is the evidence to fix.
    for finding in findings[:100]:
        log.error(
            names.LOG_AUDIT_FINDING,
            source=finding.source,
            line_number=finding.line,
            field=finding.field,
            detector=finding.detector,
        )


def logging_config(config: ObservabilityConfig) -> LoggingConfig:
    """The log pipeline's settings from the config (the CLI also uses it to log JSON from the
    first line, before the app exists)."""
    settings = config.log
    return LoggingConfig(
        level=settings.level,
        levels=settings.levels,
        directory=config.log_directory if settings.to_file else None,
        file_stem=config.log_file_stem,
        stdout=settings.stdout,
        console=settings.console,
        max_file_bytes=settings.max_file_bytes,
        rotate_seconds=settings.rotate_seconds,
        retention_days=settings.retention_days,
        queue_size=settings.queue_size,
        static_fields={"service": config.service, "instance": config.instance_id},
    )


def _default_memory_budget() -> int:
    from observability.metrics.system import cgroup_memory_limit

    return cgroup_memory_limit() or _DEFAULT_MEMORY_BUDGET
