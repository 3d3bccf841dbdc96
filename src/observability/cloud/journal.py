"""An append-only disk journal (spool) that sits between log producers and the shipper.

Why hand-written: the shipper must survive `kill -9` and long outages without losing what it
accepted, within a size cap, and replay in order. No maintained Python library offers a
crash-safe, size-capped, single-reader spool with per-consumer checkpoints (`persist-queue`
keeps one SQLite row per item and has no "drop the oldest past a cap" policy), so this module
keeps the format small enough to read in one sitting.

Layout of a journal directory::

    .lock                  flock()ed by the one writer (the process that appends)
    .reader.lock           flock()ed by the one reader (the shipper)
    0000000000000001.seg   segments, append-only, numbered in write order
    0000000000000002.seg
    checkpoint.json        how far the shipper got (replaced atomically)

A segment is a sequence of records::

    record  = header payload
    header  = <u32 payload length> <u32 crc32(payload)>
    payload = <i64 timestamp_ms> <i64 appended_at_ms> <u8 len(group)> group message

Appends go through `os.write` on an `O_APPEND` descriptor: once `append()` returns the bytes are
in the kernel, so killing the process loses nothing (a power cut can still lose the page cache;
call `sync()` if that matters). The reader never sees half a record of the live segment because
it only reads up to the size recorded under the same lock as the write.

Roles: one `Journal` object can be both sides (`role="both"`: a shipper thread in the producing
process), or the writer and the reader can be two processes (`"writer"` in the application,
`"reader"` in its shipping agent, see `observability.cloud.agent`). A reader in another process
learns what was appended from the files themselves: it reads up to the file size and only whole
records (a record still being written is read on the next pass), and a segment is finished once
a newer one exists (the writer rotates only between writes). The writer learns how far the reader
got from the checkpoint file, which it only needs when the cap forces it to drop segments.

Checkpoints: the shipper ships one "chunk" (a contiguous run of records) as one batch per log
group, in order. `start` says every record before it is shipped; `groups[g]` says every record
of group `g` before that position is shipped too (a chunk whose `api` batch went out but whose
`errors` batch did not). Replay starts at `start` and skips what `groups` covers.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Journal",
    "JournalClosedError",
    "JournalLockedError",
    "JournalRecord",
    "Position",
    "Role",
]

Role = Literal["both", "writer", "reader"]

_HEADER = struct.Struct("<II")
_PAYLOAD_HEAD = struct.Struct("<qqB")
_MAX_RECORD_PAYLOAD = 16 * 1024 * 1024  # sanity bound when walking possibly damaged files
_SEGMENT_SUFFIX = ".seg"
_CHECKPOINT = "checkpoint.json"


class JournalLockedError(RuntimeError):
    """Another process (or another Journal in this process) owns the directory."""


class JournalClosedError(RuntimeError):
    """The journal was closed; nothing more can be appended."""


@dataclass(frozen=True, order=True)
class Position:
    """A place in the journal: segment number and byte offset inside it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class JournalRecord:
    position: Position
    next_position: Position
    group: str
    timestamp_ms: int
    appended_at_ms: int
    message: str
    message_bytes: int  # UTF-8 size, so batching never re-encodes


@dataclass
class _Segment:
    number: int
    path: Path
    size: int = 0  # bytes of whole, valid records (what the reader may read)
    count: int = 0
    disk: int = 0  # bytes on disk, counted against the cap


@dataclass
class _Reader:
    position: Position
    records_read_in_segment: int = 0
    fd: int | None = None
    fd_segment: int = -1
    skip: dict[str, Position] = field(default_factory=dict)


@functools.lru_cache(maxsize=64)
def _group_bytes(group: str) -> bytes:
    return group.encode("utf-8")[:255]


def encode_record(group: str, timestamp_ms: int, appended_at_ms: int, message: bytes) -> bytes:
    group_bytes = _group_bytes(group)
    payload = (
        _PAYLOAD_HEAD.pack(timestamp_ms, appended_at_ms, len(group_bytes)) + group_bytes + message
    )
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _walk(data: bytes) -> tuple[int, int]:
    """Count the structurally valid records at the start of `data`; return (count, end)."""
    offset = count = 0
    while offset + _HEADER.size <= len(data):
        length, _crc = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        if length < _PAYLOAD_HEAD.size or length > _MAX_RECORD_PAYLOAD or end > len(data):
            break
        offset, count = end, count + 1
    return count, offset


