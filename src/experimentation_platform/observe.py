"""How the platform is observed: the one place that turns settings into observability parts.

`app.py` calls this; nothing else in the platform configures logging or metrics.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from experimentation_platform.settings import Settings
from observability.asgi import RequestObserver
from observability.logging import (
    LoggingConfig,
    LogPipeline,
    RequestLogObserver,
    Sink,
    configure_logging,
)

__all__ = ["Observability", "setup_observability"]


@dataclass
class Observability:
    settings: Settings
    logs: LogPipeline
    request_observers: list[RequestObserver] = field(default_factory=list)

    def close(self, timeout: float = 5.0) -> None:
        self.logs.close(timeout)


def instance_id(settings: Settings) -> str:
    return settings.instance_id or f"{socket.gethostname()}:{os.getpid()}"


def logging_config(settings: Settings) -> LoggingConfig:
    return LoggingConfig(
        level=settings.log_level,
        levels=settings.log_levels,
        directory=settings.log_dir if settings.log_to_file else None,
        file_stem=settings.log_file_stem,
        stdout=settings.log_to_stdout,
        max_file_bytes=settings.log_max_file_bytes,
        rotate_seconds=settings.log_rotate_seconds,
        retention_days=settings.log_retention_days,
        queue_size=settings.log_queue_size,
        static_fields={"service": "experimentation-platform", "instance": instance_id(settings)},
    )


def setup_observability(settings: Settings, extra_sinks: list[Sink] | None = None) -> Observability:
    logs = configure_logging(logging_config(settings), extra_sinks=extra_sinks)
    request_log = RequestLogObserver(
        sample_rate=settings.log_sample_rate, slow_ms=settings.log_slow_request_ms
    )
    return Observability(settings=settings, logs=logs, request_observers=[request_log])
