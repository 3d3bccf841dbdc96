"""Masking cost per log event, on the path the log pipeline really uses (run on demand).

    taskset -c 0 python benchmarks/masking_throughput.py [--events 100000] [--rounds 3]

Each variant copies a prepared event (the pipeline gets a fresh dict per call) and renders it
with orjson; the masked variants call `Masker.mask_event` in between, exactly as
`LogPipeline._render` does. Events are the mixed ones of `mixed_events.py` (unique ids, free
text, ~5 % secrets), so the clean-string cache sees realistic churn. Also timed: the engine's
prefilter alone over the same strings, and the clean-request-line and secret-event subsets.
The baseline runs in the same process: ratios are meaningful on any machine, absolute figures
are not.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson
from benchmarks.mixed_events import mixed_events

from observability.masking import Masker

Prepared = list[dict[str, Any]]


def prepare(events: list[tuple[str, dict[str, Any]]]) -> Prepared:
    return [{"event": name, "level": "info", "logger": "bench", **f} for name, f in events]


def best_rate(events: Prepared, work: Callable[[dict[str, Any]], Any], rounds: int) -> float:
    best = float("inf")
    dumps = orjson.dumps
    for _ in range(rounds):
        start = time.perf_counter()
        for event in events:
            dumps(work(dict(event)))
        best = min(best, time.perf_counter() - start)
    return len(events) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    events = prepare(mixed_events(args.events))
    requests = [e for e in events if e["event"] == "request_completed"]
    secret_kinds = ("@", "Bearer", "4111", "ghp_", "postgres://", "+44")
    secrets = [e for e in events if any(k in str(e) for k in secret_kinds)]

    def identity(event: dict[str, Any]) -> dict[str, Any]:
        return event

    def rates(subset: Prepared) -> tuple[float, float]:
        masker = Masker()  # a fresh cache per subset: no warm start from a previous run
        return best_rate(subset, identity, args.rounds), best_rate(
            subset, masker.mask_event, args.rounds
        )

    print(
        f"{len(events):,} events: {len(requests):,} request lines, {len(secrets):,} with a secret"
    )
    subsets = (("mixed", events), ("request lines", requests), ("secret events", secrets))
    for label, subset in subsets:
        base, masked = rates(subset)
        extra_us = (1 / masked - 1 / base) * 1e6
        print(
            f"{label:<14} copy+render {base:>10,.0f}/s  +mask_event {masked:>10,.0f}/s  "
            f"ratio {masked / base:.2f}  (+{extra_us:.2f} us/event)"
        )
    engine = Masker().engine
    texts = [v for e in events for v in e.values() if isinstance(v, str)]
    start = time.perf_counter()
    suspects = sum(engine.suspect(text) for text in texts)
    elapsed = time.perf_counter() - start
    print(
        f"prefilter alone: {elapsed / len(texts) * 1e9:.0f} ns per string over {len(texts):,} "
        f"strings, {suspects / len(texts):.1%} suspect"
    )


if __name__ == "__main__":
    main()
