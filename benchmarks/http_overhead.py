"""Throughput cost of HTTP metrics middleware against a bare FastAPI app (run on demand, not CI).

Method (shared/notes/performance-baseline.md): uvicorn, 1 worker, uvloop + httptools,
--no-access-log, pinned to CPU 0 (taskset); wrk -t1 -c32 --latency pinned to CPU 1; a warm-up
run before each measured block; the bare app A re-run between variants; ratio = variant RPS /
mean RPS of the neighbouring A blocks, so drift over the run cancels out.

Also per block: the server's CPU time per request (user + system of all its threads, from
/proc/<pid>/stat, over the measured run; the log writer thread included). The server runs at
100% of its core, so this is 1/RPS when nothing else takes the core; on these shared hosts it
showed that the noise is the core running slower (bare: 86 to 122 us of CPU a request in one
run), not the server being preempted. Slowdowns only ever lower a block, so with several
blocks of a variant, "best" compares each variant's fastest block with bare's fastest (the
server's counterpart of --in-process's best of rounds).

--paired N is for a host whose speed swings between blocks (bare's RPS varied by 1.5x within
one run here): every server stays up and warm the whole run, and wrk alternates short slices
(--slice s) between bare and each variant, N rounds. A slowdown lasting longer than a round
hits both sides of each pair alike; the median of the per-round ratios and its spread are
reported, and p99 as the median of each side's per-slice p99. Each server sits idle through
the others' slices and starts its own cold (caches, and the heap glibc returned to the OS), so
an unmeasured wrk run of --slice-warmup s (default 1) precedes every measured slice: without
it, a 2 s slice's p99 (its worst 20 ms) was mostly that cold start, and most for the variant
with the most code and data (the full stack: +0.6 to +8 ms over bare in 2 s slices, 0.8 to
1.4 ms below bare in 6 s slices and blocks).

Run:  .venv/bin/python benchmarks/http_overhead.py [--duration 10] [--warmup 5] [--variants M,P,S]
      .venv/bin/python benchmarks/http_overhead.py --variants F,C,T,F,C,T   # CloudWatch shipping
      .venv/bin/python benchmarks/http_overhead.py --in-process   # no server: µs per request
      calling each app's ASGI callable directly (best of rounds; steadier on a busy machine)
      .venv/bin/python benchmarks/http_overhead.py --in-process --interleave 32   # 32 requests
      in flight, interleaving at each send as they do on the server
      .venv/bin/python benchmarks/http_overhead.py --variants Z,M --paired 20   # noisy host
Needs Debian `wrk`; variants P and S need, in the venv only (not in pyproject):
      .venv/bin/pip install prometheus-fastapi-instrumentator==8.1.0 starlette-exporter==0.24.0
Add a variant: a factory in benchmarks/apps.py and a line in VARIANTS.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (factory in benchmarks/apps.py, module it needs or None, description)
VARIANTS: dict[str, tuple[str, str | None, str]] = {
    "A": ("apps:bare", None, "bare FastAPI"),
    "O": ("apps:middleware_only", None, "ObservabilityMiddleware, no observer"),
    "M": ("apps:ours", None, "ObservabilityMiddleware + HttpMetrics (+ in-flight)"),
    "P": (
        "apps:instrumentator",
        "prometheus_fastapi_instrumentator",
        "prometheus-fastapi-instrumentator",
    ),
    "S": ("apps:starlette_exporter", "starlette_exporter", "starlette-exporter"),
    "L": ("apps:ours_logging", None, "ours: context + request id + one masked JSON line"),
    "F": ("apps:ours_full", None, "ours: L + Prometheus metrics + rolling windows"),
    "Z": ("apps:ours_full_frozen", None, "ours: F + start-up heap frozen, as instrument() does"),
    "C": ("apps:ours_full_shipping", None, "ours: F + every line shipped by the agent process"),
    "T": ("apps:ours_full_shipping_thread", None, "ours: F + every line shipped by a thread"),
    "D": (
        "apps:typical_stack",
        "asgi_correlation_id",
        "typical: asgi-correlation-id + @app.middleware + structlog stdlib JSON",
    ),
}
INSTALL_HINT = (
    ".venv/bin/pip install prometheus-fastapi-instrumentator==8.1.0 starlette-exporter==0.24.0"
    " asgi-correlation-id==5.0.1"
)


@dataclass
class Block:
    variant: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU time per request (all threads), microseconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"server on port {port} did not start")


def to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: float, connections: int, cpu: str) -> tuple[float, float, float, int]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            cpu,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, p50, p99, requests


def start_server(variant: str, server_cpu: str) -> tuple[subprocess.Popen[bytes], int]:
    """The variant's app under uvicorn (1 worker, uvloop, httptools), pinned to `server_cpu`,
    accepting connections; with its port. The caller stops it."""
    factory = VARIANTS[variant][0]
    port = free_port()
    server = subprocess.Popen(
        [
            "taskset",
            "-c",
            server_cpu,
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--app-dir",
            str(HERE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        wait_for_port(port)
    except BaseException:
        server.terminate()
        raise
    return server, port


def measure(variant: str, pid: int, url: str, seconds: float, args: argparse.Namespace) -> Block:
    """One wrk run against a started server, with the server's CPU time per request."""
    cpu_before = cpu_seconds(pid)  # taskset execs uvicorn: the same pid
    rps, p50, p99, requests = wrk(url, seconds, args.connections, args.client_cpu)
    cpu_us = (cpu_seconds(pid) - cpu_before) * 1e6 / max(requests, 1)
    return Block(variant, rps, p50, p99, cpu_us)


