"""`ep logs` as an operator uses it, and the Logs Insights saved queries asking the same questions.

The command is driven through its Typer app with CliRunner; one test runs the registered
`ep logs` in a real subprocess.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import observability.logging
from experimentation_platform.commands.logs import app
from experimentation_platform.telemetry.queries import SAVED_QUERIES, saved_query
from observability.asgi import ObservabilityMiddleware
from observability.context import bind
from observability.logging import LogPipeline, RequestLogObserver, RotatingFileSink, get_logger
from observability.logging.pipeline import install
from observability.logsearch import log_files
from tests.observability.test_logsearch import TARGET, Written, read_directory, write_logs
from tests.support.platform import Instance

runner = CliRunner()


@pytest.fixture
def written(tmp_path: Path) -> Written:
    return write_logs(tmp_path / "log")


def ep_logs(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _expected(written: Written, key: str, value: object) -> list[str]:
    return [raw for raw in written.lines if json.loads(raw).get(key) == value]


def test_request_id_in_json_format_prints_the_original_lines_unchanged(written: Written) -> None:
    code, out, _ = ep_logs(
        "--dir", str(written.directory), "--request-id", TARGET, "--format", "json"
    )
    assert code == 0
    printed = out.splitlines()
    assert sorted(printed) == sorted(_expected(written, "request_id", TARGET))
    stamps = [json.loads(line)["timestamp"] for line in printed]
    assert stamps == sorted(stamps)


def test_table_shows_the_columns_an_operator_scans(written: Written) -> None:
    code, out, _ = ep_logs("--dir", str(written.directory), "--request-id", TARGET)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["time", "level", "event", "route"]
    assert len(rows) == len(_expected(written, "request_id", TARGET))
    completed = next(row for row in rows if "request_completed" in row)
    # The whole id, as a token of its own: copied from the table, it finds the request.
    assert TARGET in completed.split()
    assert "GET /api/v1/assignments" in completed or "POST" in completed
    assert "\x1b[" not in out  # no colour codes when the output is not a terminal


def test_filters_combine_and_limit_keeps_the_newest(written: Written) -> None:
    base = ("--dir", str(written.directory), "--format", "json")
    code, out, _ = ep_logs(*base, "--level", "error", "--where", "exception.type=KeyError")
    assert code == 0
    expected = [
        raw
        for raw in written.lines
        if (json.loads(raw).get("exception") or {}).get("type") == "KeyError"
    ]
    assert out.splitlines() == expected
    code, out, _ = ep_logs(*base, "--event", "request_completed", "--where", "status>=404")
    assert {json.loads(line)["status"] for line in out.splitlines()} == {404, 500}
    code, out, _ = ep_logs(*base, "--user-id", "u_1", "--limit", "3")
    assert out.splitlines() == _expected(written, "user_id", "u_1")[-3:]
    first = json.loads(written.lines[0])["timestamp"]
    code, out, _ = ep_logs(*base, "--since", first, "--until", first)
    assert out.splitlines() == written.lines[:1]


def test_default_directory_comes_from_ep_log_dir(written: Written) -> None:
    code, out, _ = ep_logs(
        "--trace-id", "trace-0002", "--format", "json", env={"EP_LOG_DIR": str(written.directory)}
    )
    assert code == 0
    assert out.splitlines() == _expected(written, "trace_id", "trace-0002")


def test_errors_are_clear_with_exit_codes(tmp_path: Path, written: Written) -> None:
    code, _, err = ep_logs("--dir", str(tmp_path / "missing"))
    assert code == 1
    assert "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, _, err = ep_logs("--dir", str(tmp_path / "empty"))
    assert code == 1
    assert "no log files" in err
    code, _, err = ep_logs("--dir", str(written.directory), "--where", "status")
    assert code == 2
    assert "bad --where 'status'" in err
    code, _, err = ep_logs("--dir", str(written.directory), "--since", "last tuesday")
    assert code == 2
    assert "bad time 'last tuesday'" in err
    code, _, err = ep_logs("--dir", str(written.directory), "--level", "loud")
    assert code == 2
    assert "bad level" in err
    code, out, err = ep_logs("--dir", str(written.directory), "--request-id", "nope")
    assert (code, out) == (1, "")  # like grep: nothing matched is exit 1
    assert "no lines matched" in err


def test_follow_continues_after_the_search_without_gap_or_repeat_across_rotations(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "log"
    sink = RotatingFileSink(directory, max_bytes=3000)
    pipeline = LogPipeline([sink], flush_interval=0.005)
    install(pipeline, capture_stdlib=False)
    log = get_logger("tests.follow")
    stop = threading.Event()
    ticks = [0]

    def produce() -> None:
        while not stop.is_set() and ticks[0] < 5000:
            log.info("tick", n=ticks[0])
            log.info("noise")
            ticks[0] += 1
            pipeline.flush()
            stop.wait(0.01)

    for _ in range(10):  # lines the search will find before following starts
        log.info("tick", n=ticks[0])
        ticks[0] += 1
    pipeline.flush()
    producer = threading.Thread(target=produce)
    producer.start()
    try:
        code, out, _ = ep_logs(
            "--dir", str(directory), "--event", "tick", "--format", "json",
            "--follow", "--follow-seconds", "2",
        )  # fmt: skip
    finally:
        stop.set()
        producer.join(30)
        files = len(log_files(directory))
        observability.logging.reset()
    assert code == 0
    printed = [json.loads(line)["n"] for line in out.splitlines()]
    assert printed[:10] == list(range(10))  # the search's results
    gaps = [(a, b) for a, b in itertools.pairwise(printed) if b != a + 1]
    assert not gaps, f"then every new tick, once, in order: {gaps}"
    assert len(printed) > 10  # following really printed new lines
    assert files >= 3  # and the active file was rotated under it


def test_follow_stops_on_its_own_with_no_new_lines(written: Written) -> None:
    code, out, _ = ep_logs(
        "--dir", str(written.directory), "--request-id", TARGET, "--follow",
        "--follow-seconds", "0.3", "--format", "json",
    )  # fmt: skip
    assert code == 0
    assert len(out.splitlines()) == len(_expected(written, "request_id", TARGET))
    code, out, err = ep_logs(
        "--dir", str(written.directory), "--request-id", "nope", "--follow",
        "--follow-seconds", "0.3",
    )  # fmt: skip
    assert (code, out) == (1, "")  # nothing before nor while following
    assert "no lines matched" in err


def test_registered_ep_logs_subprocess(written: Written, tmp_path: Path) -> None:
    env = {**os.environ, "EP_VAR_DIR": str(tmp_path), "EP_LOG_DIR": str(written.directory)}
    result = subprocess.run(
        [sys.executable, "-m", "experimentation_platform.cli", "logs", "--request-id", TARGET,
         "--format", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(_expected(written, "request_id", TARGET))
    bad = subprocess.run(
        [sys.executable, "-m", "experimentation_platform.cli", "logs", "--where", "nope"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "bad --where" in bad.stderr


# --- the platform's own lines, and the saved queries over them ----------------------------------
_KEYWORDS = {
    "fields", "filter", "stats", "sort", "limit", "by", "as", "asc", "desc", "and", "or",
    "not", "in", "count", "avg", "pct", "max", "min", "sum", "earliest", "latest", "coalesce",
}  # fmt: skip


def _referenced_fields(query: str) -> set[str]:
    """The log fields a Logs Insights query reads (not @-fields, aliases, literals, functions)."""
    text = re.sub(r'"[^"]*"', " ", query)
    aliases = set(re.findall(r"\bas\s+([A-Za-z_][\w]*)", text))
    names = set(re.findall(r"(?<![@\w.])([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)", text))
    return {n for n in names if n not in _KEYWORDS and n not in aliases}


def _keys(event: dict[str, object], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in event.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def _failing_service_lines(directory: Path) -> list[str]:
    """Lines of a bare app with the real middleware and request log: a user, a crash."""
    app = FastAPI()

    @app.get("/users/{user}/crash")
    def crash(user: str) -> None:
        bind(user_id=user)
        raise KeyError("variant")

    sink = RotatingFileSink(directory)
    pipeline = LogPipeline([sink], flush_interval=0.005)
    install(pipeline, capture_stdlib=False)
    observed = ObservabilityMiddleware(app, observers=[RequestLogObserver()])
    try:
        with TestClient(observed, raise_server_exceptions=False) as client:
            assert client.get("/users/u_42/crash").status_code == 500
        assert pipeline.flush()
    finally:
        observability.logging.reset()
    return read_directory(directory)


def test_platform_requests_are_found_and_saved_queries_read_real_fields(
    sqlite_api: Instance, tmp_path: Path
) -> None:
    client = sqlite_api.client
    assert client.get("/health/live").status_code == 200
    missing = client.get("/api/v1/experiments/no-such-key", headers=sqlite_api.admin)
    assert missing.status_code == 404
    pipeline = observability.logging.active_pipeline()
    assert pipeline is not None
    assert pipeline.flush()
    directory = sqlite_api.app_settings.log_dir

    request_id = missing.headers["x-request-id"]
    code, out, _ = ep_logs("--dir", str(directory), "--request-id", request_id, "--format", "json")
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["event"], e["status"]) for e in events] == [("request_completed", 404)]
    code, out, _ = ep_logs("--dir", str(directory), "--level", "warning", "--format", "json")
    assert request_id in out
    # The table shows the whole generated id, and that id, copied from the table, finds it.
    code, table, _ = ep_logs("--dir", str(directory), "--route", "/api/v1/experiments/{key}")
    row = next(r for r in table.splitlines() if "404" in r.split())
    copied = next(token for token in row.split() if token.startswith(request_id[:8]))
    assert copied == request_id
    assert ep_logs("--dir", str(directory), "--request-id", copied)[0] == 0

    known: set[str] = set()
    for raw in read_directory(directory) + _failing_service_lines(tmp_path / "bare"):
        known |= _keys(json.loads(raw))
    for saved in SAVED_QUERIES:
        used = _referenced_fields(saved.query)
        assert used, saved.name
        assert used <= known, f"{saved.name} reads fields our lines never have: {used - known}"


def test_saved_queries_have_the_logs_insights_shape() -> None:
    names = {q.name for q in SAVED_QUERIES}
    assert len(names) == len(SAVED_QUERIES) == 5
    for saved in SAVED_QUERIES:
        commands = [part.strip().split()[0] for part in saved.query.split("|")]
        assert set(commands) <= {"fields", "filter", "stats", "sort", "limit"}, saved.name
        assert "filter" in commands or "stats" in commands
        assert "fields" in commands or "stats" in commands
        assert commands.index("sort") > commands.index("filter")
        assert saved.name.startswith("experimentation-platform/")
        assert len(saved.name) <= 255  # QueryDefinition Name limit
        assert saved.query.count('"') % 2 == 0
        for placeholder in saved.placeholders:
            assert f'"{placeholder}"' in saved.query
    rendered = saved_query("request-by-id").render(REQUEST_ID='ab"c')
    assert 'filter request_id = "ab\\"c"' in rendered
    with pytest.raises(ValueError, match="USER_ID"):
        saved_query("user-journey").render()
