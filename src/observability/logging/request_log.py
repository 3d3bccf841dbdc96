"""One `request_completed` line per request, from the middleware's RequestRecord.

Sampling keeps the lines an operator needs: 4xx, 5xx and slow requests are always written;
fast successes are kept with probability `sample_rate`, and a kept sampled line carries
`sample_rate` so counts can be rebuilt (count / sample_rate).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from observability.context import mapping_get
from observability.logging.exceptions import structure_exception
from observability.logging.pipeline import LEVEL_NAMES, LogPipeline, active_pipeline
from observability.masking import default_masker
from observability.request_record import RequestRecord

__all__ = ["RequestLogObserver"]

HeaderMasker = Callable[[str, str], str]


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
        ctx = record.context
        duration_s = record.duration_s
        # Two dicts from the start, no split per line later. Trusted (never scanned): what the
        # middleware produced from validated input: numbers, the route template, hex ids (the
        # request id when we generated it), an IP address parsed as one, and trace_id, span_id
        # and client_ip from the context. Untrusted (masked): path, query, headers, a client's
        # request id, and the context fields a caller or a client sets (user_id, principal,
        # user_agent, extras).
        trusted: dict[str, Any] = {
            "timestamp": record.started_at + duration_s,
            "level": LEVEL_NAMES[level],
            "logger": self.logger_name,
            "event": "request_completed",
            "route": record.route,
            "status": record.status,
            # equal to round(x, 3) except at exact halves, at a quarter of its cost
            "duration_ms": int(duration_s * 1_000_000.0 + 0.5) / 1000.0,
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
        }
        if duration_s >= self.slow_s:
            trusted["slow"] = True
        if sampled:
            trusted["sample_rate"] = self.sample_rate
        untrusted: dict[str, Any] = {"method": record.method, "path": record.path}
        scope = ctx.scope
        if scope and (query := mapping_get(scope, "query_string")):
            untrusted["query"] = query.decode("latin-1")
        extra = ctx.extra
        # An id we generated is 32 hex digits: trusted. One a client sent is data: masked.
        if ctx.request_id is not None:
            side = untrusted if "request_id_source" in extra else trusted
            side["request_id"] = ctx.request_id
        # Unrolled: a loop over the field names with getattr costs twice as much.
        if ctx.trace_id is not None:
            trusted["trace_id"] = ctx.trace_id
        if ctx.span_id is not None:
            trusted["span_id"] = ctx.span_id
        if ctx.client_ip is not None:
            trusted["client_ip"] = ctx.client_ip
        if ctx.user_id is not None:
            untrusted["user_id"] = ctx.user_id
        if ctx.principal is not None:
            untrusted["principal"] = ctx.principal
        if ctx.user_agent is not None:
            untrusted["user_agent"] = ctx.user_agent
        if extra:
            for key, value in extra.items():
                if key not in trusted and key not in untrusted:
                    untrusted[key] = value
        if record.headers:
            headers = {}
            for name, value in record.headers.items():
                if name in self.log_headers:
                    secret = name in self.secret_headers
                    headers[name] = self.mask_header(name, value) if secret else value
            if headers:
                # Masked here as a flat event (the same masker, sensitive names included),
                # not walked as a nested mapping of the line: a third of the cost.
                trusted["headers"] = pipeline.mask(headers)
        if record.exception is not None:
            trusted["error_type"] = type(record.exception).__qualname__
            self._failed(pipeline, record, trusted, untrusted)
        pipeline.submit_split(level, trusted, untrusted)

    def _failed(
        self,
        pipeline: LogPipeline,
        record: RequestRecord,
        trusted: dict[str, Any],
        untrusted: dict[str, Any],
    ) -> None:
        """The `request_failed` line with the structured exception, beside the request line."""
        event = {**untrusted, **trusted}
        failure = {
            key: event[key] for key in ("logger", "timestamp", "method", "route", "path", "status")
        }
        failure.update(event="request_failed", level="error")
        failure["exception"] = structure_exception(record.exception)  # type: ignore[arg-type]
        for key, value in record.context.as_dict().items():
            failure.setdefault(key, value)
        pipeline.submit(40, failure)
