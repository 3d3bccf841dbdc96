"""Apps for benchmarks/http_overhead.py: one hello route, each variant adds one instrumentation.

Factories only (uvicorn --factory apps:NAME). Third-party instrumentations are imported inside
their factory, so the file imports without them; http_overhead.py says how to install them.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry


def bare() -> FastAPI:
    """A: the hello route and nothing else."""
    app = FastAPI()

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


def middleware_only() -> FastAPI:
    """O: ObservabilityMiddleware with no observer (ids, context, timing)."""
    from observability.asgi import ObservabilityMiddleware

    app = bare()
    app.add_middleware(ObservabilityMiddleware)  # type: ignore[arg-type]
    return app


def ours() -> FastAPI:
    """M: ObservabilityMiddleware + HttpMetrics observer + the in-flight wrapper."""
    from observability.asgi import ObservabilityMiddleware
    from observability.metrics.prometheus import HttpMetrics, InFlightMiddleware

    app = bare()
    http = HttpMetrics(CollectorRegistry())
    app.add_middleware(ObservabilityMiddleware, observers=[http])  # type: ignore[arg-type]
    app.add_middleware(
        InFlightMiddleware,  # type: ignore[arg-type]
        gauge=http.in_flight,
        exclude_paths=http.excluded,
    )
    return app


def instrumentator() -> FastAPI:
    """P: prometheus-fastapi-instrumentator with its defaults."""
    from prometheus_fastapi_instrumentator import Instrumentator

    app = bare()
    Instrumentator(registry=CollectorRegistry()).instrument(app)
    return app


def starlette_exporter() -> FastAPI:
    """S: starlette-exporter's PrometheusMiddleware with its defaults."""
    from starlette_exporter import PrometheusMiddleware

    app = bare()
    app.add_middleware(PrometheusMiddleware)
    return app
