"""One request's record, from its first header to its observers: the synchronous half of
ObservabilityMiddleware (observability/asgi.py holds the asynchronous half).

Apart because this half is compiled (observability/compiled.py) and the other must not be:
mypyc's coroutines drop the traceback of an exception thrown into them (an endpoint's failure
coming back from the thread pool, say), and the error line needs every frame. Here no code is a
coroutine: `Exchange.__call__` is the wrapped `send`, a plain call returning the awaitable of
the server's own `send`.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from contextvars import Token
from typing import Any, Final, Protocol

from observability.context import RequestContext, activate, deactivate, mapping_get

__all__ = [
    "UNMATCHED_ROUTE",
    "Exchange",
    "FailureObserver",
    "InFlightGauge",
    "LiveGauge",
    "RequestObserver",
    "RequestRecord",
    "RequestRecorder",
    "bearer_token",
    "parse_traceparent",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED_ROUTE = "__unmatched__"  # every path no route matched shares this one label value
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_READ_HEADERS = frozenset(
    {
        b"x-request-id",
        b"traceparent",
        b"x-forwarded-for",
        b"user-agent",
        b"content-length",
        b"transfer-encoding",
    }
)
# HTTP/1.x frames a request body only by these two headers: without either, there is none
# (RFC 9112, 6.3). HTTP/2 and 3 may send one with neither.
_LENGTH_FRAMED = frozenset({"1.0", "1.1"})
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# Final: the compiled build keeps them in C statics (`time.perf_counter` is a module attribute
# lookup on every call, three a request).
_perf_counter: Final = time.perf_counter
_wall_clock: Final = time.time
_urandom: Final = os.urandom
_ID_CHARS: Final = 80  # hex digits a request takes: request id 32, trace id 32, span id 16
_ID_BATCH_BITS: Final = 8  # 256 requests served by one draw from the OS
_ID_SLOT_MASK: Final = (1 << _ID_BATCH_BITS) - 1


class _IdPool:
    """Hex digits from os.urandom, drawn for 256 requests at a time and sliced per request.

    Correlation ids need uniqueness, not secrecy, but drawing them per request was the costliest
    part of making them (an int of 320 random bits, to bytes, to hex: ~2k instructions); a
    slice of a ready string costs a tenth. The OS source keeps them unpredictable too.

    Each caller takes its own number from a C counter (atomic under the GIL, compiled or not)
    and slices its own place in the pool of that number's batch, so threads never share a
    slice; two that both find the pool stale each draw a fresh one. A forked worker starts
    with no pool (register_at_fork below), so no two processes hand out the same ids.
    """

    def __init__(self) -> None:
        self.numbers: Iterator[int] = itertools.count()
        self.pool: tuple[int, str] = (-1, "")  # (batch number, its hex digits)

    def take(self) -> str:
        """The next 80 hex digits."""
        number = next(self.numbers)
        batch = number >> _ID_BATCH_BITS  # shifts and masks: native on tagged ints (divmod is not)
        pool = self.pool
        if pool[0] != batch:
            pool = self.pool = (batch, _urandom(_ID_CHARS // 2 << _ID_BATCH_BITS).hex())
        at = (number & _ID_SLOT_MASK) * _ID_CHARS
        return pool[1][at : at + _ID_CHARS]

    def reset(self) -> None:
        self.pool = (-1, "")


_ids: Final = _IdPool()
os.register_at_fork(after_in_child=_ids.reset)


class RequestRecord:
    """What one finished request looked like."""

    # A plain class, not a dataclass: one is built per request, and the compiled build
    # (observability.compiled) runs a dataclass's generated __init__ as Python (4k instructions).
    __slots__ = (
        "bytes_in",
        "bytes_out",
        "context",
        "duration_s",
        "exception",
        "headers",
        "method",
        "path",
        "route",
        "started_at",
        "status",
    )

    def __init__(
        self,
        method: str,
        route: str,
        path: str,
        status: int,
        duration_s: float,
        bytes_in: int,
        bytes_out: int,
        started_at: float,  # wall clock, seconds
        context: RequestContext,
        headers: dict[str, str],  # the request headers named in `log_headers`, unmasked here
        exception: BaseException | None = None,
    ) -> None:
        self.method = method
        self.route = route
        self.path = path
        self.status = status
        self.duration_s = duration_s
        self.bytes_in = bytes_in
        self.bytes_out = bytes_out
        self.started_at = started_at
        self.context = context
        self.headers = headers
        self.exception = exception

    def __repr__(self) -> str:
        return f"RequestRecord({self.method} {self.path} -> {self.status}, {self.duration_s}s)"


RequestObserver = Callable[[RequestRecord], None]


class InFlightGauge(Protocol):
    """What the middleware counts requests being served on (a prometheus Gauge fits)."""

    def inc(self) -> None: ...

    def dec(self) -> None: ...


class LiveGauge:
    """An in-process gauge for the middleware's in-flight count: inc/dec on a plain int.

    Only the event loop touches it (the middleware runs there), so it needs no lock; a scrape
    reads one int. The middleware updates this one's value directly (see RequestRecorder)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class FailureObserver:
    """Hands `capture` the records of failed requests (`record.exception` set), and only those.

    Compiled: an (interpreted) capture function as an observer cost every request a Python
    call (~1 us here) to find nothing to do; this costs it one attribute test."""

    def __init__(self, capture: RequestObserver) -> None:
        self.capture = capture

    def __call__(self, record: RequestRecord) -> None:
        if record.exception is not None:
            self.capture(record)


