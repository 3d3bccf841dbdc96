"""Audit stored logs and errors with the full catalog: masking is the net, the audit checks it.

    report = audit(log_dir, stem="platform", store_engine=engine, since=parse_time("1d"))
    for finding in report.findings:
        print(finding.source, finding.line, finding.field, finding.detector)

Reads every log file of a RotatingFileSink (active, rotated, gzipped) and the error store's
groups and sample occurrences. A finding names where (file and line, or error-store table and
row), which field (a dotted path in the JSON line) and which detector; it never carries the
value. A value under a sensitive key that is not a masker's marker is a finding too
(``sensitive_key``). Lines that are not JSON are scanned whole (field ``-``).

`LogAuditor` runs the same audit periodically on what is new since its last run and counts
findings in ``log_audit_findings_total{detector}``.
"""

from __future__ import annotations

import fcntl
import gzip
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from observability.errors.store import groups_table, occurrences_table
from observability.masking.masker import Masker, default_masker
from observability.metrics.names import LOG_AUDIT_FINDINGS

__all__ = ["AuditFinding", "AuditReport", "LogAuditor", "audit", "audit_error_store", "audit_logs"]

SENSITIVE_KEY = "sensitive_key"
_STAMP = re.compile(r"\.(\d{8}T\d{6}\.\d{6}Z)\.log(\.gz)?$")
_MARKER = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]{0,30} )?\[MASKED[^\]\s]{0,60}\](?:; )?")


@dataclass(frozen=True)
class AuditFinding:
    """One secret found after the fact. `line` is the 1-based line of a log file, or the row
    id in the error store; `field` the dotted path of the JSON field holding it."""

    source: str
    line: int
    field: str
    detector: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.field}: {self.detector}"


@dataclass
class AuditReport:
    findings: list[AuditFinding] = field(default_factory=list)
    files: int = 0
    lines: int = 0
    rows: int = 0
    newest: str = ""  # the newest log timestamp seen (where a periodic run resumes)
    last_row: int = 0  # the highest error-store occurrence id seen

    def by_detector(self) -> Counter[str]:
        return Counter(f.detector for f in self.findings)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _log_files(directory: Path, stem: str) -> list[Path]:
    """Rotated files oldest first (a finished .gz wins over its uncompressed twin), then the
    active file; the same files `ep logs` searches."""
    rotated: dict[str, Path] = {}
    for path in sorted(directory.glob(f"{stem}.*.log*")):
        found = _STAMP.search(path.name)
        if (
            found
            and path.name.startswith(f"{stem}.")
            and (found.group(2) or found.group(1) not in rotated)
        ):
            rotated[found.group(1)] = path
    files = [rotated[stamp] for stamp in sorted(rotated)]
    active = directory / f"{stem}.log"
    return [*files, active] if active.exists() else files


