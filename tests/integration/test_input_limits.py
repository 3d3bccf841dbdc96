"""Bodies are bounded and callers checked before any route reads them, on a real `ep serve`.

Issue 14's attacks: 200 MB without a key took 3.8 s and grew the worker by 600 MB; a 64 MB
non-JSON body without a key was parsed (422) before the key was checked.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.platform import create_key, home_env
from tests.support.raw_http import RawResponse, Served, raw_post, served

MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, dict[str, str]]]:
    home = tmp_path_factory.mktemp("limits")
    env = home_env(home)
    keys = {role: create_key(env, role) for role in ("admin", "client")}
    keys["home"] = str(home)
    with served(env, home) as instance:
        yield instance, keys


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def _error(response: RawResponse, status: int) -> dict[str, object]:
    assert response.status == status, response.body[:300]
    body = response.json()
    assert isinstance(body["error"], dict)
    assert body["request_id"] == response.headers["x-request-id"]
    return body["error"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("with_key", [True, False], ids=["client-key", "no-key"])
def test_64_mb_body_is_refused_without_being_read(
    server: tuple[Served, dict[str, str]], chunked: bool, with_key: bool
) -> None:
    instance, keys = server
    headers = {"Content-Type": "application/json"}
    if with_key:
        headers["Authorization"] = f"Bearer {keys['client']}"
    before = _rss(instance.pid)
    response = raw_post(
        instance.port, "/api/v1/assignments", size=64 * MB, headers=headers, chunked=chunked
    )
    grown = _rss(instance.pid) - before
    if with_key:
        error = _error(response, 413)
        assert error["code"] == "payload_too_large"
        assert error["limit_bytes"] == MB
    else:
        error = _error(response, 401)
        assert error["code"] == "unauthorized"
    # The server answered long before the client could push 64 MB at it.
    assert response.sent < 64 * MB
    assert grown < 8 * MB, f"resident memory grew {grown / MB:.1f} MB"


def test_non_json_body_without_key_gets_401_not_422(server: tuple[Served, dict[str, str]]) -> None:
    instance, _ = server
    response = raw_post(instance.port, "/api/v1/events", size=64 * MB, filler=b"\x00not json")
    assert _error(response, 401)["code"] == "unauthorized"


def test_small_malformed_body_with_key_still_gets_422(
    server: tuple[Served, dict[str, str]],
) -> None:
    instance, keys = server
    response = httpx.post(
        f"{instance.base}/api/v1/assignments",
        content=b"{not json",
        headers={"Authorization": f"Bearer {keys['client']}", "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_the_worst_legal_event_batch_fits_its_route_bound(
    server: tuple[Served, dict[str, str]],
) -> None:
    """1,000 events, every field at its maximum length in characters outside the BMP, encoded
    as Python's json does by default (each character a 12-byte surrogate-pair escape)."""
    instance, keys = server
    wide = "\U0001f600"
    event = {
        "user_id": wide * 200,
        "name": wide * 100,
        "value": -1.7976931348623157e308,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    body = json.dumps({"events": [event] * 1000}).encode()
    assert len(body) > 3 * MB  # far over the general 1 MiB bound
    response = httpx.post(
        f"{instance.base}/api/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {keys['client']}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code == 202, response.text[:300]
    assert response.json() == {"accepted": 1000}


def test_an_ordinary_request_is_untouched(server: tuple[Served, dict[str, str]]) -> None:
    instance, keys = server
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    created = httpx.post(
        f"{instance.base}/api/v1/experiments",
        json={
            "key": "limits",
            "name": "Limits",
            "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text


def test_the_refusals_are_logged_with_their_request_ids(
    server: tuple[Served, dict[str, str]],
) -> None:
    instance, keys = server
    refused = {
        413: raw_post(
            instance.port,
            "/api/v1/flags/evaluations",
            size=2 * MB,
            headers={"Authorization": f"Bearer {keys['client']}"},
        ),
        401: raw_post(instance.port, "/api/v1/flags/evaluations", size=2 * MB),
    }
    log_file = Path(keys["home"]) / "log" / "platform.log"
    wanted = {r.headers["x-request-id"]: status for status, r in refused.items()}
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and seen != wanted:
        for line in log_file.read_text().splitlines():
            event = json.loads(line)
            if event.get("event") == "request_completed" and event.get("request_id") in wanted:
                seen[event["request_id"]] = event["status"]
        time.sleep(0.2)
    assert seen == wanted
