"""Real local servers for tests: free ports, child processes, recording HTTP receivers, moto.

Everything binds to 127.0.0.1 only. A missing binary fails the test under CI=true and
skips it elsewhere, so CI never passes by silently skipping a real component.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

LOOPBACK = "127.0.0.1"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(message: str) -> NoReturn:
    """A real component a test needs is missing: fail in CI, skip on a laptop without it."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str) -> str:
    """Return the path of a binary a test needs; fail in CI, skip on a laptop without it."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install it; .ci/run does)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout}s")


def wait_for_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 500:
                    return
        except Exception as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready within {timeout}s: {last!r}")


@dataclass
class ManagedProcess:
    """A child process started for a test, stopped (and reaped) on exit."""

    args: Sequence[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: Any = None

    def start(self) -> ManagedProcess:
        if self.log_path:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        stdout = self._log or subprocess.DEVNULL
        self.process = subprocess.Popen(
            list(self.args),
            env=self.env,
            cwd=self.cwd,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        try:
            self._signal_and_wait(sig, timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _signal_and_wait(self, sig: int, timeout: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> ManagedProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingHTTPServer:
    """A loopback HTTP server that records every request (Slack, PagerDuty, Sentry stand-ins).

    `statuses` is a queue of status codes to answer with before falling back to `status`,
    so a test can make the receiver fail a few times and then recover.
    """

    status: int = 200
    response_body: bytes = b"ok"
    response_headers: dict[str, str] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    port: int = 0
    _server: http.server.ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._arrived = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> RecordingHTTPServer:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with recorder._arrived:
                    recorder.requests.append(
                        RecordedRequest(self.command, self.path, dict(self.headers.items()), body)
                    )
                    status = recorder.statuses.pop(0) if recorder.statuses else recorder.status
                    recorder._arrived.notify_all()
                self.send_response(status)
                for name, value in recorder.response_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(recorder.response_body)))
                self.end_headers()
                self.wfile.write(recorder.response_body)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def wait_for(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived; return them all."""
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            return list(self.requests)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> RecordingHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class MotoServer:
    """moto's AWS stand-in on a fixed loopback port; can be stopped and restarted (outages)."""

    port: int = field(default_factory=free_port)
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> MotoServer:
        env = {**os.environ, **AWS_TEST_ENV}
        self.proc = ManagedProcess(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)], env=env
        ).start()
        wait_for_http(f"{self.url}/moto-api/", timeout=30)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def reset(self) -> None:
        """Forget every AWS resource (between tests sharing one server)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()
