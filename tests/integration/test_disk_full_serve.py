"""A real `ep serve` whose log directory sits on a full 512 KiB tmpfs keeps answering, counts
what it could not write, never leaves a torn line and writes again once space returns."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import orjson

from tests.support.filesystems import fill, small_filesystem
from tests.support.platform import create_key, home_env
from tests.support.raw_http import served

DROPPED = re.compile(r'^observability_log_events_dropped_total\{reason="sink_failed_file"\} (\S+)$')


def _dropped(base: str, key: str) -> float:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    for line in text.splitlines():
        match = DROPPED.match(line)
        if match:
            return float(match.group(1))
    return 0.0


def _request_ids(log_file: Path) -> list[str]:
    data = log_file.read_bytes()
    assert data.endswith(b"\n"), "the log file ends inside a line"
    return [str(orjson.loads(line).get("request_id")) for line in data.splitlines()]


def test_full_disk_counts_drops_keeps_lines_whole_and_resumes(tmp_path: Path) -> None:
    with small_filesystem(512) as root:
        env = home_env(tmp_path, EP_LOG_DIR=str(root / "log"))
        key = create_key(env, "admin")
        headers = {"Authorization": f"Bearer {key}"}
        with served(env, tmp_path) as server, httpx.Client(base_url=server.base) as http:
            ballast = fill(root, leave_bytes=30_000)
            statuses = [
                http.get(
                    "/api/v1/experiments", headers={**headers, "X-Request-ID": f"full-{n}"}
                ).status_code
                for n in range(600)
            ]
            assert set(statuses) == {200}  # the service kept answering
            time.sleep(0.5)
            dropped = _dropped(server.base, key)
            assert dropped > 0
            log_file = root / "log" / "platform.log"
            written = [rid for rid in _request_ids(log_file) if rid.startswith("full-")]
            assert 0 < len(written) < 600

            ballast.unlink()
            for n in range(20):
                http.get("/api/v1/experiments", headers={**headers, "X-Request-ID": f"back-{n}"})
            deadline = time.monotonic() + 10
            resumed: list[str] = []
            while time.monotonic() < deadline and len(resumed) < 20:
                time.sleep(0.2)
                resumed = [rid for rid in _request_ids(log_file) if rid.startswith("back-")]
            assert resumed == [f"back-{n}" for n in range(20)]
        out = (tmp_path / "server.out").read_text()
        assert '"event":"log_sink_failed"' in out
        assert '"event":"log_sink_recovered"' in out
