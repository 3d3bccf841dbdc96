"""Fault injection: off unless configured, admin only, and each fault acts where the real
failure would."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.platform import Instance, backend_settings, running_instance


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[Instance]:
    settings = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:")
    with running_instance(settings.model_copy(update={"fault_injection": True})) as api:
        body = {
            "key": "e",
            "name": "n",
            "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
        }
        api.client.post("/api/v1/experiments", json=body, headers=api.admin)
        api.client.post("/api/v1/experiments/e/start", headers=api.admin)
        yield api


def test_off_by_default_and_admin_only(sqlite_api: Instance, faulty: Instance) -> None:
    assert sqlite_api.client.get("/api/v1/ops/faults", headers=sqlite_api.admin).status_code == 404
    assert (
        faulty.client.put(
            "/api/v1/ops/faults", json={"db_unavailable": True}, headers=faulty.user
        ).status_code
        == 403
    )


def test_database_unavailable_fails_reads_and_readiness(faulty: Instance) -> None:
    api = faulty
    assert (
        api.client.put(
            "/api/v1/ops/faults", json={"db_unavailable": True}, headers=api.admin
        ).status_code
        == 200
    )
    assert api.client.get("/api/v1/experiments", headers=api.admin).status_code == 500
    ready = api.client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unavailable")
    api.client.delete("/api/v1/ops/faults", headers=api.admin)
    assert api.client.get("/api/v1/experiments", headers=api.admin).status_code == 200
    assert api.client.get("/health/ready").status_code == 200


def test_assignment_error_burst_and_cache_outage(faulty: Instance) -> None:
    api = faulty
    api.client.put("/api/v1/ops/faults", json={"assignment_error_rate": 1.0}, headers=api.admin)
    failed = api.client.post(
        "/api/v1/assignments", json={"experiment_key": "e", "user_id": "u"}, headers=api.user
    )
    assert failed.status_code == 500
    api.client.put(
        "/api/v1/ops/faults",
        json={"assignment_error_rate": 0.0, "cache_unavailable": True},
        headers=api.admin,
    )
    assert (
        api.client.get("/health/ready").json()["checks"]["cache"] == "unavailable: ConnectionError"
    )
    # Reads fall back to the database: assignment still answers during a cache outage.
    ok = api.client.post(
        "/api/v1/assignments", json={"experiment_key": "e", "user_id": "u"}, headers=api.user
    )
    assert ok.status_code == 200
    # The outage shows in the cache's own signals, as a Redis that went away would.
    metrics = api.client.get("/metrics", headers=api.admin).text
    errors = re.search(
        r'^cache_errors_total\{backend="\w+",operation="get"\} (\S+)$', metrics, re.M
    )
    assert errors is not None
    assert float(errors.group(1)) >= 1
    state = api.client.get("/api/v1/ops/faults", headers=api.admin).json()
    assert state["cache_unavailable"] is True
    assert state["assignment_error_rate"] == 0.0


def test_incident_evidence_endpoint_names_the_dependency(faulty: Instance) -> None:
    api = faulty
    assert api.client.get("/api/v1/ops/incidents/nothing", headers=api.admin).status_code == 404
    api.client.put("/api/v1/ops/faults", json={"db_unavailable": True}, headers=api.admin)
    evaluator = api.client.app.state.observability.evaluator  # type: ignore[attr-defined]
    hold = next(d.for_seconds for d in evaluator.definitions if d.name == "dependency_not_ready")
    now = time.time()
    for step in range(hold // 60 + 2):  # pending, then firing once the rule's `for` has passed
        evaluator.evaluate_once(now + step * 60)
    firing = [a for a in evaluator.active_alerts() if a["state"] == "firing"]
    assert any(a["alertname"] == "dependency_not_ready" for a in firing), firing
    evidence = api.client.get(
        "/api/v1/ops/incidents/dependency_not_ready", headers=api.admin
    ).json()
    assert "database" in {d["subject"] for d in evidence["dependencies"]}
    assert evidence["alert"]["alertname"] == "dependency_not_ready"


def _gauge(api: Instance, name: str) -> float:
    """One unlabelled gauge from the instance's /metrics, as a scraper sees it."""
    text = api.client.get("/metrics", headers=api.admin).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not exported")


def _wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_memory_pressure_shows_in_the_process_memory_gauge(tmp_path: Path) -> None:
    base = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:")
    settings = base.model_copy(update={"fault_injection": True, "memory_budget_mb": 1024})
    with running_instance(settings) as api:
        before = _gauge(api, "process_memory_usage_ratio")
        api.client.put("/api/v1/ops/faults", json={"memory_pressure_mb": 256}, headers=api.admin)
        held = _gauge(api, "process_memory_usage_ratio")
        assert held - before >= 0.9 * 256 / 1024  # the ballast is resident, not just reserved
        api.client.delete("/api/v1/ops/faults", headers=api.admin)
        # Freed to the OS, not kept in the allocator's arenas: the share falls back.
        assert _gauge(api, "process_memory_usage_ratio") - before < 0.1 * 256 / 1024
