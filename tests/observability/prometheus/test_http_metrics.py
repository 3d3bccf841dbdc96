"""HTTP RED metrics on a bare FastAPI app through the real middleware, driven by TestClient."""

from __future__ import annotations

import math
import random
import re
from bisect import bisect_left

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from observability.asgi import UNMATCHED_ROUTE, ObservabilityMiddleware, RequestRecord
from observability.context import RequestContext
from observability.metrics.cache import CacheMetrics
from observability.metrics.cardinality import LabelGuard
from observability.metrics.endpoint import metrics_endpoint
from observability.metrics.prometheus import (
    DURATION_BUCKETS,
    SIZE_BUCKETS,
    HttpMetrics,
    _bounds,
    _Histogram,
)

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def http(registry: CollectorRegistry) -> HttpMetrics:
    return HttpMetrics(registry)


@pytest.fixture
def client(registry: CollectorRegistry, http: HttpMetrics) -> TestClient:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    @app.get("/teapot", status_code=418)
    async def teapot() -> dict[str, str]:
        return {"short": "stout"}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    @app.get("/in-flight")
    async def in_flight() -> dict[str, float]:
        value = registry.get_sample_value("http_requests_in_flight")
        return {"in_flight": value or 0.0}

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    app.add_route("/metrics", metrics_endpoint(registry, token=TOKEN), include_in_schema=False)
    app.add_middleware(
        ObservabilityMiddleware,  # type: ignore[arg-type]
        observers=[http],
        in_flight=http.in_flight,
        in_flight_exclude=http.excluded,
    )
    return TestClient(app, raise_server_exceptions=False)


def requests_total(registry: CollectorRegistry, method: str, route: str, klass: str) -> float:
    labels = {"method": method, "route": route, "status_class": klass}
    return registry.get_sample_value("http_requests_total", labels) or 0.0


def test_requests_are_counted_by_route_template_and_status_class(
    client: TestClient, registry: CollectorRegistry
) -> None:
    for item in ("1", "2", "three"):
        assert client.get(f"/items/{item}").status_code == 200
    assert client.get("/teapot").status_code == 418
    assert client.get("/boom").status_code == 500

    assert requests_total(registry, "GET", "/items/{item_id}", "2xx") == 3
    assert requests_total(registry, "GET", "/teapot", "4xx") == 1
    assert requests_total(registry, "GET", "/boom", "5xx") == 1
    # the raw path never becomes a label value
    output = client.get("/metrics", headers=AUTH).text
    assert "/items/three" not in output
    assert 'route="/items/{item_id}"' in output


def test_duration_histogram_counts_every_request_in_its_buckets(
    client: TestClient, registry: CollectorRegistry
) -> None:
    for _ in range(5):
        client.get("/items/1")
    labels = {"method": "GET", "route": "/items/{item_id}"}
    assert registry.get_sample_value("http_request_duration_seconds_count", labels) == 5
    assert (
        registry.get_sample_value("http_request_duration_seconds_bucket", {**labels, "le": "+Inf"})
        == 5
    )
    assert (
        registry.get_sample_value("http_request_duration_seconds_bucket", {**labels, "le": "10.0"})
        == 5
    )
    total = registry.get_sample_value("http_request_duration_seconds_sum", labels)
    assert total is not None
    assert total > 0
    # buckets span about 1 ms .. 10 s
    output = client.get("/metrics", headers=AUTH).text
    bounds = re.findall(
        r'http_request_duration_seconds_bucket\{le="([^"]+)",method="GET",route="/items/\{item_id\}"\}',
        output,
    )
    assert bounds[0] == "0.001"
    assert bounds[-2] == "10.0"
    assert bounds[-1] == "+Inf"


def test_request_and_response_sizes_are_observed(
    client: TestClient, registry: CollectorRegistry
) -> None:
    response = client.post("/echo", content=b"x" * 1500)
    assert response.json() == {"received": 1500}
    labels = {"method": "POST", "route": "/echo"}
    assert registry.get_sample_value("http_request_size_bytes_sum", labels) == 1500
    assert registry.get_sample_value("http_response_size_bytes_sum", labels) == len(
        response.content
    )
    assert (
        registry.get_sample_value("http_request_size_bytes_bucket", {**labels, "le": "1000.0"}) == 0
    )
    assert (
        registry.get_sample_value("http_request_size_bytes_bucket", {**labels, "le": "10000.0"})
        == 1
    )


