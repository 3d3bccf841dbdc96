"""The game day's TCP proxy breaks a real network path on 127.0.0.1: it forwards, refuses
(connection refused) and blackholes (accepted, never answered), resets open connections at
every change, and forwards again on the same port."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from experimentation_platform.gameday.netfault import TcpProxy

LOOPBACK = "127.0.0.1"


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer((LOOPBACK, 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(echo: int) -> Iterator[TcpProxy]:
    with TcpProxy(LOOPBACK, echo) as running:
        yield running


def exchange(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return sock.recv(4096)


def roundtrip(port: int, payload: bytes = b"ping", timeout: float = 2.0) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_forward_refuse_blackhole_and_forward_again(proxy: TcpProxy) -> None:
    port = proxy.port
    assert roundtrip(port) == b"ping"

    proxy.set_mode("refuse")
    with pytest.raises(ConnectionRefusedError):
        roundtrip(port)

    proxy.set_mode("blackhole")
    with (
        socket.create_connection((LOOPBACK, port), timeout=1.0) as sock,  # accepted...
        pytest.raises(TimeoutError),  # ...and never answered
    ):
        exchange(sock, b"anyone?")

    proxy.set_mode("forward")
    assert proxy.port == port  # the same address throughout
    assert roundtrip(port, b"back") == b"back"


def test_a_mode_change_resets_connections_already_open(proxy: TcpProxy) -> None:
    with socket.create_connection((LOOPBACK, proxy.port), timeout=2.0) as sock:
        sock.sendall(b"one")
        assert sock.recv(4096) == b"one"
        proxy.set_mode("blackhole")
        # Reset, not closed: depending on when the reset lands, the send or the read fails.
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            exchange(sock, b"two")


def test_a_dependency_that_is_down_resets_the_client(echo: int) -> None:
    with socket.socket() as unused:
        unused.bind((LOOPBACK, 0))
        dead_port = unused.getsockname()[1]
    with (
        TcpProxy(LOOPBACK, dead_port) as proxy,
        # At connect, send or read, depending on when the reset lands.
        pytest.raises((ConnectionResetError, BrokenPipeError)),
    ):
        roundtrip(proxy.port, b"hello")


def test_latency_slows_open_connections_without_breaking_them(proxy: TcpProxy) -> None:
    with socket.create_connection((LOOPBACK, proxy.port), timeout=5.0) as sock:
        assert exchange(sock, b"fast") == b"fast"
        proxy.set_latency(0.4)
        # The same connection (a pool's) goes on, each round trip at least 0.4 s slower.
        started = time.monotonic()
        assert exchange(sock, b"slow") == b"slow"
        assert time.monotonic() - started >= 0.4
        proxy.set_latency(0.0)
        assert exchange(sock, b"again") == b"again"
    with pytest.raises(ValueError, match="latency"):
        proxy.set_latency(-1)
