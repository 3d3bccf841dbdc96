"""The operations UI over HTTP: public shells, a token-protected JSON API, static assets."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from observability.web import STATIC_DIR
from tests.observability.dashboards.support import TOKEN, Stack, make_stack

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = make_stack(tmp_path)
    yield built
    built.close()


@pytest.fixture
def client(stack: Stack) -> Iterator[TestClient]:
    with TestClient(stack.app, raise_server_exceptions=False) as c:
        for path in ("/hello", "/slow", "/boom", "/missing"):
            c.get(path)
        stack.tracker.flush()
        stack.pipeline.flush()
        yield c


API_PATHS = (
    "/ops/api/session",
    "/ops/api/dashboards",
    "/ops/api/dashboards/api-performance?range=15m",
    "/ops/api/routes?route=GET%20/hello",
    "/ops/api/errors",
    "/ops/api/alerts",
    "/ops/api/requests/abc/logs",
)


@pytest.mark.parametrize("path", API_PATHS)
def test_every_api_route_needs_the_token(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    answer = client.get(path, headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "path",
    [
        "/ops/login",
        "/ops/dashboards/system-health",
        "/ops/errors",
        "/ops/errors/abc",
        "/ops/requests/r1",
        "/ops/alerts",
        "/ops/routes",
    ],
)
def test_pages_are_data_free_shells_under_a_strict_csp(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    html = page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # no inline script
    assert "http://" not in html
    assert "https://" not in html
    assert "/ops/static/vendor/uplot/uPlot.iife.min.js" in html
    assert "card processor" not in html
    assert TOKEN not in html


def test_index_redirects_to_the_first_dashboard(client: TestClient) -> None:
    answer = client.get("/ops", follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"] == "/ops/dashboards/system-health"
    assert client.get("/ops/dashboards/nope").status_code == 404


def test_static_assets_are_served_and_vendored_with_licence(client: TestClient) -> None:
    js = client.get("/ops/static/vendor/uplot/uPlot.iife.min.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    assert "v1.6.32" in js.text[:100]
    assert client.get("/ops/static/vendor/uplot/uPlot.min.css").status_code == 200
    assert "MIT" in (STATIC_DIR / "vendor" / "uplot" / "LICENSE").read_text()
    assert client.get("/ops/static/ops.js").status_code == 200
    assert client.get("/ops/static/../ui.py").status_code == 404
    assert client.get("/ops/static/%2e%2e/ui.py").status_code == 404
    assert client.get("/ops/static/nope.js").status_code == 404


def test_ui_script_never_parses_server_text_as_html() -> None:
    script = (STATIC_DIR / "ops.js").read_text()
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "eval(" not in script


def test_dashboard_json_and_range_validation(client: TestClient) -> None:
    board = client.get("/ops/api/dashboards/api-performance?range=15m", headers=AUTH).json()
    assert board["range"] == "15m"
    assert len(board["panels"]) == 7
    rate = next(p for p in board["panels"] if p["slug"] == "request-rate")
    assert any(v for v in rate["series"][0]["values"])
    bad = client.get("/ops/api/dashboards/api-performance?range=2d", headers=AUTH)
    assert bad.status_code == 422
    assert client.get("/ops/api/dashboards/nope", headers=AUTH).status_code == 404
    # One process (SQLite): the page covers all of it and says so, whichever instance is asked.
    assert board["instance"] == "all"
    assert len(board["instances"]) == 1  # this process
    one = client.get("/ops/api/dashboards/api-performance?instance=other", headers=AUTH).json()
    assert one["instance"] == "all"
    too_long = client.get(f"/ops/api/dashboards/api-performance?instance={'x' * 161}", headers=AUTH)
    assert too_long.status_code == 422


def test_drill_down_from_error_group_to_the_requests_log_lines(client: TestClient) -> None:
    groups = client.get("/ops/api/errors", headers=AUTH).json()["groups"]
    boom = next(g for g in groups if g["type"].endswith("Boom"))
    detail = client.get(f"/ops/api/errors/{boom['fingerprint']}", headers=AUTH).json()
    request_id = detail["occurrences"][0]["request_id"]
    logs = client.get(f"/ops/api/requests/{request_id}/logs", headers=AUTH).json()
    events = [line["event"] for line in logs["lines"]]
    assert "about_to_fail" in events
    assert "request_completed" in events
    assert all(line["request_id"] == request_id for line in logs["lines"])
    assert client.get("/ops/api/errors/unknown", headers=AUTH).status_code == 404


def test_route_drill_down_and_alerts(client: TestClient) -> None:
    route = client.get("/ops/api/routes?route=GET%20/slow&range=15m", headers=AUTH).json()
    labels = [s["label"] for s in route["latency"]["series"]]
    assert labels == ["p50", "p95", "p99"]
    assert any(v for v in route["latency"]["series"][2]["values"])
    alerts = client.get("/ops/api/alerts", headers=AUTH).json()
    assert alerts["firing"][0]["name"] == "HighErrorRate"
    assert set(alerts) == {"firing", "pending", "silences", "notifications", "available"}


def test_alerts_from_evaluator_splits_states_and_serialises_records() -> None:
    from dataclasses import dataclass
    from types import SimpleNamespace

    from observability.web import alerts_from_evaluator

    @dataclass
    class Record:
        at: float
        receiver: str
        status: str

    class Silence:
        def to_dict(self) -> dict[str, object]:
            return {"id": "s1", "matchers": ["alertname=X"]}

    log = SimpleNamespace(recent=lambda n: [Record(1.0, "slack", "sent")][:n])
    evaluator = SimpleNamespace(
        active_alerts=lambda: [
            {"alertname": "A", "state": "firing"},
            {"alertname": "B", "state": "pending"},
            {"alertname": "C", "state": "resolved"},
        ],
        silences=lambda: [Silence()],
        notification_log=log,
    )
    view = alerts_from_evaluator(evaluator)
    assert [a["alertname"] for a in view["firing"]] == ["A"]
    assert [a["alertname"] for a in view["pending"]] == ["B"]
    assert view["silences"] == [{"id": "s1", "matchers": ["alertname=X"]}]
    assert view["notifications"] == [{"at": 1.0, "receiver": "slack", "status": "sent"}]
