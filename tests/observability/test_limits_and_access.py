"""The toolkit's body limit and key gate as plain ASGI middleware (any ASGI app can use them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from observability.access import AuthGate, FailureThrottle, bearer_token
from observability.limits import BodyLimitMiddleware

Message = dict[str, Any]


class Recorder:
    """An app that reads the whole body, then answers 200 with how much it read."""

    def __init__(self) -> None:
        self.calls = 0
        self.read = 0

    async def __call__(self, scope: Message, receive: Any, send: Any) -> None:
        self.calls += 1
        if scope["type"] == "http":
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    break
                self.read += len(message.get("body", b""))
                if not message.get("more_body"):
                    break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _call(
    app: Callable[..., Awaitable[None]],
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: list[bytes] | None = None,
    path: str = "/api/x",
    scope_type: str = "http",
) -> tuple[int, bytes, int]:
    """(status, body, chunks handed to the app) for one request."""
    pending = list(chunks or []) or [b""]
    handed = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal handed
        handed += 1
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": scope_type, "path": path, "headers": headers or [], "client": ("10.0.0.1", 9)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, handed


def test_a_declared_length_over_the_bound_is_refused_before_the_app_runs() -> None:
    inner = Recorder()
    limited = BodyLimitMiddleware(inner, max_body_bytes=100)
    status, body, handed = _call(limited, headers=[(b"content-length", b"101")], chunks=[b"x"])
    assert (status, handed, inner.calls) == (413, 0, 0)
    assert orjson.loads(body)["error"]["code"] == "payload_too_large"
    assert _call(limited, headers=[(b"content-length", b"100")], chunks=[b"x" * 100])[0] == 200


def test_a_chunked_body_is_cut_at_the_chunk_that_crosses_the_bound() -> None:
    inner = Recorder()
    limited = BodyLimitMiddleware(inner, max_body_bytes=100)
    status, _, handed = _call(limited, chunks=[b"x" * 60, b"x" * 60, b"x" * 60])
    assert status == 413  # the app's own 200 went nowhere
    assert inner.read == 60  # the crossing chunk never reached the app
    assert handed == 2  # and nothing after it was read


def test_a_route_bound_and_malformed_lengths() -> None:
    limited = BodyLimitMiddleware(Recorder(), max_body_bytes=10, path_limits={"/api/big": 1000})
    assert _call(limited, path="/api/big", chunks=[b"x" * 500])[0] == 200
    assert _call(limited, path="/api/x", chunks=[b"x" * 500])[0] == 413
    assert _call(limited, headers=[(b"content-length", b"-1")])[0] == 400
    assert _call(limited, headers=[(b"content-length", b"ten")])[0] == 400


def test_non_http_scopes_pass_through_both() -> None:
    inner = Recorder()
    app = AuthGate(BodyLimitMiddleware(inner, max_body_bytes=1), authenticate=_never)
    status, _, _ = _call(app, scope_type="websocket", chunks=[b"xx"])
    assert (status, inner.calls) == (200, 1)


async def _never(_key: str) -> None:
    return None


def test_the_gate_refuses_without_calling_the_app_and_passes_the_principal() -> None:
    inner = Recorder()
    seen: list[Any] = []

    async def authenticate(key: str) -> str | None:
        return "alice" if key == "good" else None

    async def app(scope: Message, receive: Any, send: Any) -> None:
        seen.append(scope.get("state", {}).get("principal"))
        await inner(scope, receive, send)

    gate = AuthGate(app, authenticate=authenticate, prefixes=("/api/",))
    assert _call(gate, chunks=[b"x" * 10])[0] == 401
    assert _call(gate, headers=[(b"authorization", b"Bearer bad")])[0] == 401
    assert inner.calls == 0
    assert _call(gate, headers=[(b"x-api-key", b"good")])[0] == 200
    assert seen == ["alice"]
    assert _call(gate, path="/health/live")[0] == 200  # outside the prefixes: not gated
    assert seen == ["alice", None]


def test_the_throttle_backs_off_an_address_and_forgets_it_after_the_window() -> None:
    now = [1000.0]
    throttle = FailureThrottle(
        max_failures=3, window_seconds=10, backoff_seconds=5, clock=lambda: now[0]
    )
    for _ in range(2):
        throttle.failure("a")
    assert throttle.retry_after("a") == 0
    now[0] += 11  # the first two fell out of the window
    throttle.failure("a")
    throttle.failure("a")
    assert throttle.retry_after("a") == 0
    throttle.failure("a")
    assert throttle.retry_after("a") == 5
    assert throttle.retry_after("b") == 0  # other addresses are not affected
    now[0] += 5
    assert throttle.retry_after("a") == 0


def test_the_throttle_tracks_a_bounded_number_of_addresses() -> None:
    throttle = FailureThrottle(max_failures=2, max_addresses=100)
    for n in range(10_000):
        throttle.failure(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._failures) <= 100


def test_bearer_token_reads_either_header() -> None:
    assert bearer_token([(b"authorization", b"Bearer  k1 ")]) == "k1"
    assert bearer_token([(b"x-api-key", b"k2")]) == "k2"
    assert bearer_token([(b"authorization", b"Basic abc")]) is None
