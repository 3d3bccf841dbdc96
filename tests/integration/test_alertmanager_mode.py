"""Alertmanager mode against a REAL Alertmanager (Debian `prometheus-alertmanager`).

The embedded evaluator (the fleet's leader) posts its alerts to Alertmanager's v2 API every
round, as Prometheus does; Alertmanager groups and deduplicates and notifies a local recording
webhook. One fault must give exactly one firing notification even though every round re-posts
the alert, and a second evaluator taking over (a new leader, same persisted state) must not
cause another; the resolve must reach the webhook once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from observability.alerting.alertmanager_client import AlertmanagerClient
from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.grouping import Grouping
from observability.alerting.prometheus_render import to_yaml
from observability.alerting.rules import ThresholdRule
from observability.alerting.state import StateStore
from observability.metrics.windows import RollingWindows
from observability.query.live import LiveSource
from observability.query.model import ErrorRatio
from tests.support.servers import (
    LOOPBACK,
    ManagedProcess,
    RecordingHTTPServer,
    free_port,
    require_binary,
    wait_for_http,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RULE = ThresholdRule(
    "am_error_spike",
    expr=ErrorRatio(window_s=3),
    comparison=">",
    threshold=0.3,
    severity="high",
    summary="5xx ratio {value:.0%}",
    runbook="am_error_spike",
    labels={"service": "am-test", "signal": "errors"},
)


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, RecordingHTTPServer]]:
    binary = require_binary("prometheus-alertmanager")
    with RecordingHTTPServer() as webhook:
        config = {
            "route": {
                "receiver": "hook",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "hook",
                    "webhook_configs": [{"url": f"{webhook.url}/hook", "send_resolved": True}],
                }
            ],
        }
        (tmp_path / "am.yml").write_text(to_yaml(config))
        port = free_port()
        with ManagedProcess(
            [
                binary,
                f"--config.file={tmp_path / 'am.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--cluster.listen-address=",
            ],
            log_path=tmp_path / "alertmanager.log",
        ):
            url = f"http://{LOOPBACK}:{port}"
            wait_for_http(f"{url}/-/ready", timeout=30)
            yield url, webhook


def _notifications(webhook: RecordingHTTPServer) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in list(webhook.requests) if r.path == "/hook"]


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_fault_one_notification_and_one_resolve_through_alertmanager(
    alertmanager: tuple[str, RecordingHTTPServer], tmp_path: Path
) -> None:
    url, webhook = alertmanager
    windows = RollingWindows(slot_seconds=1)
    store = StateStore(create_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    store.create_schema()

    clients: list[AlertmanagerClient] = []

    def leader() -> tuple[Evaluator, AlertmanagerClient]:
        client = AlertmanagerClient(
            url,
            hold_s=30,
            annotations=lambda a: {"runbook_url": f"docs/runbook.md#{a.name}"},
            generator_url=lambda a: f"http://127.0.0.1:8000/ops/incidents/{a.name}",
        )
        evaluator = Evaluator(
            [RULE],
            LiveSource(windows),
            publish=client.publish,
            config=EvaluatorConfig(
                grouping=Grouping(group_by=("alertname",), group_wait_s=0, group_interval_s=1),
                flap_threshold=50,
                log_transitions=False,
            ),
            state_store=store,
        )
        clients.append(client)
        return evaluator, client

    try:
        _run_incident(url, webhook, windows, leader)
    finally:
        for client in clients:
            client.close()


def _run_incident(
    url: str,
    webhook: RecordingHTTPServer,
    windows: RollingWindows,
    leader: Callable[[], tuple[Evaluator, AlertmanagerClient]],
) -> None:
    first, first_client = leader()

    def rounds(evaluator: Evaluator, seconds: float, status: int) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(10):
                windows.observe_request("GET", "/work", status, 0.01)
            evaluator.evaluate_once()
            time.sleep(0.2)

    rounds(first, 1.5, 200)
    assert first_client.posted == 0  # nothing fired: nothing posted
    rounds(first, 2.0, 500)  # the fault
    assert {a["state"] for a in first.active_alerts()} == {"firing"}
    _wait(lambda: len(_notifications(webhook)) >= 1, 15, "the firing notification")
    # A new leader (same persisted state) takes over and keeps re-posting every round.
    second, second_client = leader()
    rounds(second, 3.0, 500)
    assert first_client.posted >= 5
    assert second_client.posted >= 5
    rounds(second, 6.0, 200)  # the fault removed: the alert resolves
    assert {a["state"] for a in second.active_alerts()} == {"resolved"}
    _wait(
        lambda: any(n["status"] == "resolved" for n in _notifications(webhook)),
        15,
        "the resolved notification",
    )
    time.sleep(2.5)  # two more group intervals: anything extra would have arrived by now
    notes = _notifications(webhook)
    assert [n["status"] for n in notes] == ["firing", "resolved"], notes
    fired = notes[0]["alerts"][0]
    assert fired["labels"] == {
        "alertname": "am_error_spike",
        "severity": "high",
        "service": "am-test",
        "signal": "errors",
    }
    assert fired["annotations"]["summary"].startswith("5xx ratio ")
    assert fired["annotations"]["runbook_url"] == "docs/runbook.md#am_error_spike"
    assert fired["generatorURL"] == "http://127.0.0.1:8000/ops/incidents/am_error_spike"
    assert notes[1]["alerts"][0]["startsAt"] == fired["startsAt"]  # one incident, not two
    # Alertmanager's own view agrees: nothing active any more.
    active = httpx.get(f"{url}/api/v2/alerts", params={"active": "true"}, timeout=5).json()
    assert active == []


def test_an_unreachable_alertmanager_is_counted_not_raised() -> None:
    client = AlertmanagerClient(f"http://{LOOPBACK}:{free_port()}", hold_s=30, timeout_s=1)
    windows = RollingWindows(slot_seconds=1)
    evaluator = Evaluator([RULE], LiveSource(windows), publish=client.publish)
    for _ in range(10):
        windows.observe_request("GET", "/work", 500, 0.01)
    evaluator.evaluate_once()
    assert client.failures == 1
    assert client.posted == 0
    client.close()
