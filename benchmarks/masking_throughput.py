"""Masking throughput: typical request-log events per second with masking vs. without.

Run on demand: `python benchmarks/masking_throughput.py [--events N] [--rounds R]`.

Each pipeline copies a pre-built event (structlog hands every processor a fresh dict), optionally
masks it, and renders it to a JSON line with orjson -- the same work the logging pipeline does
per line. Events carry unique request/trace/span ids, paths, IPs and durations so the masker's
clean-string cache sees realistic churn instead of one repeated event. The baseline runs in the
same process, so the ratio is meaningful on any machine; absolute numbers are not.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from observability.masking import Masker

USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "python-httpx/0.28.1",
    "curl/8.5.0",
)
ROUTES = (
    ("GET", "/api/v1/experiments/{key}", "/api/v1/experiments/checkout-button-{n}"),
    ("POST", "/api/v1/assignments", "/api/v1/assignments"),
    ("GET", "/api/v1/flags/{key}", "/api/v1/flags/new-onboarding-{n}"),
    ("POST", "/api/v1/events", "/api/v1/events"),
)


def typical_event(rng: random.Random) -> dict[str, Any]:
    """A request_completed event: ~15 flat fields, ids unique per request, masked headers."""
    method, route, path = rng.choice(ROUTES)
    return {
        "event": "request_completed",
        "level": "info",
        "logger": "observability.asgi",
        "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
        "user_id": f"u_{rng.randrange(1, 50_000)}",
        "method": method,
        "route": route,
        "path": path.format(n=rng.randrange(100)),
        "status": rng.choice((200, 200, 200, 201, 204, 404)),
        "duration_ms": round(rng.uniform(0.3, 80.0), 3),
        "user_agent": rng.choice(USER_AGENTS),
        "client_ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        # Already shortened by Masker.mask_header in the middleware, as the platform logs them.
        "authorization": f"Bearer [MASKED:last4={rng.getrandbits(16):04x}]",
        "x_api_key": "[MASKED]",
    }


def secret_event(rng: random.Random) -> dict[str, Any]:
    """An event full of secrets: every detector and a denylisted key fire."""
    event = typical_event(rng)
    event.update(
        {
            "event": "login_failed",
            "password": "hunter2",
            "error": (
                "OperationalError: could not connect to "
                "postgres://app:s3cr3t@db.internal:5432/app "
                f"for alice{rng.randrange(1000)}@example.com"
            ),
            "path": "/api/v1/callback?code=1&token=abc123def456&page=2",
            "note": "card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE, "
            "Bearer abcdefghijklmnop123",
            "payload": '{"refresh_token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"}',
        }
    )
    return event


def run(events: list[dict[str, Any]], masker: Callable[..., Any] | None, rounds: int) -> float:
    """Best-of-`rounds` events/s for copy (+ mask) + render over `events`."""
    dumps = orjson.dumps
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        if masker is None:
            for event in events:
                dumps(dict(event))
        else:
            for event in events:
                dumps(masker(None, "info", dict(event)))
        best = min(best, time.perf_counter() - start)
    return len(events) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(7)
    typical = [typical_event(rng) for _ in range(args.events)]
    secrets = [secret_event(rng) for _ in range(args.events // 5)]

    baseline = run(typical, None, args.rounds)
    masked = run(typical, Masker(), args.rounds)
    secret_base = run(secrets, None, args.rounds)
    secret_masked = run(secrets, Masker(), args.rounds)

    def line(label: str, rate: float, base: float) -> None:
        extra_us = (1 / rate - 1 / base) * 1e6
        print(f"{label:<38} {rate:>12,.0f} events/s  (+{extra_us:5.2f} us/event for masking)")

    print(f"{'typical event, no masking (baseline)':<38} {baseline:>12,.0f} events/s")
    line("typical event, masking on", masked, baseline)
    print(f"{'secret-laden event, no masking':<38} {secret_base:>12,.0f} events/s")
    line("secret-laden event, masking on", secret_masked, secret_base)
    print(f"masking on / off, typical event: {masked / baseline:.2f}")


if __name__ == "__main__":
    main()
