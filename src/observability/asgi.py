"""Pure ASGI middleware: correlation ids, W3C trace context, timing, and one record per request.

Not BaseHTTPMiddleware and not @app.middleware("http"): both wrap every request in extra
tasks and streams (measured here at ~140 us a request, more than the hello route itself) and
lose context. This class observes the response by wrapping `send`, so it costs a few
microseconds. Each finished request becomes one `RequestRecord` handed to the observers
(request log line, Prometheus metrics, rolling windows, error capture): one middleware
observes each request once, for logs and metrics alike.

This module is the asynchronous half; the per-request work (ids, context, record, the wrapped
`send`, the observers) is observability/request_record.py, which the compiled build covers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import orjson

from observability.request_record import (
    UNMATCHED_ROUTE,
    ASGIApp,
    FailureObserver,
    InFlightGauge,
    LiveGauge,
    Message,
    ObserverErrorHook,
    Receive,
    RequestObserver,
    RequestRecord,
    RequestRecorder,
    Scope,
    Send,
    bearer_token,
    parse_traceparent,
)

__all__ = [
    "UNMATCHED_ROUTE",
    "ASGIApp",
    "FailureObserver",
    "InFlightGauge",
    "LiveGauge",
    "Message",
    "ObservabilityMiddleware",
    "Receive",
    "RequestObserver",
    "RequestRecord",
    "Scope",
    "Send",
    "bearer_token",
    "parse_traceparent",
]


def default_error_body(request_id: str) -> bytes:
    return orjson.dumps(
        {
            "error": {"code": "internal_error", "message": "Internal server error"},
            "request_id": request_id,
        }
    )


def _counting(receive: Receive, record: RequestRecord) -> Receive:
    """`receive`, adding each body chunk's size to the record's bytes_in. Made only for a
    request that can carry a body (RequestRecorder.open decides): a closure per request
    otherwise costs its creation (~0.2 us) for nothing. Here, not in the compiled module:
    mypyc's coroutines lose tracebacks (request_record.py says why)."""

    async def counting_receive() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            record.bytes_in += len(message.get("body", b""))
        return message

    return counting_receive


class ObservabilityMiddleware:
    """The toolkit's one middleware (pure ASGI; `instrument()` adds it as the outermost).

    For each HTTP request it: takes a valid `X-Request-ID` from the client (marking it as
    client-supplied) or makes one, and returns it in the response; continues a W3C
    `traceparent` or starts a trace; activates the request context every log line and error
    event reads (`observability.context`); times the request to its last response byte;
    answers an unhandled exception with `error_body(request_id)` (a 500 JSON, never a stack
    trace) unless the response had started; and hands one `RequestRecord` to each observer
    (request log line, RED metrics, rolling windows, error capture). An observer that raises
    is counted (`observer_errors`) and never breaks the request. Lifespan and WebSocket scopes
    pass straight through.

    `trusted_proxies` (IPs or CIDRs) are the only peers whose `X-Forwarded-For` is believed;
    `log_headers` are the request headers copied into the record (masked by the log line).
    `in_flight` counts the requests being served (paths in `in_flight_exclude` are not): here
    rather than in a second middleware, which cost another ASGI layer a request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        observers: Sequence[RequestObserver] = (),
        trusted_proxies: Iterable[str] = (),
        log_headers: Iterable[str] = ("user-agent", "content-type", "accept", "authorization"),
        error_body: Callable[[str], bytes] = default_error_body,
        on_observer_error: ObserverErrorHook | None = None,
        in_flight: InFlightGauge | None = None,
        in_flight_exclude: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.error_body = error_body
        # The per-request work, compiled when the build is there (observability/compiled.py).
        self.recorder = recorder = RequestRecorder(
            observers,
            trusted_proxies,
            log_headers,
            on_observer_error,
            in_flight,
            in_flight_exclude,
            _counting,
        )
        # Bound once: `recorder.open` looked up on a compiled object from this interpreted
        # coroutine is a generic lookup each time; an attribute of this object is not.
        self._open = recorder.open
        self._close = recorder.close
        self._release = recorder.release

    @property
    def observers(self) -> list[RequestObserver]:
        return self.recorder.observers

    @property
    def observer_errors(self) -> int:
        return self.recorder.observer_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange, app_receive = self._open(scope, receive, send)
        try:
            try:
                await self.app(scope, app_receive, exchange)
            except Exception as exc:
                record = exchange.record
                record.exception = exc
                if record.status:
                    self._close(exchange)
                    raise  # the response already started: nothing better to send
                body = self.error_body(record.context.request_id or "")
                await exchange(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await exchange({"type": "http.response.body", "body": body})
            self._close(exchange)
        finally:
            self._release(exchange)
