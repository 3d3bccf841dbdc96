"""Property-based API testing from the OpenAPI document: no generated request may cause a 500.

Runs with an admin key (so requests reach the handlers, not just the auth check) against a
platform with a running experiment and a flag, on SQLite. The app is built at import time
because schemathesis collects one test per operation from a schema loaded at collection.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from experimentation_platform.app import create_app
from experimentation_platform.storage.db import migrate
from tests.support.platform import backend_settings

_tmp = Path(tempfile.mkdtemp(prefix="ep-schemathesis-"))
_settings = backend_settings(_tmp, f"sqlite:///{_tmp / 'p.db'}", False, "x:")
migrate(_settings.resolved_database_url)
app = create_app(_settings)
_platform = app.state.platform
ADMIN = {"Authorization": f"Bearer {_platform.keys.create('admin')[1]}"}
_client = TestClient(app)
_client.post(
    "/api/v1/experiments",
    json={
        "key": "exp",
        "name": "n",
        "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
    },
    headers=ADMIN,
)
_client.post("/api/v1/experiments/exp/start", headers=ADMIN)
_client.post("/api/v1/flags", json={"key": "f", "enabled": True}, headers=ADMIN)

# The self-test endpoint answers 500 by design: it exists to prove the error pipeline.
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(
    path="/api/v1/ops/selftest/error"
)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_causes_a_server_error(case: schemathesis.Case) -> None:
    response = case.call(headers=ADMIN)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    if response.status_code >= 400:
        body = response.json()
        header = response.headers["x-request-id"]  # schemathesis gives header values as lists
        assert [body["request_id"]] == (header if isinstance(header, list) else [header])
        assert body["error"]["message"]
