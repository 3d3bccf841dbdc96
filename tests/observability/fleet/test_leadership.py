"""One evaluator per fleet: of two instances on one store, one leads (evaluates, notifies, writes
alert state) and the other follows (shows the leader's state); when the leader stops, the other
takes over within the lease time and picks up the state it left."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import Gauge

from observability import AlertSettings, LogSettings, Observability, ObservabilityConfig
from observability.alerting.rules import ThresholdRule
from observability.query.model import GaugeValue
from observability.severity import Severity
from tests.support.platform import postgres_database
from tests.support.servers import RecordingHTTPServer

ALWAYS = ThresholdRule(
    name="always_firing",
    expr=GaugeValue("probe_value"),
    comparison=">",
    threshold=0,
    severity=Severity.LOW,
    summary="the probe is {value}",
)


def _instance(tmp_path: Path, name: str, url: str, alertmanager_url: str = "") -> Observability:
    config = ObservabilityConfig(
        service="fleet-test",
        instance=name,
        data_dir=tmp_path / name,
        database_url=url,
        dashboard_gauges=("probe_value",),
        heartbeat_seconds=0.5,
        leader_lease_seconds=1.0,
        readiness={"probe": lambda: None},
        log=LogSettings(stdout=False, to_file=False),
        alerts=AlertSettings(
            interval_seconds=0.2, rules=(ALWAYS,), alertmanager_url=alertmanager_url
        ),
    )
    observability = Observability(config)
    Gauge("probe_value", "a value above zero", registry=observability.registry).set(1)
    return observability


def _wait(condition: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("not true in time")


@pytest.fixture
def store_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def test_one_leads_the_other_follows_and_takes_over(tmp_path: Path, store_url: str) -> None:
    a = _instance(tmp_path, "a", store_url)
    b = _instance(tmp_path, "b", store_url)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(a.start())
        loop.run_until_complete(b.start())
        _wait(lambda: a.leadership.leading or b.leadership.leading)
        leader, follower = (a, b) if a.leadership.leading else (b, a)
        assert not follower.leadership.leading
        assert not follower.evaluator.running  # followers never evaluate nor write state
        _wait(lambda: [x["alertname"] for x in leader.alerts()["firing"]] == ["always_firing"])
        # The follower shows the leader's state, read from the store.
        assert [x["alertname"] for x in follower.alerts()["firing"]] == ["always_firing"]
        fired_at = leader.evaluator.alert_instances()
        states = {i.instance: i.state for i in follower.fleet.instances()}
        assert states == {"a": "up", "b": "up"}

        loop.run_until_complete(leader.stop())  # a clean stop frees the lease at once
        _wait(lambda: follower.leadership.leading, timeout=5)
        # The new leader took over the state: the alert is still the same firing alert.
        kept = follower.evaluator.alert_instances()
        assert {k: v.fired_at for k, v in kept.items()} == {
            k: v.fired_at for k, v in fired_at.items()
        }
        states = {i.instance: i.state for i in follower.fleet.instances()}
        assert states[leader.config.instance] == "stopped"
    finally:
        for member in (a, b):
            loop.run_until_complete(member.stop())
            member.close()
        loop.close()


def test_in_alertmanager_mode_only_the_leader_posts_and_nothing_is_notified_directly(
    tmp_path: Path, store_url: str
) -> None:
    with RecordingHTTPServer() as alertmanager:
        a = _instance(tmp_path, "a", store_url, alertmanager_url=alertmanager.url)
        b = _instance(tmp_path, "b", store_url, alertmanager_url=alertmanager.url)
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(a.start())
            loop.run_until_complete(b.start())
            posts = alertmanager.wait_for(3, timeout=15)
            leader = a if a.leadership.leading else b
            follower = b if leader is a else a
            assert {p.path for p in posts} == {"/api/v2/alerts"}
            sent = json.loads(posts[-1].body)
            assert [x["labels"]["alertname"] for x in sent] == ["always_firing"]
            assert sent[0]["annotations"]["summary"] == "the probe is 1.0"
            assert sent[0]["generatorURL"].endswith("/ops/incidents/always_firing")
            assert not follower.evaluator.running
            assert follower.alertmanager is not None
            assert follower.alertmanager.posted == 0  # followers never post
            assert leader.store.notifications.recent(10) == []  # Alertmanager notifies
        finally:
            for member in (a, b):
                loop.run_until_complete(member.stop())
                member.close()
            loop.close()
