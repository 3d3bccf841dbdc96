"""The embedded alert evaluator: rules -> alert states -> grouped notifications -> Dispatcher.

One `evaluate_once(now)` does, in order:

1. evaluate every alert definition over the `MetricSource` (a failing rule is counted and
   skipped; its alerts keep their state). A source with a `begin_round()` method returns
   the source for this round from it (`LiveSource`: the gauges are read once per round,
   not once per rule); other sources (`MinuteStore` in backtests) are read directly;
2. move each alert instance through inactive -> pending -> firing -> resolved, honouring
   `for`, and hold flapping alerts firing (more than `flap_threshold` firing/resolved changes
   within `flap_window_s`) until their condition stayed clear for `flap_quiet_s`;
3. mark alerts muted by an active silence or inhibited by a firing alert of higher severity
   (`InhibitRule`) -- muted alerts keep their state, only notifications stop;
4. flush notification groups (severity + `group_by` labels) Alertmanager-style: the first
   message after `group_wait`, changes at most every `group_interval`, an unchanged firing
   group again after `repeat_interval`, one resolved message when every alert it announced
   has resolved;
5. persist alert and group state (when a `StateStore` is given) so a restart resumes;
6. hand every tracked alert to `publish` (Alertmanager mode: posted there, as Prometheus does).

`start()` runs it on a daemon thread every `interval_s`; the loop never raises into the host.
The same code path runs live and in backtests (`backtest.run_backtest`), only the source and
the clock differ.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from observability.alerting.grouping import DEFAULT_INHIBIT_RULES, Grouping, InhibitRule
from observability.alerting.notifiers.base import Notification, Severity
from observability.alerting.notifiers.dispatcher import Dispatcher
from observability.alerting.notifiers.log import NotificationLog
from observability.alerting.rules import AlertDefinition, Rule, definitions, evaluate_definition
from observability.alerting.silences import Silence, SilenceStore
from observability.alerting.state import AlertInstance, AlertState, GroupState, StateStore
from observability.alerting.templates import render_template
from observability.query.source import MetricSource

__all__ = ["EvaluationResult", "Evaluator", "EvaluatorConfig", "Transition", "alert_key"]

_logger = structlog.get_logger("observability.alerting")


@dataclass(frozen=True)
class EvaluatorConfig:
    interval_s: float = 30.0
    grouping: Grouping = field(default_factory=Grouping)
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES
    flap_window_s: float = 3600.0
    flap_threshold: int = 4
    flap_quiet_s: float = 900.0
    resolved_retention_s: float = 900.0
    runbook_base_url: str = "docs/runbook.md"
    dashboard_base_url: str = ""
    # e.g. "http://127.0.0.1:8000/ops/logs?alert={alertname}&since={start}&until={end}"
    evidence_url_template: str | None = None
    log_transitions: bool = True

    def links(self, definition: AlertDefinition | None) -> tuple[str | None, str | None]:
        """(runbook URL, dashboard URL) of an alert: the runbook section under
        `runbook_base_url`, the dashboard under `dashboard_base_url` unless it is absolute."""
        if definition is None:
            return None, None
        runbook = f"{self.runbook_base_url}#{definition.runbook}" if definition.runbook else None
        dashboard = definition.dashboard
        if dashboard and "://" not in dashboard and self.dashboard_base_url:
            dashboard = self.dashboard_base_url.rstrip("/") + "/" + dashboard.lstrip("/")
        return runbook, dashboard or None


@dataclass(frozen=True)
class Transition:
    key: str
    name: str
    severity: str
    before: AlertState
    after: AlertState
    at: float


@dataclass
class EvaluationResult:
    now: float
    transitions: list[Transition] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def alert_key(name: str, labels: dict[str, str]) -> str:
    extra = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
    return f"{name}|{extra}"


_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class Evaluator:
    """Evaluates rules, tracks alert state and notifies through a `Dispatcher`."""

    def __init__(
        self,
        rules: Iterable[Rule],
        source: MetricSource,
        *,
        dispatcher: Dispatcher | None = None,
        notify: Callable[[Notification], object] | None = None,
        config: EvaluatorConfig | None = None,
        state_store: StateStore | None = None,
        silences: SilenceStore | None = None,
        clock: Callable[[], float] = time.time,
        before_round: Callable[[], object] | None = None,
        publish: Callable[[Sequence[AlertInstance], float], object] | None = None,
    ) -> None:
        """`before_round` runs on the evaluator's thread before each round of `start()`
        (e.g. copying counters kept elsewhere into the windows the rules read). `publish`
        gets every tracked alert after each round (Alertmanager mode posts them there)."""
        self.before_round = before_round
        self.publish = publish
        self.definitions: list[AlertDefinition] = definitions(rules)
        self._defs = {d.name: d for d in self.definitions}
        self.source = source
        self.dispatcher = dispatcher
        self.config = config or EvaluatorConfig()
        self.state_store = state_store
        self.silence_store = silences or SilenceStore(clock=clock)
        self._clock = clock
        if notify is not None:
            self._notify: Callable[[Notification], object] | None = notify
        elif dispatcher is not None:
            self._notify = dispatcher.submit
        else:
            self._notify = None
        prepare = getattr(source, "prepare", None)
        if callable(prepare):  # a MinuteStore counts the rules' latency thresholds on arrival
            prepare([term for d in self.definitions for term in d.terms()])
        self._lock = threading.RLock()
        self._alerts: dict[str, AlertInstance] = {}
        # What readers see: copies published at the end of each round, read without the
        # round's lock (a round reads gauges and saves state, slow while a dependency is).
        self._published: dict[str, AlertInstance] = {}
        self._groups: dict[str, GroupState] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.evaluations = 0
        self.rule_failures = 0
        self.loop_failures = 0
        self.persist_failures = 0
        self.notify_failures = 0
        self.reload_state()

    def reload_state(self) -> None:
        """Take the alert and group state from the store (at start; when this instance becomes
        the fleet's leader; before a follower shows alerts it does not evaluate)."""
        if self.state_store is None:
            return
        alerts, groups = self.state_store.load()
        with self._lock:
            self._alerts = {k: a for k, a in alerts.items() if a.name in self._defs}
            self._groups = groups
            self._publish()

    def _publish(self) -> None:
        self._published = {k: replace(a) for k, a in self._alerts.items()}

    # -- public views -----------------------------------------------------------------------
    def alert_instances(self) -> dict[str, AlertInstance]:
        """A copy of every alert this evaluator tracks, by key, as of the last round
        (incident evidence reads it): never waits for a round in progress."""
        return dict(self._published)

    def active_alerts(self) -> list[dict[str, Any]]:
        """Pending, firing and recently resolved alerts, most severe first (last round's)."""
        alerts = [a.view() for a in self._published.values() if a.state != "inactive"]
        order = {"firing": 0, "pending": 1, "resolved": 2}
        return sorted(
            alerts,
            key=lambda a: (order[a["state"]], _SEVERITY_RANK.get(a["severity"], 9), a["key"]),
        )

    def silences(self, *, include_expired: bool = False) -> list[Silence]:
        return self.silence_store.list(include_expired=include_expired)

    @property
    def notification_log(self) -> NotificationLog | None:
        return self.dispatcher.log if self.dispatcher is not None else None

    def stats(self) -> dict[str, int]:
        return {
            "evaluations": self.evaluations,
            "rule_failures": self.rule_failures,
            "loop_failures": self.loop_failures,
            "persist_failures": self.persist_failures,
            "notify_failures": self.notify_failures,
        }

    # -- the background loop ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the background thread of `start()` evaluates."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="alert-evaluator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.before_round is not None:
                    self.before_round()
                self.evaluate_once()
            except Exception as exc:  # the guard: telemetry never takes the host down
                self.loop_failures += 1
                _logger.error("alert_evaluation_failed", error_type=type(exc).__name__)
            self._stop.wait(self.config.interval_s)

    # -- one evaluation ---------------------------------------------------------------------
    def evaluate_once(self, now: float | None = None) -> EvaluationResult:
        """Evaluate every rule at `now` (default: the clock) and flush due groups."""
        now = self._clock() if now is None else now
        result = EvaluationResult(now)
        with self._lock:
            removed: set[str] = set()
            source = self._round_source()
            for d in self.definitions:
                self._evaluate_definition(d, source, now, result, removed)
            self._mark_muted(now)
            removed_groups = self._flush_groups(now, result)
            self._forget_resolved(now, removed)
            self._publish()
            self.evaluations += 1
            if self.state_store is not None:
                try:
                    self.state_store.save(
                        now,
                        list(self._alerts.values()),
                        list(self._groups.values()),
                        removed,
                        removed_groups,
                    )
                except Exception as exc:  # keep alerting from memory; count and log it
                    self.persist_failures += 1
                    _logger.warning("alert_state_save_failed", error_type=type(exc).__name__)
        for notification in result.notifications:
            self._send(notification)
        if self.publish is not None:
            try:
                self.publish(list(self._alerts.values()), now)
            except Exception as exc:  # a custom hook must not stop the evaluator
                self.notify_failures += 1
                _logger.warning("alert_publish_failed", error_type=type(exc).__name__)
        return result

    def _round_source(self) -> MetricSource:
        begin = getattr(self.source, "begin_round", None)
        if callable(begin):
            round_source: MetricSource = begin()
            return round_source
        return self.source

    def _evaluate_definition(
        self,
        d: AlertDefinition,
        source: MetricSource,
        now: float,
        result: EvaluationResult,
        removed: set[str],
    ) -> None:
        try:
            active = evaluate_definition(d, source, now)
        except Exception as exc:  # one broken rule must not stop the others
            self.rule_failures += 1
            result.errors.append(d.name)
            _logger.warning("alert_rule_failed", rule=d.name, error_type=type(exc).__name__)
            return
        seen: set[str] = set()
        for series_labels, value, threshold in active.values():
            labels = {**d.labels, **series_labels, "alertname": d.name, "severity": d.severity}
            key = alert_key(d.name, labels)
            seen.add(key)
            inst = self._alerts.get(key)
            if inst is None:
                inst = self._alerts[key] = AlertInstance(key, d.name, d.rule, d.severity, labels)
            self._condition_true(d, inst, now, value, threshold, result)
        for inst in [a for a in self._alerts.values() if a.name == d.name and a.key not in seen]:
            self._condition_false(d, inst, now, result, removed)

    def _move(
        self, inst: AlertInstance, after: AlertState, now: float, result: EvaluationResult
    ) -> None:
        before = inst.state
        inst.state = after
        result.transitions.append(
            Transition(inst.key, inst.name, inst.severity, before, after, now)
        )
        if self.config.log_transitions and after in ("firing", "resolved"):
            _logger.info(
                "alert_" + ("fired" if after == "firing" else "resolved"),
                alert=inst.name,
                severity=inst.severity,
                value=inst.value,
                labels=dict(inst.labels),
            )

    def _condition_true(
        self,
        d: AlertDefinition,
        inst: AlertInstance,
        now: float,
        value: float,
        threshold: float,
        result: EvaluationResult,
    ) -> None:
        inst.last_true = now
        inst.value = value
        inst.threshold = threshold
        inst.summary = render_template(d.summary, value, threshold, inst.labels)
        inst.description = render_template(d.description, value, threshold, inst.labels)
        if inst.state in ("inactive", "resolved"):
            inst.active_since = now
            self._move(inst, "pending", now, result)
        if inst.state == "pending" and now - (inst.active_since or now) >= d.for_seconds:
            inst.fired_at = now
            inst.resolved_at = None
            inst.transitions = [*self._recent(inst, now), now]
            self._move(inst, "firing", now, result)

    def _recent(self, inst: AlertInstance, now: float) -> list[float]:
        return [t for t in inst.transitions if t >= now - self.config.flap_window_s]

    def _condition_false(
        self,
        d: AlertDefinition,
        inst: AlertInstance,
        now: float,
        result: EvaluationResult,
        removed: set[str],
    ) -> None:
        if inst.state == "pending":
            self._move(inst, "inactive", now, result)
            del self._alerts[inst.key]
            removed.add(inst.key)
        elif inst.state == "firing":
            recent = self._recent(inst, now)
            # Flap damping: after too many changes, stay firing until the condition is quiet.
            inst.flapping = inst.flapping or len(recent) > self.config.flap_threshold
            quiet_for = now - (inst.last_true or now)
            if inst.flapping and quiet_for < self.config.flap_quiet_s:
                return
            inst.flapping = False
            inst.resolved_at = now
            inst.transitions = [*recent, now]
            self._move(inst, "resolved", now, result)

    def _forget_resolved(self, now: float, removed: set[str]) -> None:
        announced = {k for g in self._groups.values() for k in g.notified}
        for inst in list(self._alerts.values()):
            if inst.state != "resolved" or inst.key in announced:
                continue
            if now - (inst.resolved_at or now) >= self.config.resolved_retention_s:
                if self._recent(inst, now):
                    continue  # remember recent flips: flap detection needs them
                del self._alerts[inst.key]
                removed.add(inst.key)

    # -- muting -----------------------------------------------------------------------------
    def _mark_muted(self, now: float) -> None:
        firing = [a for a in self._alerts.values() if a.state == "firing"]
        try:
            silences = self.silence_store.active(now)
        except Exception as exc:  # an unreadable silence table mutes nothing
            silences = []
            _logger.warning("alert_silences_unreadable", error_type=type(exc).__name__)
        for inst in self._alerts.values():
            muted = [s.id for s in silences if s.matches(inst.labels)]
            if any(
                rule.mutes(src.labels, inst.labels)
                for rule in self.config.inhibit_rules
                for src in firing
                if src is not inst
            ):
                muted.append("inhibited")
            inst.muted_by = muted

    # -- grouping and notifications --------------------------------------------------------
    def _group_of(self, inst: AlertInstance) -> tuple[str, dict[str, str]]:
        labels = {k: inst.labels[k] for k in self.config.grouping.group_by if k in inst.labels}
        labels["severity"] = inst.severity
        key = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        return key, labels

    def _flush_groups(self, now: float, result: EvaluationResult) -> set[str]:
        grouping = self.config.grouping
        members: dict[str, list[AlertInstance]] = {}
        for inst in self._alerts.values():
            key, labels = self._group_of(inst)
            members.setdefault(key, []).append(inst)
            if inst.state == "firing" and not inst.muted_by and key not in self._groups:
                self._groups[key] = GroupState(
                    key, labels, inst.severity, now, now + grouping.group_wait_s
                )
        removed: set[str] = set()
        for key, group in list(self._groups.items()):
            if now < group.next_flush:
                continue
            group.next_flush = now + grouping.group_interval_s
            alerts = members.get(key, [])
            firing = sorted(
                (a for a in alerts if a.state == "firing" and not a.muted_by),
                key=lambda a: a.key,
            )
            if firing:
                keys = [a.key for a in firing]
                changed = set(keys) != set(group.notified) or group.last_status != "firing"
                repeat = (
                    group.last_sent is not None
                    and now - group.last_sent >= grouping.repeat_interval_s
                )
                if changed or repeat:
                    result.notifications.append(self._build(group, "firing", firing, now))
                    group.notified, group.last_status, group.last_sent = keys, "firing", now
                continue
            still_firing = [
                k for k in group.notified if k in self._alerts and self._alerts[k].state == "firing"
            ]
            if still_firing:
                continue  # muted but not over: the resolve comes when it really resolves
            if group.notified:
                announced = [self._alerts[k] for k in group.notified if k in self._alerts]
                result.notifications.append(self._build(group, "resolved", announced, now))
            del self._groups[key]
            removed.add(key)
        return removed

    def _build(
        self, group: GroupState, status: str, alerts: Sequence[AlertInstance], now: float
    ) -> Notification:
        cfg = self.config
        rep = alerts[0] if alerts else None
        d = self._defs.get(rep.name) if rep is not None else None
        name = rep.name if rep is not None else group.labels.get("alertname", "alert")
        title = name if len(alerts) <= 1 else f"{name} ({len(alerts)} alerts)"
        description = rep.description if rep is not None else ""
        if len(alerts) > 1:
            lines = [f"- {_label_text(a.labels)}: value {_num(a.value)}" for a in alerts]
            description = (description + "\n\n" if description else "") + "\n".join(lines)
        fired = [a.fired_at for a in alerts if a.fired_at is not None]
        started = min(fired) if fired else group.created_at
        labels = {**(rep.labels if rep is not None else {}), **group.labels}
        runbook, dashboard = cfg.links(d)
        evidence = None
        if cfg.evidence_url_template:
            evidence = cfg.evidence_url_template.format(
                alertname=name, start=int(started) - 300, end=int(now)
            )
        severity: Severity = group.severity  # type: ignore[assignment]
        return Notification(
            key=f"alert:{group.key}",
            status="firing" if status == "firing" else "resolved",
            severity=severity,
            title=title,
            summary=rep.summary if rep is not None and rep.summary else name,
            description=description,
            source="alert",
            labels=labels,
            value=rep.value if rep is not None else None,
            threshold=rep.threshold if rep is not None else None,
            started_at=datetime.fromtimestamp(started, UTC),
            resolved_at=datetime.fromtimestamp(now, UTC) if status == "resolved" else None,
            runbook_url=runbook,
            dashboard_url=dashboard,
            evidence_url=evidence,
        )

    def _send(self, notification: Notification) -> None:
        if self._notify is None:
            return
        try:
            self._notify(notification)
        except Exception as exc:  # the dispatcher never raises; a custom hook might
            self.notify_failures += 1
            _logger.warning("alert_notify_failed", error_type=type(exc).__name__)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _label_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "severity")
