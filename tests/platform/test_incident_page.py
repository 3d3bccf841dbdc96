"""The platform's incident page: /ops/api/incidents/{alert} serves the same evidence as
GET /api/v1/ops/incidents/{alert}, admin keys only, and alert notifications link to the page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.platform import Instance, backend_settings, running_instance

ALERT = "dependency_not_ready"


@pytest.fixture
def firing(tmp_path: Path) -> Iterator[Instance]:
    """An instance whose database is down (fault injection) and whose evaluator fired
    dependency_not_ready; one request failed on the way."""
    settings = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:")
    with running_instance(settings.model_copy(update={"fault_injection": True})) as api:
        api.client.put("/api/v1/ops/faults", json={"db_unavailable": True}, headers=api.admin)
        failed = api.client.get("/api/v1/experiments/missing", headers=api.admin)
        assert failed.status_code == 500
        evaluator = api.client.app.state.observability.evaluator  # type: ignore[attr-defined]
        hold = next(d.for_seconds for d in evaluator.definitions if d.name == ALERT)
        now = time.time()
        for step in range(hold // 60 + 2):  # pending, then firing once the `for` has passed
            evaluator.evaluate_once(now + step * 60)
        yield api


def test_incident_json_is_admin_only_and_404s_an_unknown_alert(firing: Instance) -> None:
    api = firing
    path = f"/ops/api/incidents/{ALERT}"
    assert api.client.get(path).status_code == 401
    assert api.client.get("/ops/api/incidents/nothing", headers=api.admin).status_code == 404


def test_incident_json_is_the_evidence_of_the_ops_api(firing: Instance) -> None:
    api = firing
    page = api.client.get(f"/ops/api/incidents/{ALERT}", headers=api.admin)
    assert page.status_code == 200
    evidence = page.json()
    same = api.client.get(f"/api/v1/ops/incidents/{ALERT}", headers=api.admin).json()
    assert set(evidence) == {*same, "available"}
    assert evidence["alert"] == same["alert"]
    assert evidence["alert"]["state"] == "firing"
    # Every dependency's own signals, before and during (the same rows in both documents).
    subjects = [d["subject"] for d in evidence["dependencies"]]
    assert subjects == [d["subject"] for d in same["dependencies"]]
    assert "database" in subjects
    assert evidence["headline"]
    assert evidence["links"] == same["links"]
    assert evidence["links"]["runbook"].endswith(f"#{ALERT}")
    assert evidence["links"]["dashboard"].endswith("/ops/dashboards/system-health")
    assert evidence["metric"]["threshold"] == 1
    # The request that failed while the database was down, with its own log lines.
    assert any(r["route"] == "GET /api/v1/experiments/{key}" for r in evidence["failing_routes"])
    assert evidence["failing_requests"]
    assert all(r["lines"] for r in evidence["failing_requests"])


def test_notifications_link_to_the_incident_page(firing: Instance) -> None:
    api = firing
    config = api.client.app.state.observability.evaluator.config  # type: ignore[attr-defined]
    link = config.evidence_url_template.format(alertname=ALERT, start=0, end=0)
    assert urlsplit(link).path == f"/ops/incidents/{ALERT}"
    shell = api.client.get(urlsplit(link).path)
    assert shell.status_code == 200
    assert 'data-page="incident"' in shell.text
    assert f'data-name="{ALERT}"' in shell.text


def test_error_groups_have_one_json_shape_in_both_operator_apis(firing: Instance) -> None:
    api = firing
    tracker = api.client.app.state.observability.errors  # type: ignore[attr-defined]
    assert tracker.flush(10)
    [listed] = api.client.get("/api/v1/ops/errors", headers=api.admin).json()["items"]
    [shown] = api.client.get("/ops/api/errors", headers=api.admin).json()["groups"]
    assert listed == shown
    fingerprint = listed["fingerprint"]
    detail = api.client.get(f"/api/v1/ops/errors/{fingerprint}", headers=api.admin).json()
    page = api.client.get(f"/ops/api/errors/{fingerprint}", headers=api.admin).json()
    assert detail == page
    assert detail["occurrences"][0]["request_id"]
    assert detail["first_seen"].endswith("+00:00")  # ISO 8601, UTC
