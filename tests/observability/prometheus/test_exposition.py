"""The /metrics endpoint: token or authorize callback required, formats, gzip, own address."""

from __future__ import annotations

import gzip

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from observability.metrics.endpoint import MetricsEndpoint, metrics_endpoint, serve_metrics
from tests.support.servers import free_port

TOKEN = "s3cret-scrape-token"


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("widgets_total", "Widgets made", registry=registry).inc(7)
    return registry


def client_for(endpoint: MetricsEndpoint) -> TestClient:
    app = FastAPI()
    app.add_route("/metrics", endpoint, include_in_schema=False)
    return TestClient(app)


def test_no_token_or_wrong_token_gets_401_json(registry: CollectorRegistry) -> None:
    client = client_for(metrics_endpoint(registry, token=TOKEN))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"
        assert "widgets" not in response.text


def test_bearer_token_gets_prometheus_text(registry: CollectorRegistry) -> None:
    client = client_for(metrics_endpoint(registry, token=TOKEN))
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["widgets"].samples[0].value == 7


def test_openmetrics_when_the_accept_header_asks(registry: CollectorRegistry) -> None:
    client = client_for(metrics_endpoint(registry, token=TOKEN))
    # the Accept header Prometheus 2.x sends
    accept = (
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
        "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    )
    response = client.get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}", "Accept": accept}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert "widgets_total 7.0" in response.text
    assert response.text.endswith("# EOF\n")


def test_authorize_callback_accepts_admin_keys_by_bearer_or_x_api_key(
    registry: CollectorRegistry,
) -> None:
    seen: list[str] = []

    def authorize(key: str) -> bool:
        seen.append(key)
        return key == "admin-key"

    client = client_for(metrics_endpoint(registry, token=None, authorize=authorize))
    assert client.get("/metrics", headers={"Authorization": "Bearer admin-key"}).status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": "admin-key"}).status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": "user-key"}).status_code == 401
    assert client.get("/metrics").status_code == 401
    assert seen == ["admin-key", "admin-key", "user-key"]


def test_a_failing_authorize_callback_denies_and_is_counted(registry: CollectorRegistry) -> None:
    def broken(_key: str) -> bool:
        raise ConnectionError("key store down")

    endpoint = metrics_endpoint(registry, authorize=broken)
    response = client_for(endpoint).get("/metrics", headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
    assert endpoint.errors == 1


def test_refuses_to_be_open_by_accident(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="token or an authorize"):
        metrics_endpoint(registry, token=None, authorize=None)
    public = client_for(metrics_endpoint(registry, public=True))
    assert public.get("/metrics").status_code == 200


def test_gzip_when_accepted_and_a_provider_called_per_scrape(registry: CollectorRegistry) -> None:
    calls: list[int] = []

    def provider() -> CollectorRegistry:
        calls.append(1)
        return registry

    client = client_for(metrics_endpoint(provider, token=TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept-Encoding": "gzip"}
    with client.stream("GET", "/metrics", headers=headers) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert b"widgets_total 7.0" in gzip.decompress(raw)
    client.get("/metrics", headers=headers)
    assert len(calls) == 2


def test_only_get_and_head(registry: CollectorRegistry) -> None:
    client = client_for(metrics_endpoint(registry, token=TOKEN))
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/metrics", headers=headers).status_code == 405
    head = client.head("/metrics", headers=headers)
    assert head.status_code == 200
    assert head.content == b""


def test_a_broken_collector_answers_500_not_a_crash() -> None:
    class Broken:
        def collect(self) -> list[object]:
            raise RuntimeError("collector bug")

    registry = CollectorRegistry()
    registry.register(Broken())  # type: ignore[arg-type]
    endpoint = metrics_endpoint(registry, token=TOKEN)
    response = client_for(endpoint).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "exposition_failed"
    assert endpoint.errors == 1


def test_separate_listen_address(registry: CollectorRegistry) -> None:
    port = free_port()
    server = serve_metrics(registry, host="127.0.0.1", port=port)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert response.status_code == 200
        assert "widgets_total 7.0" in response.text
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_separate_listen_address_with_a_token(registry: CollectorRegistry) -> None:
    port = free_port()
    server = serve_metrics(registry, port=port, token=TOKEN)
    try:
        url = f"http://127.0.0.1:{port}/"
        assert httpx.get(url, timeout=5).status_code == 401
        assert (
            httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).status_code
            == 200
        )
    finally:
        server.stop()
