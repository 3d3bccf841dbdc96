"""The embedded evaluator: state machine, notifications, grouping, inhibition, flap damping,
persistence across a restart, and delivery through the real Dispatcher."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.grouping import Grouping
from observability.alerting.notifiers import Dispatcher, Notification, Route
from observability.alerting.rules import SloRule, ThresholdRule
from observability.alerting.silences import SilenceStore
from observability.alerting.state import StateStore
from observability.query.minutes import MinuteStore
from observability.query.model import ErrorRatio, GaugeValue
from tests.observability.alerting import T0, rollup

ERRORS = ThresholdRule(
    name="error_rate_spike",
    expr=ErrorRatio(window_s=60),
    comparison=">",
    threshold=0.1,
    for_seconds=120,
    severity="high",
    summary="5xx ratio {value:.0%} (threshold {threshold:.0%})",
    description="Requests fail.",
    dashboard="api-health",
    labels={"service": "api", "inhibit_key": "avail"},
)
NOT_READY = ThresholdRule(
    name="dependency_not_ready",
    expr=GaugeValue("service_ready"),
    comparison="<",
    threshold=1,
    severity="critical",
    summary="{dependency} not ready",
    labels={"service": "api"},
)
FAST = Grouping(group_by=("alertname", "service"), group_wait_s=0, group_interval_s=60)


class Feed:
    """Minutes of traffic into a MinuteStore, evaluated at each minute boundary."""

    def __init__(self, evaluator: Evaluator, store: MinuteStore, start: int = T0) -> None:
        self.evaluator, self.store, self.t = evaluator, store, start
        self.sent: list[Notification] = []

    def minute(self, errors: int = 0, gauges: dict[str, float] | None = None) -> list[Notification]:
        self.store.add(rollup(self.t, 100, errors), gauges)
        self.t += 60
        result = self.evaluator.evaluate_once(self.t)
        self.sent.extend(result.notifications)
        return result.notifications


def _evaluator(rules, store, *, grouping=FAST, **config) -> Evaluator:  # type: ignore[no-untyped-def]
    cfg = EvaluatorConfig(
        grouping=grouping,
        runbook_base_url="https://runbooks.test/runbook.md",
        dashboard_base_url="https://dash.test/d",
        evidence_url_template="https://logs.test/?alert={alertname}&since={start}&until={end}",
        log_transitions=False,
        **config,
    )
    return Evaluator(rules, store, config=cfg, clock=lambda: 0.0)


def test_pending_then_firing_after_for_then_resolved() -> None:
    store = MinuteStore()
    feed = Feed(_evaluator([ERRORS], store), store)
    assert feed.minute(errors=50) == []
    assert [a["state"] for a in feed.evaluator.active_alerts()] == ["pending"]
    assert feed.minute(errors=50) == []
    [fired] = feed.minute(errors=50)  # held for 120 s
    assert fired.status == "firing"
    assert fired.severity == "high"
    assert fired.value == pytest.approx(0.5)
    assert fired.threshold == 0.1
    assert fired.summary == "5xx ratio 50% (threshold 10%)"
    assert fired.runbook_url == "https://runbooks.test/runbook.md#error_rate_spike"
    assert fired.dashboard_url == "https://dash.test/d/api-health"
    assert fired.evidence_url is not None
    assert "alert=error_rate_spike" in fired.evidence_url
    assert fired.labels["alertname"] == "error_rate_spike"
    assert fired.started_at is not None
    assert fired.started_at.timestamp() == feed.t
    assert feed.minute(errors=50) == []  # no repeat within repeat_interval
    [resolved] = feed.minute(errors=0)
    assert (resolved.status, resolved.key) == ("resolved", fired.key)
    assert resolved.resolved_at is not None
    assert feed.evaluator.active_alerts()[0]["state"] == "resolved"


def test_a_short_blip_never_notifies() -> None:
    store = MinuteStore()
    feed = Feed(_evaluator([ERRORS], store), store)
    feed.minute(errors=50)
    feed.minute(errors=0)
    assert feed.sent == []
    assert feed.evaluator.active_alerts() == []


def test_group_wait_collects_series_into_one_message_and_repeat_interval_resends() -> None:
    store = MinuteStore()
    grouping = Grouping(
        group_by=("alertname",), group_wait_s=60, group_interval_s=120, repeat_interval_s=600
    )
    feed = Feed(_evaluator([NOT_READY], store, grouping=grouping), store)
    down = {'service_ready{dependency="database"}': 0.0, 'service_ready{dependency="cache"}': 1.0}
    assert feed.minute(gauges=down) == []  # firing, waiting group_wait
    both = {**down, 'service_ready{dependency="cache"}': 0.0}
    [first] = feed.minute(gauges=both)
    assert first.title == "dependency_not_ready (2 alerts)"
    assert "dependency=cache" in first.description
    assert "dependency=database" in first.description
    sends = [n for _ in range(12) for n in feed.minute(gauges=both)]
    assert [n.status for n in sends] == ["firing"]  # one repeat after 600 s, nothing else
    assert sends[0].key == first.key


def test_inhibition_mutes_lower_severity_with_the_same_key() -> None:
    store = MinuteStore()
    page = SloRule(
        "avail",
        0.99,
        ErrorRatio(),
        summary="burn {value:.0f}x",
        labels={"service": "api", "inhibit_key": "avail"},
    )
    other = ThresholdRule(
        "other_ratio", ErrorRatio(window_s=60), ">", 0.1, "high", "s", labels={"service": "api"}
    )
    feed = Feed(_evaluator([page, ERRORS, other], store), store)
    for _ in range(4):
        feed.minute(errors=60)
    names = {n.labels["alertname"] for n in feed.sent}
    assert names == {"avail_page", "other_ratio"}  # error_rate_spike shares inhibit_key: muted
    muted = {a["alertname"]: a["muted_by"] for a in feed.evaluator.active_alerts()}
    assert muted["error_rate_spike"] == ["inhibited"]
    assert muted["other_ratio"] == []


def test_silence_mutes_until_expired_then_notifies() -> None:
    store = MinuteStore()
    silences = SilenceStore(clock=lambda: float(T0))
    evaluator = _evaluator([NOT_READY], store)
    evaluator.silence_store = silences
    silence = silences.create(
        ['alertname="dependency_not_ready"', "dependency=~data.*"],
        author="alice",
        reason="database maintenance",
        duration_s=3600,
    )
    feed = Feed(evaluator, store)
    down = {'service_ready{dependency="database"}': 0.0}
    assert feed.minute(gauges=down) == []
    assert feed.evaluator.active_alerts()[0]["muted_by"] == [silence.id]
    assert silences.expire(silence.id)
    [fired] = feed.minute(gauges=down)
    assert fired.labels["dependency"] == "database"


def test_flapping_alert_stays_firing_until_quiet() -> None:
    store = MinuteStore()
    rule = ThresholdRule("flappy", ErrorRatio(window_s=60), ">", 0.1, "high", "s")
    feed = Feed(
        _evaluator([rule], store, flap_threshold=2, flap_window_s=3600, flap_quiet_s=300), store
    )
    for _ in range(6):  # fire, resolve, fire, resolve ... every minute
        feed.minute(errors=50)
        feed.minute(errors=0)
    states = [a["state"] for a in feed.evaluator.active_alerts()]
    assert states == ["firing"]
    assert feed.evaluator.active_alerts()[0]["flapping"] is True
    statuses = [n.status for n in feed.sent]
    assert statuses.count("firing") == 2  # then damped: no more fire/resolve pairs
    for _ in range(3):
        feed.minute(errors=0)
    assert feed.evaluator.active_alerts()[0]["state"] == "firing"  # quiet 240 s < 300 s
    feed.minute(errors=0)
    assert feed.evaluator.active_alerts()[0]["state"] == "resolved"
    assert feed.sent[-1].status == "resolved"


def test_state_survives_a_restart(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    states = StateStore(engine)
    states.create_schema()
    store = MinuteStore()
    config = EvaluatorConfig(grouping=FAST, log_transitions=False)
    first = Evaluator([ERRORS], store, config=config, state_store=states)
    feed = Feed(first, store)
    for _ in range(3):
        feed.minute(errors=50)
    assert [n.status for n in feed.sent] == ["firing"]

    second = Evaluator([ERRORS], store, config=config, state_store=StateStore(engine))
    assert [a["state"] for a in second.active_alerts()] == ["firing"]
    feed.evaluator = second
    assert feed.minute(errors=50) == []  # no second page after the restart
    [resolved] = feed.minute(errors=0)
    assert (resolved.status, resolved.key) == ("resolved", feed.sent[0].key)
    engine.dispose()


def test_a_broken_rule_is_counted_and_the_others_still_run() -> None:
    class Broken(MinuteStore):
        def gauge_values(self, name: str, now: float):  # type: ignore[no-untyped-def, override]
            raise RuntimeError("boom")

    store = Broken()
    feed = Feed(_evaluator([NOT_READY, ERRORS], store), store)
    for _ in range(3):
        feed.minute(errors=50)
    assert feed.evaluator.rule_failures == 3
    assert [n.labels["alertname"] for n in feed.sent] == ["error_rate_spike"]


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.got.append(notification)


def test_notifications_go_through_the_dispatcher_routes() -> None:
    pager, chat = Recorder("pagerduty"), Recorder("slack")
    routes = (
        Route(("pagerduty",), severities=frozenset({"critical"})),
        Route(("slack",), severities=frozenset({"high"})),
    )
    dispatcher = Dispatcher([pager, chat], routes=routes)
    store = MinuteStore()
    evaluator = Evaluator(
        [NOT_READY, ERRORS],
        store,
        dispatcher=dispatcher,
        config=EvaluatorConfig(grouping=FAST, log_transitions=False),
    )
    feed = Feed(evaluator, store)
    for _ in range(3):
        feed.minute(errors=50, gauges={'service_ready{dependency="database"}': 0.0})
    dispatcher.close(drain=True, timeout=10)
    assert [n.labels["alertname"] for n in pager.got] == ["dependency_not_ready"]
    assert [n.labels["alertname"] for n in chat.got] == ["error_rate_spike"]
    assert evaluator.notification_log is dispatcher.log
    assert {r.receiver for r in dispatcher.log.recent()} == {"pagerduty", "slack"}


def test_background_loop_evaluates_until_stopped() -> None:
    store = MinuteStore()
    ran = threading.Event()
    evaluator = Evaluator(
        [ERRORS],
        store,
        config=EvaluatorConfig(interval_s=0.01, log_transitions=False),
        notify=lambda n: None,
    )
    original = evaluator.evaluate_once

    def counting(now: float | None = None):  # type: ignore[no-untyped-def]
        result = original(now)
        if evaluator.evaluations >= 3:
            ran.set()
        return result

    evaluator.evaluate_once = counting  # type: ignore[method-assign]
    evaluator.start()
    try:
        assert ran.wait(10)
    finally:
        evaluator.stop()
    count = evaluator.evaluations
    assert evaluator.loop_failures == 0
    assert evaluator.evaluations == count  # stopped


def test_readers_get_the_last_round_while_a_round_waits_on_a_slow_store(tmp_path: Path) -> None:
    """The incident page asks for an alert while the evaluator's round is stuck saving state
    to the database that is the incident: it gets the last round's alerts at once."""
    engine = create_engine(f"sqlite:///{tmp_path / 'alerts.db'}")
    release = threading.Event()

    class SlowStates(StateStore):
        def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if saving.is_set():
                release.wait(10)
            return super().save(*args, **kwargs)

    saving = threading.Event()
    states = SlowStates(engine)
    states.create_schema()
    store = MinuteStore()
    config = EvaluatorConfig(grouping=FAST, log_transitions=False)
    evaluator = Evaluator([ERRORS], store, config=config, state_store=states)
    feed = Feed(evaluator, store)
    for _ in range(3):
        feed.minute(errors=50)
    saving.set()
    store.add(rollup(feed.t, 100, 50))
    stuck = threading.Thread(target=evaluator.evaluate_once, args=(feed.t + 60,), daemon=True)
    stuck.start()
    answered: list[list[str]] = []
    reader = threading.Thread(
        target=lambda: answered.append([a.state for a in evaluator.alert_instances().values()]),
        daemon=True,
    )
    reader.start()
    reader.join(5)  # bounded: without the published copy it waits for the stuck round
    release.set()
    stuck.join(10)
    engine.dispose()
    assert answered == [["firing"]]
    assert [a["state"] for a in evaluator.active_alerts()] == ["firing"]