def test_unmatched_paths_share_one_label_value(
    client: TestClient, registry: CollectorRegistry
) -> None:
    for n in range(50):
        assert client.get(f"/scanner/probe-{n}.php").status_code == 404
    assert requests_total(registry, "GET", UNMATCHED_ROUTE, "4xx") == 50
    output = client.get("/metrics", headers=AUTH).text
    assert "probe-" not in output
    assert output.count('route="__unmatched__"') == output.count("__unmatched__")


def test_unknown_methods_fold_into_other(client: TestClient, registry: CollectorRegistry) -> None:
    client.request("BREW", "/teapot")
    client.request("PROPFIND", "/teapot")
    output = client.get("/metrics", headers=AUTH).text
    assert "BREW" not in output
    assert "PROPFIND" not in output
    assert requests_total(registry, "OTHER", "/teapot", "4xx") == 2


def test_metrics_and_health_routes_are_excluded(
    client: TestClient, registry: CollectorRegistry
) -> None:
    client.get("/health/live")
    client.get("/metrics", headers=AUTH)
    client.get("/metrics")  # 401, still not counted
    output = client.get("/metrics", headers=AUTH).text
    assert 'route="/metrics"' not in output
    assert 'route="/health/live"' not in output


def test_in_flight_counts_the_request_being_served(
    client: TestClient, registry: CollectorRegistry
) -> None:
    assert client.get("/in-flight").json() == {"in_flight": 1.0}
    assert registry.get_sample_value("http_requests_in_flight") == 0
    client.get("/boom")  # an exception still decrements
    assert registry.get_sample_value("http_requests_in_flight") == 0