def run_block(variant: str, args: argparse.Namespace) -> Block:
    server, port = start_server(variant, args.server_cpu)
    try:
        url = f"http://127.0.0.1:{port}{args.path}"
        if args.warmup > 0:
            wrk(url, args.warmup, args.connections, args.client_cpu)
        block = measure(variant, server.pid, url, args.duration, args)
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(
        f"  {variant}: {block.rps:,.0f} rps  p50 {block.p50_ms:.2f} ms  p99 {block.p99_ms:.2f} ms"
        f"  cpu {block.cpu_us:.1f} us/req",
        flush=True,
    )
    return block


def paired(variants: list[str], args: argparse.Namespace) -> None:
    """Rounds of short slices, A V1 V2 ... A V1 V2 ... A, every server up throughout; each
    variant's ratio in a round is against the mean of the A slices on either side of it."""
    import statistics

    servers = {v: start_server(v, args.server_cpu) for v in ["A", *variants]}
    try:
        urls = {v: f"http://127.0.0.1:{port}{args.path}" for v, (_, port) in servers.items()}
        for url in urls.values():
            wrk(url, args.warmup, args.connections, args.client_cpu)

        def one_slice(variant: str) -> Block:
            if args.slice_warmup > 0:
                wrk(urls[variant], args.slice_warmup, args.connections, args.client_cpu)
            return measure(variant, servers[variant][0].pid, urls[variant], args.slice, args)

        bare = [one_slice("A")]
        slices: dict[str, list[Block]] = {v: [] for v in variants}
        for round_ in range(args.paired):
            for variant in variants:
                slices[variant].append(one_slice(variant))
            bare.append(one_slice("A"))
            print(
                f"  round {round_ + 1}: A {bare[-2].rps:,.0f} "
                + " ".join(f"{v} {slices[v][-1].rps:,.0f}" for v in variants)
                + f" A {bare[-1].rps:,.0f} req/s",
                flush=True,
            )
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=20)

    def quartiles(values: list[float]) -> str:
        q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        return f"{median:.2f} ({q1:.2f}-{q3:.2f})"

    bare_p99 = statistics.median(b.p99_ms for b in bare)
    print(
        f"\n{args.paired} rounds of {args.slice:g} s slices"
        f" (each after {args.slice_warmup} s unmeasured); bare: "
        f"{min(b.rps for b in bare):,.0f}-{max(b.rps for b in bare):,.0f} req/s, "
        f"median p99 {bare_p99:.2f} ms"
    )
    print(
        f"{'variant':<58} {'ratio: median (quartiles)':>26} {'cpu ratio':>20} {'p99 ms':>7}"
        f" {'+p99':>6}"
    )
    for variant in variants:
        mine = slices[variant]
        ratios = [b.rps / ((bare[i].rps + bare[i + 1].rps) / 2) for i, b in enumerate(mine)]
        cpu = [(bare[i].cpu_us + bare[i + 1].cpu_us) / 2 / b.cpu_us for i, b in enumerate(mine)]
        p99 = statistics.median(b.p99_ms for b in mine)
        label = f"{variant} {VARIANTS[variant][2]}"
        print(
            f"{label:<58} {quartiles(ratios):>26} {quartiles(cpu):>20} {p99:>7.2f}"
            f" {p99 - bare_p99:>+6.2f}"
        )


