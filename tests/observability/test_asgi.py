"""The request middleware on a bare FastAPI app: ids, trace context, timing, 500 handling."""

from __future__ import annotations

import asyncio
import os
import traceback

import pytest
from fastapi import BackgroundTasks, FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Gauge

from observability.asgi import (
    UNMATCHED_ROUTE,
    FailureObserver,
    LiveGauge,
    ObservabilityMiddleware,
    RequestRecord,
    parse_traceparent,
)
from observability.context import bind, current


@pytest.fixture
def records() -> list[RequestRecord]:
    return []


@pytest.fixture
def client(records: list[RequestRecord]) -> TestClient:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str | None]:
        bind(user_id=f"user-{item_id}")  # bound in the threadpool, seen by the middleware
        ctx = current()
        assert ctx is not None
        return {"request_id": ctx.request_id, "trace_id": ctx.trace_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    @app.get("/slow-background")
    async def slow_background(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(asyncio.sleep, 0.3)
        return {"ok": True}

    app.add_middleware(
        ObservabilityMiddleware,  # type: ignore[arg-type]
        observers=[records.append],
        trusted_proxies=["10.0.0.0/8"],
    )
    return TestClient(app, raise_server_exceptions=False)


def test_request_id_is_generated_echoed_and_bound(
    client: TestClient, records: list[RequestRecord]
) -> None:
    response = client.get("/items/7")
    request_id = response.headers["x-request-id"]
    assert len(request_id) == 32
    assert response.json()["request_id"] == request_id
    (record,) = records
    assert (record.method, record.route, record.status) == ("GET", "/items/{item_id}", 200)
    assert record.context.user_id == "user-7"
    assert record.bytes_out == len(response.content)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123.X:y_z", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("bad id", False),
        ("", False),
        ("<script>", False),
    ],
)
def test_incoming_request_id_is_validated(client: TestClient, sent: str, kept: bool) -> None:
    echoed = client.get("/items/1", headers={"X-Request-ID": sent}).headers["x-request-id"]
    assert (echoed == sent) is kept


def test_traceparent_is_continued_or_started(
    client: TestClient, records: list[RequestRecord]
) -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    body = client.get("/items/1", headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01"}).json()
    assert body["trace_id"] == trace
    assert records[-1].context.extra["parent_span_id"] == "b7ad6b7169203331"
    fresh = client.get("/items/1", headers={"traceparent": "00-zzz-bad-01"}).json()
    assert len(fresh["trace_id"]) == 32
    assert fresh["trace_id"] != trace


@pytest.mark.parametrize(
    ("headers", "http_version", "chunks", "wrapped"),
    [
        ([(b"content-length", b"11")], "1.1", [b"hello", b" world"], True),
        ([(b"transfer-encoding", b"chunked")], "1.1", [b"abc", b"de", b""], True),
        ([], "2", [b"framed by HTTP/2", b" alone"], True),  # no length header in HTTP/2
        ([(b"content-length", b"0")], "1.1", [b""], False),
        ([], "1.1", [b""], False),  # HTTP/1.1 with neither header: no body can follow
        ([], "1.0", [b""], False),
    ],
)
def test_request_body_bytes_are_counted_however_the_body_is_framed(
    headers: list[tuple[bytes, bytes]], http_version: str, chunks: list[bytes], wrapped: bool
) -> None:
    apps_receive: list[object] = []

    async def app(scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def, type-arg]
        apps_receive.append(receive)
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: dict[str, object]) -> None:
        pass

    records: list[RequestRecord] = []
    middleware = ObservabilityMiddleware(app, observers=[records.append])  # type: ignore[arg-type]
    scope = {
        "type": "http",
        "http_version": http_version,
        "method": "POST",
        "path": "/upload",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 5000),
    }
    asyncio.run(middleware(scope, receive, send))  # type: ignore[arg-type]
    (record,) = records
    assert record.bytes_in == sum(len(chunk) for chunk in chunks)
    assert messages == []  # the app read the whole body through whatever it was given
    # A request that cannot carry a body gets the server's own receive: nothing to count.
    assert (apps_receive[0] is not receive) is wrapped


def test_parse_traceparent_rejects_all_zero_ids() -> None:
    assert parse_traceparent("00-" + "0" * 32 + "-b7ad6b7169203331-01") is None
    assert parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01") is None


def test_unhandled_exception_becomes_json_500_with_request_id(
    client: TestClient, records: list[RequestRecord]
) -> None:
    response = client.get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-42"
    assert response.json() == {
        "error": {"code": "internal_error", "message": "Internal server error"},
        "request_id": "req-42",
    }
    assert "kaput" not in response.text
    assert "Traceback" not in response.text
    assert isinstance(records[-1].exception, RuntimeError)
    assert records[-1].status == 500


def test_unmatched_paths_share_one_route_label(
    client: TestClient, records: list[RequestRecord]
) -> None:
    for n in range(5):
        client.get(f"/random/{n}")
    assert {r.route for r in records} == {UNMATCHED_ROUTE}


