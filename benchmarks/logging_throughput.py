"""Logging throughput in lines/s, one core, everything in the same run (run on demand).

    taskset -c 0 python benchmarks/logging_throughput.py [--lines 200000]

Variants, each writing JSON lines (or text for the stdlib baseline) to a file:
- stdlib: logging.FileHandler with a plain text formatter (the floor everybody has);
- structlog-recipe: structlog's documented fast path (orjson + BytesLogger);
- ours, masking off: observability.logging pipeline (queue + writer thread) with mask=identity;
- ours, masking on: the same with the default masker (what the platform runs).
The clock stops when every line is on disk (the pipeline is flushed), so a writer thread that
falls behind is counted. Pin the process to one core: the writer shares it with the callers.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import structlog

from observability.logging import LoggingConfig, configure_logging, get_logger, reset
from observability.masking import default_masker

Event = tuple[str, dict[str, object]]


def events(n: int) -> list[Event]:
    return [
        (
            "request_completed",
            {
                "method": "GET",
                "route": "/api/v1/flags/{key}/evaluation",
                "status": 200,
                "duration_ms": 1.234 + i % 7,
                "bytes_out": 181,
                "user_id": f"user-{i % 5000}",
                "request_id": f"{i:032x}",
                "trace_id": f"{i * 7:032x}",
                "client_ip": "10.1.2.3",
            },
        )
        for i in range(n)
    ]


def run_stdlib(path: Path, batch: list[Event]) -> float:
    logger = logging.getLogger("bench.stdlib")
    logger.propagate = False
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    for event, fields in batch:
        logger.info("%s %s", event, fields)
    handler.close()
    return time.perf_counter() - start


def run_structlog_recipe(path: Path, batch: list[Event]) -> float:
    with open(path, "wb") as sink:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(serializer=orjson.dumps),
            ],
            logger_factory=structlog.BytesLoggerFactory(sink),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=True,
        )
        log = structlog.get_logger()
        start = time.perf_counter()
        for event, fields in batch:
            log.info(event, **fields)
        sink.flush()
        elapsed = time.perf_counter() - start
    structlog.reset_defaults()
    return elapsed


def run_ours(directory: Path, batch: list[Event], masked: bool) -> float:
    masker = default_masker()

    def mask(event: dict[str, object]) -> dict[str, object]:
        result = masker.mask(event)
        return result if isinstance(result, dict) else event

    pipeline = configure_logging(
        LoggingConfig(directory=directory, stdout=False, queue_size=len(batch) + 10),
        mask=mask if masked else None,
    )
    log = get_logger("bench.ours")
    start = time.perf_counter()
    for event, fields in batch:
        log.info(event, **fields)
    assert pipeline.flush(120), "pipeline did not drain"
    elapsed = time.perf_counter() - start
    dropped = sum(pipeline.dropped.values())
    reset()
    assert dropped == 0, f"{dropped} lines dropped"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200_000)
    args = parser.parse_args()
    batch = events(args.lines)
    tmp = Path(tempfile.mkdtemp(prefix="ep-logbench-"))
    variants: dict[str, Callable[[], float]] = {
        "stdlib text FileHandler": lambda: run_stdlib(tmp / "stdlib.log", batch),
        "structlog orjson+BytesLogger": lambda: run_structlog_recipe(tmp / "recipe.log", batch),
        "ours, masking off": lambda: run_ours(tmp / "off", batch, masked=False),
        "ours, masking on": lambda: run_ours(tmp / "on", batch, masked=True),
    }
    print(f"{args.lines:,} lines per variant, best of 2")
    for name, run in variants.items():
        best = min(run() for _ in range(2))
        print(f"{name:<32} {args.lines / best:>10,.0f} lines/s")


if __name__ == "__main__":
    main()