def in_process(
    variants: list[str], concurrency: int = 1, requests: int = 20_000, rounds: int = 5
) -> None:
    """Best-of-rounds microseconds per request through each app's ASGI callable, no server."""
    import importlib

    sys.path.insert(0, str(HERE))
    from apps import drive

    apps = {}
    for variant in ["A", *variants]:
        module, _, factory = VARIANTS[variant][0].partition(":")
        apps[variant] = getattr(importlib.import_module(module), factory)()
        drive(apps[variant], "/hello", 512, concurrency=concurrency)  # build it, warm caches
    # round-robin rounds, best of each: drift and neighbours' load hit every variant alike
    results = dict.fromkeys(apps, float("inf"))
    for _ in range(rounds):
        for variant, app in apps.items():
            started = time.perf_counter()
            drive(app, "/hello", requests, concurrency=concurrency)
            cost = (time.perf_counter() - started) / requests * 1e6
            results[variant] = min(results[variant], cost)
    print(f"{'variant':<58} {'us/req':>8} {'+us/req':>8}")
    for variant, cost in results.items():
        extra = "-" if variant == "A" else f"{cost - results['A']:.1f}"
        label = f"{variant} {VARIANTS[variant][2]}"
        print(f"{label:<58} {cost:>8.1f} {extra:>8}")


