"""A TCP proxy on 127.0.0.1 that breaks a network path for real: put it between an instance and
a dependency (the game day puts it in front of the CloudWatch endpoint) and switch its mode.

- `forward`: bytes flow both ways, untouched (the protocol above does not matter);
- `refuse`: the listening socket is closed and open connections are reset, so connects fail
  with "connection refused" until the mode changes (the same port is bound again);
- `blackhole`: connections are accepted and whatever arrives is read and dropped; nothing ever
  comes back, so the client waits for its own timeouts, like a host that went silent.

Every mode change resets the connections open at that moment: a stream that lost bytes in a
blackhole must not resume half-way. Threads are daemons and everything closes with `close()`.

`set_latency(seconds)` adds latency to the path without touching open connections (a pool's
connections stay, as on a real network that got slower): every chunk is delivered half the
latency after it arrived, in each direction, so one request/response round trip (a SQL
statement) takes `seconds` longer. Delivery is scheduled, not a sleep per chunk: a response
in several chunks is delayed once, not once per chunk.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import struct
import threading
import time
import weakref
from typing import Literal

__all__ = ["NetworkMode", "TcpProxy"]

LOOPBACK = "127.0.0.1"
NetworkMode = Literal["forward", "refuse", "blackhole"]
_CHUNK = 65536
# SO_LINGER with a zero timeout: close() sends a reset instead of a graceful FIN.
_RESET = struct.pack("ii", 1, 0)


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode: NetworkMode = "forward"
        self.latency_s = 0.0  # added to every round trip while forwarding
        self.port = 0
        self.connections = 0  # accepted so far, for reports
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        # Aborted sockets stay marked until they are gone: both pumps of a connection end it,
        # and neither may send a FIN on a socket the other is about to reset.
        self._aborted: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> TcpProxy:
        self._listen()
        return self

    def set_mode(self, mode: NetworkMode) -> None:
        with self._lock:
            if mode == self.mode:
                return
            self.mode = mode
            self._abort_open()
            listener = self._listener if mode == "refuse" else None
            if listener is not None:
                self._listener = None
        if listener is not None:
            _close_listener(listener)
        elif mode != "refuse" and self._listener is None:
            self._listen()

    def set_latency(self, seconds: float) -> None:
        """Add `seconds` to every round trip from now on (0: none); connections stay open."""
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self.latency_s = seconds

    def close(self) -> None:
        with self._lock:
            self._closed = True
            listener, self._listener = self._listener, None
            self._abort_open()
        if listener is not None:
            _close_listener(listener)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))  # the same port after a refusal
        listener.listen(64)
        self.port = int(listener.getsockname()[1])
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refuse mode or close()
            with self._lock:
                if self._closed:
                    _abort(client)
                    client.close()
                    return
                self.connections += 1
                self._open.add(client)
                mode = self.mode
            if mode == "blackhole":
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
            else:
                threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            with self._lock:
                self._open.discard(client)
            _abort(client)  # the dependency itself is down: the client sees a reset
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if client not in self._open:  # the mode changed meanwhile
                _abort(upstream)
                for sock in (client, upstream):
                    sock.close()
                return
            self._open.add(upstream)
        threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
        self._pump(upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Read from `source`; a second thread delivers each chunk to `sink` when it is due
        (at once without latency), so reading never waits for a delayed delivery."""
        due: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
        sender = threading.Thread(target=self._deliver, args=(due, sink), daemon=True)
        sender.start()
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                due.put((time.monotonic() + self.latency_s / 2, data))
        except OSError:
            pass
        finally:
            due.put(None)
            sender.join()
            self._end(source, sink)

    @staticmethod
    def _deliver(due: queue.SimpleQueue[tuple[float, bytes] | None], sink: socket.socket) -> None:
        failed = False
        while (item := due.get()) is not None:
            if failed:
                continue  # drain: the reader ends the connection
            at, data = item
            wait = at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                sink.sendall(data)
            except OSError:
                failed = True

    def _swallow(self, client: socket.socket) -> None:
        try:
            while client.recv(_CHUNK):
                pass
        except OSError:
            pass
        finally:
            self._end(client)

    def _end(self, *socks: socket.socket) -> None:
        """Close a connection's sockets: an aborted one with a reset, the others gracefully
        (SHUT_RDWR passes the FIN on and wakes the pump of the other direction)."""
        with self._lock:
            aborted = {sock for sock in socks if sock in self._aborted}
            for sock in socks:
                self._open.discard(sock)
        for sock in socks:
            if sock not in aborted:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def _abort_open(self) -> None:
        """Reset every open connection (caller holds the lock). Each socket's own thread
        closes it: closing it from here would not wake a thread blocked in recv() on it."""
        for sock in self._open:
            _abort(sock)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)  # wakes the blocked recv(); sends nothing
            self._aborted.add(sock)
        self._open.clear()


def _abort(sock: socket.socket) -> None:
    """A zero linger: the socket's close sends a reset instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)


def _close_listener(listener: socket.socket) -> None:
    # shutdown wakes the thread blocked in accept(); close alone would leave it listening.
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        listener.close()