ObserverErrorHook = Callable[[RequestObserver, BaseException], None]


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace_id, parent span id) from a W3C traceparent header, None when invalid."""
    if not value:
        return None
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        return None
    trace_id, parent_id = match.group(1), match.group(2)
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id, parent_id


def bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (None: neither)."""
    api_key = None
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value:
            api_key = value.decode("latin-1").strip() or None
    return api_key


def _parse_networks(
    items: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip())


class Exchange:
    """One request in flight: its record being filled in, and the wrapped `send` (this object
    is the `send` the app gets). Status, response bytes and the time of the last body byte are
    read off the messages; the request id goes into the response headers."""

    __slots__ = (
        "counted",
        "done",
        "record",
        "request_id_header",
        "send",
        "started",
        "token",
    )

    def __init__(
        self,
        record: RequestRecord,
        send: Send,
        started: float,
        counted: bool,
        token: Token[Any],
    ) -> None:
        self.record = record
        self.send = send
        self.started = started
        self.done = 0.0
        self.counted = counted  # in the in-flight gauge
        self.token = token  # the request context's activation
        self.request_id_header = (b"x-request-id", (record.context.request_id or "").encode())

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.start":
            self.record.status = message["status"]
            message["headers"] = [*mapping_get(message, "headers", ()), self.request_id_header]
        elif kind == "http.response.body":
            self.record.bytes_out += len(mapping_get(message, "body", b""))
            if not mapping_get(message, "more_body", False):
                # Background tasks run after this point: they are not the client's wait.
                self.done = _perf_counter()
        return self.send(message)


