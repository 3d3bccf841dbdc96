"""Run a real command on a pseudo-terminal, as a person at a terminal would see it."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field


@dataclass
class OnTerminal:
    """A process whose stdin, stdout and stderr are one pty; `output` is what it printed."""

    process: subprocess.Popen[bytes]
    master: int
    output: bytearray = field(default_factory=bytearray)

    def read_until(self, done: Callable[[str], bool], timeout: float) -> str:
        """Read until `done(text so far)` or the deadline; returns the text either way."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(self.text):
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal (it exited)
                    break
                if not chunk:
                    break
                self.output.extend(chunk)
        return self.text

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace")


@contextlib.contextmanager
def on_terminal(args: Sequence[str], env: dict[str, str]) -> Iterator[OnTerminal]:
    """Start `args` on a fresh pty (80 columns wide); interrupted (Ctrl+C), then killed, after."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        list(args),
        env={**env, "COLUMNS": "80", "TERM": "xterm-256color"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    terminal = OnTerminal(process, master)
    try:
        yield terminal
    finally:
        for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGKILL, 5.0)):
            if process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait)
        with contextlib.suppress(OSError):  # drain what it printed while stopping
            terminal.read_until(lambda _text: False, timeout=0.5)
        os.close(master)