def request_path_mode() -> str:
    """Whether the servers (and --in-process) run the compiled request path
    (src/observability/compiled.py): the figures differ by about a third."""
    out = subprocess.run(
        [sys.executable, "-c", "import observability.compiled as c; print(c.status())"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or out.stderr.strip()[-200:]


def checked_request_path_mode() -> str:
    """The mode, refusing a stale build: an edited module silently runs as Python, and its
    figures would pass for the compiled code's (it happened: a whole sitting measured so)."""
    mode = request_path_mode()
    if mode.startswith("pure Python") and not os.environ.get("OBSERVABILITY_PURE_PYTHON"):
        sys.exit(
            f"the request path would run as {mode}; run `make compile` first, or set "
            "OBSERVABILITY_PURE_PYTHON=1 to measure the Python code on purpose"
        )
    return mode


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variants", default="M,P,S", help="comma-separated, from: " + ",".join(VARIANTS)
    )
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per block")
    parser.add_argument("--warmup", type=float, default=5.0, help="warm-up seconds per block")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--path", default="/hello", help="/hello, or /assign/u1 (assignment)")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--in-process", action="store_true", help="no server: ASGI calls")
    parser.add_argument(
        "--interleave",
        type=int,
        default=1,
        help="with --in-process: requests in flight at once (32 is what wrk -c32 sends)",
    )
    parser.add_argument(
        "--paired",
        type=int,
        default=0,
        help="rounds of alternating short slices, every server up throughout (noisy hosts)",
    )
    parser.add_argument("--slice", type=float, default=2.0, help="seconds per --paired slice")
    parser.add_argument(
        "--slice-warmup",
        type=int,  # wrk takes whole seconds
        default=1,
        help="seconds of unmeasured load before each --paired slice (0: none)",
    )
    parser.add_argument(
        "--aws",
        choices=("null", "moto"),
        default="null",
        help="CloudWatch stand-in for C and T: null accepts and drops (costs the client core "
        "least, like the real service), moto stores",
    )
    args = parser.parse_args()
    mode = checked_request_path_mode()
    print(f"observability request path: {mode}")

    variants = [v.strip() for v in args.variants.split(",") if v.strip() and v.strip() != "A"]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    missing = [
        v for v in variants if (mod := VARIANTS[v][1]) and importlib.util.find_spec(mod) is None
    ]
    if missing:
        print(f"skipping {', '.join(missing)}: not installed. Install (venv only): {INSTALL_HINT}")
        variants = [v for v in variants if v not in missing]
    if {"C", "T"} & set(variants) and "BENCH_AWS_ENDPOINT" not in os.environ:
        # CloudWatch shipping needs an endpoint: a local moto server for the whole run.
        for key, value in (
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ):
            os.environ.setdefault(key, value)
        aws_port = free_port()
        # CloudWatch is a remote service: its stand-in shares the client's core, not the
        # server's, or the benchmark would charge the stand-in's own CPU to the shipping.
        stand_in = (
            [str(HERE / "null_cloudwatch.py"), str(aws_port)]
            if args.aws == "null"
            else ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(aws_port)]
        )
        aws = subprocess.Popen(
            [
                *(["taskset", "-c", args.client_cpu] if shutil.which("taskset") else []),
                sys.executable,
                *stand_in,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        atexit.register(aws.terminate)  # the run stops it by itself, however it ends
        wait_for_port(aws_port)
        os.environ["BENCH_AWS_ENDPOINT"] = f"http://127.0.0.1:{aws_port}"
    if args.in_process:
        in_process(variants, args.interleave)
        return
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("needs wrk and taskset: apt-get install -y wrk util-linux")

    if args.paired:
        paired(list(dict.fromkeys(variants)), args)
        return
    print(
        f"wrk -t1 -c{args.connections} -d{args.duration:g}s (warm-up {args.warmup:g}s); "
        f"server CPU {args.server_cpu}, client CPU {args.client_cpu}"
    )
    blocks = [run_block("A", args)]
    for variant in variants:  # A, V1, A, V2, A, ...: every variant sits between two A blocks
        blocks.append(run_block(variant, args))
        blocks.append(run_block("A", args))
    mode_now = request_path_mode()  # a module edited during the run: later servers differ
    if mode_now != mode:
        print(f"WARNING: the request path ran as {mode} at the start, {mode_now} now")

    a = [b for b in blocks if b.variant == "A"]
    bare_mean = sum(b.rps for b in a) / len(a)
    print()
    print(
        f"{'variant':<58} {'RPS':>9} {'ratio':>6} {'+us/req':>8} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'cpu us':>7} {'cpu ratio':>9}"
    )
    print(
        f"{'A ' + VARIANTS['A'][2] + f' (mean of {len(a)} blocks)':<58} {bare_mean:>9,.0f} "
        f"{1.0:>6.2f} {'-':>8} {sum(b.p50_ms for b in a) / len(a):>7.2f} "
        f"{sum(b.p99_ms for b in a) / len(a):>7.2f} {sum(b.cpu_us for b in a) / len(a):>7.1f}"
        f" {1.0:>9.2f}"
    )
    for i, block in enumerate(blocks):
        if block.variant == "A":
            continue
        neighbours = (blocks[i - 1].rps + blocks[i + 1].rps) / 2
        ratio = block.rps / neighbours
        extra_us = 1e6 / block.rps - 1e6 / neighbours
        cpu_ratio = (blocks[i - 1].cpu_us + blocks[i + 1].cpu_us) / 2 / block.cpu_us
        label = f"{block.variant} {VARIANTS[block.variant][2]}"
        print(
            f"{label:<58} {block.rps:>9,.0f} {ratio:>6.2f} {extra_us:>8.1f} "
            f"{block.p50_ms:>7.2f} {block.p99_ms:>7.2f} {block.cpu_us:>7.1f} {cpu_ratio:>9.2f}"
        )
    best_bare = max(b.rps for b in a)
    for variant in dict.fromkeys(v for v in variants if v != "A"):
        mine = [b.rps for b in blocks if b.variant == variant]
        if len(mine) > 1:
            print(
                f"best of {len(mine)} {variant} blocks / best of {len(a)} A blocks: "
                f"{max(mine) / best_bare:.2f} (+{1e6 / max(mine) - 1e6 / best_bare:.1f} us)"
            )


if __name__ == "__main__":
    main()