class RequestRecorder:
    """Opens an Exchange per request (ids, trace, context, record) and hands the finished
    record to each observer. An observer that raises is counted and never breaks the request."""

    def __init__(
        self,
        observers: Sequence[RequestObserver],
        trusted_proxies: Iterable[str],
        log_headers: Iterable[str],
        on_observer_error: ObserverErrorHook | None,
        in_flight: InFlightGauge | None,
        in_flight_exclude: Iterable[str],
        count_body: Callable[[Receive, RequestRecord], Receive] | None = None,
    ) -> None:
        self.observers = list(observers)
        self.count_body = count_body  # wraps `receive` to add body bytes to the record
        self.trusted = _parse_networks(trusted_proxies)
        self.log_headers = frozenset(h.lower().encode() for h in log_headers)
        self._wanted = self.log_headers | _READ_HEADERS
        self.on_observer_error = on_observer_error
        self.observer_errors = 0
        self.in_flight = in_flight
        # The toolkit's own gauge: its int is updated in place, a native attribute write in the
        # compiled build (through the Protocol, inc() and dec() are two generic method calls).
        self.live_in_flight = in_flight if isinstance(in_flight, LiveGauge) else None
        self.in_flight_exclude = frozenset(in_flight_exclude)

    def _client_ip(self, scope: Scope, forwarded_for: str | None) -> str | None:
        client = mapping_get(scope, "client")
        peer = client[0] if client else None
        if not (forwarded_for and peer and self.trusted):
            return peer
        try:
            if not any(ipaddress.ip_address(peer) in net for net in self.trusted):
                return peer  # type: ignore[no-any-return]
            # Walk X-Forwarded-For from the right: the first hop we do not trust is the client.
            hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
            for hop in reversed(hops):
                if not any(ipaddress.ip_address(hop) in net for net in self.trusted):
                    return hop
            return hops[0] if hops else peer
        except ValueError:
            return peer  # type: ignore[no-any-return]

    def open(self, scope: Scope, receive: Receive, send: Send) -> tuple[Exchange, Receive]:
        """The request's Exchange, its context active and the in-flight gauge raised, and the
        `receive` to hand the app: `count_body(receive, record)` when a body can come, the
        server's own otherwise. One call returning both: each attribute the (interpreted)
        middleware read off the Exchange was a generic lookup."""
        started_wall = _wall_clock()
        started = _perf_counter()
        request_id = trace = forwarded_for = user_agent = None
        client_supplied = body_expected = False
        logged: dict[str, str] = {}
        for header in scope["headers"]:
            # Indexed, not unpacked: unpacking an untyped pair builds an iterator per header.
            name = header[0]
            if name not in self._wanted:  # most headers (host, accept...): one set lookup
                continue
            raw = header[1]
            if name == b"x-request-id":
                candidate = raw.decode("latin-1")
                if _REQUEST_ID.fullmatch(candidate):
                    request_id = candidate
                    client_supplied = True
            elif name == b"traceparent":
                trace = parse_traceparent(raw.decode("latin-1"))
            elif name == b"x-forwarded-for":
                forwarded_for = raw.decode("latin-1")
            elif name == b"content-length":
                body_expected = body_expected or raw != b"0"
            elif name == b"transfer-encoding":
                body_expected = True
            elif name == b"user-agent":
                user_agent = raw.decode("latin-1")
                if name in self.log_headers:
                    logged["user-agent"] = user_agent  # the same string, decoded once
                continue
            if name in self.log_headers:
                logged[name.decode("latin-1")] = raw.decode("latin-1")
        ids = _ids.take()  # request id, trace id and span id, cut from one string
        if request_id is None:
            request_id = ids[:32]
        if forwarded_for and self.trusted:
            client_ip = self._client_ip(scope, forwarded_for)
        else:
            client = mapping_get(scope, "client")
            client_ip = client[0] if client else None
        method = scope["method"]
        path = mapping_get(scope, "path", "")
        # Positional: a type call with keywords builds a dict first (measured: half the cost).
        ctx = RequestContext(
            request_id,
            trace[0] if trace else ids[32:64],
            ids[64:],
            None,
            None,
            method,
            None,
            client_ip,
            user_agent,
            scope,
        )
        if trace:
            ctx.extra["parent_span_id"] = trace[1]
        if client_supplied:
            # Kept (clients correlate with it), but marked: any caller can send any id, so the
            # drill-down tells the lines of different requests sharing one id apart (span_id
            # is per request; client_ip and principal say who sent each).
            ctx.extra["request_id_source"] = "client"
        # The record is the request's state from the start (one object, no dict of counters):
        # the wrapped receive and send fill it in, `_finish` completes it.
        record = RequestRecord(method, "", path, 0, 0.0, 0, 0, started_wall, ctx, logged)
        counted = False
        in_flight = self.in_flight
        if in_flight is not None and path not in self.in_flight_exclude:
            live = self.live_in_flight
            if live is not None:
                live.value += 1
            else:
                in_flight.inc()
            counted = True
        if not body_expected and mapping_get(scope, "http_version", "1.1") not in _LENGTH_FRAMED:
            body_expected = True
        exchange = Exchange(record, send, started, counted, activate(ctx))
        count_body = self.count_body
        if body_expected and count_body is not None:
            receive = count_body(receive, record)
        return exchange, receive

    def close(self, exchange: Exchange) -> None:
        """Complete the record and hand it to the observers."""
        self._finish(exchange.record, (exchange.done or _perf_counter()) - exchange.started)

    def release(self, exchange: Exchange) -> None:
        """After the request, whatever happened: the context and the in-flight gauge back."""
        deactivate(exchange.token)
        if exchange.counted:
            live = self.live_in_flight
            if live is not None:
                live.value -= 1
            elif self.in_flight is not None:
                self.in_flight.dec()

    def _finish(self, record: RequestRecord, duration_s: float) -> None:
        record.route = record.context.resolved_route() or UNMATCHED_ROUTE
        record.status = record.status or 500
        record.duration_s = duration_s
        for observer in self.observers:
            try:
                observer(record)
            except Exception as exc:  # telemetry never breaks the request path
                self.observer_errors += 1
                if self.on_observer_error is not None:
                    self.on_observer_error(observer, exc)
