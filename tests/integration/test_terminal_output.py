"""Logged data never drives the operator's terminal: a real `ep serve` logs hostile input, the
real `ep` commands print it escaped, one record per row.

Issue 14: a user_id with ANSI/OSC escapes was printed raw by `ep logs` (clear screen, colours,
window title) and by `ep errors list/show`; a user_id holding a newline and a JSON fragment
printed as a separate forged row.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

from observability.incident import ErrorGroupEvidence, FailingRequest, IncidentEvidence
from observability.terminal import safe_data, safe_json, safe_text
from tests.support.platform import CLI, create_key, home_env
from tests.support.raw_http import served

TITLE = "\x1b]0;owned\x07"  # OSC: set the window title
CLEAR = "\x1b[2J\x1b[H"  # clear the screen
FORGED = '\n2026-01-01 00:00:00.000  INFO     request_completed {"status":200}'
HOSTILE_USER = f"mallory{TITLE}{CLEAR}\x1b[31m{FORGED}\u202e\x85"
CONTROL = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + ["\u202e"]


def _ep(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _no_control(text: str) -> None:
    body = text.rstrip("\n")
    found = sorted({repr(c) for c in body if c in CONTROL and c != "\n"})
    assert found == [], f"control characters reached the terminal: {found}"


def test_hostile_log_and_error_data_prints_escaped_one_row_each(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    admin = create_key(env, "admin")
    headers = {"Authorization": f"Bearer {admin}"}
    with served(env, tmp_path) as server:
        sent = 0
        for _ in range(3):
            response = httpx.post(
                f"{server.base}/api/v1/assignments",
                json={"experiment_key": "no-such", "user_id": HOSTILE_USER},
                headers=headers,
            )
            assert response.status_code == 404
            sent += 1
        failed = httpx.post(
            f"{server.base}/api/v1/ops/selftest/error",
            json={"note": f"boom{CLEAR}{FORGED}"},
            headers=headers,
        )
        assert failed.status_code == 500
        time.sleep(1.0)  # the log writer flushes every 0.1 s; the error store at once

    logs = _ep(env, "logs", "--route", "/api/v1/assignments", "--event", "request_completed")
    assert logs.returncode == 0, logs.stderr
    _no_control(logs.stdout)
    rows = logs.stdout.rstrip("\n").split("\n")
    assert len(rows) == 1 + sent  # the header, then one row per request: nothing forged
    assert all("\\x1b]0;owned\\x07" in row for row in rows[1:])
    assert all("\\n2026-01-01" in row for row in rows[1:])

    as_json = _ep(env, "logs", "--route", "/api/v1/assignments", "--format", "json")
    _no_control(as_json.stdout)
    parsed = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert HOSTILE_USER in {line.get("user_id") for line in parsed}  # the same data, intact

    listed = _ep(env, "errors", "list")
    assert listed.returncode == 0, listed.stderr
    _no_control(listed.stdout)
    assert len(listed.stdout.rstrip("\n").split("\n")) == 2  # header and the one group
    fingerprint = listed.stdout.splitlines()[1].split()[0]
    shown = _ep(env, "errors", "show", fingerprint)
    assert shown.returncode == 0, shown.stderr
    _no_control(shown.stdout)
    # Group messages are normalised (numbers become <num>); the escapes stay visible on row 1.
    assert "boom\\x1b[<num>J\\x1b[H\\n<num>-" in shown.stdout.splitlines()[0]
    listed_json = _ep(env, "errors", "list", "--json")
    _no_control(listed_json.stdout)
    assert json.loads(listed_json.stdout)["message"].startswith("self-test")


def test_incident_text_escapes_every_quoted_value() -> None:
    evidence = IncidentEvidence(
        alert={"alertname": f"a{TITLE}", "summary": f"s{FORGED}", "labels": {"route": CLEAR}},
        gathered_at=0.0,
        since=0.0,
        error_groups=[
            ErrorGroupEvidence(
                fingerprint="f",
                type="KeyError",
                message=HOSTILE_USER,
                severity="high",
                rule="r",
                count=1,
                first_seen=0.0,
                last_seen=0.0,
                new=True,
                routes={f"POST /x{CLEAR}": 1},
                first_request_id="r",
            )
        ],
        failing_requests=[
            FailingRequest("r", "/x", 500, [{"event": f"e{FORGED}", "user_id": HOSTILE_USER}])
        ],
    )
    raw = evidence.render_text()
    safe = safe_data(evidence).render_text()
    assert "\x1b" in raw  # the renderer alone would pass escapes through
    _no_control(safe.replace("\n", ""))
    assert safe.count("\n") < raw.count("\n")  # the forged rows are gone
    assert safe_data(evidence).error_groups[0].message == safe_text(HOSTILE_USER)


def test_safe_json_keeps_the_document_and_its_values() -> None:
    line = json.dumps({"user_id": HOSTILE_USER}, ensure_ascii=False)
    shown = safe_json(line)
    _no_control(shown)
    assert json.loads(shown) == {"user_id": HOSTILE_USER}