def test_duration_carries_the_trace_id_exemplar_in_openmetrics(client: TestClient) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    client.get("/items/1", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    response = client.get(
        "/metrics", headers={**AUTH, "Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    exemplar_lines = [
        line for line in response.text.splitlines() if f'trace_id="{trace_id}"' in line
    ]
    assert exemplar_lines, "no exemplar in the OpenMetrics output"
    assert all(line.startswith("http_request_duration_seconds_bucket{") for line in exemplar_lines)
    assert response.text.rstrip().endswith("# EOF")
    # plain Prometheus text has no exemplars
    assert trace_id not in client.get("/metrics", headers=AUTH).text


def test_a_route_guard_bounds_route_labels(registry: CollectorRegistry) -> None:
    overflow = Counter("metric_label_overflow_total", "folds", ["metric"], registry=registry)
    guard = LabelGuard(2, on_overflow=lambda metric: overflow.labels(metric).inc(), metric="route")
    http = HttpMetrics(registry, route_guard=guard)
    app = FastAPI()
    for n in range(5):
        app.add_api_route(f"/r{n}", lambda: {"ok": True})
    app.add_middleware(ObservabilityMiddleware, observers=[http])  # type: ignore[arg-type]
    client = TestClient(app)
    for n in range(5):
        client.get(f"/r{n}")
    assert requests_total(registry, "GET", "/r0", "2xx") == 1
    assert requests_total(registry, "GET", "/r1", "2xx") == 1
    assert requests_total(registry, "GET", "__other__", "2xx") == 3
    assert registry.get_sample_value("metric_label_overflow_total", {"metric": "route"}) == 3


def test_cache_metrics_match_the_cache_observer_hook(registry: CollectorRegistry) -> None:
    cache = CacheMetrics(registry)
    for outcome in ("hit", "hit", "miss", "error", "eviction", "eviction", "surprise"):
        cache("memory", outcome)
    value = registry.get_sample_value
    assert value("cache_requests_total", {"backend": "memory", "outcome": "hit"}) == 2
    assert value("cache_requests_total", {"backend": "memory", "outcome": "miss"}) == 1
    assert value("cache_requests_total", {"backend": "memory", "outcome": "error"}) == 1
    assert value("cache_requests_total", {"backend": "memory", "outcome": "other"}) == 1
    assert value("cache_requests_total", {"backend": "memory", "outcome": "eviction"}) is None
    assert value("cache_evictions_total", {"backend": "memory"}) == 2


def test_the_platform_cache_reports_through_cache_metrics(registry: CollectorRegistry) -> None:
    # The toolkit test may use the platform's cache as a real caller of the hook.
    from experimentation_platform.storage.cache import MemoryCache

    cache = MemoryCache(max_entries=1, observer=CacheMetrics(registry).observe)
    cache.set("a", {"v": 1})
    cache.set("b", {"v": 2})  # evicts "a"
    assert cache.get("a") is None
    assert cache.get("b") == {"v": 2}
    assert registry.get_sample_value("cache_evictions_total", {"backend": "memory"}) == 1
    assert (
        registry.get_sample_value("cache_requests_total", {"backend": "memory", "outcome": "hit"})
        == 1
    )
    assert (
        registry.get_sample_value("cache_requests_total", {"backend": "memory", "outcome": "miss"})
        == 1
    )


def _record(method: str, route: str, status: int, duration: float, size: int) -> RequestRecord:
    ctx = RequestContext(trace_id=f"{status:032x}")
    return RequestRecord(
        method, route, route, status, duration, size, size * 3, 1_700_000_000.0, ctx, {}
    )


def _normalized(text: bytes) -> str:
    # Creation and exemplar times are clock readings: everything else must match to the byte.
    text = re.sub(rb"(?m)^(\w+_created\{.*\}) \S+$", rb"\1 T", text)
    return re.sub(rb"(?m)( # \{trace_id=\"\w+\"\} \S+) \S+$", rb"\1 T", text).decode()


def test_every_value_lands_in_the_bucket_bisect_left_finds() -> None:
    """The histogram's own bucket search against the standard library's, value by value:
    bounds exactly, between them, below the first, past the last, infinities and NaN."""
    rng = random.Random(20261206)
    for buckets in (DURATION_BUCKETS, SIZE_BUCKETS, (1.0,), (0.5, 2.0, 8.0)):
        bounds = _bounds(buckets)
        finite = bounds[:-1]
        values = [*finite, -math.inf, math.inf, math.nan, -1.0, 0.0, finite[-1] * 10]
        values += [rng.uniform(0, finite[-1] * 2) for _ in range(500)]
        values += [math.nextafter(b, math.inf) for b in finite]
        values += [math.nextafter(b, -math.inf) for b in finite]
        histogram = _Histogram(bounds)
        for value in values:
            assert histogram.observe(value) == bisect_left(bounds, value), (bounds, value)
        assert sum(histogram.counts) == len(values)


def test_exposition_is_what_prometheus_client_instruments_would_produce() -> None:
    """The plain per-worker values and their collector replace prometheus_client's Counter and
    Histograms on the request path: a scrape must not be able to tell (text and OpenMetrics,
    bucket edges, label order, _created, exemplars)."""
    registry, reference = CollectorRegistry(), CollectorRegistry()
    http = HttpMetrics(registry)
    requests = Counter(
        "http_requests_total",
        "HTTP requests by method, route template and status class",
        ["method", "route", "status_class"],
        registry=reference,
    )
    duration = Histogram(
        "http_request_duration_seconds",
        "Time to the last response byte (background tasks excluded)",
        ["method", "route"],
        buckets=DURATION_BUCKETS,
        registry=reference,
    )
    sizes = [
        Histogram(name, doc, ["method", "route"], buckets=SIZE_BUCKETS, registry=reference)
        for name, doc in (
            ("http_request_size_bytes", "HTTP request body size"),
            ("http_response_size_bytes", "HTTP response body size"),
        )
    ]
    Gauge("http_requests_in_flight", "HTTP requests being served", registry=reference)
    traffic = [
        ("GET", "/a", 200, 0.0005, 0),
        ("GET", "/a", 200, 0.001, 100),  # exactly on a bound: that bucket, as le means
        ("GET", "/a", 404, 0.3, 1_000_000),
        ("POST", "/b/{id}", 201, 12.0, 20_000_000),  # past the last bound: +Inf only
        ("PUT", "/a", 503, 0.0301, 999),
    ]
    for method, route, status, seconds, size in traffic:
        http(_record(method, route, status, seconds, size))
        requests.labels(method, route, f"{status // 100}xx").inc()
        duration.labels(method, route).observe(seconds, {"trace_id": f"{status:032x}"})
        sizes[0].labels(method, route).observe(size)
        sizes[1].labels(method, route).observe(size * 3)

    assert _normalized(generate_latest(registry)) == _normalized(generate_latest(reference))
    ours, theirs = (openmetrics.generate_latest(r) for r in (registry, reference))
    assert _normalized(ours) == _normalized(theirs)
    assert b'# {trace_id="' in ours
