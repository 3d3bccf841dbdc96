"""Realistic log events for the logging and masking benchmarks (deterministic for a seed).

About two thirds are request lines as the middleware logs them (unique request and trace ids,
paths over a few hundred flag and experiment keys, users from a pool of 5,000, a handful of
user agents, a query string on some); the rest are application events with free text
(messages, reasons, notes, upstream errors) with numbers and ids interpolated, so the texts
are not all identical. About 5 % of all events carry a secret or personal data somewhere
(an e-mail in a note, a bearer token in an error, a card number in a reason...).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

__all__ = ["Event", "mixed_events"]

Event = tuple[str, dict[str, Any]]

USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "python-httpx/0.28.1",
    "curl/8.5.0",
    "okhttp/4.12.0",
    "Go-http-client/1.1",
)
ROUTES = (
    ("GET", "/api/v1/flags/{key}/evaluation", "/api/v1/flags/{name}/evaluation", 0.25),
    ("POST", "/api/v1/assignments", "/api/v1/assignments", 0.35),
    ("GET", "/api/v1/experiments/{key}", "/api/v1/experiments/{name}", 0.1),
    ("POST", "/api/v1/events", "/api/v1/events", 0.2),
    ("GET", "/api/v1/experiments/{key}/results", "/api/v1/experiments/{name}/results", 0.1),
)
NAMES = tuple(
    f"{a}-{b}" for a in ("checkout", "onboarding", "pricing", "search", "cart", "promo")
    for b in ("button", "flow", "banner", "layout", "copy", "ranking", "v2", "v3")
)  # fmt: skip
MESSAGES = (
    ("experiment_created", "note", "Created from the {n} quarterly plan; owner growth-team, "
     "review on day {m}"),
    ("flag_changed", "reason", "Rolling out to {n}% of users after the redesign looked good "
     "in staging"),
    ("upstream_call_failed", "error", "ConnectTimeout: billing.internal:8443 did not answer "
     "within {n} ms (attempt {m} of 3)"),
    ("events_ingested", "note", "Batch of {n} events accepted, {m} duplicates ignored"),
    ("experiment_status_changed", "reason", "Paused by on-call: sample ratio mismatch p={n}e-4 "
     "on variant green"),
    ("cache_degraded", "message", "Redis unavailable for {n} s, database answered {m} "
     "lookups directly"),
)  # fmt: skip
SECRETS = (
    ("note", "Customer {user}@example.com asked to be removed from experiment {n}"),
    ("error", "401 from upstream with Authorization: Bearer sk2Hf8{n}QwPz0LmXv9TyUa3"),
    ("reason", "Refund for card 4111 1111 1111 1111 requested by support ticket {n}"),
    ("message", "Deploy used token ghp_{n}aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z then rotated"),
    ("error", "could not connect to postgres://app:S3cret{n}@db.internal:5432/app"),
    ("note", "Call the customer back on +44 20 7946 0{n} before noon"),
)


def _request_line(rng: random.Random) -> Event:
    method, route, path, _ = rng.choices(ROUTES, weights=[r[3] for r in ROUTES])[0]
    fields: dict[str, Any] = {
        "method": method,
        "route": route,
        "path": path.format(name=rng.choice(NAMES)),
        "status": rng.choice((200, 200, 200, 200, 201, 204, 404, 422)),
        "duration_ms": round(rng.uniform(0.3, 80.0), 3),
        "bytes_in": rng.choice((0, 61, 118, 2048)),
        "bytes_out": rng.randrange(40, 900),
        "request_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        "trace_id": f"{rng.getrandbits(128):032x}",
        "span_id": f"{rng.getrandbits(64):016x}",
        "client_ip": f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        "user_agent": rng.choice(USER_AGENTS),
        "principal": f"{rng.randrange(20):012x}",
        "user_id": f"user-{rng.randrange(5000):05d}",
    }
    if rng.random() < 0.2:
        fields["query"] = f"limit=50&cursor={rng.getrandbits(40):010x}"
    return "request_completed", fields


def _app_event(rng: random.Random) -> Event:
    event, field, template = rng.choice(MESSAGES)
    text = template.format(n=rng.randrange(1, 1000), m=rng.randrange(1, 60))
    return event, {
        field: text,
        "experiment_key": rng.choice(NAMES),
        "request_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        "user_id": f"user-{rng.randrange(5000):05d}",
    }


def _secret_event(rng: random.Random) -> Event:
    event, fields = _app_event(rng)
    field, template = rng.choice(SECRETS)
    fields[field] = template.format(n=rng.randrange(100, 1000), user=f"jane.doe{rng.randrange(99)}")
    return event, fields


def mixed_events(count: int, seed: int = 7) -> list[Event]:
    """`count` events: 65 % request lines, 30 % application events, 5 % with a secret."""
    rng = random.Random(seed)
    events: list[Event] = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.65:
            events.append(_request_line(rng))
        elif pick < 0.95:
            events.append(_app_event(rng))
        else:
            events.append(_secret_event(rng))
    return events
