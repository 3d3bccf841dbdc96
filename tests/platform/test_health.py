"""Liveness and readiness, without a key."""

from __future__ import annotations

from pathlib import Path

from tests.support.platform import Instance, backend_settings, running_instance
from tests.support.servers import free_port


def test_live_and_ready(api: Instance) -> None:
    assert api.client.get("/health/live").json() == {"status": "ok"}
    ready = api.client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "cache": "ok"}}


def test_not_ready_names_the_dependency_that_is_down(tmp_path: Path) -> None:
    settings = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:").model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    with running_instance(settings) as api:
        ready = api.client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "unavailable",
            "checks": {"database": "ok", "cache": "unavailable: ConnectionError"},
            "failing": ["cache"],
        }
        # A cache outage costs latency, not answers: configuration comes from the database.
        body = {
            "key": "e",
            "name": "n",
            "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
        }
        api.client.post("/api/v1/experiments", json=body, headers=api.admin)
        assert api.client.get("/api/v1/flags", headers=api.user).status_code == 200


def test_windows_endpoint_reports_the_last_minute(sqlite_api: Instance) -> None:
    api = sqlite_api
    for _ in range(5):
        api.client.get("/api/v1/experiments", headers=api.user)
    api.client.get("/api/v1/experiments/missing", headers=api.user)
    assert api.client.get("/metrics", headers=api.admin).status_code == 200  # a scrape
    assert api.client.get("/api/v1/ops/windows", headers=api.user).status_code == 403
    snapshot = api.client.get("/api/v1/ops/windows", headers=api.admin).json()
    minute = snapshot["windows"]["1m"]
    routes = minute["routes"]
    assert routes["GET /api/v1/experiments"]["requests"] == 5
    assert routes["GET /api/v1/experiments/{key}"]["client_errors_4xx"] == 1
    assert minute["overall"]["p99_ms"] >= minute["overall"]["p50_ms"] > 0
    assert not any(route.startswith("GET /health") for route in routes)  # operator traffic
    # 5 + 1 + the refused ops call; the scrape and health checks are not traffic.
    assert minute["overall"]["requests"] == 7
