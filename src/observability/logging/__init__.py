"""Structured JSON logging for any ASGI service: one pipeline, every sink masked.

pipeline = configure_logging(LoggingConfig(directory=Path("var/log")), mask=mask_event)

`mask` takes a whole event dict and returns the masked dict (`instrument()` passes the
default masker's); omitted, nothing is masked.
log = get_logger("my_service.orders")
log.info("order_placed", order_id=42)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from observability.logging.console import ConsoleSink, wants_console
from observability.logging.levels import LEVELS, LevelPolicy, parse_levels
from observability.logging.pipeline import (
    LogPipeline,
    Mask,
    active_pipeline,
    get_logger,
    install,
    reset,
)
from observability.logging.request_log import RequestLogObserver
from observability.logging.sinks import (
    CallbackSink,
    MemorySink,
    RotatingFileSink,
    Sink,
    StreamSink,
)

__all__ = [
    "CallbackSink",
    "ConsoleSink",
    "LevelPolicy",
    "LogPipeline",
    "LoggingConfig",
    "MemorySink",
    "RequestLogObserver",
    "RotatingFileSink",
    "Sink",
    "StreamSink",
    "active_pipeline",
    "configure_logging",
    "get_logger",
    "parse_levels",
    "reset",
]

# Chatty libraries start one notch quieter; EP_LOG_LEVELS overrides any of these.
DEFAULT_LOGGER_LEVELS = {
    "uvicorn.access": "WARNING",  # request_completed replaces uvicorn's access line
    "sqlalchemy.engine": "WARNING",
    "botocore": "WARNING",
    "boto3": "WARNING",
    "urllib3": "WARNING",
    "httpx": "WARNING",
    "httpx2": "WARNING",
    "httpcore": "WARNING",
    "alembic": "WARNING",
}


def _no_mask(event: dict[str, Any]) -> dict[str, Any]:
    return event


@dataclass
class LoggingConfig:
    level: str = "INFO"
    levels: str = ""  # "sqlalchemy.engine=WARNING,uvicorn.access=ERROR"
    directory: Path | None = Path("./var/log")
    file_stem: str = "platform"
    stdout: bool = True
    # stdout as JSON ("json"), as coloured lines for people ("pretty"), or "auto": pretty when
    # stdout is a terminal. Files and other sinks are JSON whatever this says.
    console: str = "auto"
    max_file_bytes: int = 100 * 1024 * 1024
    rotate_seconds: float = 86_400.0
    retention_days: float = 14.0
    queue_size: int = 50_000
    static_fields: dict[str, Any] = field(default_factory=dict)


def configure_logging(
    config: LoggingConfig, mask: Mask | None = None, extra_sinks: list[Sink] | None = None
) -> LogPipeline:
    """Build the pipeline from the config and install it for structlog and stdlib logging."""
    if config.level.upper() not in LEVELS:
        raise ValueError(f"bad log level {config.level!r}: expected one of {', '.join(LEVELS)}")
    levels = {name: LEVELS[level] for name, level in DEFAULT_LOGGER_LEVELS.items()}
    levels.update(parse_levels(config.levels))
    sinks: list[Sink] = []
    if config.stdout:
        sinks.append(ConsoleSink() if wants_console(config.console) else StreamSink())
    if config.directory is not None:
        sinks.append(
            RotatingFileSink(
                config.directory,
                stem=config.file_stem,
                max_bytes=config.max_file_bytes,
                rotate_seconds=config.rotate_seconds,
                retention_days=config.retention_days,
            )
        )
    sinks.extend(extra_sinks or [])
    pipeline = LogPipeline(
        sinks,
        LevelPolicy(LEVELS[config.level.upper()], levels),
        queue_size=config.queue_size,
        mask=mask or _no_mask,
        static_fields=config.static_fields,
    )
    install(pipeline)
    return pipeline
