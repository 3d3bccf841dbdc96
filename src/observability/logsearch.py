"""Search the JSON-lines log files of a RotatingFileSink (active, rotated, gzipped) with DuckDB.

    search = LogSearch(Path("var/log"))
    for line in search.search(LogQuery(request_id="4f2c...", level="warning")):
        print(line.raw)

How it reads: every file is read by DuckDB's CSV reader as *one text column per line* (a
delimiter that valid JSON lines never contain), gzip decompressed on the fly. A cheap substring
prefilter (`contains`) drops lines that cannot match before any JSON is parsed; the survivors
are checked exactly with `json_extract_string`. Why not `read_json`: type inference over
heterogeneous lines is 4-6x slower (benchmarks/logsearch.py --compare), fields it never sampled
vanish, and the original line -- which `--format json` must print unchanged -- is lost.
`read_ndjson_objects` keeps the line too but validates every line as JSON up front; the CSV
reader only splits on newlines, so a torn or non-JSON line costs nothing and matches nothing.

A line is searchable when it is a JSON object with a `timestamp` (every pipeline line is).
Timestamps are compared as strings: the pipeline writes a fixed-width UTC form
(`2024-05-01T12:00:00.123456Z`), so string order is time order and no parsing is needed.
All user input reaches DuckDB as bound parameters, never as SQL text.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import orjson

__all__ = [
    "LEVELS",
    "Condition",
    "Follower",
    "LogLine",
    "LogQuery",
    "LogSearch",
    "LogSearchError",
    "NoLogsError",
    "QueryError",
    "log_files",
    "parse_condition",
    "parse_time",
]

LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical", "exception": "error"}
# The JSON number grammar: both sides must match it for a numeric comparison.
_NUMBER = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?"
_NUMBER_RE = re.compile(_NUMBER)
# What DuckDB's json_type calls a JSON number.
_JSON_NUMBERS = "('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT')"
_OPERATORS = ("!=", ">=", "<=", "=", ">", "<")
_CONDITION_RE = re.compile(r"^\s*([^=!<>\s]+)\s*(!=|>=|<=|=|>|<)(.*)$", re.DOTALL)
_FIELD_PART_RE = re.compile(r"^[^\"\\\s]+$")
_RELATIVE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_STAMP_RE = re.compile(r"\.(\d{8}T\d{6}\.\d{6}Z)\.log(\.gz)?$")
_MAX_LINE = 16 * 1024 * 1024  # exception lines with 40 frames are ~20 KB; leave ample room
# Queue delay between an event's timestamp and its write: rotated-file time pruning keeps
# this much slack so a line stamped just before a rotation is never skipped.
_ROTATION_SLACK = timedelta(minutes=5)
_ATTEMPTS = 8
_HEAD_BYTES = 4096  # enough to tell two log files apart: the first line alone is unique

_READ = (
    "read_csv(?, columns={'line': 'VARCHAR'}, delim='\x01', quote='', escape='', "
    "header=false, auto_detect=false, ignore_errors=true, compression='auto', "
    f"max_line_size={_MAX_LINE}, filename=true)"
)


class LogSearchError(Exception):
    """Base of the search errors:

    LogSearchError
     +-- NoLogsError   the directory is missing or holds no log files (exit code 1)
     +-- QueryError    a filter is malformed: bad --where, --since, --level (exit code 2)
    """


class NoLogsError(LogSearchError):
    pass


class QueryError(LogSearchError, ValueError):
    pass


# --- parsing user input ------------------------------------------------------------------------
def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (naive means UTC) or a relative one ("15m", "2h", "1d", "30s", "1w" ago)."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE_RE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return now - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    try:
        parsed = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise QueryError(
            f"bad time {text!r}: expected ISO-8601 (2024-05-01T12:00:00Z) or a relative "
            "time like 30s, 15m, 2h, 1d, 1w"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    """The pipeline's timestamp form, so string comparison is time comparison."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_text(value: Any) -> str | None:
    """A value as DuckDB's json_extract_string renders it (None for a missing or null field)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class Condition:
    """`field op value`: op is =, !=, >, >=, < or <=. Comparisons are typed: a value that is a
    number compares with JSON numbers as numbers (`status>=500`); an ordering (>, >=, <, <=)
    only ever matches a field of the same type, so `status>=500` never matches a notification's
    `"firing"` and `route>/a` never a number. `=` and `!=` with a field of the other type
    compare the text (an id logged as a string still matches `user_id=123`). A dotted field
    reaches into nested objects (`exception.type`). A line without the field never matches,
    not even `!=`."""

    field: str
    op: str
    value: str

    @cached_property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.field.split("."))

    @property
    def path(self) -> str:
        # Every key quoted, so keys with dashes or digits ("user-agent") are taken literally.
        return "$." + ".".join(f'"{part}"' for part in self.parts)

    @cached_property
    def number(self) -> float | None:
        return float(self.value) if _NUMBER_RE.fullmatch(self.value) else None

    @property
    def prefilter(self) -> str | None:
        """A substring every matching raw line must contain (None: no cheap test exists)."""
        if self.op != "=" or not self.value or self.number is not None:
            return None  # numbers may be written differently (1e3, 1000.0)
        if (
            not self.value.isascii()
            or any(c in self.value for c in '"\\')
            or not (self.value.isprintable())
        ):
            return None  # a JSON writer may escape these characters
        return self.value

    @property
    def ordering(self) -> bool:
        return self.op not in ("=", "!=")

    def matches(self, event: dict[str, Any]) -> bool:
        value: Any = event
        for part in self.parts:
            if not isinstance(value, dict):
                return False
            value = value.get(part)
        text = _json_text(value)
        if text is None:
            return False
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if self.number is not None and is_number:
            return _compare(float(value), self.op, self.number)
        if self.ordering and (self.number is not None or not isinstance(value, str)):
            return False  # a number against text, or text against a number: never ordered
        return _compare(text, self.op, self.value)


def _compare(left: Any, op: str, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def parse_condition(spec: str) -> Condition:
    """Parse `field=value` (or !=, >, >=, <, <=); raise QueryError naming what is wrong."""
    found = _CONDITION_RE.match(spec)
    if not found:
        raise QueryError(
            f"bad --where {spec!r}: expected field=value (or field!=value, field>=number, ...)"
        )
    name, op, value = found.group(1), found.group(2), found.group(3)
    parts = name.split(".")
    if any(not part or not _FIELD_PART_RE.match(part) for part in parts):
        raise QueryError(f"bad --where {spec!r}: field {name!r} is not a field name")
    return Condition(name, op, value)


def _min_levels(level: str) -> tuple[str, ...]:
    wanted = level.strip().lower()
    wanted = _LEVEL_ALIASES.get(wanted, wanted)
    if wanted not in LEVELS:
        raise QueryError(f"bad level {level!r}: expected one of {', '.join(LEVELS)}")
    return LEVELS[LEVELS.index(wanted) :]


@dataclass(frozen=True)
class LogQuery:
    """What to look for; every filter given must hold (AND). Newest `limit` lines are kept."""

    request_id: str | None = None
    trace_id: str | None = None
    user_id: str | None = None
    level: str | None = None  # minimum level: "warning" keeps warning, error, critical
    route: str | None = None
    event: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    where: tuple[Condition, ...] = ()
    limit: int = 200

    def __post_init__(self) -> None:
        if self.level is not None:
            _min_levels(self.level)  # fail early, with the accepted values
        if self.limit < 1:
            raise QueryError("limit must be at least 1")
        if self.since and self.until and self.since > self.until:
            raise QueryError("--since is later than --until")

    @cached_property
    def conditions(self) -> tuple[Condition, ...]:
        named = (
            ("request_id", self.request_id),
            ("trace_id", self.trace_id),
            ("user_id", self.user_id),
            ("route", self.route),
            ("event", self.event),
        )
        return tuple(Condition(k, "=", v) for k, v in named if v is not None) + self.where

    @cached_property
    def levels(self) -> tuple[str, ...] | None:
        return None if self.level is None else _min_levels(self.level)

    @cached_property
    def since_stamp(self) -> str | None:
        return None if self.since is None else _stamp(self.since)

    @cached_property
    def until_stamp(self) -> str | None:
        return None if self.until is None else _stamp(self.until)

    def matches(self, event: dict[str, Any]) -> bool:
        """The same test as the SQL, for lines read in Python (`follow`)."""
        stamp = _json_text(event.get("timestamp"))
        if stamp is None:
            return False
        if self.since_stamp is not None and stamp < self.since_stamp:
            return False
        if self.until_stamp is not None and stamp > self.until_stamp:
            return False
        if self.levels is not None and event.get("level") not in self.levels:
            return False
        return all(condition.matches(event) for condition in self.conditions)

    def sql(self) -> tuple[str, list[Any]]:
        """The WHERE clause over `line` and `ts`, with its parameters (files and limit apart)."""
        prefilters: list[str] = []
        exact: list[str] = ["ts IS NOT NULL"]
        params_pre: list[Any] = []
        params_exact: list[Any] = []
        for condition in self.conditions:
            if condition.prefilter is not None:
                prefilters.append("contains(line, ?)")
                params_pre.append(condition.prefilter)
            value = "TRY(json_extract_string(line, ?))"
            kind = "TRY(json_type(line, ?))"
            op = condition.op  # one of six fixed operators (parse_condition), never user text
            # The same typed test as Condition.matches: numbers as numbers; an ordering
            # only between values of one type; = and != fall back to the text.
            if condition.number is not None and condition.ordering:
                exact.append(f"({kind} IN {_JSON_NUMBERS} AND TRY_CAST({value} AS DOUBLE) {op} ?)")
                params_exact += [condition.path, condition.path, condition.number]
            elif condition.number is not None:
                exact.append(
                    f"(CASE WHEN {kind} IN {_JSON_NUMBERS} "
                    f"THEN TRY_CAST({value} AS DOUBLE) {op} ? ELSE {value} {op} ? END)"
                )
                params_exact += [condition.path, condition.path, condition.number]
                params_exact += [condition.path, condition.value]
            elif condition.ordering:
                exact.append(f"({kind} = 'VARCHAR' AND {value} {op} ?)")
                params_exact += [condition.path, condition.path, condition.value]
            else:
                exact.append(f"{value} {op} ?")
                params_exact += [condition.path, condition.value]
        if self.since_stamp is not None:
            exact.append("ts >= ?")
            params_exact.append(self.since_stamp)
        if self.until_stamp is not None:
            exact.append("ts <= ?")
            params_exact.append(self.until_stamp)
        if self.levels is not None:
            if len(self.levels) < len(LEVELS):
                prefilters.append("(" + " OR ".join("contains(line, ?)" for _ in self.levels) + ")")
                params_pre += [f'"{level}"' for level in self.levels]
            # Levels are lowercase in every pipeline line, so the prefilter is exact enough.
            exact.append("list_contains(?, TRY(json_extract_string(line, '$.level')))")
            params_exact.append(list(self.levels))
        clause = " AND ".join([*prefilters, *exact])
        return clause, params_pre + params_exact


@dataclass
class LogLine:
    """One matching line: the original text (no newline) and its timestamp."""

    raw: str
    timestamp: str
    _fields: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def fields(self) -> dict[str, Any]:
        if self._fields is None:
            try:
                parsed = orjson.loads(self.raw)
            except orjson.JSONDecodeError:
                parsed = {}
            self._fields = parsed if isinstance(parsed, dict) else {}
        return self._fields


# --- files ---------------------------------------------------------------------------------------
def log_files(directory: Path, stem: str = "platform") -> list[Path]:
    """The log files oldest first: rotated files by stamp, then the active file.

    A rotation in progress leaves `stem.<stamp>.log` beside its finished `.log.gz` for a moment:
    the `.gz` wins so no line is read twice. `.gz.partial` files are never read.
    """
    pattern = re.compile(rf"^{re.escape(stem)}{_STAMP_RE.pattern}")
    rotated: dict[str, Path] = {}
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    active = None
    for entry in entries:
        if entry.name == f"{stem}.log":
            active = Path(entry.path)
            continue
        found = pattern.match(entry.name)
        if found and (found.group(2) or found.group(1) not in rotated):
            rotated[found.group(1)] = Path(entry.path)
    files = [rotated[stamp] for stamp in sorted(rotated)]
    if active is not None:
        files.append(active)
    return files


def _rotation_time(path: Path) -> datetime | None:
    found = _STAMP_RE.search(path.name)
    if found is None:
        return None
    return datetime.strptime(found.group(1), "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)


def _prune_by_time(files: list[Path], query: LogQuery) -> list[Path]:
    """Skip rotated files that cannot hold lines in [since, until].

    A rotated file's stamp is when it was closed, so all its lines are older than the stamp;
    its lines are newer than the previous file's stamp (less the queue slack).
    """
    if query.since is None and query.until is None:
        return files
    kept = []
    previous: datetime | None = None
    for path in files:
        closed = _rotation_time(path)
        if query.since is not None and closed is not None and closed < query.since:
            previous = closed
            continue
        if (
            query.until is not None
            and previous is not None
            and previous - _ROTATION_SLACK > query.until
        ):
            break
        kept.append(path)
        previous = closed if closed is not None else previous
    return kept


# --- the engine ----------------------------------------------------------------------------------
class LogSearch:
    """Searches and follows the logs of one RotatingFileSink directory and file stem."""

    def __init__(self, directory: Path, stem: str = "platform", threads: int | None = None) -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.active = self.directory / f"{stem}.log"
        self.threads = threads

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            raise NoLogsError(f"log directory {self.directory} does not exist")
        files = log_files(self.directory, self.stem)
        if not files:
            raise NoLogsError(
                f"no log files ({self.stem}.log, {self.stem}.<stamp>.log.gz) in {self.directory}"
            )
        return files

    def search(self, query: LogQuery) -> list[LogLine]:
        """The newest `query.limit` matching lines, oldest first."""
        clause, params = query.sql()
        # The clause is made of fixed fragments; every value in it is a bound parameter.
        sql = (
            "SELECT line, ts FROM (SELECT line, filename, "  # noqa: S608
            "TRY(json_extract_string(line, '$.timestamp')) AS ts "
            f"FROM {_READ}) WHERE {clause} ORDER BY ts DESC, filename DESC LIMIT ?"
        )
        # A rotation renames the active file and compresses the renamed one while we list and
        # read: a file may vanish, or the listing may miss the renamed file. Either way the
        # active file's inode changed, so list and read again. Under extreme churn (a rotation
        # every few milliseconds) the last attempt's result is returned as is.
        rows: list[tuple[str, str]] | None = None
        for attempt in range(_ATTEMPTS):
            before = _inode(self.active)
            files = _existing(_prune_by_time(self.files(), query))
            if files is None:
                continue  # listed, then gone: compressed or expired in between
            if not files:
                return []
            try:
                rows = self._run(sql, [files, *params, query.limit])
            except duckdb.IOException:
                continue
            if _inode(self.active) == before or attempt == _ATTEMPTS - 1:
                break
        if rows is None:
            raise LogSearchError("log files kept changing while being read; try again")
        return [LogLine(raw=line, timestamp=ts) for line, ts in reversed(rows)]

    def _run(self, sql: str, params: list[Any]) -> list[tuple[str, str]]:
        config: dict[str, str | bool | int | float | list[str]] = (
            {"threads": self.threads} if self.threads else {}
        )
        connection = duckdb.connect(config=config)
        try:
            rows: list[tuple[str, str]] = connection.execute(sql, params).fetchall()
        except duckdb.IOException:
            raise
        except duckdb.Error as exc:
            raise LogSearchError(f"log search failed: {exc}") from exc
        finally:
            connection.close()
        return rows

    def watch(self) -> Follower:
        """Start watching the active file at its end *now*.

        Call it before `search` and follow with `Follower.lines` after printing the results:
        the open handle keeps the file even if a rotation renames and compresses it during the
        search, so no line written in between is lost.
        """
        return Follower(self.directory, self.stem)

    def follow(self, query: LogQuery, **options: Any) -> Iterator[LogLine]:
        """New matching lines written once iteration begins; `options` as for `Follower.lines`."""
        follower = self.watch()
        try:
            yield from follower.lines(query, **options)
        finally:
            follower.close()


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _existing(paths: list[Path]) -> list[str] | None:
    """The non-empty files as strings; None when one of them disappeared since the listing."""
    kept = []
    for path in paths:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        if size:  # an empty active file right after a rotation holds nothing to read
            kept.append(str(path))
    return kept


def _stamp_of(path: Path) -> str:
    found = _STAMP_RE.search(path.name)
    return found.group(1) if found else path.name


def _open_rotated(path: Path) -> io.BufferedIOBase:
    """A rotated file for reading, decompressed; its .gz twin if compression just replaced it."""
    if path.suffix != ".gz":
        try:
            return open(path, "rb")
        except FileNotFoundError:
            path = path.with_name(path.name + ".gz")
    return gzip.open(path, "rb")


def _read_head(path: Path, size: int) -> bytes:
    try:
        with _open_rotated(path) as handle:
            return handle.read(size)
    except (OSError, EOFError):
        return b""


def _read_all(path: Path) -> str:
    try:
        with _open_rotated(path) as handle:
            return handle.read().decode("utf-8", "replace")
    except (OSError, EOFError):
        return ""  # expired or corrupt: nothing we can still show


def _parse_line(raw: str) -> LogLine | None:
    try:
        fields = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # a torn or foreign line: never shown, never an error
    if not isinstance(fields, dict):
        return None
    stamp = _json_text(fields.get("timestamp"))
    if stamp is None:
        return None
    return LogLine(raw=raw, timestamp=stamp, _fields=fields)


class Follower:
    """Reads the lines appended to the active file, following it through rotations.

    The sink closes the active file, renames it and opens a new one. Our open handle still
    reads the old inode, so what was appended before the rename is drained first. If the file
    rotated more than once between two polls, the files rotated in between are read from the
    rotated (maybe already gzipped) copies: files are recognised by their first bytes (lines
    carry microsecond timestamps, so two files never share them), which works even after
    compression replaced the inode. Nothing is lost and nothing is read twice.
    """

    def __init__(self, directory: Path, stem: str = "platform") -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.path = self.directory / f"{stem}.log"
        self.handle: BinaryIO | None = None
        self.inode = -1
        self.buffer = b""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            handle = None  # no active file yet: the first one to appear is read from its start
        if handle is not None:
            handle.seek(0, os.SEEK_END)
            self.handle, self.inode = handle, os.fstat(handle.fileno()).st_ino
        # Listed after opening: anything rotated so far is older than what we follow.
        self.known = {_stamp_of(p) for p in self._rotated()}

    def lines(
        self,
        query: LogQuery,
        *,
        already_seen: Iterable[str] = (),
        seconds: float | None = None,
        poll_interval: float = 0.2,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Iterator[LogLine]:
        """Matching lines as they are written. Lines in `already_seen` (a search's output) are
        not repeated. Stops after `seconds`, when `should_stop()` is true, or when the caller
        stops iterating (Ctrl+C)."""
        deadline = None if seconds is None else time.monotonic() + seconds
        skip = Counter(already_seen)
        while True:
            for raw in self.read_lines():
                if skip[raw] > 0:
                    skip[raw] -= 1
                    continue
                line = _parse_line(raw)
                if line is not None and query.matches(line.fields):
                    yield line
            if should_stop() or (deadline is not None and time.monotonic() >= deadline):
                return
            pause = poll_interval
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            time.sleep(pause)

    def _drain(self) -> list[str]:
        if self.handle is None:
            return []
        self.buffer += self.handle.read()
        if b"\n" not in self.buffer:
            return []
        *complete, self.buffer = self.buffer.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete if line]

    def read_lines(self) -> list[str]:
        """The complete lines appended since the last call (a partial last line waits)."""
        lines = self._drain()
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return lines  # between the rename and the new file: wait for it
        if self.handle is not None and stat.st_ino == self.inode:
            if stat.st_size >= self.handle.tell():
                return lines
            self.handle.seek(0)  # truncated in place: read it again from the start
            self.buffer = b""
            return lines + self._drain()
        # Replaced: the writer closed the old file before the rename, so this drain is final;
        # a fragment left without its newline was torn by a crash and is dropped.
        lines += self._drain()
        old_head = self._head()
        self.close()
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            handle = None
        if handle is not None:
            self.handle, self.inode = handle, os.fstat(handle.fileno()).st_ino
        # The new handle is open first, so every rotation before its file became active is
        # already listed below.
        lines += self._rotated_in_between(old_head, self._head())
        return lines + self._drain()

    def _head(self) -> bytes:
        if self.handle is None:
            return b""
        return os.pread(self.handle.fileno(), _HEAD_BYTES, 0)

    def _rotated(self) -> list[Path]:
        return [p for p in log_files(self.directory, self.stem) if p != self.path]

    def _rotated_in_between(self, old_head: bytes, new_head: bytes) -> list[str]:
        """Lines of files rotated after the one we were reading and before the one now open."""
        fresh = [p for p in self._rotated() if _stamp_of(p) not in self.known]
        heads = [_read_head(p, _HEAD_BYTES) for p in fresh]
        own = next((i for i, h in enumerate(heads) if old_head and h == old_head), None)
        lines: list[str] = []
        for index, path in enumerate(fresh):
            if new_head and heads[index] == new_head:
                break  # the file we have open rotated already: its handle reads it
            self.known.add(_stamp_of(path))
            if own is not None and index <= own:
                continue  # ours (drained through the handle) or older than ours
            text = _read_all(path)
            lines += [line for line in text.split("\n") if line]
        return lines

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
