"""A real Prometheus (Debian package) for tests: started on a free loopback port in a temp dir,
scraping given targets every second with a bearer token; plus small query helpers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import ManagedProcess, free_port, require_binary, wait_for_http

CONFIG = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: platform
    authorization:
      type: Bearer
      credentials: {token}
    static_configs:
      - targets: [{targets}]
"""


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, targets: list[str], token: str) -> Iterator[str]:
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(CONFIG.format(token=token, targets=", ".join(f"'{t}'" for t in targets)))
    with ManagedProcess(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log_path=tmp_path / "prometheus.log",
    ):
        wait_for_http(f"http://127.0.0.1:{port}/-/ready", timeout=30)
        yield f"http://127.0.0.1:{port}"


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def scalar(prometheus: str, promql: str) -> float | None:
    result = query(prometheus, promql)
    return float(result[0]["value"][1]) if result else None


def wait_until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise TimeoutError("condition not met in time")
