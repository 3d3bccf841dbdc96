"""Grafana JSON: its structure, the committed files, and every PromQL expression evaluated by a
real Prometheus scraping a small instrumented app."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI, HTTPException, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from experimentation_platform.storage.cache import MemoryCache
from experimentation_platform.telemetry.dashboards import DASHBOARDS
from observability.asgi import ObservabilityMiddleware, RequestRecord
from observability.dashboards.grafana import (
    grafana_context,
    render_grafana_dashboard,
    render_grafana_files,
)
from observability.dashboards.model import Dashboard, Panel
from observability.metrics import names
from observability.metrics.cache import CacheMetrics
from observability.metrics.sqlalchemy import instrument_engine
from observability.query.model import ErrorGroups, LatencyQuantile, RequestRate, route_filter
from observability.query.promql import promql
from tests.support.servers import LOOPBACK, ManagedProcess, free_port, require_binary, wait_for_port

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "grafana"
MUST_HAVE_DATA = {"api-performance", "system-health"}


def test_every_dashboard_renders_with_templated_datasource_and_filters() -> None:
    uids = set()
    for board in DASHBOARDS:
        rendered = render_grafana_dashboard(board)
        uids.add(rendered["uid"])
        names = [v["name"] for v in rendered["templating"]["list"]]
        # A dashboard whose rows link into the app also asks for the app's URL.
        links = any(p.link for p in board.panels)
        assert names == ["datasource", "instance", "route", *(["app_url"] if links else [])]
        assert len(rendered["panels"]) == len(board.panels)
        for panel in rendered["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0
            assert grid["x"] + grid["w"] <= 24
            if panel["type"] == "text":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert 'instance=~"$instance"' in target["expr"]
    assert len(uids) == len(DASHBOARDS)


def test_http_expressions_filter_by_route_variable_or_by_a_given_route() -> None:
    assert 'route=~"$route"' in promql(RequestRate(), grafana_context())
    one = promql(LatencyQuantile(0.99, route_filter("GET /experiments/{key}")), grafana_context())
    assert 'method="GET"' in one
    assert 'route="/experiments/{key}"' in one
    assert "histogram_quantile(0.99" in one


def test_store_backed_panels_become_text_panels_that_point_to_the_ui() -> None:
    board = Dashboard(
        "t",
        "T",
        "d",
        (Panel("table", "Groups", "what it means", (ErrorGroups(),)),),
    )
    panel = render_grafana_dashboard(board)["panels"][0]
    assert panel["type"] == "text"
    assert "/ops/errors" in panel["options"]["content"]


def test_committed_files_equal_a_fresh_render() -> None:
    fresh = render_grafana_files(DASHBOARDS)
    committed = {p.name: p.read_text() for p in DEPLOY.glob("*.json")}
    assert committed == fresh, "run the renderer: deploy/grafana is stale (see docs/dashboards.md)"


# -- real Prometheus ---------------------------------------------------------------------------
def instrumented_app(registry: CollectorRegistry, engine: sa.Engine) -> FastAPI:
    """Minimal instruments named like the names modules (the real metrics module is separate);
    the real database and cache instruments, fed by a real SQLite engine and cache."""
    instrument_engine(engine, registry, multiprocess=False)
    cache = MemoryCache(timer=CacheMetrics(registry).timed)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v INTEGER)"))
    requests = Counter(
        names.HTTP_REQUESTS, "requests", ["method", "route", "status_class"], registry=registry
    )
    duration = Histogram(names.HTTP_DURATION, "duration", ["method", "route"], registry=registry)
    Gauge(names.SYSTEM_CPU, "cpu", registry=registry).set(0.3)
    Gauge(names.SYSTEM_MEMORY, "memory", registry=registry).set(0.5)
    Gauge(names.SYSTEM_DISK, "disk", ["mount"], registry=registry).labels("/").set(0.6)
    network = Counter(names.SYSTEM_NETWORK, "net", ["direction"], registry=registry)
    Gauge(names.EVENT_LOOP_LAG, "lag", registry=registry).set(0.002)
    Gauge(names.SERVICE_READY, "ready", ["dependency"], registry=registry).labels("database").set(1)
    check = Gauge(names.READINESS_CHECK_DURATION, "check", ["dependency"], registry=registry)
    check.labels("database").set(0.003)
    Gauge(names.INSTANCE_UP, "heartbeats", ["instance"], registry=registry).labels("a").set(1)
    errors = Counter(names.ERROR_EVENTS, "errors", ["severity"], registry=registry)
    # The telemetry collector always exports reason="none" (0) before the first drop.
    Counter(names.LOG_EVENTS_DROPPED, "dropped", ["reason"], registry=registry).labels("none")

    def observe(record: RequestRecord) -> None:
        requests.labels(record.method, record.route, f"{record.status // 100}xx").inc()
        duration.labels(record.method, record.route).observe(record.duration_s)
        network.labels("sent").inc(record.bytes_out)
        network.labels("received").inc(record.bytes_in + 100)
        if record.status >= 500:
            errors.labels("high").inc()

    app = FastAPI()

    @app.get("/hello")
    def hello() -> dict[str, str]:
        with engine.begin() as conn:  # one statement of each operation the panels show
            conn.execute(sa.text("INSERT INTO t (v) VALUES (1)"))
            conn.execute(sa.text("UPDATE t SET v = 2"))
            conn.execute(sa.text("SELECT count(*) FROM t")).scalar()
            conn.execute(sa.text("DELETE FROM t"))
        if cache.get("hello") is None:
            cache.set("hello", {"v": 1})
        return {"hello": "world"}

    @app.get("/boom")
    def boom() -> None:
        raise HTTPException(503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    app.add_middleware(ObservabilityMiddleware, observers=[observe])
    return app


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.sqlite'}")
    config = uvicorn.Config(
        instrumented_app(CollectorRegistry(), engine),
        host=LOOPBACK,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=5) as client:
            for _ in range(10_000):
                if stop.is_set():
                    return
                for path in ("/hello", "/hello", "/hello", "/boom", "/nope"):
                    with contextlib.suppress(httpx.HTTPError):
                        client.get(path)
                stop.wait(0.02)

    load = threading.Thread(target=traffic, daemon=True)
    load.start()
    yield f"{LOOPBACK}:{port}"
    stop.set()
    load.join(timeout=10)
    server.should_exit = True
    thread.join(timeout=10)
    engine.dispose()


@pytest.fixture
def prometheus(app_url: str, tmp_path: Path) -> Iterator[str]:
    binary = require_binary("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: app\n    static_configs: [{{targets: ['{app_url}']}}]\n"
    )
    port = free_port()
    process = ManagedProcess(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        cwd=tmp_path,
    )
    with process:
        wait_for_port(port)
        yield f"http://{LOOPBACK}:{port}"


def concrete(expr: str) -> str:
    """What Grafana substitutes before sending: all instances and routes, short windows."""
    return (
        expr.replace("$__rate_interval", "15s")
        .replace("$__range", "1m")
        .replace('"$instance"', '".*"')
        .replace('"$route"', '".*"')
    )


def query(base: str, expr: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.integration
def test_every_panel_expression_parses_and_api_and_system_panels_have_data(
    prometheus: str,
) -> None:
    targets = [
        (board.name, panel["title"], concrete(target["expr"]))
        for board in DASHBOARDS
        for panel in render_grafana_dashboard(board)["panels"]
        for target in panel.get("targets", [])
    ]
    assert not any("$" in expr for _, _, expr in targets)
    pending = {(b, t, e) for b, t, e in targets if b in MUST_HAVE_DATA}
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:  # rate() needs a few scrapes first
        for item in sorted(pending):
            body = query(prometheus, item[2])
            assert body["status"] == "success", (item, body)
            if body["data"]["result"]:
                pending.discard(item)
        time.sleep(1)
    assert not pending, f"no data for: {sorted((b, t) for b, t, _ in pending)}"
    for board, title, expr in targets:  # business/error panels may be empty but must parse
        body = query(prometheus, expr)
        assert body["status"] == "success", (board, title, expr, body)
