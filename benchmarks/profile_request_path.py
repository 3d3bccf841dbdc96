"""Where the request path's microseconds go, measured in instructions (load-independent).

A ladder of in-process apps, each adding one stage to the one before (bare FastAPI -> the
middleware -> in-flight gauge -> metrics -> windows -> log line built -> rendered -> queued
-> masked = the full stack F). Each rung runs under `valgrind --tool=callgrind` twice, with 0
and with N requests through its ASGI callable; (Ir(N) - Ir(0)) / N is that rung's
instructions per request, and a rung minus the one below it is the stage's cost. Instruction
counts repeat exactly whatever the other core does (PYTHONHASHSEED is fixed), so this runs on a
busy machine; a second, native pass counts gen-0 garbage collections per 1,000 requests.

Run:  .venv/bin/python benchmarks/profile_request_path.py [--requests 2000] [--route hello]
      .venv/bin/python benchmarks/profile_request_path.py --route assign --rungs A,M,F
Needs Debian `valgrind`. Results: benchmarks/profile_request_path.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from http_overhead import checked_request_path_mode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PATHS = {"hello": "/hello", "assign": "/assign/u1"}


# --- the ladder: each rung adds one stage ------------------------------------------------------


def _pipeline(mask: bool, submit: str) -> None:
    """Our log pipeline to a temporary file; `submit` cuts it short for the lower rungs."""
    import tempfile

    from observability.logging import LoggingConfig, configure_logging
    from observability.masking import default_masker

    pipeline = configure_logging(
        LoggingConfig(directory=Path(tempfile.mkdtemp(prefix="bench-logs-")), stdout=False),
        mask=default_masker().mask_event if mask else None,
    )
    if submit == "none":  # the event dict is built, then dropped
        pipeline.submit = pipeline.submit_split = lambda *_: None  # type: ignore[method-assign]
    elif submit == "render":  # rendered to bytes, not queued
        pipeline.queue.put = lambda *_: None  # type: ignore[method-assign]


def _stack(*, in_flight: bool, metrics: bool, windows: bool, log: str) -> Any:
    from prometheus_client import CollectorRegistry

    import apps
    from observability.asgi import ObservabilityMiddleware, RequestRecord
    from observability.logging import RequestLogObserver
    from observability.metrics.prometheus import HttpMetrics
    from observability.metrics.windows import RequestWindowsObserver, RollingWindows

    observers: list[Callable[[RequestRecord], None]] = []
    if log:
        _pipeline(mask=log == "masked", submit={"built": "none", "rendered": "render"}.get(log, ""))
        observers.append(RequestLogObserver())
    http = HttpMetrics(CollectorRegistry())
    if metrics:
        observers.append(http)
    if windows:  # as instrument() feeds them
        observers.append(RequestWindowsObserver(RollingWindows(), apps.OPERATOR_PATHS))
    app = apps.bare()
    app.add_middleware(
        ObservabilityMiddleware,  # type: ignore[arg-type]
        observers=observers,
        in_flight=http.in_flight if in_flight else None,
        in_flight_exclude=http.excluded,
    )
    return app


# rung -> (what it adds, factory)
RUNGS: dict[str, tuple[str, Callable[[], Any]]] = {
    "A": ("bare FastAPI", lambda: __import__("apps").bare()),
    "O": (
        "middleware: context, request id, trace, timing",
        lambda: _stack(in_flight=False, metrics=False, windows=False, log=""),
    ),
    "I": (
        "in-flight gauge",
        lambda: _stack(in_flight=True, metrics=False, windows=False, log=""),
    ),
    "M": (
        "Prometheus RED metrics record",
        lambda: _stack(in_flight=True, metrics=True, windows=False, log=""),
    ),
    "W": (
        "rolling windows record",
        lambda: _stack(in_flight=True, metrics=True, windows=True, log=""),
    ),
    "Lb": (
        "log line: event dict built",
        lambda: _stack(in_flight=True, metrics=True, windows=True, log="built"),
    ),
    "Lr": (
        "log line: rendered (orjson, timestamp)",
        lambda: _stack(in_flight=True, metrics=True, windows=True, log="rendered"),
    ),
    "Lq": (
        "log line: queued + written by the writer thread",
        lambda: _stack(in_flight=True, metrics=True, windows=True, log="plain"),
    ),
    "F": (
        "masking (full stack F)",
        lambda: _stack(in_flight=True, metrics=True, windows=True, log="masked"),
    ),
}


PATCHED = {"Lb", "Lr"}  # rungs that cut the pipeline short by patching its methods

# --- one measured run ----------------------------------------------------------------------


def _drive(app: Any, path: str, n: int) -> None:
    from apps import drive

    drive(app, path, n, headers=((b"host", b"bench"), (b"user-agent", b"wrk")))


def child(rung: str, path: str, n: int) -> None:
    """Build the rung, warm it up, then drive n requests (what callgrind counts, minus n=0)."""
    sys.path.insert(0, str(HERE))
    app = RUNGS[rung][1]()
    _drive(app, path, 300)  # build the middleware stack, fill caches
    _drive(app, path, n)
    _quiesce()


def _quiesce() -> None:
    # Let the log writer drain what it was given, so its writes are charged to the run.
    from observability.logging.pipeline import active_pipeline

    pipeline = active_pipeline()
    if pipeline is not None:
        pipeline.flush()


def instructions(rung: str, path: str, n: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            rung,
            "--path",
            path,
            "--requests",
            str(n),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))  # type: ignore[union-attr]


def gc_per_1000(rung: str, path: str, n: int) -> float:
    """Gen-0 collections per 1,000 requests (natively): what the request path allocates."""
    sys.path.insert(0, str(HERE))
    app = RUNGS[rung][1]()
    _drive(app, path, 300)
    before = gc.get_stats()[0]["collections"]
    _drive(app, path, n)
    return (gc.get_stats()[0]["collections"] - before) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rungs", default=",".join(RUNGS), help="from: " + ",".join(RUNGS))
    parser.add_argument("--route", choices=sorted(PATHS), default="hello")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.requests)
        return
    path = PATHS[args.route]
    rungs = [r.strip() for r in args.rungs.split(",") if r.strip()]
    mode = checked_request_path_mode()
    print(f"observability request path: {mode}")
    if mode == "compiled" and PATCHED & set(rungs):
        # Those rungs replace pipeline methods on the instance; a compiled class has fixed ones.
        print(
            f"skipping {', '.join(sorted(PATCHED & set(rungs)))}: they patch the pipeline, "
            "which the compiled build does not allow (OBSERVABILITY_PURE_PYTHON=1 runs them)"
        )
        rungs = [r for r in rungs if r not in PATCHED]
    print(f"route {path}, {args.requests} requests, instructions per request (callgrind)")
    print(f"{'rung':<4} {'adds':<50} {'Ir/req':>9} {'+Ir':>8} {'gc0/1k':>7}")
    previous: int | None = None
    for rung in rungs:
        base = instructions(rung, path, 0)
        per_request = (instructions(rung, path, args.requests) - base) // args.requests
        collections = subprocess.run(
            [sys.executable, __file__, "--gc", rung, "--path", path],
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        delta = "-" if previous is None else f"{per_request - previous:+,}"
        print(f"{rung:<4} {RUNGS[rung][0]:<50} {per_request:>9,} {delta:>8} {collections:>7}")
        previous = per_request


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--gc":
        print(f"{gc_per_1000(sys.argv[2], sys.argv[4], 20_000):.1f}")
    else:
        main()
