"""Liveness and readiness, without a key."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from experimentation_platform.gameday.netfault import TcpProxy
from tests.support.platform import (
    POSTGRES_ADMIN_DSN,
    Instance,
    backend_settings,
    postgres_database,
    running_instance,
)
from tests.support.servers import free_port


def test_live_and_ready(api: Instance) -> None:
    assert api.client.get("/health/live").json() == {"status": "ok"}
    ready = api.client.get("/health/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert (body["status"], body["checks"]) == ("ok", {"database": "ok", "cache": "ok"})
    assert set(body["latency_ms"]) == {"database", "cache"}  # every check's latency


def test_not_ready_names_the_dependency_that_is_down(tmp_path: Path) -> None:
    settings = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:").model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    with running_instance(settings) as api:
        ready = api.client.get("/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        del body["latency_ms"]
        assert body == {
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


def _gauge(text: str, name: str, dependency: str) -> float:
    match = re.search(rf'^{name}{{dependency="{dependency}"}} (\S+)$', text, re.MULTILINE)
    assert match, f"{name} for {dependency} missing from /metrics"
    return float(match.group(1))


@pytest.mark.integration
def test_a_slow_database_makes_readiness_degraded_not_unavailable(tmp_path: Path) -> None:
    # PostgreSQL behind a TCP proxy that holds every answer: a slow network path, for real.
    port = urlsplit(POSTGRES_ADMIN_DSN).port or 5432
    with postgres_database() as url, TcpProxy("127.0.0.1", port) as proxy:
        slow_url = url.replace(f":{port}/", f":{proxy.port}/")
        settings = backend_settings(tmp_path, slow_url, False, "x:").model_copy(
            update={"readiness_cache_seconds": 0.0, "readiness_degraded_seconds": 0.25}
        )
        with running_instance(settings) as api:
            fast = api.client.get("/health/ready")
            assert (fast.status_code, fast.json()["status"]) == (200, "ok")

            proxy.set_latency(0.4)  # every round trip to the database now takes 400 ms more
            slow = api.client.get("/health/ready")
            body = slow.json()
            assert slow.status_code == 200  # still in rotation: slow is not down
            assert body["status"] == "degraded"
            assert body["degraded"] == ["database"]
            assert body["checks"] == {"database": "ok", "cache": "ok"}
            assert body["latency_ms"]["database"] >= 400
            metrics = api.client.get("/metrics", headers=api.admin).text
            assert _gauge(metrics, "service_degraded", "database") == 1
            assert _gauge(metrics, "service_degraded", "cache") == 0
            assert _gauge(metrics, "service_ready", "database") == 1  # no dependency_not_ready
            assert _gauge(metrics, "readiness_check_duration_seconds", "database") >= 0.4

            proxy.set_latency(0.0)
            again = api.client.get("/health/ready").json()
            assert (again["status"], "degraded" in again) == ("ok", False)
