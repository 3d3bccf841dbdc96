"""Apps for benchmarks/http_overhead.py: one hello route, each variant adds one instrumentation.

Factories only (uvicorn --factory apps:NAME). Third-party instrumentations are imported inside
their factory, so the file imports without them; http_overhead.py says how to install them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry


def drive(
    app: Any,
    path: str,
    n: int,
    headers: tuple[tuple[bytes, bytes], ...] = ((b"host", b"bench"),),
    concurrency: int = 1,
) -> None:
    """`n` GET requests to `path` through the app's ASGI callable, no server (in-process
    figures of http_overhead.py --in-process and profile_request_path.py). With
    `concurrency` > 1, that many tasks share the requests and `send` yields to the loop, so
    requests interleave as on a server with that many connections."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: object) -> None:
        return

    async def send_yielding(_message: object) -> None:
        await asyncio.sleep(0)

    async def run(count: int) -> None:
        reply = send if concurrency == 1 else send_yielding
        for _ in range(count):
            await app(dict(scope), receive, reply)

    async def main() -> None:
        share, rest = divmod(n, concurrency)  # exactly n in all: callers divide by n
        await asyncio.gather(*(run(share + (1 if k < rest else 0)) for k in range(concurrency)))

    asyncio.run(main())


def bare() -> FastAPI:
    """A: the hello route and nothing else; plus /assign/{user_id}, the platform's assignment
    decision (domain code, a targeting-free 50/50 experiment) as a heavier route."""
    from experimentation_platform.domain.experiments import ExperimentConfig, assign

    app = FastAPI()
    config = ExperimentConfig(1, "bench", "running", "salt", (("a", 50), ("b", 50)), (), 100.0, 1)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/assign/{user_id}")
    async def assignment(user_id: str) -> dict[str, object]:
        result = assign(config, user_id)
        return {"user_id": user_id, "variant": result.variant, "in": result.in_experiment}

    return app


# ObservabilityConfig.operator_paths' default, which instrument() gives the windows' observer
# (none of these apps serves one, but each request pays for the check). Not imported: the
# config module pulls in ~800 modules, and a bigger heap slows every garbage collection.
OPERATOR_PATHS = ("/ops", "/metrics", "/health")


def _log_pipeline(shipping: str = "") -> None:
    """Our pipeline with masking on, writing JSON lines to a temporary file (stdout off)."""
    import tempfile
    from pathlib import Path

    from observability.logging import LoggingConfig, configure_logging
    from observability.masking import default_masker

    masker = default_masker()
    directory = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    sinks = []
    if shipping:
        import os

        from observability.cloud.agent import ShippingAgent
        from observability.cloud.events import ShipperConfig
        from observability.cloud.shipper import CloudWatchShipper
        from observability.cloud.sink import cloudwatch_sink

        config = ShipperConfig(
            journal_dir=directory / "journal",
            endpoint_url=os.environ["BENCH_AWS_ENDPOINT"],
            stream_name=f"bench-{os.getpid()}",
        )
        # The platform's sink (from the toolkit: importing the platform would grow the heap
        # and with it every garbage collection), in front of the agent or a thread.
        factory = ShippingAgent if shipping == "agent" else CloudWatchShipper
        sinks.append(cloudwatch_sink(factory(config).start()))
    configure_logging(
        LoggingConfig(directory=directory, stdout=False), mask=masker.mask_event, extra_sinks=sinks
    )


def ours_logging() -> FastAPI:
    """L: ObservabilityMiddleware + one masked JSON request line (context, request id)."""
    from observability.asgi import ObservabilityMiddleware
    from observability.logging import RequestLogObserver

    _log_pipeline()
    app = bare()
    app.add_middleware(ObservabilityMiddleware, observers=[RequestLogObserver()])  # type: ignore[arg-type]
    return app


def ours_full() -> FastAPI:
    """F: context + request id + one masked JSON line + Prometheus metrics + rolling windows."""
    return _full(shipping="")


def ours_full_frozen() -> FastAPI:
    """Z: F with the start-up heap frozen (gc.freeze()), as instrument()'s lifespan does."""
    import gc

    app = _full(shipping="")
    gc.collect()
    gc.freeze()
    return app


def ours_full_shipping_thread() -> FastAPI:
    """T: F with every line shipped by a thread of the server (EP_CLOUDWATCH_AGENT=false)."""
    return _full(shipping="thread")


def ours_full_shipping() -> FastAPI:
    """C: F with every line shipped by the agent process (a stand-in at BENCH_AWS_ENDPOINT)."""
    return _full(shipping="agent")


def _full(shipping: str) -> FastAPI:
    from observability.asgi import ObservabilityMiddleware
    from observability.logging import RequestLogObserver
    from observability.metrics.prometheus import HttpMetrics
    from observability.metrics.windows import RequestWindowsObserver, RollingWindows

    _log_pipeline(shipping)
    app = bare()
    http = HttpMetrics(CollectorRegistry())
    windows = RequestWindowsObserver(RollingWindows(), OPERATOR_PATHS)

    app.add_middleware(
        ObservabilityMiddleware,  # type: ignore[arg-type]
        observers=[RequestLogObserver(), http, windows],
        in_flight=http.in_flight,
        in_flight_exclude=http.excluded,
    )
    return app


def typical_stack() -> FastAPI:
    """D: the hand-assembled stack: asgi-correlation-id + @app.middleware("http") writing one
    structlog line through the stdlib chain, rendered as JSON to a file."""
    import logging
    import tempfile
    from pathlib import Path

    import structlog
    from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
    from fastapi import Request

    handler = logging.FileHandler(Path(tempfile.mkdtemp(prefix="bench-typical-")) / "access.log")
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    log = structlog.get_logger("access")
    app = bare()

    @app.middleware("http")
    async def access_log(request: Request, call_next):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        response = await call_next(request)
        log.info(
            "request_completed",
            request_id=correlation_id.get(),
            method=request.method,
            path=request.url.path,
            status=response.status_code,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        return response

    app.add_middleware(CorrelationIdMiddleware)
    return app


def middleware_only() -> FastAPI:
    """O: ObservabilityMiddleware with no observer (ids, context, timing)."""
    from observability.asgi import ObservabilityMiddleware

    app = bare()
    app.add_middleware(ObservabilityMiddleware)  # type: ignore[arg-type]
    return app


def ours() -> FastAPI:
    """M: ObservabilityMiddleware + HttpMetrics observer + the in-flight gauge."""
    from observability.asgi import ObservabilityMiddleware
    from observability.metrics.prometheus import HttpMetrics

    app = bare()
    http = HttpMetrics(CollectorRegistry())
    app.add_middleware(
        ObservabilityMiddleware,  # type: ignore[arg-type]
        observers=[http],
        in_flight=http.in_flight,
        in_flight_exclude=http.excluded,
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
