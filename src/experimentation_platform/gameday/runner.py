"""Run game day scenarios: for each, an instance, traffic, a baseline, the fault, detection,
notification, judgement from the operator's view, removal and resolve.

    warm-up traffic ......... baseline window ......|inject|..... incident window .....|judge
    /metrics scraped every second throughout;       alert state polled until the expected
    error groups listed at the injection            alert fires (control: any alert)

Each scenario gets its own started instance (its windows, alert state and notification groups
start clean), unless `base_url` targets a running one. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine

from experimentation_platform.gameday.instance import (
    Target,
    cloudwatch_endpoint_missing,
    started_instance,
    targeted_instance,
    traffic,
)
from experimentation_platform.gameday.judge import Finding, evidence_findings, find, judge
from experimentation_platform.gameday.observe import (
    MetricsWatcher,
    alert_label,
    alerts,
    error_groups,
    incident,
)
from experimentation_platform.gameday.recorder import Recorder
from experimentation_platform.gameday.scenarios import Scenario, unjudged
from observability.alerting.notifiers.log import NotificationLog
from observability.alerting.state import AlertInstance

__all__ = ["GameDayConfig", "ScenarioResult", "run_gameday", "run_scenario"]

# cloudwatch-unreachable: the fault goes in once the shipping lag is below this (steady: 1-3 s).
SHIPPING_IN_STEP_S = 5.0


@dataclass
class GameDayConfig:
    scale: float = 0.01  # EP_ALERT_WINDOW_SCALE of a started instance
    interval_s: float = 1.0  # EP_ALERT_INTERVAL_SECONDS of a started instance
    warmup_s: float = 15.0
    rate_per_second: float = 20.0
    generators: int = 4
    detect_timeout_s: float = 120.0
    resolve_timeout_s: float = 90.0
    notify_timeout_s: float = 20.0
    observe_s: float = 10.0  # the incident window lasts at least this long before judgement
    control_watch_s: float = 60.0  # how long the control must stay quiet
    base_url: str | None = None  # target a running instance instead of starting one
    # An admin DSN of a PostgreSQL on this machine that may create databases: the
    # db-network-latency scenario runs its instance on a fresh database there.
    postgres_dsn: str | None = None
    admin_key: str | None = None
    work_dir: Path | None = None
    on_event: Callable[[str], None] | None = None


@dataclass
class ScenarioResult:
    scenario: str
    title: str
    fault: dict[str, Any] | None
    control: bool = False
    injected_at: float | None = None  # the control: when its watch began
    detected_alert: str | None = None
    detected_labels: dict[str, str] = field(default_factory=dict)
    detected_s: float | None = None  # injection -> alert firing
    notified_s: float | None = None  # injection -> notification received
    resolved_s: float | None = None  # removal -> resolve notification received
    notification: dict[str, Any] | None = None
    other_alerts: list[str] = field(default_factory=list)
    unjudged_alerts: list[str] = field(default_factory=list)  # see scenarios.unjudged
    baseline_alerts: list[str] = field(default_factory=list)
    judged_after_s: float | None = None  # the incident window's length
    findings: list[Finding] = field(default_factory=list)
    evidence: list[Finding] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # requirements no finding met
    cause_named: bool = False
    incident: dict[str, Any] | None = None  # the instance's incident evidence for the alert
    incident_answered_s: float | None = None  # how long GET /api/v1/ops/incidents/... took
    cleared_at: float | None = None
    resolved: bool = False
    # A started instance's resident memory: before the fault, at judgement, after the resolve.
    instance_rss_mb: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ran: bool = False

    @property
    def detected(self) -> bool:
        return self.detected_s is not None

    @property
    def passed(self) -> bool:
        if not self.ran:
            return False
        if self.control:
            # Quiet: no alert about the instance, no evidence of a cause.
            return not self.detected and not self.cause_named
        return (
            self.detected and self.notification is not None and self.cause_named and self.resolved
        )

    def to_json(self) -> dict[str, Any]:
        """The `--json` line: the fields the issue asks for, then the details."""
        return {
            "scenario": self.scenario,
            "fault": self.fault,
            "detected_s": _round(self.detected_s),
            "notified_s": _round(self.notified_s),
            "resolved_s": _round(self.resolved_s),
            "cause_named": self.cause_named,
            "evidence": [f.to_dict() for f in self.evidence],
            "passed": self.passed,
            "alert": self.detected_alert,
            "missing": self.missing,
            "findings": [f.to_dict() for f in self.findings],
            "judged_after_s": _round(self.judged_after_s),
            "other_alerts": self.other_alerts,
            "unjudged_alerts": self.unjudged_alerts,
            "notes": self.notes,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run_gameday(
    scenarios: Sequence[Scenario], config: GameDayConfig | None = None
) -> list[ScenarioResult]:
    """Run the scenarios one after another; the recorder and work dir live for the whole run."""
    config = config or GameDayConfig()
    recorder = Recorder().start()
    try:
        with contextlib.ExitStack() as stack:
            if config.work_dir is not None:
                work_dir = config.work_dir
            else:
                work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gameday-")))
            return [run_scenario(s, config, recorder, work_dir) for s in scenarios]
    finally:
        recorder.stop()


def run_scenario(
    scenario: Scenario, config: GameDayConfig, recorder: Recorder, work_dir: Path
) -> ScenarioResult:
    """Run one scenario end to end (bounded by the config's timeouts)."""
    say = config.on_event or (lambda _text: None)
    result = ScenarioResult(
        scenario.name,
        scenario.title,
        dict(scenario.fault) if scenario.fault is not None else None,
        control=scenario.is_control,
    )
    why_not = _cannot_run(scenario, config)
    if why_not is not None:
        result.notes.append(why_not)
        say(f"[{scenario.name}] {why_not}")
        return result
    with contextlib.ExitStack() as stack:
        if config.base_url:
            if not config.admin_key:
                raise ValueError("targeting an instance needs its admin key")
            target = targeted_instance(config.base_url, config.admin_key)
            result.notes.append("targeted instance: notifications from its notification log")
        else:
            started = started_instance(
                scenario,
                work_dir / scenario.name,
                recorder.url,
                {
                    "EP_ALERT_WINDOW_SCALE": repr(config.scale),
                    "EP_ALERT_INTERVAL_SECONDS": repr(config.interval_s),
                },
                postgres_dsn=config.postgres_dsn,
            )
            target = stack.enter_context(started)
        say(f"[{scenario.name}] instance ready at {target.base_url}; warming up")
        engine = create_engine(target.settings.resolved_observability_database_url)
        stack.callback(engine.dispose)
        watcher = MetricsWatcher(target.base_url, target.metrics_token).start()
        stack.callback(watcher.stop)
        stack.enter_context(
            traffic(target.base_url, target.admin_key, config.rate_per_second, config.generators)
        )
        _Run(scenario, config, recorder, target, engine, watcher, result, say).run()
    return result


def _cannot_run(scenario: Scenario, config: GameDayConfig) -> str | None:
    if scenario.via == "network" and config.base_url:
        return (
            "not run: breaking a network path (to CloudWatch, to PostgreSQL) needs an "
            "instance the game day starts (--start), behind its own proxy"
        )
    if scenario.needs_postgres and not config.postgres_dsn:
        return (
            "not run: needs PostgreSQL on this machine; pass an admin DSN that may create "
            "databases (--postgres postgresql://USER@127.0.0.1:5432/DB)"
        )
    if scenario.needs_cloudwatch:
        return cloudwatch_endpoint_missing()
    return None


@dataclass
class _Run:
    scenario: Scenario
    config: GameDayConfig
    recorder: Recorder
    target: Target
    engine: Engine
    watcher: MetricsWatcher
    result: ScenarioResult
    say: Callable[[str], None]

    def run(self) -> None:
        warm_from = time.time()
        if self.scenario.older_error:
            self._older_error()
        time.sleep(max(self.config.warmup_s, self.scenario.min_warmup_s))
        firing_before = {k for k, a in alerts(self.engine).items() if a.state == "firing"}
        self.result.baseline_alerts = sorted(
            alert_label(a) for k, a in alerts(self.engine).items() if k in firing_before
        )
        if self.scenario.needs_cloudwatch:
            self._wait_shipping_in_step(timeout=60.0)
        with httpx.Client(
            base_url=self.target.base_url,
            headers={"Authorization": f"Bearer {self.target.admin_key}"},
            timeout=15.0,
        ) as client:
            groups_before = error_groups(client) or []
        self._note_rss("before")
        boundary = self.watcher.scrape()
        if boundary is None:
            self.result.notes.append("/metrics did not answer before the injection")
            return
        operator = self.target.operator()
        try:
            self.result.injected_at = time.time()
            if not self._inject(operator):
                return
            self.result.ran = True
            # The incident window starts once the fault is in: what ran before it (the
            # injection call included) is neither baseline nor incident.
            started = self.watcher.scrape()
            try:
                detected = self._detect(firing_before)
                incident_from = started.at if started is not None else time.time()
                self._judge(
                    boundary.at, incident_from, warm_from, groups_before, operator, detected
                )
            finally:
                self._remove(operator)
            if detected is not None and not self.scenario.is_control:
                self._wait_resolve(detected)
        finally:
            operator.close()
        self._note_rss("after")

    # -- steps -----------------------------------------------------------------------------
    def _inject(self, operator: httpx.Client) -> bool:
        scenario = self.scenario
        if scenario.via == "api":
            injected = operator.put("/api/v1/ops/faults", json=dict(scenario.fault or {}))
            if injected.status_code >= 400:
                self.result.notes.append(
                    f"fault not injected: HTTP {injected.status_code} {injected.text}"
                )
                self.say(f"[{scenario.name}] {self.result.notes[-1]}")
                return False
        elif scenario.via == "network":
            self._network(on=True)
        self.say(f"[{scenario.name}] fault injected: {scenario.fault}")
        return True

    def _remove(self, operator: httpx.Client) -> None:
        self.result.cleared_at = time.time()
        if self.scenario.via == "api":
            operator.delete("/api/v1/ops/faults").raise_for_status()
        elif self.scenario.via == "network":
            self._network(on=False)
        if not self.scenario.is_control:
            self.say(f"[{self.scenario.name}] fault removed")

    def _network(self, *, on: bool) -> None:
        fault = self.scenario.fault or {}
        if "database_network_latency_ms" in fault:
            assert self.target.database_path is not None
            latency = float(fault["database_network_latency_ms"]) / 1000 if on else 0.0
            self.target.database_path.set_latency(latency)
        else:
            assert self.target.cloudwatch_path is not None
            self.target.cloudwatch_path.set_mode("blackhole" if on else "forward")

    def _older_error(self) -> None:
        """The self-test error an operator may have triggered earlier: an error group older
        than the fault, which the evidence must keep apart."""
        with httpx.Client(
            base_url=self.target.base_url,
            headers={"Authorization": f"Bearer {self.target.admin_key}"},
            timeout=15.0,
        ) as client:
            answer = client.post("/api/v1/ops/selftest/error", json={"note": "game day"})
        if answer.status_code != 500:
            self.result.notes.append(f"the self-test error answered {answer.status_code}")

    def _detect(self, firing_before: set[str]) -> AlertInstance | None:
        """The first expected alert to fire (control: any alert at all), or None."""
        scenario, result = self.scenario, self.result
        assert result.injected_at is not None
        config = self.config
        timeout = config.control_watch_s if scenario.is_control else config.detect_timeout_s

        def fresh() -> list[AlertInstance]:
            return [
                a
                for k, a in alerts(self.engine).items()
                if a.state == "firing" and k not in firing_before
            ]

        def wanted() -> AlertInstance | None:
            return next((a for a in fresh() if self._matches(a)), None)

        detected: AlertInstance | None = _poll(wanted, timeout)
        result.unjudged_alerts = sorted({alert_label(a) for a in fresh() if unjudged(a.name)})
        others = sorted({alert_label(a) for a in fresh() if not unjudged(a.name)})
        if detected is None:
            result.other_alerts = others
            if not scenario.is_control:
                result.notes.append(f"no expected alert within {timeout:.0f}s")
            return None
        result.other_alerts = [o for o in others if o != alert_label(detected)]
        result.detected_alert = detected.name
        result.detected_labels = dict(detected.labels)
        result.detected_s = max(0.0, (detected.fired_at or time.time()) - result.injected_at)
        verb = "paged the control" if scenario.is_control else "fired"
        self.say(f"[{scenario.name}] {detected.name} {verb} after {result.detected_s:.1f}s")
        return detected

    def _matches(self, alert: AlertInstance) -> bool:
        if unjudged(alert.name):
            return False
        if self.scenario.is_control:
            return True  # any other alert is a false one
        return alert.name in self.scenario.expect and all(
            alert.labels.get(k) == v for k, v in self.scenario.expect_labels.items()
        )

    def _judge(
        self,
        baseline_until: float,
        incident_from: float,
        warm_from: float,
        groups_before: list[dict[str, Any]],
        operator: httpx.Client,
        detected: AlertInstance | None,
    ) -> None:
        """Findings from the baseline and incident windows, the verdict, the notification
        and the instance's own incident evidence."""
        result = self.result
        assert result.injected_at is not None
        if not self.scenario.is_control:
            # At least `observe_s` of incident before judging: a few requests are too few.
            wait = result.injected_at + self.config.observe_s - time.time()
            if wait > 0:
                time.sleep(wait)
        final = self.watcher.scrape()
        judged_at = final.at if final is not None else time.time()
        result.judged_after_s = judged_at - result.injected_at
        self._note_rss("fault")
        groups_after = error_groups(operator, since=result.injected_at)
        if groups_after is None:
            result.notes.append("the error groups API did not answer at judgement")
        findings = find(
            self.watcher.between(warm_from, baseline_until),
            self.watcher.between(incident_from, judged_at),
            groups_before,
            groups_after or [],
            result.injected_at,
        )
        if detected is not None:
            # The operator's first click, while the fault is still on: how fast and what.
            asked = time.monotonic()
            result.incident = incident(operator, detected.name)
            result.incident_answered_s = time.monotonic() - asked
            findings += evidence_findings(
                result.incident, result.incident_answered_s, groups_before
            )
        verdict = judge(self.scenario, findings)
        result.findings = findings
        result.evidence = verdict.evidence
        result.missing = verdict.missing
        result.cause_named = verdict.cause_named
        self.say(
            f"[{self.scenario.name}] judged after {result.judged_after_s:.0f}s: "
            f"{len(findings)} finding(s), cause named: {verdict.cause_named}"
        )
        if detected is not None:
            self._wait_notification(detected)

    def _wait_notification(self, detected: AlertInstance) -> None:
        result = self.result
        assert result.injected_at is not None
        note = _poll(
            lambda: self._notification(detected, "firing", result.injected_at or 0.0),
            self.config.notify_timeout_s,
        )
        if note is None:
            result.notes.append(f"no notification within {self.config.notify_timeout_s:.0f}s")
        else:
            result.notified_s = note["at"] - result.injected_at
            result.notification = note

    def _wait_resolve(self, alert: AlertInstance) -> None:
        result = self.result
        cleared = result.cleared_at
        assert cleared is not None
        note = _poll(
            lambda: self._notification(alert, "resolved", cleared), self.config.resolve_timeout_s
        )
        state = alerts(self.engine).get(alert.key)
        result.resolved = note is not None
        if note is not None:
            result.resolved_s = note["at"] - cleared
        elif state is not None and state.state == "resolved":
            result.notes.append("alert resolved, but no resolve notification arrived")
        else:
            result.notes.append(f"not resolved within {self.config.resolve_timeout_s:.0f}s")

    # -- helpers ---------------------------------------------------------------------------
    def _notification(
        self, alert: AlertInstance, status: str, since: float
    ) -> dict[str, Any] | None:
        """The first `status` notification since `since` about `alert`."""
        if self.config.base_url:
            for record in reversed(NotificationLog(engine=self.engine).recent(200)):
                at = record.at.timestamp()
                named = alert.name in record.title
                if at >= since and record.status == status and named:
                    return {"at": at, "receiver": record.receiver, "title": record.title}
            return None
        for received in self.recorder.for_scenario(self.scenario.name, since):
            if received.status != status:
                continue
            # A group's message names its first alert in the title and lists the others below.
            named = alert.name in json.dumps(received.body)
            if status == "firing" and not named:
                continue
            if status == "resolved" and not self._same_group(received.receiver, received.body):
                continue
            return {
                "at": received.at,
                "receiver": received.receiver,
                "title": received.title,
                "body": received.body,
            }
        return None

    def _same_group(self, receiver: str, body: dict[str, Any]) -> bool:
        firing = self.result.notification or {}
        if receiver == "pagerduty":
            key = body.get("dedup_key")
            return bool(key) and key == (firing.get("body") or {}).get("dedup_key")
        return (self.result.detected_alert or "") in str(body.get("text", ""))

    def _wait_shipping_in_step(self, timeout: float) -> None:
        """A shipper still starting, or starved of CPU, makes the lag grow without the fault:
        wait until it ships in step (lag of a few seconds)."""

        def lag() -> float | None:
            sample = self.watcher.scrape()
            return None if sample is None else sample.total("cloudwatch_shipping_lag_seconds")

        def in_step() -> bool:
            value = lag()
            return value is not None and value < SHIPPING_IN_STEP_S

        if not _poll(in_step, timeout):
            value = lag()
            shown = "unknown" if value is None else f"{value:.0f}s"
            self.result.notes.append(f"shipping already behind before the fault (lag {shown})")

    def _note_rss(self, moment: str) -> None:
        rss = self.target.rss_mb()
        if rss is not None:
            self.result.instance_rss_mb[moment] = rss


def _poll(check: Callable[[], Any], timeout: float, step: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)
