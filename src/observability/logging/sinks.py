"""Where rendered log lines go: stdout, rotating JSON files, memory (tests), and adapters.

Sinks are called only by the pipeline's writer thread, with whole batches, so they need no
locks of their own and the request path never waits on their I/O.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

__all__ = [
    "NO_EVENT",
    "CallbackSink",
    "LogRecordOut",
    "MemorySink",
    "PartialWrite",
    "RotatingFileSink",
    "Sink",
    "StreamSink",
]

# (level number, the rendered event as a dict, the JSON line with its trailing newline). The
# dict is kept only when a sink reads it (`needs_events`); otherwise it is `NO_EVENT`.
LogRecordOut = tuple[int, dict[str, Any], bytes]
# Shared and empty: what a record carries instead of its event when no sink reads events.
NO_EVENT: dict[str, Any] = {}


class PartialWrite(OSError):
    """A batch reached its sink only in part: `written` whole records (the first ones) are
    stored, the rest are not. Raised with the underlying OSError as its cause."""

    def __init__(self, written: int, total: int, cause: OSError) -> None:
        super().__init__(cause.errno, f"{written} of {total} records written: {cause.strerror}")
        self.written = written
        self.total = total


class Sink(Protocol):
    """`needs_events` (optional, True when absent): whether `write` reads the event dicts.
    When no sink does, the queue holds lines only: a request line's dict (~1 KB) is freed at
    once instead of waiting for the writer (less memory held, fewer cache misses; a full
    50,000-record queue holds ~15 MB of lines instead of ~70 MB more of dicts)."""

    name: str

    def write(self, records: Sequence[LogRecordOut]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class StreamSink:
    """JSON lines to a binary stream (stdout by default)."""

    name = "stdout"
    needs_events = False

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream or sys.stdout.buffer

    def write(self, records: Sequence[LogRecordOut]) -> None:
        self.stream.write(b"".join(line for _, _, line in records))

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()


class MemorySink:
    """Keeps lines in memory: for tests and for the UI's recent-lines view."""

    name = "memory"

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self.lines: list[bytes] = []
        self.events: list[dict[str, Any]] = []

    def write(self, records: Sequence[LogRecordOut]) -> None:
        for _, event, line in records:
            self.lines.append(line)
            self.events.append(event)
        if len(self.lines) > self.limit:
            del self.lines[: -self.limit]
            del self.events[: -self.limit]

    def flush(self) -> None:
        return

    def close(self) -> None:
        return


class CallbackSink:
    """Hands each batch to a function (the CloudWatch shipper, for one)."""

    def __init__(
        self,
        name: str,
        callback: Callable[[Sequence[LogRecordOut]], None],
        *,
        needs_events: bool = True,
    ) -> None:
        self.name = name
        self.callback = callback
        self.needs_events = needs_events  # False: the callback reads levels and lines only

    def write(self, records: Sequence[LogRecordOut]) -> None:
        self.callback(records)

    def flush(self) -> None:
        return

    def close(self) -> None:
        return


