"""A small app wired like the platform will be: one registry, the middleware with HttpMetrics,
the in-flight wrapper, runtime metrics in the lifespan and a token-protected /metrics.

Run by real uvicorn processes in the multi-process and real-Prometheus tests:
`uvicorn --factory tests.observability.prometheus.apps:create_app` (token from TEST_METRICS_TOKEN).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from observability.asgi import ObservabilityMiddleware
from observability.metrics.endpoint import metrics_endpoint
from observability.metrics.prometheus import HttpMetrics, build_registry, mark_worker_dead
from observability.metrics.system import RuntimeMetrics

TOKEN_ENV = "TEST_METRICS_TOKEN"
DEFAULT_TOKEN = "scrape-token"  # a test token for loopback servers


def build_app(registry: CollectorRegistry | None = None, *, token: str) -> FastAPI:
    registry = registry if registry is not None else build_registry()
    http = HttpMetrics(registry)
    runtime = RuntimeMetrics(registry, process_interval=1.0)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            mark_worker_dead()

    app = FastAPI(lifespan=lifespan)

    @app.get("/ok")
    async def ok() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    @app.get("/work")
    async def work(ms: int = 0) -> dict[str, int]:
        await asyncio.sleep(ms / 1000)
        return {"slept_ms": ms}

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("planned failure")

    app.add_route("/metrics", metrics_endpoint(registry, token=token), include_in_schema=False)
    app.add_middleware(
        ObservabilityMiddleware,  # type: ignore[arg-type]
        observers=[http],
        in_flight=http.in_flight,
        in_flight_exclude=http.excluded,
    )
    return app


def create_app() -> FastAPI:
    return build_app(token=os.environ.get(TOKEN_ENV, DEFAULT_TOKEN))
