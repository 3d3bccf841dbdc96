"""Does CloudWatch shipping slow requests? The real platform with shipping off, through the agent
process (the default) and through a thread, in one run (run on demand, not CI).

    python benchmarks/cloudwatch_shipping.py [--rate 1000] [--seconds 20] [--rounds 2]

Method: `ep serve` (1 worker, SQLite, the full observability stack, logs to file) pinned to
CPU 0; the CloudWatch stand-in (benchmarks/null_cloudwatch.py: accepts and drops, as the remote
service costs this machine nothing) and the load generators pinned to CPU 1. Per mode, rounds
alternating so drift hits every mode alike:
1. open loop at a fixed rate on the assignment route (returning users, one log line each):
   latency p50/p95/p99 as a client sees it, and the server's CPU time per request;
2. closed loop (wrk -t1 -c32): the saturation throughput, as a ratio to shipping off;
3. after the load: how long until everything logged is in CloudWatch (the shipper's
   `cloudwatch_spooled_bytes` back to 0, read from /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.assignment import (  # noqa: E402
    bench_platform,
    open_loop,
    percentile,
    wrk_assignments,
)
from tests.support.servers import free_port  # noqa: E402

MODES = {
    "off": {"EP_CLOUDWATCH_ENABLED": "false"},
    "agent": {"EP_CLOUDWATCH_ENABLED": "true", "EP_CLOUDWATCH_AGENT": "true"},
    "thread": {"EP_CLOUDWATCH_ENABLED": "true", "EP_CLOUDWATCH_AGENT": "false"},
}
METRICS_TOKEN = "bench-metrics-token"  # a local benchmark's own token


@dataclass
class Result:
    latencies_ms: list[float] = field(default_factory=list)
    cpu_us_per_request: list[float] = field(default_factory=list)
    wrk_rps: list[float] = field(default_factory=list)
    drain_s: list[float] = field(default_factory=list)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


DRAIN_TIMEOUT_S = 120.0


def spooled_bytes(base: str) -> float:
    response = httpx.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    )
    response.raise_for_status()
    found = re.search(r"^cloudwatch_spooled_bytes\S* ([\d.e+]+)$", response.text, re.M)
    if found is None:
        # Not "drained": without the metric nothing says where the backlog stands.
        raise RuntimeError("cloudwatch_spooled_bytes is missing from /metrics: is shipping on?")
    return float(found.group(1))


def wait_drained(base: str) -> float:
    """Seconds until the journal is empty; raises if it is not within DRAIN_TIMEOUT_S."""
    started = time.monotonic()
    while spooled_bytes(base) > 0:
        if time.monotonic() - started > DRAIN_TIMEOUT_S:
            raise RuntimeError(f"the shipper did not drain within {DRAIN_TIMEOUT_S:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - started


def run_mode(mode: str, args: argparse.Namespace, endpoint: str, result: Result) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"ep-ship-{mode}-"))
    env = {
        "EP_AWS_ENDPOINT_URL": endpoint,
        "EP_METRICS_TOKEN": METRICS_TOKEN,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        **MODES[mode],
    }
    with bench_platform(tmp, env) as platform:
        base, key = platform.base, platform.key
        users = [f"returning-{n}" for n in range(5_000)]
        asyncio.run(open_loop(base, key, args.rate, 5, users))  # warm-up and exposures
        before = cpu_seconds(platform.pid)
        loop = asyncio.run(open_loop(base, key, args.rate, args.seconds, users))
        used = cpu_seconds(platform.pid) - before
        result.latencies_ms += [x * 1000 for x in loop.latencies]
        result.cpu_us_per_request.append(used / len(loop.latencies) * 1e6)
        wrk = wrk_assignments(base, key, args.wrk_seconds, tmp)
        result.wrk_rps.append(wrk.requests_per_second)
        if mode != "off":
            result.drain_s.append(wait_drained(base))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--modes", default="off,agent,thread")
    args = parser.parse_args()
    modes = args.modes.split(",")
    port = free_port()
    stand_in = subprocess.Popen(
        [
            *("taskset", "-c", "1", sys.executable),
            *(str(ROOT / "benchmarks" / "null_cloudwatch.py"), str(port)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = {mode: Result() for mode in modes}
    try:
        for _ in range(args.rounds):
            for mode in modes:
                run_mode(mode, args, f"http://127.0.0.1:{port}", results[mode])
    finally:
        stand_in.terminate()
    off = statistics.fmean(results["off"].wrk_rps) if "off" in results else None
    print(
        f"CloudWatch shipping: `ep serve` 1 worker on CPU 0, {args.rate:g} req/s open loop for "
        f"{args.seconds:g} s x {args.rounds} rounds, then wrk -c32 for {args.wrk_seconds} s"
    )
    print(
        f"{'mode':<7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'cpu us/req':>10} "
        f"{'wrk req/s':>9} {'ratio':>6} {'drain s':>8}"
    )
    for mode, r in results.items():
        ms = r.latencies_ms
        rps = statistics.fmean(r.wrk_rps)
        ratio = f"{rps / off:6.2f}" if off else "     -"
        drain = f"{max(r.drain_s):8.1f}" if r.drain_s else "       -"
        print(
            f"{mode:<7} {percentile(ms, 0.5):7.2f} {percentile(ms, 0.95):7.2f} "
            f"{percentile(ms, 0.99):7.2f} {statistics.fmean(r.cpu_us_per_request):10.1f} "
            f"{rps:9.0f} {ratio} {drain}"
        )


if __name__ == "__main__":
    main()
