"""Silences: who muted which alerts, why, and until when (Alertmanager's matcher semantics).

A silence holds label matchers (`name="value"`, `!=`, `=~` regex, `!~`), an author, a reason
and an expiry. While active it mutes every alert whose labels match all its matchers: the
alert keeps its state, only notifications stop. Silences are kept in SQL (SQLite by default)
so they survive restarts; without an engine they live in memory (tests, backtests).
"""

from __future__ import annotations

import builtins
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import orjson
from sqlalchemy import Column, Engine, Float, MetaData, String, Table, Text, insert, select, update

__all__ = ["Matcher", "Silence", "SilenceStore", "silences_metadata"]

MatchOp = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')

silences_metadata = MetaData()
_silences = Table(
    "alert_silences",
    silences_metadata,
    Column("id", String(64), primary_key=True),
    Column("matchers", Text, nullable=False),
    Column("author", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: MatchOp
    value: str

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise ValueError("matcher operator must be one of = != =~ !~")
        if self.op in ("=~", "!~"):
            re.compile(self.value)  # fail at creation, not at evaluation

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """'severity="critical"', 'alertname=~api_.*', 'service!=batch'."""
        match = _MATCHER.fullmatch(text)
        if match is None:
            raise ValueError(f"not a matcher: {text!r} (expected name=value, !=, =~ or !~)")
        name, op, value = match.groups()
        return cls(name, op, value)  # type: ignore[arg-type]

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None  # anchored, like Alertmanager
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    author: str
    reason: str
    created_at: float
    starts_at: float
    ends_at: float

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "author": self.author,
            "reason": self.reason,
            "created_at": self.created_at,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
        }


class SilenceStore:
    """Create, list and expire silences; `muted(labels, now)` answers the evaluator."""

    def __init__(
        self, engine: Engine | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._lock = threading.Lock()
        self._memory: dict[str, Silence] = {}
        self._cache: tuple[float, builtins.list[Silence]] | None = None

    def create_schema(self) -> None:
        if self.engine is not None:
            silences_metadata.create_all(self.engine)

    def create(
        self,
        matchers: Sequence[Matcher | str],
        *,
        author: str,
        reason: str,
        ends_at: float | None = None,
        duration_s: float | None = None,
        starts_at: float | None = None,
    ) -> Silence:
        """A new silence; give `ends_at` or `duration_s`. Author and reason are required."""
        parsed = tuple(m if isinstance(m, Matcher) else Matcher.parse(m) for m in matchers)
        if not parsed:
            raise ValueError("a silence needs at least one matcher (it would mute everything)")
        if not author.strip() or not reason.strip():
            raise ValueError("a silence needs an author and a reason")
        now = self._clock()
        start = now if starts_at is None else starts_at
        if ends_at is None:
            if duration_s is None:
                raise ValueError("give ends_at or duration_s")
            ends_at = start + duration_s
        if ends_at <= start:
            raise ValueError("a silence must end after it starts")
        silence = Silence(uuid.uuid4().hex, parsed, author, reason, now, start, ends_at)
        if self.engine is None:
            with self._lock:
                self._memory[silence.id] = silence
        else:
            with self.engine.begin() as conn:
                conn.execute(insert(_silences).values(**_row(silence)))
        self._cache = None
        return silence

    def expire(self, silence_id: str) -> bool:
        """End a silence now; False if it does not exist or already ended."""
        now = self._clock()
        if self.engine is None:
            with self._lock:
                current = self._memory.get(silence_id)
                if current is None or current.ends_at <= now:
                    return False
                self._memory[silence_id] = replace(current, ends_at=now)
        else:
            with self.engine.begin() as conn:
                result = conn.execute(
                    update(_silences)
                    .where(_silences.c.id == silence_id, _silences.c.ends_at > now)
                    .values(ends_at=now)
                )
                if not result.rowcount:
                    return False
        self._cache = None
        return True

    def list(
        self, *, include_expired: bool = False, now: float | None = None
    ) -> builtins.list[Silence]:
        """Silences newest first; by default only those not yet ended."""
        now = self._clock() if now is None else now
        if self.engine is None:
            with self._lock:
                items = list(self._memory.values())
        else:
            with self.engine.connect() as conn:
                items = [_from_row(dict(row)) for row in conn.execute(select(_silences)).mappings()]
        if not include_expired:
            items = [s for s in items if s.ends_at > now]
        return sorted(items, key=lambda s: s.created_at, reverse=True)

    def active(self, now: float) -> builtins.list[Silence]:
        # Read at most every 5 s of evaluator time: the evaluator asks once per alert.
        cached = self._cache
        if cached is not None and 0 <= now - cached[0] < 5.0:
            return [s for s in cached[1] if s.active(now)]
        items = self.list(now=now)
        self._cache = (now, items)
        return [s for s in items if s.active(now)]

    def muted_by(self, labels: Mapping[str, str], now: float) -> builtins.list[Silence]:
        return [s for s in self.active(now) if s.matches(labels)]


def _row(s: Silence) -> dict[str, object]:
    return {
        "id": s.id,
        "matchers": orjson.dumps([[m.name, m.op, m.value] for m in s.matchers]).decode(),
        "author": s.author[:256],
        "reason": s.reason,
        "created_at": s.created_at,
        "starts_at": s.starts_at,
        "ends_at": s.ends_at,
    }


def _from_row(row: Mapping[str, object]) -> Silence:
    raw: Iterable[list[str]] = orjson.loads(str(row["matchers"]))
    return Silence(
        id=str(row["id"]),
        matchers=tuple(Matcher(n, op, v) for n, op, v in raw),  # type: ignore[arg-type]
        author=str(row["author"]),
        reason=str(row["reason"]),
        created_at=float(row["created_at"]),  # type: ignore[arg-type]
        starts_at=float(row["starts_at"]),  # type: ignore[arg-type]
        ends_at=float(row["ends_at"]),  # type: ignore[arg-type]
    )
