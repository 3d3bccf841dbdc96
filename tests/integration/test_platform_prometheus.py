"""Prometheus scraping two running platform instances: after known traffic, PromQL for request
rate, 5xx ratio, p95 latency, assignment rate and cache hit rate says what the traffic implies."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.platform import CLI, create_key, home_env
from tests.support.prometheus import running_prometheus, scalar, wait_until
from tests.support.servers import ManagedProcess, free_port, wait_for_http

TOKEN = "scrape-token-for-tests"
ASSIGNMENTS = 100
FAILURES = 10


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[tuple[str, str]]]:
    """Two platforms, each with its own SQLite database; yields (host:port, admin key)."""
    running = []
    with contextlib.ExitStack() as stack:
        for n in range(2):
            home = tmp_path / f"instance{n}"
            # A long cache TTL: one miss per experiment, then only hits.
            env = home_env(home, EP_METRICS_TOKEN=TOKEN, EP_CACHE_TTL_SECONDS="3600")
            key = create_key(env, "admin")
            port = free_port()
            stack.enter_context(
                ManagedProcess([*CLI, "serve", "--port", str(port)], env=env, log_path=home / "out")
            )
            wait_for_http(f"http://127.0.0.1:{port}/health/ready", timeout=30)
            running.append((f"127.0.0.1:{port}", key))
        yield running


def drive(base: str, key: str) -> None:
    """Per instance: 2 setup calls, 100 assignments of 50 returning users, 10 self-test 500s."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"http://{base}", headers=headers, timeout=10) as client:
        body = {
            "key": "exp",
            "name": "n",
            "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
        }
        assert client.post("/api/v1/experiments", json=body).status_code == 201
        assert client.post("/api/v1/experiments/exp/start").status_code == 200
        for n in range(ASSIGNMENTS):
            response = client.post(
                "/api/v1/assignments", json={"experiment_key": "exp", "user_id": f"u{n % 50}"}
            )
            assert response.status_code == 200
        for _ in range(FAILURES):
            assert client.post("/api/v1/ops/selftest/error").status_code == 500


def test_promql_sees_exactly_the_traffic_sent(
    tmp_path: Path, instances: list[tuple[str, str]]
) -> None:
    with running_prometheus(tmp_path, [base for base, _ in instances], TOKEN) as prometheus:
        wait_until(lambda: scalar(prometheus, 'sum(up{job="platform"})') == 2.0)
        for base, key in instances:
            drive(base, key)
        per_instance = 2 + ASSIGNMENTS + FAILURES
        total = 'sum(http_requests_total{route!~"/metrics|/health.*"})'
        wait_until(lambda: scalar(prometheus, total) == 2 * per_instance)
        assert (
            scalar(prometheus, 'sum(http_requests_total{route="/api/v1/assignments"})')
            == 2 * ASSIGNMENTS
        )
        ratio = scalar(prometheus, f'sum(http_requests_total{{status_class="5xx"}}) / {total}')
        assert ratio == pytest.approx(2 * FAILURES / (2 * per_instance))
        assert scalar(prometheus, "sum(ep_assignments_total)") == 2 * ASSIGNMENTS
        assert scalar(prometheus, "sum(ep_exposures_total)") == 2 * 50
        hits = 'sum(cache_requests_total{outcome="hit"})'
        # Per instance: the first assignment misses and caches the experiment; 99 hits follow.
        assert scalar(prometheus, f"{hits} / sum(cache_requests_total)") == pytest.approx(0.99)
        buckets = 'http_request_duration_seconds_bucket{route="/api/v1/assignments"}'
        p95 = scalar(prometheus, f"histogram_quantile(0.95, sum by (le) ({buckets}))")
        assert p95 is not None
        assert 0 < p95 <= 1.0  # all assignments sit in the sub-second buckets
        assert scalar(prometheus, 'sum(error_events_total{severity="medium"})') == 2 * FAILURES
        # One running experiment per instance; the gauge is read from the database every 30 s.
        running = 'sum(ep_experiments{status="running"})'
        wait_until(lambda: scalar(prometheus, running) == 2.0, timeout=45)
        assert scalar(prometheus, "min(service_ready)") == 1.0
