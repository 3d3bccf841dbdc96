"""Access: who may read operator pages, and keys checked before any body is read.

`operator_access(config)`: a bearer token -> "admin", "viewer" or nobody. The config's static
tokens (`admin_token`, `viewer_token`) are compared in constant time; an app with its own keys
gives `access` (token -> role). Nothing configured: nobody gets in, so /metrics and /ops are
never open by accident.

`AuthGate`: authentication in the ASGI layer, before any route reads or parses the body, with
a short backoff for client addresses that keep failing. FastAPI reads and parses a request's
body before it solves the route's dependencies, so an authentication dependency runs too late
to spare the server a large or malformed body from a caller without a key. `AuthGate` checks
the key first, on the paths it protects: no key or a wrong one is answered 401 without calling
the app; a known key's principal is put in ``scope["state"]["principal"]`` where the route's
dependencies find it (roles are still the routes' business).

`FailureThrottle` counts failed attempts per client address in a sliding window; past the
allowance the address gets 429 with ``Retry-After`` for a short backoff. During the backoff a
key is checked only when the host says it is worth it: ``known`` answers from a cache without
I/O, ``vouched`` says the key names an identity verified before (the platform: a key id that
authenticated once in this process), so a caller sharing an address with an attacker or a
misconfigured client keeps working, while random guesses are not even checked.

Place it inside the middleware that sets the request context (ObservabilityMiddleware): the
client address comes from there (so trusted proxies apply) and every refusal is logged.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from observability.asgi import ASGIApp, Receive, Scope, Send, bearer_token
from observability.config import AccessCheck, ObservabilityConfig, Role
from observability.context import current

__all__ = ["AuthGate", "FailureThrottle", "bearer_token", "operator_access"]


def operator_access(config: ObservabilityConfig) -> AccessCheck:
    tokens: tuple[tuple[str, Role], ...] = (
        (config.admin_token, "admin"),
        (config.viewer_token, "viewer"),
    )
    static = [(token.encode(), role) for token, role in tokens if token]
    custom = config.access

    def role_of(token: str) -> Role | None:
        given = token.encode()
        for expected, role in static:
            if hmac.compare_digest(given, expected):
                return role
        return custom(token) if custom is not None else None

    return role_of


Authenticate = Callable[[str], Awaitable[Any | None]]
KnownKey = Callable[[str], Any | None]


class FailureThrottle:
    """`max_failures` failed attempts within `window_seconds` from one address earn it a
    `backoff_seconds` pause. At most `max_addresses` addresses are tracked (oldest forgotten),
    so a flood of spoofed sources cannot grow memory without bound."""

    def __init__(
        self,
        *,
        max_failures: int = 20,
        window_seconds: float = 60.0,
        backoff_seconds: float = 30.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        self.max_failures = max_failures
        self.window = window_seconds
        self.backoff = backoff_seconds
        self.max_addresses = max_addresses
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.failed = 0  # failed attempts seen
        self.throttled = 0  # requests answered 429

    def retry_after(self, address: str) -> float:
        """Seconds this address must still wait (0: it may try)."""
        until = self._blocked_until.get(address)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            with self._lock:
                self._blocked_until.pop(address, None)
            return 0.0
        return left

    def failure(self, address: str) -> None:
        now = self.clock()
        with self._lock:
            self.failed += 1
            times = self._failures.pop(address, None) or deque()
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.max_failures:
                self._blocked_until[address] = now + self.backoff
                times.clear()
            self._failures[address] = times  # most recent last
            while len(self._failures) > self.max_addresses:
                self._failures.popitem(last=False)
            if len(self._blocked_until) > self.max_addresses:
                expired = [a for a, until in self._blocked_until.items() if until <= now]
                for gone in expired:
                    del self._blocked_until[gone]

    def clear(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
            self._blocked_until.pop(address, None)


def _error(code: str, message: str) -> bytes:
    ctx = current()
    return orjson.dumps(
        {
            "error": {"code": code, "message": message},
            "request_id": None if ctx is None else ctx.request_id,
        }
    )


class AuthGate:
    """Requires a key on paths starting with one of `prefixes` (others pass straight through).

    ``authenticate(key)`` returns the caller's principal or None (wrong, unknown or revoked);
    ``known(key)`` returns the principal of a recently verified key without I/O, or None.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Authenticate,
        known: KnownKey | None = None,
        vouched: Callable[[str], bool] | None = None,
        prefixes: Iterable[str] = ("/api/",),
        throttle: FailureThrottle | None = None,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.known = known or (lambda _key: None)
        self.vouched = vouched or (lambda _key: False)
        self.prefixes = tuple(prefixes)
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        key = bearer_token(scope["headers"])
        address = self._address(scope)
        wait = self.throttle.retry_after(address) if self.throttle else 0.0
        principal = None
        if key is not None:
            if wait <= 0:
                principal = await self.authenticate(key)
            else:  # in backoff, guesses are not even checked; keys verified before still are
                principal = self.known(key)
                if principal is None and self.vouched(key):
                    principal = await self.authenticate(key)
        if principal is not None:
            scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send)
            return
        if wait > 0:
            assert self.throttle is not None
            self.throttle.throttled += 1
            seconds = max(1, math.ceil(wait))
            body = _error(
                "too_many_failed_attempts",
                f"too many failed authentication attempts; retry in {seconds} s",
            )
            await _respond(send, 429, body, [(b"retry-after", str(seconds).encode())])
            return
        if key is None:
            message = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'"
        else:
            message = "invalid or revoked API key"
            if self.throttle is not None:
                self.throttle.failure(address)
        await _respond(
            send, 401, _error("unauthorized", message), [(b"www-authenticate", b"Bearer")]
        )

    @staticmethod
    def _address(scope: Scope) -> str:
        ctx = current()
        if ctx is not None and ctx.client_ip:
            return ctx.client_ip
        client = scope.get("client")
        return str(client[0]) if client else "unknown"


async def _respond(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
