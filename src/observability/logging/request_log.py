"""One `request_completed` line per request, from the middleware's RequestRecord.

Sampling keeps the lines an operator needs: 4xx, 5xx and slow requests are always written;
fast successes are kept with probability `sample_rate`, and a kept sampled line carries
`sample_rate` so counts can be rebuilt (count / sample_rate).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from observability.asgi import RequestRecord
from observability.logging.exceptions import structure_exception
from observability.logging.pipeline import active_pipeline
from observability.masking import default_masker

__all__ = ["RequestLogObserver"]

HeaderMasker = Callable[[str, str], str]

# Produced by the middleware from validated input: numbers, the route template, hex ids, an IP
# address parsed as one. Everything else (path, query, headers, request id, user id, user
# agent) goes through the masker.
TRUSTED_FIELDS = frozenset(
    {
        "event",
        "logger",
        "timestamp",
        "level",
        "route",
        "status",
        "duration_ms",
        "bytes_in",
        "bytes_out",
        "slow",
        "sample_rate",
        "trace_id",
        "span_id",
        "client_ip",
        "error_type",
    }
)


def _mask_header(name: str, value: str) -> str:
    # The same masker as every other sink: credentials keep at most their last 4 characters.
    return default_masker().mask_header(name, value)


class RequestLogObserver:
    def __init__(
        self,
        *,
        logger_name: str = "observability.request",
        sample_rate: float = 1.0,
        slow_ms: float = 500.0,
        log_headers: Iterable[str] = ("user-agent", "content-type", "accept", "authorization"),
        secret_headers: Iterable[str] = (
            "authorization",
            "cookie",
            "x-api-key",
            "proxy-authorization",
        ),
        mask_header: HeaderMasker = _mask_header,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        self.logger_name = logger_name
        self.sample_rate = sample_rate
        self.slow_s = slow_ms / 1000.0
        self.log_headers = frozenset(h.lower() for h in log_headers)
        self.secret_headers = frozenset(h.lower() for h in secret_headers)
        self.mask_header = mask_header
        self.random = random_source
        self.sampled_out = 0

    def __call__(self, record: RequestRecord) -> None:
        pipeline = active_pipeline()
        if pipeline is None:
            return
        level = 40 if record.status >= 500 else 30 if record.status >= 400 else 20
        if level < pipeline.policy.threshold(self.logger_name):
            return
        sampled = False
        if record.status < 400 and record.duration_s < self.slow_s and self.sample_rate < 1.0:
            if self.random() >= self.sample_rate:
                self.sampled_out += 1
                return
            sampled = True
        event: dict[str, Any] = {
            "event": "request_completed",
            "logger": self.logger_name,
            "timestamp": record.started_at + record.duration_s,
            "level": {20: "info", 30: "warning", 40: "error"}[level],
            "method": record.method,
            "route": record.route,
            "path": record.path,
            "status": record.status,
            "duration_ms": round(record.duration_s * 1000.0, 3),
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
        }
        if record.duration_s >= self.slow_s:
            event["slow"] = True
        if sampled:
            event["sample_rate"] = self.sample_rate
        query = record.context.scope.get("query_string") if record.context.scope else None
        if query:
            event["query"] = query.decode("latin-1")
        headers = {}
        for name, value in record.headers.items():
            if name in self.log_headers:
                secret = name in self.secret_headers
                headers[name] = self.mask_header(name, value) if secret else value
        if headers:
            event["headers"] = headers
        for key, value in record.context.as_dict().items():
            event.setdefault(key, value)
        if record.exception is not None:
            event["error_type"] = type(record.exception).__qualname__
            failure = {
                key: event[key]
                for key in ("logger", "timestamp", "method", "route", "path", "status")
            }
            failure.update(event="request_failed", level="error")
            failure["exception"] = structure_exception(record.exception)
            for key, value in record.context.as_dict().items():
                failure.setdefault(key, value)
            pipeline.submit(40, failure)
        pipeline.submit(level, event, TRUSTED_FIELDS)
