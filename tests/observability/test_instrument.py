"""instrument(app, config): one call wires the toolkit into a Starlette or FastAPI app; access
to /metrics and /ops follows the config; the lifespan starts and closes every part."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from observability import AlertSettings, LogSettings, ObservabilityConfig, instrument
from observability.settings import Role


def _config(tmp_path: Path, **changes: Any) -> ObservabilityConfig:
    return ObservabilityConfig(
        service="shop",
        data_dir=tmp_path,
        log=LogSettings(stdout=False),
        alerts=AlertSettings(interval_seconds=0.2),
        **changes,
    )


def _starlette_app() -> Starlette:
    def item(request: Request) -> JSONResponse:
        if request.path_params["item_id"] == "0":
            raise RuntimeError("item zero is cursed")
        return JSONResponse({"id": request.path_params["item_id"]})

    return Starlette(routes=[Route("/items/{item_id}", item)])


def test_a_starlette_app_gets_route_templates_metrics_ops_and_error_capture(
    tmp_path: Path,
) -> None:
    app = _starlette_app()
    observability = instrument(app, _config(tmp_path, metrics_token="m", admin_token="a"))
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/items/7").status_code == 200
        failed = client.get("/items/0")
        assert failed.status_code == 500
        assert failed.json()["request_id"] == failed.headers["x-request-id"]
        metrics = client.get("/metrics", headers={"Authorization": "Bearer m"}).text
        assert 'route="/items/{item_id}",status_class="5xx"} 1.0' in metrics
        board = client.get(
            "/ops/api/dashboards/api-performance", headers={"Authorization": "Bearer a"}
        )
        assert board.status_code == 200
        assert {p["title"] for p in board.json()["panels"]} >= {"Request rate"}
        assert observability.errors.flush(10)
        [group] = observability.store.errors.list_groups()
        assert group.type == "RuntimeError"
        assert group.count == 1  # the failed request only
        # The rolling windows (dashboards, SLO alerts) hold product traffic: /metrics and /ops
        # were served and counted by Prometheus, but they are operator routes.
        routes = observability.windows.snapshot()["windows"]["1m"]["routes"]
        assert {name: route["requests"] for name, route in routes.items()} == {
            "GET /items/{item_id}": 2
        }
        assert observability.evaluator.running  # started by the lifespan
    assert not observability.evaluator.running  # stopped and closed with the app


def test_nothing_configured_means_nobody_gets_in(tmp_path: Path) -> None:
    app = FastAPI()
    instrument(app, _config(tmp_path))
    with TestClient(app) as client:
        for path in ("/metrics", "/ops/api/dashboards", "/ops/api/errors", "/ops/api/alerts"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": "Bearer "}).status_code == 401
        assert client.get("/ops/login").status_code == 200  # a shell without data


def test_access_callable_and_static_tokens_grant_operator_roles(tmp_path: Path) -> None:
    def access(token: str) -> Role | None:
        return "viewer" if token == "team-key" else None

    app = FastAPI()
    instrument(app, _config(tmp_path, viewer_token="v", access=access))
    with TestClient(app) as client:
        for token, status in (("team-key", 200), ("v", 200), ("guess", 401)):
            headers = {"Authorization": f"Bearer {token}"}
            assert client.get("/ops/api/dashboards", headers=headers).status_code == status
            assert client.get("/metrics", headers=headers).status_code == status


def test_instrumenting_twice_or_a_bare_asgi_callable_is_refused(tmp_path: Path) -> None:
    app = FastAPI()
    observability = instrument(app, _config(tmp_path))
    try:
        with pytest.raises(RuntimeError, match="already instrumented"):
            instrument(app, _config(tmp_path))

        async def bare(scope: Any, receive: Any, send: Any) -> None:
            return None

        with pytest.raises(TypeError, match="Starlette or FastAPI"):
            instrument(bare, _config(tmp_path))  # type: ignore[arg-type]
    finally:
        observability.close()


def test_the_apps_own_lifespan_runs_inside_the_toolkits(tmp_path: Path) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        events.append(f"app start, evaluator running: {observability.evaluator.running}")
        yield
        events.append("app stop")

    app = FastAPI(lifespan=lifespan)
    observability = instrument(app, _config(tmp_path))
    with TestClient(app):
        events.append("serving")
    assert events == ["app start, evaluator running: True", "serving", "app stop"]
    assert not observability.evaluator.running


def test_only_admins_change_an_error_groups_status(tmp_path: Path) -> None:
    app = _starlette_app()
    observability = instrument(app, _config(tmp_path, admin_token="a", viewer_token="v"))
    admin, viewer = {"Authorization": "Bearer a"}, {"Authorization": "Bearer v"}
    with TestClient(app, raise_server_exceptions=False) as client:
        client.get("/items/0")
        assert observability.errors.flush(10)
        [group] = client.get("/ops/api/errors", headers=viewer).json()["groups"]
        path = f"/ops/api/errors/{group['fingerprint']}"
        assert client.post(f"{path}/resolve", headers=viewer).status_code == 401
        assert client.get(path, headers=viewer).json()["status"] == "open"
        resolved = client.post(f"{path}/resolve", headers=admin)
        assert resolved.status_code == 200
        assert (resolved.json()["status"], resolved.json()["changed"]) == ("resolved", True)
        assert client.post(f"{path}/nonsense", headers=admin).status_code == 422
        assert client.post("/ops/api/errors/nope/ignore", headers=admin).status_code == 404


def test_an_oversized_body_is_refused_before_anything_reads_it(tmp_path: Path) -> None:
    app = FastAPI()
    read: list[int] = []

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        body = await request.body()
        read.append(len(body))
        return {"bytes": len(body)}

    instrument(app, _config(tmp_path, max_body_bytes=1024, body_limits={"/upload": 2048}))
    with TestClient(app) as client:
        assert client.post("/upload", content=b"x" * 2000).json() == {"bytes": 2000}
        refused = client.post("/upload", content=b"x" * 5000)
        assert refused.status_code == 413
        assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert read == [2000]


def test_the_start_up_heap_is_frozen_while_serving_and_thawed_at_shutdown(tmp_path: Path) -> None:
    """Full collections under load walk only what requests allocate, not the start-up heap."""
    app = FastAPI()

    @app.get("/frozen")
    def frozen() -> dict[str, int]:
        return {"frozen": gc.get_freeze_count()}

    instrument(app, _config(tmp_path))
    with TestClient(app) as client:
        assert client.get("/frozen").json()["frozen"] > 1000
    assert gc.get_freeze_count() == 0
