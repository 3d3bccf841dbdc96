"""A real `ep serve` process: every line on stdout and in the log file is one JSON object with
the standard fields, and every line emitted during a request carries its request_id and
trace_id: uvicorn's own lines, a threadpool endpoint, a background task, an unhandled
exception's traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.support.platform import CLI, create_key, home_env
from tests.support.servers import ManagedProcess, free_port, wait_for_http


def read_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_every_line_is_json_with_request_context(tmp_path: Path) -> None:
    env = home_env(tmp_path, EP_LOG_TO_STDOUT="true", EP_LOG_LEVELS="uvicorn.access=INFO")
    key = create_key(env, "admin")
    port = free_port()
    stdout_path = tmp_path / "stdout.jsonl"
    server = ManagedProcess([*CLI, "serve", "--port", str(port)], env=env, log_path=stdout_path)
    base = f"http://127.0.0.1:{port}"
    sent: dict[str, str] = {}
    with server:
        wait_for_http(f"{base}/health/live", timeout=30)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=auth, timeout=10) as client:
            body = {
                "key": "e2e",
                "name": "n",
                "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
            }
            calls = {
                "threadpool": lambda: client.post(
                    "/api/v1/experiments", json=body, headers={"X-Request-ID": "rid-threadpool"}
                ),
                "background": lambda: client.post(
                    "/api/v1/events",
                    json={"events": [{"user_id": "u", "name": "view"}]},
                    headers={"X-Request-ID": "rid-background"},
                ),
                "exception": lambda: client.post(
                    "/api/v1/ops/selftest/error", headers={"X-Request-ID": "rid-exception"}
                ),
                "unmatched": lambda: client.get(
                    "/no/such/path", headers={"X-Request-ID": "rid-unmatched"}
                ),
            }
            for name, call in calls.items():
                response = call()
                sent[name] = response.headers["x-request-id"]
            assert sent == {name: f"rid-{name}" for name in calls}
    # SIGTERM above: the pipeline flushed on shutdown.
    stdout_lines = read_lines(stdout_path)
    file_lines = read_lines(tmp_path / "log" / "platform.log")
    assert stdout_lines
    assert file_lines
    events: list[dict[str, Any]] = []
    for line in stdout_lines + file_lines:
        event = json.loads(line)  # not one plain-text line anywhere
        for field in ("timestamp", "level", "logger", "event"):
            assert field in event, line
        assert event["timestamp"].endswith("Z")
        events.append(event)
    by_request: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if "request_id" in event:
            by_request.setdefault(event["request_id"], []).append(event)
    for request_id in sent.values():
        lines = by_request[request_id]
        trace_ids = {e.get("trace_id") for e in lines}
        assert len(trace_ids) == 1, lines
        assert None not in trace_ids, lines
        loggers = {e["logger"] for e in lines}
        assert "uvicorn.access" in loggers  # uvicorn's own line, in the request's context
        assert any(e["event"] == "request_completed" for e in lines)

    def names(request_id: str) -> set[str]:
        return {e["event"] for e in by_request[request_id]}

    assert "experiment_created" in names("rid-threadpool")
    assert "events_ingested" in names("rid-background")  # logged by a background task
    failed = [e for e in by_request["rid-exception"] if e["event"] == "request_failed"]
    assert failed
    assert failed[0]["exception"]["type"] == "SelfTestError"
    assert any(f["function"] == "selftest_error" for f in failed[0]["exception"]["frames"])
    completed = [e for e in by_request["rid-unmatched"] if e["event"] == "request_completed"]
    assert completed[0]["route"] == "__unmatched__"
    assert completed[0]["status"] == 404
    # No line was printed twice in one sink, and the file holds what stdout showed.
    assert len(set(file_lines)) == len(file_lines)
    # Lines written while the process stops may miss the file sink, closed first; no others.
    only_stdout = set(stdout_lines) - set(file_lines)
    shutdown_words = ("service_stopping", "Finished server", "Shutting down", "shutdown")
    assert all(any(word in line for word in shutdown_words) for line in only_stdout)
