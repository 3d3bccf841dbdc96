"""`uvicorn --workers 4` in multi-process mode: a scrape of any worker sums all workers."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.observability.prometheus.apps import TOKEN_ENV
from tests.support.servers import ManagedProcess, free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "multiprocess-scrape-token"
WORKERS = 4
REQUESTS = 400


def scrape(base: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by sample name (http_requests_total, ..._bucket): [(labels, value)]."""
    response = httpx.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    response.raise_for_status()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


@pytest.mark.integration
@pytest.mark.slow
def test_counters_aggregate_across_four_workers(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    multiproc_dir = tmp_path / "prom"
    multiproc_dir.mkdir()
    (multiproc_dir / "counter_999999.db").write_bytes(b"stale values of a previous run")
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env[TOKEN_ENV] = TOKEN
    server = ManagedProcess(
        [
            sys.executable,
            "-m",
            "tests.observability.prometheus.serve_mp",
            str(port),
            str(WORKERS),
            str(multiproc_dir),
        ],
        env=env,
        cwd=ROOT,
        log_path=tmp_path / "uvicorn.log",
    ).start()
    try:
        wait_for_http(f"{base}/items/0", timeout=30)
        assert not (multiproc_dir / "counter_999999.db").exists()  # the parent cleaned up

        # wait until every worker has started (each writes its process gauges at start)
        deadline = time.monotonic() + 30
        pids: set[str] = set()
        while time.monotonic() < deadline and len(pids) < WORKERS:
            pids = {
                labels["pid"] for labels, _ in scrape(base).get("process_resident_memory_bytes", [])
            }
            time.sleep(0.2)
        assert len(pids) == WORKERS, server.log_path.read_text() if server.log_path else ""

        served_by: Counter[int] = Counter()
        # a fresh connection per request, so the kernel hands them to different workers
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as client:
            for _ in range(REQUESTS):
                response = client.get(f"{base}/ok")
                assert response.status_code == 200
                served_by[response.json()["pid"]] += 1
        assert len(served_by) >= 2, served_by  # the traffic really spread over workers

        metrics = scrape(base)
        requests = metrics["http_requests_total"]
        ok = [value for labels, value in requests if labels["route"] == "/ok"]
        assert len(ok) == 1
        assert ok[0] == REQUESTS
        assert all(labels["route"] != "/metrics" for labels, _ in requests)  # scrapes excluded
        durations = [
            value
            for labels, value in metrics["http_request_duration_seconds_bucket"]
            if labels["route"] == "/ok" and labels["le"] == "+Inf"
        ]
        assert durations == [REQUESTS]

        # per-worker process metrics, labelled by pid; machine metrics once
        rss = metrics["process_resident_memory_bytes"]
        assert {labels["pid"] for labels, _ in rss} == pids
        assert all(value > 10_000_000 for _, value in rss)
        assert {labels["pid"] for labels, _ in metrics["process_open_fds"]} == pids
        assert sum(value for _, value in metrics["process_cpu_seconds_total"]) > 0
        assert len(metrics["system_cpu_usage_ratio"]) == 1
        assert "event_loop_lag_seconds" in metrics
        in_flight = metrics["http_requests_in_flight"]
        assert len(in_flight) == 1
        assert in_flight[0][1] == 0
    finally:
        server.stop()
    # each worker marked itself dead on shutdown: no live gauges remain
    assert not list(multiproc_dir.glob("gauge_live*.db"))


def test_the_parent_can_serve_the_workers_files_on_its_own_address(tmp_path: Path) -> None:
    # The parent imported prometheus_client before the variable existed (so build_registry()
    # refuses to record there), but it can still read the workers' files for a scrape port.
    from observability.metrics.endpoint import serve_metrics
    from observability.metrics.prometheus import MultiProcessRegistry
    from observability.metrics.system import SystemCollector

    registry = MultiProcessRegistry(str(tmp_path))
    registry.register(SystemCollector(process=False))
    port = free_port()
    server = serve_metrics(registry, port=port)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.stop()
    assert "system_cpu_usage_ratio" in text
    assert "process_resident_memory_bytes" not in text  # those come from the workers' files
