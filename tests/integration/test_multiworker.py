"""`ep serve --workers 4`: metrics aggregate across worker processes (exactly N requests in
/metrics), process metrics of every worker survive, and the shared log file stays whole."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from tests.support.platform import CLI, create_key, home_env
from tests.support.servers import ManagedProcess, free_port, wait_for_http

TOKEN = "multiworker-scrape-token"
N = 400


def test_four_workers_report_exactly_the_requests_sent(tmp_path: Path) -> None:
    env = home_env(tmp_path, EP_METRICS_TOKEN=TOKEN)
    key = create_key(env, "client")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with ManagedProcess(
        [*CLI, "serve", "--port", str(port), "--workers", "4"], env=env, log_path=tmp_path / "out"
    ):
        wait_for_http(f"{base}/health/ready", timeout=60)
        pids = set()
        for _ in range(N):  # a fresh connection each time, so the kernel spreads them
            response = httpx.get(
                f"{base}/api/v1/flags",
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert response.status_code == 200
        text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        counted = sum(
            float(value)
            for value in re.findall(
                r'^http_requests_total\{[^}]*route="/api/v1/flags"[^}]*\} ([0-9.e+]+)$',
                text,
                re.MULTILINE,
            )
        )
        assert counted == N
        pids = set(re.findall(r'^process_resident_memory_bytes\{[^}]*pid="(\d+)"', text, re.M))
        assert len(pids) == 4  # every worker's process metrics, none lost
    lines = (tmp_path / "log" / "platform.log").read_text().splitlines()
    completed = [json.loads(line) for line in lines if '"request_completed"' in line]
    flags = [e for e in completed if e.get("route") == "/api/v1/flags"]
    assert len(flags) == N  # four writers, one file, no torn or lost line
    assert len({e["instance"] for e in flags}) > 1  # really served by several workers
