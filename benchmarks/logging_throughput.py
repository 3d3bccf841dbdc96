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


def stage_profile(batch: list[Event], rounds: int = 3) -> dict[str, float]:
    """Microseconds per event of each stage of the masked pipeline, each timed alone over the
    same events (best of `rounds`): the logger call up to the queue with masking, rendering
    and the queue put stubbed out; masking (`mask_event`); rendering (`LogPipeline._render`
    with masking off: ordering, timestamp, orjson); the queue put; the sink writes."""
    directory = Path(tempfile.mkdtemp(prefix="ep-logstage-"))
    pipeline = configure_logging(
        LoggingConfig(directory=directory, stdout=False, queue_size=len(batch) + 10)
    )
    log = get_logger("bench.stages")
    masker = Masker()
    # The events as the front end hands them to the pipeline (logger, level, timestamp set).
    captured: list[dict[str, Any]] = []
    real_submit = pipeline.submit
    pipeline.submit = lambda level, event, trusted=frozenset(): captured.append(event)  # type: ignore[method-assign]
    for name, fields in batch:
        log.info(name, **dict(fields))
    pipeline.submit = real_submit  # type: ignore[method-assign]
    timings: dict[str, float] = {}

    def timed(stage: str, prepare: Callable[[], Any], work: Callable[[Any], Any]) -> None:
        best = float("inf")
        for _ in range(rounds):
            data = prepare()
            start = time.perf_counter()
            work(data)
            best = min(best, time.perf_counter() - start)
        timings[stage] = best / len(batch) * 1e6

    def front_end(_: Any) -> None:
        pipeline.submit = lambda level, event, trusted=frozenset(): None  # type: ignore[method-assign]
        for name, fields in batch:
            log.info(name, **fields)
        pipeline.submit = real_submit  # type: ignore[method-assign]

    def copies() -> list[dict[str, Any]]:
        return [dict(event) for event in captured]

    def mask_all(events: list[dict[str, Any]]) -> None:
        for event in events:
            masker.mask_event(event)

    def render_all(events: list[dict[str, Any]]) -> None:
        for event in events:  # results dropped: keeping 10^5 lines would time the allocator
            pipeline._render(20, event)

    timed("front end (logger call, context)", lambda: None, front_end)
    timed("mask (Masker.mask_event)", copies, mask_all)
    timed("render (order, stamp, orjson)", copies, render_all)
    records = [pipeline._render(20, dict(e)) for e in captured[:512]]
    queue = pipeline.queue

    def put_all(_: Any) -> None:
        for _start in range(0, len(batch), 512):  # the writer drains about this many at a time
            for record in records:
                queue.put(20, record)
            queue.drain()

    def write_all(_: Any) -> None:
        for _start in range(0, len(batch), 512):
            sink.write(records)

    timed("queue (put, drain)", lambda: None, put_all)
    sink = pipeline.sinks[0]
    timed("write (file sink, batches of 512)", lambda: None, write_all)
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
        print("per-stage, masked pipeline (us per event, each stage alone, best of 3):")
        stages = stage_profile(batch)
        for stage, micros in stages.items():
            print(f"  {stage:<36} {micros:6.2f}")
        print(f"  {'sum of the stages':<36} {sum(stages.values()):6.2f}")
        print(f"  {'structlog recipe, whole line':<36} {1e6 / recipe:6.2f}")


if __name__ == "__main__":
    main()
