"""Where a server's extra microseconds go: each variant against bare, by library and function.

callgrind (profile_request_path.py) counts instructions in process; this measures time on the
server itself, as wrk drives it, so it also sees what instructions do not show: cache misses,
page faults, the log writer's thread, the kernel. Each variant's server (the same as
http_overhead.py's: uvicorn, 1 worker, pinned to CPU 0, wrk -c32 on CPU 1) is sampled with
`perf record -e cpu-clock` during the measured run; a function's samples / frequency / requests
is its microseconds per request. Rounds alternate the variants (A, Z, M, A, Z, M...) and
their samples and requests add up, so drift over the run hits every variant alike.

Python functions run by the interpreter show as `_PyEval_EvalFrameDefault` (CPython 3.11 has
no perf map); the compiled request path's functions (observability.compiled) show by name.
Sampling costs the server some throughput: read the ratios from http_overhead.py, the
microseconds from here.

Run:  .venv/bin/python benchmarks/server_profile.py [--variants A,Z,M] [--rounds 2]
Needs Debian `perf` (linux-perf), `wrk` and perf_event_paranoid <= 2 (the default lets a user
sample their own processes). Results: benchmarks/profile_request_path.md.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from http_overhead import VARIANTS, checked_request_path_mode, start_server, wrk

# One line of `perf report -n --sort dso,sym`: "  12.34%   1234  libfoo.so  [.] symbol".
_REPORT_LINE = re.compile(r"\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[[.k]\]\s+(.+?)\s*$")


def sample(
    variant: str, args: argparse.Namespace, data: Path
) -> tuple[Counter[tuple[str, str]], int, float]:
    """(samples by (library, function), requests, requests/s) of one measured run."""
    server, port = start_server(variant, args.server_cpu)
    try:
        url = f"http://127.0.0.1:{port}{args.path}"
        wrk(url, args.warmup, args.connections, args.client_cpu)
        perf = subprocess.Popen(
            [
                *("taskset", "-c", args.client_cpu, "perf", "record", "-q", "-e", "cpu-clock"),
                *("-F", str(args.frequency), "-p", str(server.pid), "-o", str(data)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            rps, _, _, requests = wrk(url, args.duration, args.connections, args.client_cpu)
        finally:  # perf stops with the load, whatever happened to it
            perf.send_signal(signal.SIGINT)  # perf writes its file and exits on SIGINT
            _, err = perf.communicate(timeout=60)
        if perf.returncode not in (0, -signal.SIGINT) or not data.exists():
            sys.exit(f"perf record failed: {err.decode(errors='replace')[-400:]}")
    finally:
        server.terminate()
        server.wait(timeout=20)
    report = subprocess.run(
        [
            *("perf", "report", "-i", str(data), "--stdio", "-n", "--no-children"),
            *("-g", "none", "--sort", "dso,sym"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    samples: Counter[tuple[str, str]] = Counter()
    for line in report.splitlines():
        if not line.startswith("#") and (match := _REPORT_LINE.match(line)):
            count, library, function = match.groups()
            samples[(_short(library), function)] += int(count)
    return samples, requests, rps


def _short(library: str) -> str:
    """libpython3.11.so.1.0 -> libpython3.11; a mypyc module -> its name without the ABI tag."""
    return re.sub(r"(\.cpython-[^.]+)?\.so(\.[\d.]+)?$", "", library)


def per_request(
    samples: Counter[tuple[str, str]], requests: int, hz: int
) -> dict[tuple[str, str], float]:
    return {key: count / hz / requests * 1e6 for key, count in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", default="A,Z,M", help="from: " + ",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=2, help="times each variant is sampled")
    parser.add_argument("--duration", type=float, default=8.0, help="sampled seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--frequency", type=int, default=999, help="samples per second")
    parser.add_argument("--top", type=int, default=25, help="functions listed per variant")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    args = parser.parse_args()
    for tool in ("perf", "wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}: apt-get install -y linux-perf wrk util-linux")
    variants = ["A"] + [v for v in dict.fromkeys(args.variants.split(",")) if v not in ("A", "")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    print(f"observability request path: {checked_request_path_mode()}")
    print(
        f"perf record -e cpu-clock -F {args.frequency}, {args.rounds} x {args.duration:g} s per "
        f"variant; wrk -t1 -c{args.connections} {args.path}"
    )

    samples = {v: Counter[tuple[str, str]]() for v in variants}
    requests = dict.fromkeys(variants, 0)
    with tempfile.TemporaryDirectory(prefix="server-profile-") as tmp:
        for round_ in range(args.rounds):
            for variant in variants:
                got, n, rps = sample(variant, args, Path(tmp) / f"{variant}{round_}.data")
                samples[variant] += got
                requests[variant] += n
                print(f"  round {round_ + 1} {variant}: {rps:,.0f} req/s (sampled)", flush=True)

    costs = {v: per_request(samples[v], requests[v], args.frequency) for v in variants}
    by_library: dict[str, defaultdict[str, float]] = {v: defaultdict(float) for v in variants}
    for v, cost in costs.items():
        for (library, _), us in cost.items():
            by_library[v][library] += us
    libraries = sorted(
        set().union(*by_library.values()), key=lambda lib: -max(c[lib] for c in by_library.values())
    )
    print("\nmicroseconds of server CPU per request, by library (+ over bare)")
    print(f"{'library':<46}" + "".join(f"{v:>16}" for v in variants))
    bare = by_library["A"]
    for library in [*libraries, "total"]:
        row = f"{library[:45]:<46}"
        for v in variants:
            us = sum(by_library[v].values()) if library == "total" else by_library[v][library]
            base = sum(bare.values()) if library == "total" else bare[library]
            row += f"{us:>8.2f}" + (f"{us - base:>+8.2f}" if v != "A" else " " * 8)
        if library == "total" or max(by_library[v][library] for v in variants) >= 0.05:
            print(row)
    for v in variants[1:]:
        print(f"\n{v} ({VARIANTS[v][2]}): the {args.top} functions that moved most against bare")
        keys = set(costs[v]) | set(costs["A"])
        moved = sorted(keys, key=lambda k: -abs(costs[v].get(k, 0.0) - costs["A"].get(k, 0.0)))
        for library, function in moved[: args.top]:
            ours, theirs = (
                costs[v].get((library, function), 0.0),
                costs["A"].get((library, function), 0.0),
            )
            print(
                f"  {ours - theirs:>+7.2f}  {theirs:>7.2f} -> {ours:>7.2f}  {function[:60]}"
                f"  ({library[:30]})"
            )


if __name__ == "__main__":
    main()
