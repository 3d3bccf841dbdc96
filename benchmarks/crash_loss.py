"""What kill -9 loses (run on demand; the figures are in docs/logging-standards.md).

    python benchmarks/crash_loss.py [--trials 5] [--clients 8] [--seconds 3]

Per trial: a fresh `ep serve` (1 worker, SQLite, log file only), `--clients` threads sending
assignments with known X-Request-IDs (every 20th raises through the self-test route, so the
error store has work too), SIGKILL after `--seconds`, then a clean restart. Counted: requests
the server answered versus their `request_completed` lines in the file, 500s answered versus
occurrences in the error store, and whether the restart logged `unclean_shutdown_detected`.
Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "experimentation_platform.cli"]


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "EP_VAR_DIR": str(home),
        "EP_LOG_DIR": str(home / "log"),
        "EP_LOG_TO_STDOUT": "false",
        "EP_ALERTS_ENABLED": "false",
    }


def _serve(env: dict[str, str], port: int, home: Path) -> subprocess.Popen[bytes]:
    out = open(home / "server.out", "ab")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def trial(clients: int, seconds: float, port: int) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="ep-crash-"))
    env = _env(home)
    key = subprocess.run(
        [*CLI, "keys", "create", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    server = _serve(env, port, home)
    answered: list[str] = []
    failed_answered: list[str] = []
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            i = 0
            while not stop.is_set():
                rid = f"c{n}-{i}"
                i += 1
                try:
                    if i % 20 == 0:
                        r = http.post(
                            "/api/v1/ops/selftest/error",
                            headers={**headers, "X-Request-ID": rid},
                        )
                        if r.status_code == 500:
                            failed_answered.append(rid)
                    else:
                        r = http.post(
                            "/api/v1/assignments",
                            json={"experiment_key": "none", "user_id": rid},
                            headers={**headers, "X-Request-ID": rid},
                        )
                    answered.append(rid)
                except httpx.HTTPError:
                    return

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
    for t in threads:
        t.join(10)
    logged = set()
    for line in (home / "log" / "platform.log").read_bytes().splitlines():
        event = orjson.loads(line)
        if event.get("event") == "request_completed":
            logged.add(event.get("request_id"))
    lost_lines = [rid for rid in answered if rid not in logged]
    with sqlite3.connect(home / "observability.db") as db:
        counted = db.execute("SELECT COALESCE(SUM(count), 0) FROM error_groups").fetchone()[0]
    lost_errors = max(0, len(failed_answered) - int(counted))
    restarted = _serve(env, port, home)
    time.sleep(1.0)
    restarted.send_signal(signal.SIGTERM)
    restarted.wait(30)
    reported = b"unclean_shutdown_detected" in (home / "log" / "platform.log").read_bytes()
    return {
        "answered": len(answered),
        "lines_lost": len(lost_lines),
        "errors_answered": len(failed_answered),
        "error_events_lost": lost_errors,
        "unclean_shutdown_reported": reported,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--port", type=int, default=18781)
    args = parser.parse_args()
    for n in range(args.trials):
        print(f"trial {n + 1}: {trial(args.clients, args.seconds, args.port)}", flush=True)


if __name__ == "__main__":
    main()
