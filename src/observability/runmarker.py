"""Did the previous process stop cleanly? A run marker per instance slot in the data directory.

At start a process takes the first free slot of `directory` (an exclusive `flock` on
`run-N.lock`, held for its whole life and released by the kernel however it ends, kill -9
included), then looks at `run-N.json`: a marker left there means the slot's previous process
never reached a clean shutdown (it would have removed it). The marker is written at start,
rewritten every `heartbeat_seconds` and removed by `stop()`, so an unclean shutdown is reported
with what is known: the previous pid, instance, start time and last heartbeat (the process died
within `heartbeat_seconds` after it).

    marker = RunMarker(var_dir / "run", instance="host:1234")
    previous = marker.start()          # PreviousRun | None
    if previous: log.warning(UNCLEAN_SHUTDOWN_DETECTED, **previous.fields())
    ...
    marker.stop()                      # at clean shutdown
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["UNCLEAN_SHUTDOWN_DETECTED", "PreviousRun", "RunMarker"]

UNCLEAN_SHUTDOWN_DETECTED = "unclean_shutdown_detected"


@dataclass(frozen=True, slots=True)
class PreviousRun:
    """What the marker of a process that did not stop cleanly says about it."""

    slot: int
    pid: int | None
    instance: str | None
    started_at: float | None  # epoch seconds
    last_heartbeat_at: float | None
    heartbeat_seconds: float | None

    def fields(self) -> dict[str, Any]:
        """Flat log fields (`previous_*`), times as epoch seconds."""
        return {
            "slot": self.slot,
            "previous_pid": self.pid,
            "previous_instance": self.instance,
            "previous_started_at": self.started_at,
            "previous_last_heartbeat_at": self.last_heartbeat_at,
            "heartbeat_seconds": self.heartbeat_seconds,
        }


class RunMarker:
    def __init__(
        self,
        directory: Path,
        *,
        instance: str = "",
        heartbeat_seconds: float = 5.0,
        max_slots: int = 256,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.instance = instance
        self.heartbeat_seconds = heartbeat_seconds
        self.max_slots = max_slots
        self.clock = clock
        self.slot: int | None = None
        self._lock_fd: int | None = None
        self._started_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        assert self.slot is not None, "start() first"
        return self.directory / f"run-{self.slot}.json"

    def start(self) -> PreviousRun | None:
        """Take a slot, report its previous process if that one did not stop cleanly, write
        this process's marker and keep it fresh from a daemon thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.slot, self._lock_fd = self._take_slot()
        previous = self._read_previous(self.path)
        self._started_at = self.clock()
        self._write()
        self._thread = threading.Thread(target=self._beat, name="run-marker", daemon=True)
        self._thread.start()
        return previous

    def stop(self) -> None:
        """A clean shutdown: the marker goes, so the next start of this slot reports nothing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.heartbeat_seconds + 1)
        if self.slot is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _take_slot(self) -> tuple[int, int]:
        for slot in range(self.max_slots):
            fd = os.open(self.directory / f"run-{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process holds this slot
                continue
            return slot, fd
        raise RuntimeError(f"all {self.max_slots} run slots in {self.directory} are held")

    def _read_previous(self, path: Path) -> PreviousRun | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        assert self.slot is not None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = {}  # torn by the crash itself: the marker's presence is the evidence
        if not isinstance(data, dict):
            data = {}
        return PreviousRun(
            slot=self.slot,
            pid=_int(data.get("pid")),
            instance=data.get("instance") if isinstance(data.get("instance"), str) else None,
            started_at=_float(data.get("started_at")),
            last_heartbeat_at=_float(data.get("heartbeat_at")),
            heartbeat_seconds=_float(data.get("heartbeat_seconds")),
        )

    def _write(self) -> None:
        body = {
            "pid": os.getpid(),
            "instance": self.instance,
            "started_at": self._started_at,
            "heartbeat_at": self.clock(),
            "heartbeat_seconds": self.heartbeat_seconds,
        }
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_bytes(orjson.dumps(body))
        os.replace(partial, self.path)  # a reader never sees half a marker

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            with contextlib.suppress(OSError):  # a full disk must not kill the process
                self._write()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
