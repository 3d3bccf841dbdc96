"""The metrics endpoint: the /metrics ASGI app (token, OpenMetrics, gzip), its own listen
address (`serve_metrics`), and the in-flight middleware for apps without ObservabilityMiddleware.

Apart from observability.metrics.prometheus because that module is compiled (observability/
compiled.py) and this one must not be: mypyc's coroutines drop the traceback of an exception
thrown into them, and these are coroutines that wrap other ASGI apps.
"""

from __future__ import annotations

import asyncio
import gzip
import hmac
import threading
from collections.abc import Callable, Iterable

import orjson
from prometheus_client import Gauge
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from observability.asgi import ASGIApp, Receive, Scope, Send, bearer_token
from observability.metrics.prometheus import LiveGauge

__all__ = [
    "InFlightMiddleware",
    "MetricsEndpoint",
    "MetricsServer",
    "metrics_endpoint",
    "serve_metrics",
]


class InFlightMiddleware:
    """Counts requests being served: +1 when one arrives, -1 when the app returns.

    For apps without ObservabilityMiddleware; with it, pass `in_flight=` to it instead (one
    ASGI layer fewer a request). Paths
    (not route templates: no route is known yet) in `exclude_paths` are not counted.
    """

    def __init__(
        self, app: ASGIApp, gauge: Gauge | LiveGauge, *, exclude_paths: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.gauge = gauge
        self.exclude = frozenset(exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        self.gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.gauge.dec()


RegistryProvider = Callable[[], Collector]
Authorize = Callable[[str], bool]


class MetricsEndpoint:
    """ASGI app serving the registry: Prometheus text, or OpenMetrics (with exemplars) when the
    Accept header asks for `application/openmetrics-text`. Gzip when the client accepts it.

    Access needs `Authorization: Bearer <token>` (or `X-API-Key`) matching `token` or accepted
    by `authorize`; otherwise 401 JSON. Serving without either needs an explicit `public=True`.
    """

    def __init__(
        self,
        registry_provider: RegistryProvider | Collector,
        *,
        token: str | None = None,
        authorize: Authorize | None = None,
        public: bool = False,
    ) -> None:
        if token is None and authorize is None and not public:
            raise ValueError(
                "metrics_endpoint needs a token or an authorize callback "
                "(or public=True behind a private listen address)"
            )
        if hasattr(registry_provider, "collect"):  # a registry itself rather than a provider
            registry = registry_provider
            self.provider: RegistryProvider = lambda: registry
        else:
            self.provider = registry_provider
        self.token = token.encode() if token else None
        self.authorize = authorize
        self.public = public
        self.errors = 0

    def _allowed(self, credential: str | None) -> bool:
        if self.public:
            return True
        if credential is None:
            return False
        if self.token is not None and hmac.compare_digest(credential.encode(), self.token):
            return True
        if self.authorize is not None:
            try:
                return bool(self.authorize(credential))
            except Exception:
                self.errors += 1
                return False
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served standalone: nothing to set up
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        headers = scope.get("headers", [])
        if not self._allowed(bearer_token(headers)):
            await _json(send, 401, "unauthorized", "send 'Authorization: Bearer <token>'")
            return
        if scope.get("method") not in {"GET", "HEAD"}:
            await _json(send, 405, "method_not_allowed", "use GET")
            return
        accept = encoding = ""
        for name, value in headers:
            if name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"accept-encoding":
                encoding = value.decode("latin-1")
        encoder, content_type = choose_encoder(accept)
        try:
            # Rendering is CPU work (and file reads in multi-process mode): off the event loop.
            body = await asyncio.get_running_loop().run_in_executor(None, encoder, self.provider())
        except Exception:
            self.errors += 1
            await _json(send, 500, "exposition_failed", "metrics could not be rendered")
            return
        response_headers = [(b"content-type", content_type.encode())]
        if "gzip" in encoding:
            body = gzip.compress(body, compresslevel=1)
            response_headers.append((b"content-encoding", b"gzip"))
        response_headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": response_headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


async def _json(send: Send, status: int, code: str, message: str) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def metrics_endpoint(
    registry_provider: RegistryProvider | Collector,
    *,
    token: str | None = None,
    authorize: Authorize | None = None,
    public: bool = False,
) -> MetricsEndpoint:
    """The /metrics ASGI app. Add it as a route (`app.add_route("/metrics", endpoint)`), not a
    mount: a mount answers /metrics with a 307 to /metrics/. `instrument()` does this."""
    return MetricsEndpoint(registry_provider, token=token, authorize=authorize, public=public)


class MetricsServer:
    """The metrics endpoint on its own listen address: a small uvicorn server in a thread.

    For operators who isolate the scrape port by network rather than with a token. In
    multi-process mode start it once, in the parent, after `prepare_multiprocess_dir()`, over
    `MultiProcessRegistry(multiprocess_dir())` (plus a `SystemCollector(process=False)`): the
    workers would otherwise all try to bind the same port. (`build_registry()` refuses in a
    parent that imported prometheus_client before the variable was set; reading files is fine.)
    """

    def __init__(self, app: MetricsEndpoint, host: str = "127.0.0.1", port: int = 9464) -> None:
        import uvicorn  # only operators who choose a separate address pay for the import

        self.host, self.port = host, port
        config = uvicorn.Config(
            app, host=host, port=port, lifespan="off", access_log=False, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(
            target=self._server.run, name="metrics-server", daemon=True
        )

    def start(self, timeout: float = 10.0) -> MetricsServer:
        self._server_thread.start()
        waited = 0.0
        while not self._server.started and waited < timeout:
            if not self._server_thread.is_alive():
                raise RuntimeError(f"metrics server could not listen on {self.host}:{self.port}")
            self._server_thread.join(0.02)
            waited += 0.02
        if not self._server.started:
            raise RuntimeError(f"metrics server did not start on {self.host}:{self.port}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._server_thread.join(timeout)


def serve_metrics(
    registry_provider: RegistryProvider | Collector,
    *,
    host: str = "127.0.0.1",
    port: int = 9464,
    token: str | None = None,
    authorize: Authorize | None = None,
) -> MetricsServer:
    """Start the endpoint on host:port in a background thread; open unless a token is given."""
    app = MetricsEndpoint(
        registry_provider,
        token=token,
        authorize=authorize,
        public=token is None and authorize is None,
    )
    return MetricsServer(app, host, port).start()
