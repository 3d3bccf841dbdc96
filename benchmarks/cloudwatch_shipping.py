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

from benchmarks.assignment import CLI, WRK_SCRIPT, open_loop, percentile  # noqa: E402
from tests.support.servers import ManagedProcess, free_port, wait_for_http  # noqa: E402

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


def spooled_bytes(base: str) -> float | None:
    text = httpx.get(
        f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10
    ).text
    found = re.search(r"^cloudwatch_spooled_bytes\S* ([\d.e+]+)$", text, re.M)
    return float(found.group(1)) if found else None


def wrk(base: str, key: str, seconds: int, script: Path) -> float:
    out = subprocess.run(
        [
            *("taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(script)),
            *("-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json"),
            base,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(found.group(1)) if found else 0.0


def run_mode(mode: str, args: argparse.Namespace, endpoint: str, result: Result) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"ep-ship-{mode}-"))
    env = {
        **os.environ,
        "EP_VAR_DIR": str(tmp),
        "EP_LOG_DIR": str(tmp / "log"),
        "EP_LOG_TO_STDOUT": "false",
        "EP_AWS_ENDPOINT_URL": endpoint,
        "EP_METRICS_TOKEN": METRICS_TOKEN,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        **MODES[mode],
    }
    key = (
        subprocess.run(
            [*CLI, "keys", "create", "--role", "admin"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = ManagedProcess(
        ["taskset", "-c", "0", *CLI, "serve", "--port", str(port)],
        env=env,
        log_path=tmp / "server.out",
    )
    with server:
        wait_for_http(f"{base}/health/ready", timeout=30)
        assert server.process is not None
        headers = {"Authorization": f"Bearer {key}"}
        body = {
            "key": "bench",
            "name": "bench",
            "variants": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}],
        }
        httpx.post(f"{base}/api/v1/experiments", json=body, headers=headers).raise_for_status()
        httpx.post(f"{base}/api/v1/experiments/bench/start", headers=headers).raise_for_status()
        users = [f"returning-{n}" for n in range(5_000)]
        asyncio.run(open_loop(base, key, args.rate, 5, users))  # warm-up and exposures
        before = cpu_seconds(server.process.pid)
        latencies = asyncio.run(open_loop(base, key, args.rate, args.seconds, users))
        used = cpu_seconds(server.process.pid) - before
        result.latencies_ms += [x * 1000 for x in latencies]
        result.cpu_us_per_request.append(used / len(latencies) * 1e6)
        script = tmp / "assign.lua"
        script.write_text(WRK_SCRIPT)
        result.wrk_rps.append(wrk(base, key, args.wrk_seconds, script))
        if mode != "off":
            started = time.monotonic()
            while (spooled_bytes(base) or 0) > 0 and time.monotonic() - started < 120:
                time.sleep(0.2)
            result.drain_s.append(time.monotonic() - started)


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
