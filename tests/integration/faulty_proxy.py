"""A fault-injecting HTTP proxy on loopback, in front of moto, for the CloudWatch shipper tests.

It forwards AWS JSON-protocol requests to an upstream (moto) and can, on demand:

- refuse connections altogether (`stop()`: the listening socket is closed; `start()` rebinds the
  same port), like an endpoint that is down;
- answer `400` with `x-amzn-ErrorType: ThrottlingException` (mode "throttle");
- answer `503` ServiceUnavailableException (mode "unavailable");
- close the connection without an answer (mode "reset"), which is also what happens by itself
  when the upstream is down (moto stopped);
- delay every request (`delay`), to keep a shipper busy;
- lose the answer of the next `lose_put_responses` PutLogEvents calls: the request reaches the
  upstream, which stores the batch, and the client's connection is then closed without the
  answer (a connection cut or a timeout after the service did its work).

It records every PutLogEvents request body it saw (`batches`, to check the API limits on the
wire) and, separately, the events of every PutLogEvents the upstream *accepted* (`accepted`,
tagged with `generation` so a test can tell which moto incarnation stored them). The accepted
ledger is what proves delivery across a moto restart, which forgets everything. Each accepted
event carries the number of the PutLogEvents call that stored it (`batch`, counted from 1), and
`lost_batches` lists the calls whose answer was lost.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

LOOPBACK = "127.0.0.1"
Mode = Literal["pass", "throttle", "unavailable", "reset"]
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hung up (killed child, timeout) is part of the scenarios, not an error.
        return


@dataclass(frozen=True)
class AcceptedEvent:
    group: str
    stream: str
    timestamp: int
    message: str
    generation: int
    batch: int  # the accepted PutLogEvents call that stored it, counted from 1


@dataclass
class FaultyProxy:
    upstream_port: int
    port: int = 0
    mode: Mode = "pass"
    fail_ratio: float = 1.0  # share of requests a fault mode hits; the rest pass
    delay: float = 0.0
    generation: int = 0
    lose_put_responses: int = 0  # answers of the next N stored PutLogEvents calls go missing
    lost_batches: list[int] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[AcceptedEvent] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (operation, outcome), in order
    puts_in_flight: int = 0  # PutLogEvents read from a client, not yet answered
    _accepted_batches: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _random: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def count(self, outcome: str) -> int:
        with self._lock:
            return self.outcomes.get(outcome, 0)

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def _note(self, outcome: str, operation: str = "") -> None:
        with self._lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self.calls.append((operation, outcome))

    def start(self) -> FaultyProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            # HTTP/1.0: one request per connection, so stop() really cuts clients off.
            protocol_version = "HTTP/1.0"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                is_put = target.endswith(".PutLogEvents")
                request: dict[str, Any] = {}
                if is_put:
                    request = json.loads(body)
                    with proxy._lock:
                        proxy.batches.append(request)
                        proxy.puts_in_flight += 1
                try:
                    self._handle(body, target, is_put, request)
                finally:
                    if is_put:
                        with proxy._lock:
                            proxy.puts_in_flight -= 1

            def _handle(
                self, body: bytes, target: str, is_put: bool, request: dict[str, Any]
            ) -> None:
                if proxy.delay:
                    time.sleep(proxy.delay)
                mode = proxy.mode
                with proxy._lock:
                    hit = proxy._random.random() < proxy.fail_ratio
                operation = target.rpartition(".")[2]
                if mode != "pass" and hit:
                    proxy._note(mode, operation)
                    if mode == "reset":
                        self.close_connection = True
                        return
                    if mode == "throttle":
                        self._error(400, "ThrottlingException", "Rate exceeded")
                    else:
                        self._error(503, "ServiceUnavailableException", "Service unavailable")
                    return
                try:
                    status, headers, answer = self._forward(body)
                except OSError:
                    proxy._note("upstream_down", operation)
                    self.close_connection = True  # the client sees the connection dropped
                    return
                if is_put and status == 200:
                    batch = proxy._record_accepted(request, answer)
                    if batch is not None and proxy._lose_this_answer(batch):
                        proxy._note("response_lost", operation)
                        self.close_connection = True  # stored, but the client never hears
                        return
                proxy._note(f"forwarded_{status}", operation)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_PUT = do_POST

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                conn = http.client.HTTPConnection(LOOPBACK, proxy.upstream_port, timeout=30)
                try:
                    headers = {
                        k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                    }
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    return response.status, response.getheaders(), response.read()
                finally:
                    conn.close()

            def _error(self, status: int, error_type: str, message: str) -> None:
                answer = json.dumps({"__type": error_type, "message": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-ErrorType", error_type)
                self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-faultyproxy0")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = _QuietServer((LOOPBACK, self.port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def _record_accepted(self, request: dict[str, Any], answer: bytes) -> int | None:
        """Add a stored batch to the ledger; its number, or None if it was rejected."""
        events = request.get("logEvents", [])
        with contextlib.suppress(ValueError):
            info = json.loads(answer or b"{}").get("rejectedLogEventsInfo") or {}
            if info:
                # Never silently: a test that expects no rejections checks this outcome.
                self._note("rejected_batches")
                return None
        with self._lock:
            self._accepted_batches += 1
            batch = self._accepted_batches
            self.accepted.extend(
                AcceptedEvent(
                    request["logGroupName"],
                    request["logStreamName"],
                    int(event["timestamp"]),
                    event["message"],
                    self.generation,
                    batch,
                )
                for event in events
            )
        return batch

    def _lose_this_answer(self, batch: int) -> bool:
        with self._lock:
            if self.lose_put_responses <= 0:
                return False
            self.lose_put_responses -= 1
            self.lost_batches.append(batch)
            return True

    def stop(self) -> None:
        """Close the listener: new connections are refused until start() rebinds the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
