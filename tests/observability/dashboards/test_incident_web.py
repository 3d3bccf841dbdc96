"""The incident page of the operations UI over HTTP: a data-free shell, and its evidence JSON
behind the same token as every other /api route (404 for an alert the provider does not know)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from experimentation_platform.telemetry.dashboards import DASHBOARDS
from observability.dashboards.data import DashboardData
from observability.incident import alert_from_view, gather_evidence
from observability.metrics.windows import RollingWindows
from observability.web.ui import IncidentProvider, build_ops_ui, static_token_check, token_auth

TOKEN = "incident-test-admin-key-51c2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_client(provider: IncidentProvider | None) -> TestClient:
    windows = RollingWindows()
    for _ in range(9):
        windows.observe_request("GET", "/pay", 200, 0.01)
    windows.observe_request("GET", "/pay", 500, 0.02)
    app = FastAPI()
    app.include_router(
        build_ops_ui(
            DashboardData(DASHBOARDS, windows=windows),
            auth=token_auth(static_token_check(TOKEN)),
            incident_provider=provider,
        )
    )
    return TestClient(app)


class Provider:
    """Real evidence (gather_evidence over rolling windows) for the alerts it knows."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.windows = RollingWindows()
        self.windows.observe_request("GET", "/pay", 500, 0.02)
        now = time.time()
        self.known = {
            "dependency_not_ready": {
                "alertname": "dependency_not_ready",
                "labels": {"dependency": "database"},
                "state": "firing",
                "active_since": now - 60,
                "fired_at": now - 30,
                "summary": "Dependency database not ready for over a minute",
            },
            "disk_saturation|mount=/var": {
                "alertname": "disk_saturation",
                "key": "disk_saturation|mount=/var",
                "labels": {"mount": "/var"},
                "state": "pending",
                "active_since": now - 10,
            },
        }

    def __call__(self, alert: str) -> Mapping[str, Any] | None:
        self.asked.append(alert)
        view = self.known.get(alert)
        if view is None:
            return None
        evidence = gather_evidence(alert_from_view(view), windows=self.windows).to_dict()
        return {**evidence, "links": {"runbook": "https://runbook.test/#x", "dashboard": None}}


def test_incident_json_needs_the_token_and_404s_an_unknown_alert() -> None:
    provider = Provider()
    with make_client(provider) as client:
        path = "/ops/api/incidents/dependency_not_ready"
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert provider.asked == []  # nothing is gathered for an unauthenticated caller

        answer = client.get(path, headers=AUTH)
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        body = answer.json()
        assert body["available"] is True
        assert body["alert"]["alertname"] == "dependency_not_ready"
        assert body["alert"]["labels"] == {"dependency": "database"}
        assert body["dependencies"] == []  # no dependency signal given: none is claimed
        assert body["headline"]
        assert body["links"]["runbook"] == "https://runbook.test/#x"
        assert body["failing_routes"][0]["route"] == "GET /pay"

        assert client.get("/ops/api/incidents/no_such_alert", headers=AUTH).status_code == 404


def test_an_alert_key_with_a_slash_reaches_the_provider_whole() -> None:
    provider = Provider()
    with make_client(provider) as client:
        answer = client.get("/ops/api/incidents/disk_saturation%7Cmount=%2Fvar", headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert answer.json()["alert"]["labels"] == {"mount": "/var"}
        assert provider.asked == ["disk_saturation|mount=/var"]
        page = client.get("/ops/incidents/disk_saturation%7Cmount=%2Fvar")
        assert page.status_code == 200
        assert 'data-name="disk_saturation|mount=/var"' in page.text


def test_without_a_provider_the_page_says_evidence_is_not_connected() -> None:
    with make_client(None) as client:
        answer = client.get("/ops/api/incidents/anything", headers=AUTH)
        assert answer.status_code == 200
        assert answer.json() == {"available": False}


def test_incident_page_is_a_data_free_shell_with_the_name_escaped() -> None:
    with make_client(Provider()) as client:
        page = client.get("/ops/incidents/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        assert page.status_code == 200
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        html = page.text
        assert "<script>alert(1)" not in html
        assert 'data-name="&lt;script&gt;alert(1)&lt;/script&gt;"' in html
        assert 'data-page="incident"' in html
        # The incident page belongs to the Alerts section of the navigation.
        assert '<a href="/ops/alerts" aria-current="page">Alerts</a>' in html
