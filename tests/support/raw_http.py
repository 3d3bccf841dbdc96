"""Hostile HTTP for hardening tests: a real `ep serve`, and requests an HTTP library would not
send (a 64 MB body streamed in chunks, read back while it is still being sent)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.platform import CLI
from tests.support.servers import LOOPBACK, ManagedProcess, free_port, wait_for_http


@dataclass
class Served:
    base: str
    port: int
    pid: int
    process: ManagedProcess


@contextlib.contextmanager
def served(env: dict[str, str], home: Path, *extra: str) -> Iterator[Served]:
    """`ep serve` on a free loopback port, ready; stopped (SIGTERM) afterwards."""
    port = free_port()
    process = ManagedProcess(
        [*CLI, "serve", "--port", str(port), *extra],
        env=env,
        log_path=home / "server.out",
    )
    with process:
        base = f"http://{LOOPBACK}:{port}"
        wait_for_http(f"{base}/health/live", timeout=60)
        assert process.process is not None
        yield Served(base, port, process.process.pid, process)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float  # from the first byte sent to the whole response read
    sent: int  # body bytes the server accepted before answering/closing
    extra: dict[str, object] = field(default_factory=dict)

    def json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.body)
        return data


def raw_post(
    port: int,
    path: str,
    *,
    size: int,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    chunk: int = 256 * 1024,
    filler: bytes = b"x",
    timeout: float = 60.0,
) -> RawResponse:
    """POST `size` bytes of `filler` (declared with Content-Length, or chunked), sent from a
    thread while this one reads the answer, so a server that answers early is seen doing so."""
    head = [f"POST {path} HTTP/1.1", f"Host: {LOOPBACK}:{port}", "Connection: close"]
    for name, value in (headers or {}).items():
        head.append(f"{name}: {value}")
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
    sent = 0
    piece = (filler * (chunk // len(filler) + 1))[:chunk]

    def send_body() -> None:
        nonlocal sent
        with contextlib.suppress(OSError):
            left = size
            while left > 0:
                part = piece[: min(chunk, left)]
                if chunked:
                    sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                else:
                    sock.sendall(part)
                left -= len(part)
                sent += len(part)
            if chunked:
                sock.sendall(b"0\r\n\r\n")

    started = time.perf_counter()
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    data = b""
    try:
        while True:
            try:
                got = sock.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            data += got
            if _complete(data):
                break
    finally:
        seconds = time.perf_counter() - started
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        sender.join(timeout)
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else 0
    parsed = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(status, parsed, body, seconds, sent)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(body) >= int(value.strip())
    return False