def test_background_task_time_is_not_the_clients_wait(
    client: TestClient, records: list[RequestRecord]
) -> None:
    client.get("/slow-background")
    assert records[-1].duration_s < 0.3  # the 0.3 s background sleep ran after the response


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    client: TestClient, records: list[RequestRecord]
) -> None:
    client.get("/items/1", headers={"X-Forwarded-For": "203.0.113.9"})
    assert records[-1].context.client_ip == "testclient"  # direct peer not trusted
    app = client.app
    trusted = TestClient(app, client=("10.1.2.3", 5000))
    trusted.get("/items/1", headers={"X-Forwarded-For": "198.51.100.7, 10.0.0.5"})
    assert records[-1].context.client_ip == "198.51.100.7"


def test_observer_failure_never_reaches_the_client() -> None:
    app = FastAPI()

    @app.get("/")
    def root() -> dict[str, bool]:
        return {"ok": True}

    def broken(_record: RequestRecord) -> None:
        raise ValueError("observer bug")

    seen: list[RequestRecord] = []
    app.add_middleware(ObservabilityMiddleware, observers=[broken, seen.append])  # type: ignore[arg-type]
    assert TestClient(app).get("/").status_code == 200
    assert len(seen) == 1  # later observers still ran


def test_a_failure_in_a_sync_endpoint_keeps_its_frames() -> None:
    """A sync endpoint runs in the thread pool; its exception comes back into the event loop
    by being thrown into the awaiting coroutines. Every frame down to the raise must reach the
    record (and so the error line): a compiled coroutine in that chain would drop them."""

    def failing_helper() -> None:
        raise RuntimeError("deep failure")

    app = FastAPI()

    @app.get("/sync-failure")
    def sync_failure() -> None:
        failing_helper()

    records: list[RequestRecord] = []
    app.add_middleware(ObservabilityMiddleware, observers=[records.append])  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/sync-failure").status_code == 500
    [record] = records
    assert record.exception is not None
    frames = [frame.name for frame in traceback.extract_tb(record.exception.__traceback__)]
    assert frames[-2:] == ["sync_failure", "failing_helper"], frames


def test_failure_observer_is_handed_failed_requests_only(
    client: TestClient, records: list[RequestRecord]
) -> None:
    failed: list[RequestRecord] = []
    observer = FailureObserver(failed.append)
    client.get("/items/1")
    client.get("/boom")
    client.get("/items/2")
    for record in records:
        observer(record)
    assert [record.route for record in failed] == ["/boom"]
    assert isinstance(failed[0].exception, RuntimeError)


@pytest.mark.parametrize("kind", ["live", "prometheus"])
def test_in_flight_counts_requests_being_served_with_either_gauge(kind: str) -> None:
    """The toolkit's LiveGauge is updated in place; any other gauge through inc() and dec()."""
    registry = CollectorRegistry()
    gauge: LiveGauge | Gauge = (
        LiveGauge() if kind == "live" else Gauge("in_flight", "serving", registry=registry)
    )

    def value() -> float:
        if isinstance(gauge, LiveGauge):
            return gauge.value
        return registry.get_sample_value("in_flight") or 0.0

    app = FastAPI()

    @app.get("/now")
    async def now() -> dict[str, float]:
        return {"in_flight": value()}

    @app.get("/health/now")
    async def health() -> dict[str, float]:
        return {"in_flight": value()}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaput")

    app.add_middleware(
        ObservabilityMiddleware,  # type: ignore[arg-type]
        in_flight=gauge,
        in_flight_exclude={"/health/now"},
    )
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/now").json() == {"in_flight": 1.0}
    assert client.get("/health/now").json() == {"in_flight": 0.0}  # excluded: not counted
    assert client.get("/boom").status_code == 500
    assert value() == 0  # back down after each, a failure included


def _generated_ids(app: ObservabilityMiddleware, count: int) -> list[tuple[str, str, str]]:
    """(request id, trace id, span id) of `count` requests through the middleware's recorder."""
    ids = []
    for _ in range(count):
        scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": None}
        exchange, _receive = app.recorder.open(scope, _no_body, _ignore)
        ctx = exchange.record.context
        app.recorder.release(exchange)
        ids.append((ctx.request_id or "", ctx.trace_id or "", ctx.span_id or ""))
    return ids


async def _no_body() -> dict[str, object]:
    return {"type": "http.request", "body": b""}


async def _ignore(_message: object) -> None:
    return


def test_generated_ids_are_unique_hex_of_the_w3c_sizes_in_every_process() -> None:
    """Across several refills of the id pool, and in a forked worker: a child that inherited
    the parent's pool must not hand out the ids the parent is about to."""
    app = ObservabilityMiddleware(FastAPI())
    ids = _generated_ids(app, 1_000)
    assert {tuple(map(len, triple)) for triple in ids} == {(32, 32, 16)}
    assert all(int(part, 16) >= 0 for triple in ids for part in triple)
    parts = [part for triple in ids for part in triple]
    assert len(set(parts)) == len(parts)

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent, then out without pytest's exit
        os.close(read)
        os.write(write, "".join(_generated_ids(app, 1)[0]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = "".join(_generated_ids(app, 1)[0])
    assert len(child) == 80
    assert child != parent
