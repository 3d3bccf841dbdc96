"""The benchmarks' own arithmetic (the benchmarks run on demand; what they print must be true):
a throughput is completed requests over measured time, and a missing figure fails loudly
instead of reading as 0 or as "drained"."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest
from benchmarks import cloudwatch_shipping
from benchmarks.assignment import LoopResult, open_loop, parse_wrk

from tests.support.servers import LOOPBACK, in_ci

SERVICE_S = 0.025  # the slow server answers one request at a time, each after 25 ms


async def _slow_assignments(offered_rate: float, requests: int) -> LoopResult:
    """open_loop against a local server that can complete at most 1 / SERVICE_S requests/s."""
    lock = asyncio.Lock()
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                )
                await reader.readexactly(length)
                async with lock:
                    await asyncio.sleep(SERVICE_S)
                body = b'{"variant": "a"}'
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up: its run is over
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        users = [f"u{n}" for n in range(requests)]
        result = await open_loop(
            f"http://{LOOPBACK}:{port}", "key", offered_rate, requests / offered_rate, users
        )
        # open_loop closed its connections: every handler sees the end and finishes.
        await asyncio.wait_for(asyncio.gather(*handlers), 10)
        return result


def test_open_loop_reports_what_completed_per_measured_second() -> None:
    offered = 200.0
    result = asyncio.run(_slow_assignments(offered, requests=40))
    assert len(result.latencies) == 40
    # 40 answers take at least 40 x 25 ms = 1 s, while the schedule spans 0.2 s: the rate is
    # at most 40 per second, far below what was offered.
    assert result.elapsed >= 40 * SERVICE_S
    assert result.rate <= 40 / (40 * SERVICE_S)
    assert result.rate < offered / 2


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, list[str]]]:
    """A /metrics stand-in; the test sets the body it serves."""
    body = [""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body[0].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            return  # wrk hangs up mid-answer when its duration ends

    server = Server((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{LOOPBACK}:{server.server_address[1]}", body
    server.shutdown()
    server.server_close()


def test_a_missing_spool_metric_is_an_error_not_drained(
    metrics_server: tuple[str, list[str]],
) -> None:
    base, body = metrics_server
    body[0] = "cloudwatch_shipping_lag_seconds 0.0\n"
    with pytest.raises(RuntimeError, match="cloudwatch_spooled_bytes is missing"):
        cloudwatch_shipping.wait_drained(base)
    body[0] = "cloudwatch_spooled_bytes 0.0\n"
    assert cloudwatch_shipping.wait_drained(base) < cloudwatch_shipping.DRAIN_TIMEOUT_S


def test_a_backlog_that_never_drains_is_an_error(
    metrics_server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, body = metrics_server
    body[0] = "cloudwatch_spooled_bytes 4096.0\n"
    monkeypatch.setattr(cloudwatch_shipping, "DRAIN_TIMEOUT_S", 0.5)
    with pytest.raises(RuntimeError, match="did not drain"):
        cloudwatch_shipping.wait_drained(base)


def test_wrk_output_without_figures_is_an_error(
    metrics_server: tuple[str, list[str]],
) -> None:
    with pytest.raises(RuntimeError, match="no throughput"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
    wrk = shutil.which("wrk")
    if wrk is None:
        if in_ci():
            pytest.fail("wrk is not installed")
        pytest.skip("wrk is not installed")
    base, body = metrics_server
    body[0] = "ok"
    output = subprocess.run(
        [wrk, "-t1", "-c2", "-d1s", "--latency", base],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    report = parse_wrk(output)
    assert report.requests_per_second > 0
    assert report.p50
    assert report.p99