class RotatingFileSink:
    """JSON lines in `directory/stem.log`, rotated by size and by age, rotated files gzipped,
    files older than the retention deleted.

    Safe for several processes writing the same file (`ep serve --workers N`): every batch is
    one `write()` on an O_APPEND descriptor (appends of one write do not interleave on a local
    file system), and rotation happens under an exclusive lock on `stem.lock`; a process that
    finds the file already rotated by another simply reopens it.

    Rotated files are named `stem.YYYYmmddTHHMMSS.ffffffZ.log.gz` so that a name sort is a time
    sort. Compression runs in a short-lived thread so the writer never stalls on it.
    """

    name = "file"
    needs_events = False

    def __init__(
        self,
        directory: Path,
        stem: str = "platform",
        max_bytes: int = 100 * 1024 * 1024,
        rotate_seconds: float = 86_400.0,
        retention_days: float = 14.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.max_bytes = max_bytes
        self.rotate_seconds = rotate_seconds
        self.retention_seconds = retention_days * 86_400.0
        self.clock = clock
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{stem}.log"
        self.lock_path = self.directory / f"{stem}.lock"
        self._fd: int | None = None
        self._inode = 0
        self._opened_at = 0.0
        self._compressors: list[threading.Thread] = []
        self._open()
        self.delete_expired()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        stat = os.fstat(self._fd)
        self._inode = stat.st_ino
        self._opened_at = self.clock()
        if stat.st_size:  # an existing file: age it from its last change, not from now
            self._opened_at = min(self._opened_at, stat.st_mtime)

    def _reopen(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._open()

    def _current_size(self) -> int | None:
        """The shared file's size, or None when another process rotated it away from us."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return stat.st_size if stat.st_ino == self._inode else None

    def write(self, records: Sequence[LogRecordOut]) -> None:
        data = b"".join(line for _, _, line in records)
        size = self._current_size()
        if size is None:
            self._reopen()
            size = self._current_size() or 0
        if size and (
            size + len(data) > self.max_bytes
            or self.clock() - self._opened_at >= self.rotate_seconds
        ):
            self.rotate()
        assert self._fd is not None
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, memoryview(data)[done:])
        except OSError as exc:  # ENOSPC, EDQUOT, EIO: keep whole lines, drop the torn tail
            kept = self._cut_torn_line(data, done)
            raise PartialWrite(data.count(b"\n", 0, kept), len(records), exc) from exc

    def _cut_torn_line(self, data: bytes, done: int) -> int:
        """After `done` bytes of `data` reached the file, truncate the file back to the end of
        the last whole line among them, so the next write starts on a line of its own. Returns
        how many bytes of `data` remain in the file."""
        kept = data.rfind(b"\n", 0, done) + 1
        if kept == done:
            return kept
        assert self._fd is not None
        try:
            # O_APPEND left our offset at the end of our own bytes, whatever others appended.
            end = os.lseek(self._fd, 0, os.SEEK_CUR)
            os.ftruncate(self._fd, end - (done - kept))
        except OSError:
            return kept  # nothing more to do; the reader skips an unparsable line
        return kept

    def rotate(self) -> Path | None:
        if self._fd is None:
            return None
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._current_size() is None:  # another process rotated it meanwhile
                self._reopen()
                return None
            stamp = datetime.fromtimestamp(self.clock(), UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            rotated: Path | None = self.directory / f"{self.stem}.{stamp}.log"
            if os.fstat(self._fd).st_size and rotated is not None:
                os.replace(self.path, rotated)
                thread = threading.Thread(target=self._compress, args=(rotated,), daemon=True)
                thread.start()
                self._compressors.append(thread)
            else:
                rotated = None
            self._reopen()
        self.delete_expired()
        return rotated

    # Another process may still append one batch to the file it had open when this one renamed
    # it (it notices the rotation at its next write): compression waits that long.
    COMPRESS_GRACE_SECONDS = 1.0

    def _compress(self, path: Path) -> None:
        time.sleep(self.COMPRESS_GRACE_SECONDS)
        target = path.with_name(path.name + ".gz")
        partial = target.with_name(target.name + ".partial")
        with open(path, "rb") as source, gzip.open(partial, "wb", compresslevel=6) as sink:
            shutil.copyfileobj(source, sink, 1024 * 1024)
        os.replace(partial, target)  # readers never see a half-written .gz
        path.unlink()

    def delete_expired(self) -> list[Path]:
        cutoff = self.clock() - self.retention_seconds
        removed = []
        for candidate in self.directory.glob(f"{self.stem}.*.log*"):
            try:
                if candidate.stat().st_mtime < cutoff:
                    candidate.unlink()
                    removed.append(candidate)
            except FileNotFoundError:
                continue
        return removed

    def flush(self) -> None:
        return  # every write() already reached the kernel

    def wait_for_compression(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._compressors:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._compressors = [t for t in self._compressors if t.is_alive()]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.wait_for_compression()