class Journal:
    """Append-only segments plus a checkpoint; one writer side, one reader (the shipper).

    `append()` may be called from any thread; `read()` and `commit()` from the shipper thread.
    `role` says which side(s) this object is (see the module docstring).
    """

    def __init__(
        self,
        directory: Path | str,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = 8 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        role: Role = "both",
        expand: Callable[[JournalRecord], Sequence[JournalRecord]] | None = None,
    ) -> None:
        """`expand` turns one stored record into the events it holds (a batch of log lines
        into one event per line and group); already-shipped events are skipped after it."""
        if segment_bytes <= 0 or max_bytes < 2 * segment_bytes:
            raise ValueError("journal max_bytes must be at least twice segment_bytes")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self.role: Role = role
        self._expand = expand
        self._lock_fds: list[int] = []
        try:
            if role != "reader":
                self._lock_fds.append(_flock(self.directory / ".lock", "writer"))
            if role != "writer":
                self._lock_fds.append(_flock(self.directory / ".reader.lock", "reader"))
        except JournalLockedError:
            for fd in self._lock_fds:
                os.close(fd)
            raise
        self.dropped: dict[str, int] = {}
        self._segments: dict[int, _Segment] = {}
        self._total_bytes = 0
        if role == "reader":
            self._refresh()
        else:
            self._scan_existing()
        start, skip = self._load_checkpoint()
        self._write_fd = -1
        self._active = (
            self._open_segment(max(self._segments, default=0) + 1) if role != "reader" else None
        )
        self._reader = _Reader(position=start, skip=skip)
        self._reader_epoch = 0
        self._committed = start
        self._normalise_reader()

    # -- opening -------------------------------------------------------------------------

    def _scan_existing(self) -> None:
        for path in sorted(self.directory.glob(f"*{_SEGMENT_SUFFIX}")):
            try:
                number = int(path.stem)
            except ValueError:
                continue
            data = path.read_bytes()
            count, end = _walk(data)
            if end < len(data):
                # A torn tail (power loss) or damage: what follows cannot be framed any more.
                self._count_drop("corrupt", 1)
            self._segments[number] = _Segment(number, path, end, count, len(data))
            self._total_bytes += len(data)

    def _load_checkpoint(self) -> tuple[Position, dict[str, Position]]:
        first = min(self._segments, default=1)
        try:
            raw = json.loads((self.directory / _CHECKPOINT).read_text("utf-8"))
            start = Position(int(raw["start"][0]), int(raw["start"][1]))
            skip = {str(g): Position(int(p[0]), int(p[1])) for g, p in raw["groups"].items()}
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return Position(first, 0), {}
        return start, skip

    def _refresh(self) -> None:
        """Reader in its own process: learn the segments and their sizes from the files.
        A segment the writer deleted for the cap is forgotten (the writer counted its drops)."""
        numbers: dict[int, Path] = {}
        for path in self.directory.glob(f"*{_SEGMENT_SUFFIX}"):
            with contextlib.suppress(ValueError):
                numbers[int(path.stem)] = path
        for number in [n for n in self._segments if n not in numbers]:
            del self._segments[number]
        current = self._reader.position.segment if hasattr(self, "_reader") else 0
        for number, path in numbers.items():
            segment = self._segments.get(number)
            if segment is None:
                segment = self._segments[number] = _Segment(number, path)
            elif number < current:
                continue  # read already; its size no longer changes
            try:
                segment.size = segment.disk = os.stat(path).st_size
            except FileNotFoundError:
                del self._segments[number]

    def _live_number(self) -> int:
        """The segment being appended to (for a reader: the newest one it can see)."""
        if self._active is not None:
            return self._active.number
        return max(self._segments, default=0)

    def _forget_deleted(self) -> None:
        """Writer: the reader (another process) deletes shipped segments; stop counting them."""
        for number, segment in list(self._segments.items()):
            if number != self._live_number() and not segment.path.exists():
                self._segments.pop(number)
                self._total_bytes -= segment.disk

    def _open_segment(self, number: int) -> _Segment:
        path = self.directory / f"{number:016d}{_SEGMENT_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        self._write_fd = os.open(path, flags, 0o600)
        segment = _Segment(number, path)
        self._segments[number] = segment
        return segment

    # -- writing -------------------------------------------------------------------------

    def append(self, items: Sequence[tuple[str, int, bytes]]) -> None:
        """Append (group, timestamp_ms, utf-8 message) records; raises OSError on disk errors."""
        if not items:
            return
        now_ms = int(self._clock() * 1000)
        data = b"".join(encode_record(g, ts, now_ms, msg) for g, ts, msg in items)
        with self._lock:
            if self._closed:
                raise JournalClosedError("journal is closed")
            if self._active is None:
                raise JournalClosedError("a reader journal cannot append")
            if self._active.size and self._active.size + len(data) > self._segment_bytes:
                self._rotate()
            self._write_all(data)
            self._active.size += len(data)
            self._active.disk += len(data)
            self._active.count += len(items)
            self._total_bytes += len(data)
            self._enforce_cap()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                written += os.write(self._write_fd, view[written:])
        except OSError:
            if written:
                # Never leave half a record in the live segment: cut it off, or if even that
                # fails, seal the segment at its last good size and continue in a fresh one.
                try:
                    assert self._active is not None
                    os.ftruncate(self._write_fd, self._active.size)
                except OSError:
                    self._rotate()
            raise

    def _rotate(self) -> None:
        assert self._active is not None
        os.close(self._write_fd)
        self._active = self._open_segment(self._active.number + 1)
        if self.role == "writer":
            self._forget_deleted()

    def _enforce_cap(self) -> None:
        reader = self._reader
        if self._total_bytes > self._max_bytes and self.role == "writer":
            # The reader is another process: forget what it deleted, then see where it is.
            self._forget_deleted()
            self._sync_reader_from_checkpoint()
        while self._total_bytes > self._max_bytes:
            oldest = min(self._segments)
            if oldest == self._live_number():
                return
            segment = self._segments.pop(oldest)
            if oldest == reader.position.segment:
                self._count_drop("journal_full", segment.count - reader.records_read_in_segment)
                # The reader thread may be reading this segment outside the lock right now:
                # the epoch tells it to throw that read away (it was just counted as dropped).
                # Its descriptor stays valid after the unlink; the reader closes it itself.
                reader.position = Position(min(self._segments), 0)
                reader.records_read_in_segment = 0
                self._reader_epoch += 1
            elif oldest > reader.position.segment:
                self._count_drop("journal_full", segment.count)
            # Segments behind the reader are read already: their records are in the shipper's
            # memory and still get shipped, so they are not counted as dropped.
            self._total_bytes -= segment.disk
            with contextlib.suppress(OSError):
                segment.path.unlink()

    def _count_drop(self, reason: str, count: int) -> None:
        if count > 0:
            self.dropped[reason] = self.dropped.get(reason, 0) + count

    def _sync_reader_from_checkpoint(self) -> None:
        """Writer: take the reader's position from its checkpoint (records before the
        checkpoint in its segment are shipped, so they do not count as dropped)."""
        start, _skip = self._load_checkpoint()
        self._committed = start
        segment = self._segments.get(start.segment)
        done = 0
        if segment is not None and start.offset > 0:
            with contextlib.suppress(OSError), segment.path.open("rb") as handle:
                done, _ = _walk(handle.read(start.offset))
        self._reader.position = start
        self._reader.records_read_in_segment = done

    # -- reading -------------------------------------------------------------------------

    def _normalise_reader(self) -> None:
        """Move the cursor off finished or deleted segments (caller holds the lock or owns us)."""
        reader = self._reader
        while True:
            pos = reader.position
            segment = self._segments.get(pos.segment)
            if segment is None:
                later = [n for n in self._segments if n > pos.segment]
                if not later:
                    return
                reader.position = Position(min(later), 0)
                reader.records_read_in_segment = 0
                continue
            if pos.offset < segment.size or segment.number == self._live_number():
                return
            later = [n for n in self._segments if n > pos.segment]
            if not later:
                return
            reader.position = Position(min(later), 0)
            reader.records_read_in_segment = 0

    def _close_reader_fd(self) -> None:
        if self._reader.fd is not None:
            os.close(self._reader.fd)
            self._reader.fd = None
            self._reader.fd_segment = -1

    def _reader_fd(self, segment: _Segment) -> int:
        """The reader's descriptor for `segment` (reader thread only, under the lock)."""
        reader = self._reader
        if reader.fd is None or reader.fd_segment != segment.number:
            self._close_reader_fd()
            reader.fd = os.open(segment.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            reader.fd_segment = segment.number
        return reader.fd

    def read(self, max_records: int, max_bytes: int) -> tuple[list[JournalRecord], Position]:
        """Next records after the cursor (already-shipped ones skipped) and the new cursor.

        The file is read and decoded outside the lock, so `append()` never waits for it.
        """
        out: list[JournalRecord] = []
        budget = max_bytes
        reader = self._reader
        while len(out) < max_records and budget > 0:
            with self._lock:
                if self.role == "reader":
                    self._refresh()
                self._normalise_reader()
                pos = reader.position
                segment = self._segments.get(pos.segment)
                if segment is None or pos.offset >= segment.size:
                    break
                fd = self._reader_fd(segment)
                epoch = self._reader_epoch
                live = segment.number == self._live_number()
                want = min(budget, segment.size - pos.offset)
            data = os.pread(fd, want, pos.offset)
            count, end = _walk(data)
            if count == 0 and len(data) >= _HEADER.size:
                # A single record bigger than the budget: read exactly that one.
                length, _ = _HEADER.unpack_from(data)
                data = os.pread(
                    fd, min(_HEADER.size + length, segment.size - pos.offset), pos.offset
                )
                count, end = _walk(data)
            parsed, used, corrupt = self._parse(data[:end], pos, max_records - len(out))
            with self._lock:
                if self._reader_epoch != epoch:
                    continue  # the segment was dropped for the cap meanwhile (and counted)
                if count == 0 and live and self.role == "reader":
                    break  # the writer (another process) is still writing this record
                if count == 0:  # damaged beyond framing: give up on the rest of this segment
                    self._count_drop("corrupt", 1)
                    reader.position = Position(pos.segment, segment.size)
                    continue
                self._count_drop("corrupt", corrupt)
                reader.position = Position(pos.segment, pos.offset + used)
                reader.records_read_in_segment += len(parsed) + corrupt
            budget -= used
            expand = self._expand
            for stored in parsed:
                for record in expand(stored) if expand is not None else (stored,):
                    skip = reader.skip.get(record.group)
                    if skip is None or record.position >= skip:
                        out.append(record)
        with self._lock:
            self._normalise_reader()
            return out, reader.position

    @staticmethod
    def _parse(data: bytes, start: Position, limit: int) -> tuple[list[JournalRecord], int, int]:
        """Decode up to `limit` records: (records, bytes used, records failing their CRC)."""
        records: list[JournalRecord] = []
        offset = corrupt = 0
        while offset < len(data) and len(records) + corrupt < limit:
            length, crc = _HEADER.unpack_from(data, offset)
            body_at = offset + _HEADER.size
            payload = data[body_at : body_at + length]
            here = Position(start.segment, start.offset + offset)
            offset = body_at + length
            nxt = Position(start.segment, start.offset + offset)
            if zlib.crc32(payload) != crc:
                corrupt += 1
                continue
            ts, appended, glen = _PAYLOAD_HEAD.unpack_from(payload)
            group_end = _PAYLOAD_HEAD.size + glen
            group = payload[_PAYLOAD_HEAD.size : group_end].decode("utf-8", "replace")
            body = payload[group_end:]
            message = body.decode("utf-8", "replace")
            records.append(JournalRecord(here, nxt, group, ts, appended, message, len(body)))
        return records, offset, corrupt

    # -- checkpoints ---------------------------------------------------------------------

    def commit(self, start: Position, groups: Mapping[str, Position] | None = None) -> None:
        """Persist progress (atomic replace), then delete segments wholly before `start`."""
        with self._lock:
            merged = {g: p for g, p in self._reader.skip.items() if p > start}
            for group, pos in (groups or {}).items():
                if pos > start and pos > merged.get(group, start):
                    merged[group] = pos
            self._reader.skip = {g: p for g, p in self._reader.skip.items() if p > start}
        body = json.dumps(
            {
                "version": 1,
                "start": [start.segment, start.offset],
                "groups": {g: [p.segment, p.offset] for g, p in merged.items()},
            }
        )
        tmp = self.directory / f"{_CHECKPOINT}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, body.encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / _CHECKPOINT)
        with self._lock:
            self._committed = start
            for number in [n for n in self._segments if n < start.segment]:
                if number == self._live_number():
                    continue
                segment = self._segments.pop(number)
                self._total_bytes -= segment.disk
                with contextlib.suppress(OSError):
                    segment.path.unlink()

    # -- state ---------------------------------------------------------------------------

    @property
    def disk_bytes(self) -> int:
        """Bytes of segment files on disk (what the cap limits)."""
        return self._total_bytes

    @property
    def pending_bytes(self) -> int:
        """Bytes of records past the checkpoint: not yet shipped (or shipped, not checkpointed)."""
        with self._lock:
            if self.role == "writer":  # the reader is another process: ask its checkpoint
                self._forget_deleted()
                self._committed, _skip = self._load_checkpoint()
            start = self._committed
            total = sum(s.size for n, s in self._segments.items() if n >= start.segment)
            if start.segment in self._segments:
                total -= min(start.offset, self._segments[start.segment].size)
            return total

    def dropped_snapshot(self) -> dict[str, int]:
        """Events the journal itself dropped, by reason ("journal_full", "corrupt")."""
        with self._lock:
            return dict(self.dropped)

    def has_unread(self) -> bool:
        with self._lock:
            if self.role == "reader":
                self._refresh()
            self._normalise_reader()
            segment = self._segments.get(self._reader.position.segment)
            return segment is not None and self._reader.position.offset < segment.size

    def sync(self) -> None:
        """fsync the live segment (only needed to survive power loss, not process death)."""
        with self._lock:
            if not self._closed and self._active is not None:
                os.fsync(self._write_fd)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_reader_fd()
            if self._active is not None:
                os.close(self._write_fd)
            for fd in self._lock_fds:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _flock(path: Path, side: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise JournalLockedError(f"{path.parent} has a live {side} in another process") from exc
    return fd
