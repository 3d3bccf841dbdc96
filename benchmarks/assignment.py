"""Assignment throughput and latency at one worker with a warm cache (run on demand).

    python benchmarks/assignment.py [--rate 500] [--seconds 20] [--wrk-seconds 10]

Method: `ep serve` (1 worker, SQLite, logs to file only) pinned to CPU 0; the load generators
pinned to CPU 1. Two measurements:
1. open loop at a fixed rate (default 500 requests/s): latency p50/p95/p99 as a client sees it,
   for returning users (exposure already recorded) and for new users (one insert each);
2. closed loop with wrk (-t1 -c32): the maximum throughput and its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers import ManagedProcess, free_port, wait_for_http  # noqa: E402

CLI = [sys.executable, "-m", "experimentation_platform.cli"]
WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  local body = '{"experiment_key": "bench", "user_id": "wrk-' .. (counter % 5000) .. '"}'
  return wrk.format("POST", "/api/v1/assignments", nil, body)
end
"""


@dataclass(frozen=True)
class Platform:
    base: str
    key: str
    pid: int


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class LoopResult:
    latencies: list[float]  # seconds, one per completed request
    elapsed: float  # seconds from the first scheduled send to the last answer

    @property
    def rate(self) -> float:
        """Completed requests per second of measured time: below the offered rate when the
        server falls behind (the schedule alone would always give the offered rate)."""
        return len(self.latencies) / self.elapsed


async def open_loop(
    base: str, key: str, rate: float, seconds: float, users: list[str]
) -> LoopResult:
    """Fixed-rate load over raw keep-alive connections: an HTTP client library costs more CPU
    per request than the server does, and would measure itself. Latency counts from the
    scheduled send time, so a slow server cannot hide behind a slow client (open loop)."""
    host, port = base.removeprefix("http://").split(":")
    connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(32):
        connections.put_nowait(await asyncio.open_connection(host, int(port)))
    latencies: list[float] = []

    async def one(user: str, scheduled: float) -> None:
        reader, writer = await connections.get()
        body = f'{{"experiment_key": "bench", "user_id": "{user}"}}'.encode()
        writer.write(
            b"POST /api/v1/assignments HTTP/1.1\r\nHost: bench\r\n"
            + f"Authorization: Bearer {key}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - scheduled)
        connections.put_nowait((reader, writer))
        if status != 200:
            raise RuntimeError(f"status {status}")

    tasks = []
    interval = 1.0 / rate
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        scheduled = start + n * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(users[n % len(users)], scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not connections.empty():
        _, writer = connections.get_nowait()
        writer.close()
    return LoopResult(latencies, elapsed)


def report(name: str, result: LoopResult) -> None:
    ms = [x * 1000 for x in result.latencies]
    print(
        f"{name:<28} {result.rate:8.0f} req/s  p50 {percentile(ms, 0.5):6.2f} ms  "
        f"p95 {percentile(ms, 0.95):6.2f} ms  p99 {percentile(ms, 0.99):6.2f} ms  "
        f"mean {statistics.fmean(ms):6.2f} ms"
    )


@contextlib.contextmanager
def bench_platform(tmp: Path, extra_env: Mapping[str, str] | None = None) -> Iterator[Platform]:
    """`ep serve` (1 worker, SQLite, logs to file only) pinned to CPU 0 with an admin key and a
    running 50/50 experiment "bench"; stopped on exit."""
    env = {
        **os.environ,
        "EP_VAR_DIR": str(tmp),
        "EP_LOG_DIR": str(tmp / "log"),
        "EP_LOG_TO_STDOUT": "false",
        **(extra_env or {}),
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
        yield Platform(base, key, server.process.pid)


@dataclass(frozen=True)
class WrkReport:
    requests_per_second: float
    p50: str
    p99: str


def parse_wrk(output: str) -> WrkReport:
    """wrk's figures; a report without them (wrk failed, or printed errors only) raises
    instead of reading as 0 req/s."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"50%\s+([\d.]+\w+)", output)
    p99 = re.search(r"99%\s+([\d.]+\w+)", output)
    if rps is None or p50 is None or p99 is None:
        raise RuntimeError(f"wrk printed no throughput or latency figures:\n{output}")
    return WrkReport(float(rps.group(1)), p50.group(1), p99.group(1))


def wrk_assignments(base: str, key: str, seconds: int, tmp: Path) -> WrkReport:
    """Closed loop on the assignment route: wrk -t1 -c32 pinned to CPU 1; its report."""
    script = tmp / "assign.lua"
    script.write_text(WRK_SCRIPT)
    output = subprocess.run(
        [
            *("taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"),
            *("-s", str(script), "-H", f"Authorization: Bearer {key}"),
            *("-H", "Content-Type: application/json", base),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(output)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ep-bench-"))
    with bench_platform(tmp) as platform:
        base, key = platform.base, platform.key
        os.sched_setaffinity(0, {1})
        returning = [f"returning-{n}" for n in range(5_000)]
        asyncio.run(open_loop(base, key, 200, 5, returning[:1000]))  # warm-up: cache, pool
        asyncio.run(open_loop(base, key, args.rate, args.seconds / 4, returning))  # expose all
        print(
            f"assignment benchmark: 1 worker pinned to CPU 0, SQLite, {args.rate:g} req/s offered"
        )
        result = asyncio.run(open_loop(base, key, args.rate, args.seconds, returning))
        report("returning users (warm)", result)
        fresh = [f"new-{n}" for n in range(int(args.rate * args.seconds))]
        result = asyncio.run(open_loop(base, key, args.rate, args.seconds, fresh))
        report("new users (one insert each)", result)
        wrk = wrk_assignments(base, key, args.wrk_seconds, tmp)
        print(
            f"{'closed loop (wrk -c32)':<28} {wrk.requests_per_second:8.0f} req/s  "
            f"p50 {wrk.p50}  p99 {wrk.p99}"
        )


if __name__ == "__main__":
    main()
