"""A TCP proxy on 127.0.0.1 that delays every answer of its upstream by `delay_s`: a slow
network path to a real server (PostgreSQL, Redis), not an in-process sleep.

Each chunk the upstream sends is held `delay_s` before it reaches the client, so a
request/response protocol pays the delay once per round trip. `delay_s` may change at any time
(0 forwards at once). Threads are daemons; `close()` ends the listener and every connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

__all__ = ["SlowTcpProxy"]

LOOPBACK = "127.0.0.1"
_CHUNK = 65536


class SlowTcpProxy:
    def __init__(self, upstream_port: int, delay_s: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self._listener.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection((LOOPBACK, self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, delayed: bool) -> None:
        try:
            while data := source.recv(_CHUNK):
                if delayed and self.delay_s > 0:
                    time.sleep(self.delay_s)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    def __enter__(self) -> SlowTcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
