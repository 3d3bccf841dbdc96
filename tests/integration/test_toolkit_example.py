"""docs/toolkit.md's example, run exactly as the page shows: a third-party CRUD app under plain
`uvicorn module:app` gets request ids, masked JSON request lines with route templates, a
token-protected /metrics with route-template series, error capture with a 500 JSON carrying the
request_id, and the /ops UI, from one `instrument()` call; it shuts down cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "toolkit.md"
APP = ROOT / "examples" / "notes" / "notes_app.py"
SECRET = "hunter2-correct-horse"

pytestmark = pytest.mark.integration


def documented_command() -> str:
    """The shell command under the `<!-- example-command -->` marker of docs/toolkit.md."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("<!-- example-command -->", 1)[1]
    match = re.search(r"```bash\n(.+?)\n```", block, re.S)
    assert match is not None, "docs/toolkit.md lost its example command"
    return match.group(1).strip()


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    command = documented_command().replace("--port 8080", f"--port {port}")
    assert f"--port {port}" in command
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "NOTES_DATA_DIR": str(tmp_path),  # keeps the example's files out of the repository
    }
    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{base}/notes/0", timeout=1)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate(timeout=10)
                raise AssertionError(err.decode(errors="replace")) from None
            time.sleep(0.2)
    try:
        yield base, process, tmp_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)  # reaps it and closes its stderr pipe


def _listening(base: str) -> bool:
    try:
        httpx.get(f"{base}/notes/0", timeout=1)
    except httpx.TransportError:
        return False
    return True


def _lines(data_dir: Path) -> list[dict[str, object]]:
    log = data_dir / "observability" / "log" / "notes.log"
    return [orjson.loads(line) for line in log.read_bytes().splitlines() if line.strip()]


def test_the_documented_example_gets_the_whole_toolkit(
    notes: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    base, process, data_dir = notes
    admin = {"Authorization": "Bearer let-me-in"}
    with httpx.Client(base_url=base, timeout=10) as client:
        created = client.post("/notes", json={"text": "hello"})
        assert created.status_code == 201
        assert re.fullmatch(r"[0-9a-f]{32}", created.headers["x-request-id"])
        read = client.get(f"/notes/{created.json()['id']}", params={"password": SECRET})
        assert read.status_code == 200
        assert read.json()["text"] == "hello"

        crash_id = client.post("/notes", json={"text": "crash"}).json()["id"]
        failed = client.get(f"/notes/{crash_id}")
        assert failed.status_code == 500
        body = failed.json()
        assert body["request_id"] == failed.headers["x-request-id"]
        assert body["error"]["code"] == "internal_error"
        assert "Traceback" not in failed.text

        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        metrics = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert metrics.status_code == 200
        series = 'http_requests_total{method="GET",route="/notes/{note_id}",status_class="5xx"} 1.0'
        assert series in metrics.text
        assert "db_query_duration_seconds_count" in metrics.text  # instrument_engine

        assert client.get("/ops/api/dashboards").status_code == 401
        assert client.get("/ops/api/dashboards", headers=admin).json()[0]["name"]
        page = client.get("/ops/dashboards/api-performance")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        groups: list[dict[str, object]] = []
        deadline = time.monotonic() + 15
        while not groups and time.monotonic() < deadline:
            groups = client.get("/ops/api/errors", headers=admin).json()["groups"]
            time.sleep(0.2)
        assert [g["type"] for g in groups] == ["RuntimeError"]
        assert groups[0]["first_request_id"] == failed.headers["x-request-id"]

    # uvicorn's graceful shutdown runs the lifespan; the shell of `cd ... && uvicorn` goes too.
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(30)
    deadline = time.monotonic() + 30
    while _listening(base) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _listening(base)
    lines = _lines(data_dir)
    assert lines[-1]["event"] == "service_stopped"  # closed in the lifespan, the logs last
    completed = [line for line in lines if line.get("event") == "request_completed"]
    routes = {line.get("route") for line in completed}
    assert {"/notes", "/notes/{note_id}"} <= routes
    assert all(re.fullmatch(r"[0-9a-f]{32}", str(line["request_id"])) for line in completed)
    raw = (data_dir / "observability" / "log" / "notes.log").read_text()
    assert SECRET not in raw
    assert any("[MASKED" in str(line.get("query", "")) for line in completed)
    assert any(line.get("event") == "request_failed" for line in lines)


def test_the_wiring_is_under_twenty_lines() -> None:
    source = APP.read_text(encoding="utf-8")
    wiring = source.split("# --- observability", 1)[1].splitlines()[1:]
    code = [line for line in wiring if line.strip() and not line.strip().startswith("#")]
    imports = [line for line in source.splitlines() if "from observability" in line]
    assert len(code) + len(imports) < 20, code
    assert imports == ["from observability import ObservabilityConfig, instrument"]
