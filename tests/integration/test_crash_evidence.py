"""kill -9 leaves evidence: the next start of the same data directory logs
`unclean_shutdown_detected` with the dead process's pid and last heartbeat, and incident
evidence lists it next to the configuration changes; a clean stop leaves nothing to report.

Issue 14: kill -9 lost the lines still queued in memory and nothing recorded the unclean
shutdown.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson

from experimentation_platform.settings import load_settings
from experimentation_platform.telemetry.evidence import stored_evidence
from observability.alerting.state import AlertInstance
from observability.runmarker import UNCLEAN_SHUTDOWN_DETECTED
from tests.support.platform import create_key, home_env
from tests.support.raw_http import served


def _events(home: Path, name: str) -> list[dict[str, object]]:
    path = home / "log" / "platform.log"
    found = []
    for line in path.read_bytes().splitlines():
        event = orjson.loads(line)
        if event.get("event") == name:
            found.append(event)
    return found


def _wait_for(home: Path, name: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 15
    found = _events(home, name)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        found = _events(home, name)
    return found


def test_kill_9_is_reported_at_the_next_start_and_a_clean_stop_is_not(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    create_key(env, "admin")
    with served(env, tmp_path) as first:
        _wait_for(tmp_path, "service_started", 1)
    # SIGTERM: a clean shutdown; the next start has nothing to report.
    with served(env, tmp_path) as second:
        _wait_for(tmp_path, "service_started", 2)
        killed_pid = second.pid
        started = time.time()
        time.sleep(0.5)
        second.process.stop(signal.SIGKILL)
        killed_at = time.time()
    assert _events(tmp_path, UNCLEAN_SHUTDOWN_DETECTED) == []
    assert first.pid != killed_pid
    with served(env, tmp_path):
        reported = _wait_for(tmp_path, UNCLEAN_SHUTDOWN_DETECTED, 1)
    assert len(reported) == 1
    event = reported[0]
    assert event["level"] == "warning"
    assert event["previous_pid"] == killed_pid
    assert event["slot"] == 0
    heartbeat = event["previous_last_heartbeat_at"]
    assert isinstance(heartbeat, float)
    assert started - 5 <= heartbeat <= killed_at  # written while it ran, before the kill
    assert isinstance(event["previous_started_at"], float)

    # A further clean stop and start: nothing new to report.
    with served(env, tmp_path):
        _wait_for(tmp_path, "service_started", 5)
    assert len(_events(tmp_path, UNCLEAN_SHUTDOWN_DETECTED)) == 1

    settings = load_settings(var_dir=tmp_path, log_dir=tmp_path / "log")
    alert = AlertInstance(
        key="error_rate_spike",
        name="error_rate_spike",
        rule="error_rate_spike",
        severity="high",
        labels={},
        state="firing",
        fired_at=time.time(),
    )
    evidence = stored_evidence(settings, alert)
    restarts = [c for c in evidence.config_changes if c.event == UNCLEAN_SHUTDOWN_DETECTED]
    assert len(restarts) == 1
    assert restarts[0].fields["previous_pid"] == killed_pid
