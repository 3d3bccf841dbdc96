"""Who may call every route: one decision per route, checked for every role and for no key.

A route added to the app without a line in ACCESS fails `test_every_route_has_a_decision`, so
nobody ships an endpoint whose audience was never decided.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from experimentation_platform.settings import load_settings
from experimentation_platform.telemetry.wiring import platform_access
from tests.support.platform import Instance, running_instance

PUBLIC = frozenset({"none", "viewer", "client", "admin"})
READER = frozenset({"viewer", "client", "admin"})
OPERATOR = frozenset({"viewer", "admin"})
CLIENT = frozenset({"client", "admin"})
ADMIN = frozenset({"admin"})

ACCESS: dict[tuple[str, str], frozenset[str]] = {
    # OpenAPI pages and probes: open.
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    # The product API.
    ("POST", "/api/v1/experiments"): ADMIN,
    ("GET", "/api/v1/experiments"): READER,
    ("GET", "/api/v1/experiments/{key}"): READER,
    ("PATCH", "/api/v1/experiments/{key}"): ADMIN,
    ("POST", "/api/v1/experiments/{key}/start"): ADMIN,
    ("POST", "/api/v1/experiments/{key}/pause"): ADMIN,
    ("POST", "/api/v1/experiments/{key}/complete"): ADMIN,
    ("GET", "/api/v1/experiments/{key}/results"): READER,
    ("POST", "/api/v1/assignments"): CLIENT,  # records exposures
    ("POST", "/api/v1/flags"): ADMIN,
    ("GET", "/api/v1/flags"): READER,
    ("GET", "/api/v1/flags/{key}"): READER,
    ("PATCH", "/api/v1/flags/{key}"): ADMIN,
    ("GET", "/api/v1/flags/{key}/evaluation"): CLIENT,
    ("POST", "/api/v1/flags/evaluations"): CLIENT,
    ("POST", "/api/v1/events"): CLIENT,
    # Operator API: reads for viewers, every change for admins.
    ("GET", "/api/v1/ops/log-levels"): OPERATOR,
    ("PUT", "/api/v1/ops/log-levels"): ADMIN,
    ("GET", "/api/v1/ops/faults"): OPERATOR,
    ("PUT", "/api/v1/ops/faults"): ADMIN,
    ("DELETE", "/api/v1/ops/faults"): ADMIN,
    ("GET", "/api/v1/ops/windows"): OPERATOR,
    ("GET", "/api/v1/ops/incidents/{alert}"): OPERATOR,
    ("POST", "/api/v1/ops/selftest/error"): ADMIN,
    ("GET", "/api/v1/ops/errors"): OPERATOR,
    ("GET", "/api/v1/ops/errors/{fingerprint}"): OPERATOR,
    ("POST", "/api/v1/ops/errors/{fingerprint}/{action}"): ADMIN,
    ("GET", "/api/v1/keys"): ADMIN,
    ("POST", "/api/v1/keys"): ADMIN,
    ("POST", "/api/v1/keys/{key_id}/revoke"): ADMIN,
    # A scraper's token or an operator's key (the toolkit's /metrics).
    ("*", "/metrics"): OPERATOR,
    # The /ops pages are shells holding no data; their data comes from /ops/api/*.
    ("GET", "/ops"): PUBLIC,
    ("GET", "/ops/"): PUBLIC,
    ("GET", "/ops/login"): PUBLIC,
    ("GET", "/ops/dashboards/{name}"): PUBLIC,
    ("GET", "/ops/routes"): PUBLIC,
    ("GET", "/ops/errors"): PUBLIC,
    ("GET", "/ops/errors/{fingerprint}"): PUBLIC,
    ("GET", "/ops/requests/{request_id}"): PUBLIC,
    ("GET", "/ops/alerts"): PUBLIC,
    ("GET", "/ops/incidents/{alert:path}"): PUBLIC,
    ("GET", "/ops/static/{path:path}"): PUBLIC,
    # Documentation shipped with the release (the runbook and the documents it links to).
    ("GET", "/ops/runbook"): PUBLIC,
    ("GET", "/ops/docs/{name}"): PUBLIC,
    ("GET", "/ops/api/session"): OPERATOR,
    ("GET", "/ops/api/dashboards"): OPERATOR,
    ("GET", "/ops/api/dashboards/{name}"): OPERATOR,
    ("GET", "/ops/api/routes"): OPERATOR,
    ("GET", "/ops/api/errors"): OPERATOR,
    ("GET", "/ops/api/errors/{fingerprint}"): OPERATOR,
    ("POST", "/ops/api/errors/{fingerprint}/{action}"): ADMIN,
    ("GET", "/ops/api/requests/{request_id}/logs"): OPERATOR,
    ("GET", "/ops/api/alerts"): OPERATOR,
    ("GET", "/ops/api/incidents/{alert:path}"): OPERATOR,
    ("GET", "/ops/api/instances"): OPERATOR,
}

# Path parameters filled in to call each route (values the routes accept in shape).
_PARAMS = {
    "key": "demo",
    "alert": "api_latency_page",
    "fingerprint": "abc123",
    "action": "resolve",
    "key_id": "0123456789ab",
    "name": "system-health",
    "request_id": "r-1",
    "path": "ops.css",
}


def _walk(routes: Iterable[Any]) -> Iterator[tuple[str, str]]:
    for route in routes:
        nested = getattr(route, "effective_candidates", None)  # an included router
        if nested is not None:
            yield from _walk(nested())
            continue
        original = getattr(route, "original_route", route)
        methods = getattr(original, "methods", None) or {"*"}
        for method in sorted(set(methods) - {"HEAD"}):
            yield method, route.path


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, dict[str, Any]]]:
    home: Path = tmp_path_factory.mktemp("access")
    settings = load_settings(
        var_dir=home,
        log_dir=home / "log",
        log_to_stdout=False,
        fault_injection=True,
        auth_max_failures=10_000,  # this test sends many refused calls on purpose
    )
    with running_instance(settings) as api:
        viewer = api.platform.keys.create("viewer", "test")[1]
        headers = {
            "none": {},
            "viewer": {"Authorization": f"Bearer {viewer}"},
            "client": api.user,
            "admin": api.admin,
        }
        yield api, headers


def test_every_route_has_a_decision(instance: tuple[Instance, dict[str, Any]]) -> None:
    api, _ = instance
    routes = set(_walk(api.client.app.routes))  # type: ignore[attr-defined]
    assert routes - set(ACCESS) == set(), "routes without an access decision"
    assert set(ACCESS) - routes == set(), "decisions for routes that no longer exist"


@pytest.mark.parametrize(("method", "template"), sorted(ACCESS))
def test_each_role_gets_what_the_table_says(
    instance: tuple[Instance, dict[str, Any]], method: str, template: str
) -> None:
    api, headers = instance
    allowed = ACCESS[(method, template)]
    path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: _PARAMS[m.group(1)], template)
    for role, role_headers in headers.items():
        response = api.client.request(
            "GET" if method == "*" else method, path, headers=role_headers
        )
        if role in allowed:
            assert response.status_code not in (401, 403), (role, response.text[:200])
        else:
            if template == "/metrics":  # the toolkit's scrape endpoint answers in plain text
                assert response.status_code in (401, 403), (role, response.status_code)
                continue
            # The toolkit's /ops routes ask "is this an operator (admin)?" of a key: a valid key
            # of another role is answered as a wrong one there (401), a refusal all the same.
            wrong_role = (401, 403) if template.startswith("/ops/") else (403,)
            assert response.status_code in ((401,) if role == "none" else wrong_role), (
                role,
                response.status_code,
                response.text[:200],
            )
            assert response.json()["request_id"] == response.headers["x-request-id"]


def test_a_viewer_sees_the_ops_ui_but_cannot_change_anything(
    instance: tuple[Instance, dict[str, Any]],
) -> None:
    api, headers = instance
    viewer = headers["viewer"]
    assert api.client.get("/ops/api/session", headers=viewer).json()["ok"] is True
    assert api.client.get("/api/v1/ops/log-levels", headers=viewer).status_code == 200
    refused = api.client.put("/api/v1/ops/log-levels", json={"level": "DEBUG"}, headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert (
        api.client.get("/api/v1/ops/log-levels", headers=viewer).json()
        == api.client.get("/api/v1/ops/log-levels", headers=headers["admin"]).json()
    )


def test_platform_access_names_the_operator_role_of_a_token(
    instance: tuple[Instance, dict[str, Any]],
) -> None:
    """The callable an operator surface (instrument()'s /ops, /metrics) asks about a token."""
    api, headers = instance
    access = platform_access(api.platform)
    token = {role: h["Authorization"].removeprefix("Bearer ") for role, h in headers.items() if h}
    assert access(token["admin"]) == "admin"
    assert access(token["viewer"]) == "viewer"
    assert access(token["client"]) is None
    assert access("epk_000000000000.nope") is None
    assert access("") is None