def _open(path: Path) -> BinaryIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(dotted path, text) for every string in `value`, keys included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, str(key)
            yield from _walk(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


class _Scanner:
    def __init__(self, masker: Masker) -> None:
        self.masker = masker

    def scan(self, source: str, line: int, document: Any) -> Iterator[AuditFinding]:
        strings = list(_walk(document, ""))
        texts = [text for _, text in strings]
        for index in self.masker.engine.suspects(texts):
            path, text = strings[index]
            for finding in self.masker.findings(text):
                yield AuditFinding(source, line, path or "-", finding.detector)
        yield from self._sensitive_values(source, line, document, "")

    def _sensitive_values(
        self, source: str, line: int, value: Any, path: str
    ) -> Iterator[AuditFinding]:
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if self.masker.is_sensitive_key(str(key)) and _leaks(item):
                    yield AuditFinding(source, line, child, SENSITIVE_KEY)
                else:
                    yield from self._sensitive_values(source, line, item, child)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from self._sensitive_values(source, line, item, f"{path}[{index}]")


def _leaks(value: Any) -> bool:
    """A value under a sensitive key that the masker would not have left there."""
    if value is None or isinstance(value, bool) or value == "":
        return False
    return not (isinstance(value, str) and _MARKER.fullmatch(value))


def audit_logs(
    directory: Path,
    stem: str = "platform",
    *,
    since: datetime | None = None,
    after: str | None = None,
    masker: Masker | None = None,
    report: AuditReport | None = None,
) -> AuditReport:
    """Scan the log files in `directory`: lines stamped at or after `since`, or strictly
    after the timestamp `after` (a line's own `timestamp` text), or all."""
    report = report if report is not None else AuditReport()
    scanner = _Scanner(masker or default_masker())
    # Stamps are fixed-width text: one character more sorts after the equal stamp only.
    floor = _stamp(since) if since is not None else (after + "\x00" if after else None)
    for path in _log_files(Path(directory), stem):
        closed = _STAMP.search(path.name)
        if floor and closed and _rotation_stamp(closed.group(1)) < floor:
            continue  # rotated before `since`: every line in it is older
        report.files += 1
        try:
            with _open(path) as handle:
                for number, raw in enumerate(handle, start=1):
                    _audit_line(scanner, report, str(path), number, raw, floor)
        except (OSError, EOFError):
            continue  # rotated away or corrupt while reading: the next run sees the rest
    return report


def _rotation_stamp(name_stamp: str) -> str:
    moment = datetime.strptime(name_stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    return _stamp(moment)


_STAMP_PREFIX = b'{"timestamp":"'  # how the pipeline starts every line
_STAMP_END = len(_STAMP_PREFIX) + len("2026-01-01T00:00:00.000000Z")


def _audit_line(
    scanner: _Scanner, report: AuditReport, source: str, number: int, raw: bytes, floor: str | None
) -> None:
    # A periodic run re-reads the active file: old lines are skipped before any JSON parsing.
    if (
        floor
        and raw.startswith(_STAMP_PREFIX)
        and raw[len(_STAMP_PREFIX) : _STAMP_END] < floor.encode()
    ):
        return
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = raw.decode("utf-8", "replace").rstrip("\n")
    stamp = document.get("timestamp") if isinstance(document, dict) else None
    if isinstance(stamp, str):
        if floor and stamp < floor:
            return
        report.newest = max(report.newest, stamp)
    report.lines += 1
    report.findings.extend(scanner.scan(source, number, document))


def audit_error_store(
    engine: sa.Engine,
    *,
    since: datetime | None = None,
    after_row: int = 0,
    groups: bool = True,
    masker: Masker | None = None,
    report: AuditReport | None = None,
) -> AuditReport:
    """Scan the error store's sample occurrences (at or after `since`, or after the row id
    `after_row`) and, with `groups`, the groups' titles."""
    report = report if report is not None else AuditReport()
    scanner = _Scanner(masker or default_masker())
    floor = since.timestamp() if since is not None else None
    o, g = occurrences_table, groups_table
    occurrences = sa.select(
        o.c.id, o.c.message, o.c.context, o.c.frames, o.c.user_id, o.c.route, o.c.request_id
    ).where(o.c.id > after_row)
    titles = sa.select(g.c.fingerprint, g.c.message, g.c.type, g.c.first_request_id)
    if floor is not None:
        occurrences = occurrences.where(o.c.timestamp >= floor)
        titles = titles.where(g.c.last_seen >= floor)
    with engine.connect() as connection:
        for row in connection.execute(occurrences.order_by(o.c.id)):
            report.rows += 1
            report.last_row = max(report.last_row, int(row.id))
            document = {
                "message": row.message,
                "context": row.context,
                "frames": row.frames,
                "user_id": row.user_id,
                "route": row.route,
                "request_id": row.request_id,
            }
            report.findings.extend(scanner.scan("error store: occurrence", row.id, document))
        if not groups:
            return report
        for number, title in enumerate(connection.execute(titles), start=1):
            report.rows += 1
            document = {
                "message": title.message,
                "type": title.type,
                "first_request_id": title.first_request_id,
            }
            source = f"error store: group {title.fingerprint[:12]}"
            report.findings.extend(scanner.scan(source, number, document))
    return report


def audit(
    directory: Path | None,
    stem: str = "platform",
    *,
    store_engine: sa.Engine | None = None,
    since: datetime | None = None,
    masker: Masker | None = None,
) -> AuditReport:
    """The whole audit: the log files (when `directory`) and the error store (when given)."""
    report = AuditReport()
    if directory is not None:
        audit_logs(directory, stem, since=since, masker=masker, report=report)
    if store_engine is not None:
        audit_error_store(store_engine, since=since, masker=masker, report=report)
    return report


class LogAuditor:
    """Audits what is new every `interval` seconds in a daemon thread (start/stop), and counts
    findings in ``log_audit_findings_total{detector}`` (in `registry`). Each run resumes after
    the newest log timestamp and the highest error-store row of the previous one."""

    def __init__(
        self,
        directory: Path | None,
        stem: str = "platform",
        *,
        store_engine: sa.Engine | None = None,
        registry: CollectorRegistry | None = None,
        interval: float = 300.0,
        masker: Masker | None = None,
        on_findings: Any = None,
    ) -> None:
        self.directory = directory
        self.stem = stem
        self.store_engine = store_engine
        self.interval = interval
        self.masker = masker or default_masker()
        self.on_findings = on_findings  # called with the new findings of a run (log them)
        self.counter = PromCounter(
            LOG_AUDIT_FINDINGS,
            "Secrets or personal data found in stored logs and errors by the periodic audit",
            ["detector"],
            registry=registry,
        )
        self.runs = 0
        self.failures = 0
        self.found: Counter[str] = Counter()
        self._newest = ""
        self._last_row = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._directory_lock: Any = None

    def _holds_directory(self) -> bool:
        """One process per log directory audits it: the workers of a host share its files
        (and would count each finding once per worker). The others wait for the lock."""
        if self.directory is None or self._directory_lock is not None:
            return True
        try:
            handle = open(Path(self.directory) / f".{self.stem}.audit.lock", "a")  # noqa: SIM115
        except OSError:
            return False  # no log directory yet: nothing to audit
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._directory_lock = handle
        return True

    def run_once(self) -> list[AuditFinding]:
        """Audit what is new since the previous run; returns (and counts) its findings."""
        if not self._holds_directory():
            return []
        with self._lock:
            report = AuditReport(newest=self._newest, last_row=self._last_row)
            try:
                if self.directory is not None:
                    audit_logs(
                        self.directory, self.stem, after=self._newest or None,
                        masker=self.masker, report=report,
                    )  # fmt: skip
                if self.store_engine is not None:
                    # Group titles are made from occurrences' messages: those suffice.
                    audit_error_store(
                        self.store_engine, after_row=self._last_row, groups=False,
                        masker=self.masker, report=report,
                    )  # fmt: skip
            except Exception:  # a broken audit never breaks the host; counted
                self.failures += 1
                return []
            new = report.findings
            self._newest, self._last_row = report.newest, report.last_row
            self.runs += 1
        for finding in new:
            self.counter.labels(detector=finding.detector).inc()
            self.found[finding.detector] += 1
        if new and self.on_findings is not None:
            self.on_findings(new)
        return new

    def start(self) -> LogAuditor:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="log-audit", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._directory_lock is not None:
            self._directory_lock.close()  # releases the lock: another worker takes over
            self._directory_lock = None


def summarize(findings: Iterable[AuditFinding]) -> dict[str, int]:
    """Findings per detector, most frequent first."""
    return dict(Counter(f.detector for f in findings).most_common())
