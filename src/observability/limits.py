"""Request body limits enforced in the ASGI layer, before anything reads the body.

A declared `Content-Length` over the bound is answered 413 at once, without calling the app
(the body is never read). A body without a length (chunked) is counted as the app receives
it: the chunk that crosses the bound is not handed over; the middleware answers 413 itself,
tells the app the client went away (`http.disconnect`) and drops whatever the app tries to
send afterwards. Memory held for a rejected body is therefore at most one chunk.

Place it *inside* the middleware that sets the request context (ObservabilityMiddleware), so
the 413 is logged and counted like any response and carries that request's id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import orjson

from observability.asgi import ASGIApp, Message, Receive, Scope, Send
from observability.context import current

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BodyLimitMiddleware", "too_large_body"]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


def too_large_body(limit: int, request_id: str | None) -> bytes:
    """The default 413 body: the error shape the toolkit's 500s use, naming the bound."""
    return orjson.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": f"request body exceeds {limit} bytes",
                "limit_bytes": limit,
            },
            "request_id": request_id,
        }
    )


def _bad_length_body(request_id: str | None) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "code": "invalid_content_length",
                "message": "Content-Length is not a non-negative integer",
                "field": "content-length",
            },
            "request_id": request_id,
        }
    )


class BodyLimitMiddleware:
    """`max_body_bytes` for every request; `path_limits` gives exact paths their own bound
    (a batch-ingest route, say)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        path_limits: Mapping[str, int] | None = None,
        error_body: Callable[[int, str | None], bytes] = too_large_body,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be >= 1")
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.path_limits = dict(path_limits or {})
        self.error_body = error_body
        self.rejected = 0  # requests answered 413 (or 400 for a malformed length)

    def limit_for(self, path: str) -> int:
        return self.path_limits.get(path.rstrip("/") or "/", self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await self._reject(send, 400, _bad_length_body(_request_id()))
                    return
                if declared > limit:
                    await self._reject(send, 413, self.error_body(limit, _request_id()))
                    return
                break
        await self._stream_counted(scope, receive, send, limit)

    async def _stream_counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        rejected = False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    rejected = True
                    await self._reject(send, 413, self.error_body(limit, _request_id()))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:  # after our 413, the app's own answer goes nowhere
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _reject(self, send: Send, status: int, body: bytes) -> None:
        self.rejected += 1
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The unread body stays on the wire: the connection cannot be reused.
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _request_id() -> str | None:
    ctx = current()
    return None if ctx is None else ctx.request_id
