"""The Debian Prometheus scrapes two real app instances with a bearer token; PromQL over the
scraped series gives exactly what the traffic implies (counts, 5xx ratio, p95 latency)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.observability.prometheus.apps import TOKEN_ENV
from tests.support.servers import ManagedProcess, free_port, require_binary, wait_for_http

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "prometheus-scrape-token"

CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: app
    authorization:
      type: Bearer
      credentials: {token}
    static_configs:
      - targets: [{targets}]
"""


def query(prometheus: str, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    response = httpx.get(f"{prometheus}/api/v1/query", params=params, timeout=10)
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def scalar(prometheus: str, promql: str, at: float | None = None) -> float:
    (result,) = query(prometheus, promql, at)
    return float(result["value"][1])


def total_requests(prometheus: str) -> float | None:
    result = query(prometheus, "sum(http_requests_total)")
    return float(result[0]["value"][1]) if result else None


def wait_until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise TimeoutError("condition not met in time")


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[list[str]]:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env[TOKEN_ENV] = TOKEN
    processes, bases = [], []
    for n in range(2):
        port = free_port()
        processes.append(
            ManagedProcess(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "tests.observability.prometheus.apps:create_app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env=env,
                cwd=ROOT,
                log_path=tmp_path / f"app{n}.log",
            ).start()
        )
        bases.append(f"127.0.0.1:{port}")
    try:
        for base in bases:
            wait_for_http(f"http://{base}/items/0", timeout=30)
        yield bases
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def prometheus(tmp_path: Path, apps: list[str]) -> Iterator[str]:
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(CONFIG.format(token=TOKEN, targets=", ".join(f"'{a}'" for a in apps)))
    process = ManagedProcess(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_path=tmp_path / "prometheus.log",
    ).start()
    try:
        wait_for_http(f"http://127.0.0.1:{port}/-/ready", timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def send_traffic(apps: list[str]) -> None:
    """Per instance: 50 /items (fast), 90 fast /work, 10 /work of 400 ms, 15 /fail (500).
    Totals: 300 OK, 30 5xx; /work: 180 under 0.1 s and 20 in the (0.3 s, 0.5 s] bucket
    (0.3 s is a bucket bound: the latency SLO's threshold)."""
    with httpx.Client(timeout=10) as client:
        for base in apps:
            for n in range(50):
                assert client.get(f"http://{base}/items/{n}").status_code == 200
            for _ in range(90):
                assert client.get(f"http://{base}/work", params={"ms": 0}).status_code == 200
            for _ in range(15):
                assert client.get(f"http://{base}/fail").status_code == 500

    def slow(base: str) -> int:
        return httpx.get(f"http://{base}/work", params={"ms": 400}, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(slow, apps * 10)) == [200] * 20


@pytest.mark.integration
@pytest.mark.slow
def test_prometheus_sees_exactly_the_traffic_sent(prometheus: str, apps: list[str]) -> None:
    # both targets up: the bearer token from the scrape config was accepted
    wait_until(lambda: [r["value"][1] for r in query(prometheus, 'up{job="app"}')] == ["1", "1"])
    # the baseline (one readiness probe per instance) is scraped before the traffic starts
    wait_until(lambda: total_requests(prometheus) == 2)
    before = time.time()
    send_traffic(apps)
    # counters are scraped at most 1 s later; wait until Prometheus holds the final values
    wait_until(lambda: total_requests(prometheus) == 332)
    now = time.time()

    # exact counts by status class (the two readiness probes /items/0 included in 2xx)
    by_class = {
        r["metric"]["status_class"]: float(r["value"][1])
        for r in query(prometheus, "sum by (status_class) (http_requests_total)")
    }
    assert by_class == {"2xx": 302.0, "5xx": 30.0}
    per_instance = {
        r["metric"]["instance"]: float(r["value"][1])
        for r in query(prometheus, "sum by (instance) (http_requests_total)")
    }
    assert per_instance == {apps[0]: 166.0, apps[1]: 166.0}

    # requests over the traffic window, exact: the counter difference between the window's
    # ends (rate() would extrapolate); the rate is that over the window's length
    window_ms = math.floor((now - before) * 1000)
    sent = scalar(
        prometheus,
        f"sum(http_requests_total) - sum(http_requests_total offset {window_ms}ms)",
        at=now,
    )
    assert sent == 330.0
    rate = scalar(
        prometheus,
        f"(sum(http_requests_total) - sum(http_requests_total offset {window_ms}ms))"
        f" / {window_ms / 1000}",
        at=now,
    )
    assert rate == pytest.approx(330 / (window_ms / 1000))

    # 5xx ratio
    ratio = scalar(
        prometheus,
        'sum(http_requests_total{status_class="5xx"}) / sum(http_requests_total)',
    )
    assert ratio == pytest.approx(30 / 332, abs=1e-12)

    # p95 of /work: rank 190 of 200 falls in the (0.3, 0.5] bucket holding the 20 slow
    # requests after 180 fast ones: 0.3 + 0.2 * (190 - 180) / 20 = 0.4
    p95 = scalar(
        prometheus,
        "histogram_quantile(0.95, sum by (le) "
        '(http_request_duration_seconds_bucket{route="/work"}))',
    )
    assert p95 == pytest.approx(0.4, abs=1e-9)

    # the in-process exposition carried the runtime metrics too
    assert scalar(prometheus, "count(process_resident_memory_bytes)") == 2
    assert 0 <= scalar(prometheus, "max(system_cpu_usage_ratio)") <= 1
