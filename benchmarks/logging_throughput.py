"""Logging throughput in lines/s, one core, every variant in the same run (run on demand).

    taskset -c 0 python -m benchmarks.logging_throughput [--lines 200000] [--rounds 3]

The events are the mixed ones of `benchmarks/mixed_events.py`: request lines (two thirds)
and application events with free text, about 5 % carrying a secret. Variants, each writing
JSON lines to a file:
- structlog-recipe: structlog's documented fast path (orjson + BytesLogger, cached logger),
  no masking: the reference;
- ours, masking off: the observability.logging pipeline (the caller renders, a writer thread
  writes) with mask=None;
- ours, masking on: the same with `default_masker().mask_event`, what the platform runs.
Every variant logs every event with `logger.info(event, **fields)` from a module-level
logger (`get_logger`), as application code does. The clock stops when every line is on disk
(the pipeline is flushed), so a writer thread that falls behind is counted. Rounds interleave
the variants (recipe, off, on, recipe, ...) and the best of each is kept, so a burst of load
on the machine hits them alike. `--profile` adds a per-stage split of the masked pipeline
(front end, mask, render, queue and write), measured by timing each stage alone.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import structlog
from benchmarks.mixed_events import Event, mixed_events

from observability.logging import LoggingConfig, configure_logging, get_logger, reset
from observability.masking import Masker


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
        log = structlog.get_logger("bench.recipe")
        start = time.perf_counter()
        for event, fields in batch:
            log.info(event, **fields)
        sink.flush()
        elapsed = time.perf_counter() - start
    structlog.reset_defaults()
    return elapsed


def run_ours(directory: Path, batch: list[Event], masker: Masker | None) -> float:
    pipeline = configure_logging(
        LoggingConfig(directory=directory, stdout=False, queue_size=len(batch) + 10),
        mask=masker.mask_event if masker is not None else None,  # type: ignore[arg-type]
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


def stage_profile(batch: list[Event]) -> dict[str, float]:
    """Microseconds per event of each stage of the masked pipeline, each timed alone."""
    masker = Masker()
    events = [{"event": name, "logger": "bench", "level": "info", **f} for name, f in batch]
    directory = Path(tempfile.mkdtemp(prefix="ep-logstage-"))
    pipeline = configure_logging(
        LoggingConfig(directory=directory, stdout=False, queue_size=len(batch) + 10)
    )
    log = get_logger("bench.stages")
    timings: dict[str, float] = {}

    def timed(name: str, work: Callable[[], Any]) -> None:
        start = time.perf_counter()
        work()
        timings[name] = (time.perf_counter() - start) / len(batch) * 1e6

    copies = [dict(e) for e in events]
    timed("mask (mask_event)", lambda: [masker.mask_event(e) for e in copies])
    timed("render (orjson)", lambda: [orjson.dumps(e) for e in copies])
    timed("front end + render + queue", lambda: [log.info(n, **f) for n, f in batch])
    timed("write (writer thread drains)", lambda: pipeline.flush(120))
    reset()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="per-stage split of 'on'")
    args = parser.parse_args()
    batch = mixed_events(args.lines)
    tmp = Path(tempfile.mkdtemp(prefix="ep-logbench-"))
    variants: dict[str, Callable[[int], float]] = {
        "structlog recipe (no masking)": lambda r: run_structlog_recipe(tmp / f"r{r}.log", batch),
        "ours, masking off": lambda r: run_ours(tmp / f"off{r}", batch, None),
        # A fresh masker per round: its caches start cold, as in a new process.
        "ours, masking on": lambda r: run_ours(tmp / f"on{r}", batch, Masker()),
    }
    best = dict.fromkeys(variants, float("inf"))
    for round_number in range(args.rounds):
        for name, run in variants.items():
            best[name] = min(best[name], run(round_number))
    print(f"{args.lines:,} mixed events per variant, best of {args.rounds} interleaved rounds")
    recipe = args.lines / best["structlog recipe (no masking)"]
    for name, elapsed in best.items():
        rate = args.lines / elapsed
        print(f"{name:<32} {rate:>10,.0f} lines/s  {rate / recipe:5.2f} of the recipe")
    if args.profile:
        print("per-stage, masked pipeline (us per event):")
        for stage, micros in stage_profile(batch).items():
            print(f"  {stage:<32} {micros:6.2f}")


if __name__ == "__main__":
    main()
