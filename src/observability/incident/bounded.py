"""Run the evidence's sections side by side, each against one deadline: what finished in time
is kept, what did not is named. When the incident *is* the database, the error store (which
may share that database) answers slowly; the sections read from memory and log files still
arrive, and the page says which part is missing instead of staying blank.

A section that misses the deadline keeps running in its own daemon thread until its read
returns (a statement cannot be interrupted from here); its result is dropped. A thread per
section, not a shared pool: a pool whose workers all wait on a stuck database would make the
next request's memory-only sections wait too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Outcome", "run_bounded"]

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    name: str
    value: T | None = None
    error: BaseException | None = None
    done: bool = False
    seconds: float = 0.0
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)


def run_bounded(
    sections: Sequence[tuple[str, Callable[[], T]]], deadline_s: float
) -> list[Outcome[T]]:
    """Run every section in its own thread; wait at most `deadline_s` for all of them.
    Outcomes come back in the given order; `done` is False for those still running."""
    outcomes: list[Outcome[T]] = [Outcome(name) for name, _ in sections]
    for outcome, (_, fn) in zip(outcomes, sections, strict=True):
        thread = threading.Thread(
            target=_run, args=(outcome, fn), name=f"evidence-{outcome.name}", daemon=True
        )
        thread.start()
    end = time.monotonic() + deadline_s
    for outcome in outcomes:
        outcome._finished.wait(max(0.0, end - time.monotonic()))
    for outcome in outcomes:
        outcome.done = outcome._finished.is_set()
    return outcomes


def _run(outcome: Outcome[T], fn: Callable[[], T]) -> None:
    started = time.monotonic()
    try:
        outcome.value = fn()
    except BaseException as exc:  # reported as the section's note, never raised
        outcome.error = exc
    finally:
        outcome.seconds = time.monotonic() - started
        outcome._finished.set()
