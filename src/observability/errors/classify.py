"""Severity classification: ordered rules, first match wins.

Rules are data (:class:`ClassificationRule`), loadable from plain dicts so an operator can
configure them (``rules_from_dicts``). Every condition given on a rule must hold; within one
condition any listed value may match; an empty condition matches anything. The rule's name is
remembered by the error group, so "why is this critical?" always has an answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from observability.errors.fingerprint import Frame
from observability.severity import Severity

__all__ = [
    "DEFAULT_RULES",
    "Classification",
    "ClassificationRule",
    "Classifier",
    "Severity",
    "Subject",
    "rules_from_dicts",
]


@dataclass(frozen=True, slots=True)
class Subject:
    """What a rule looks at: one captured exception and its request context."""

    type_names: frozenset[str]
    frames: Sequence[Frame]
    route: str | None = None
    tags: frozenset[str] = frozenset()  # "key" and "key=value" forms
    status_code: int | None = None
    rate_per_minute: float = 0.0

    @property
    def raised_in_app(self) -> bool:
        return bool(self.frames) and self.frames[-1].in_app


def tag_set(tags: Mapping[str, Any] | Iterable[str] | None) -> frozenset[str]:
    """Normalise tags: a mapping gives ``key`` (if truthy) and ``key=value``; a list its items."""
    if not tags:
        return frozenset()
    if isinstance(tags, Mapping):
        out: set[str] = set()
        for key, value in tags.items():
            if value:
                out.add(str(key))
            out.add(f"{key}={value}")
        return frozenset(out)
    return frozenset(str(tag) for tag in tags)


@dataclass(frozen=True, slots=True)
class ClassificationRule:
    """One severity rule. See the module docstring for how conditions combine.

    - ``exception_types``: qualified names; the type or any base class matches
      (``builtins.`` may be omitted: ``ValueError``).
    - ``modules``: package prefixes; matches when any frame of the stack is in one of them.
    - ``raised_in_app``: True = the innermost frame is in-app; False = it is not.
    - ``route_contains``: substrings of the route template.
    - ``tags``: ``key`` (present and truthy) or ``key=value``.
    - ``min_status``: the response status (an unhandled exception counts as 500) is at least this.
    - ``min_rate_per_minute``: occurrences of the group in the last minute (this instance).
    """

    name: str
    severity: Severity
    exception_types: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    raised_in_app: bool | None = None
    route_contains: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    min_status: int | None = None
    min_rate_per_minute: float | None = None

    def matches(self, subject: Subject) -> bool:
        if self.exception_types and subject.type_names.isdisjoint(self.exception_types):
            return False
        if self.modules and not any(
            f.module == m or f.module.startswith(m + ".")
            for f in subject.frames
            for m in self.modules
        ):
            return False
        if self.raised_in_app is not None and subject.raised_in_app != self.raised_in_app:
            return False
        if self.route_contains and not (
            subject.route and any(part in subject.route for part in self.route_contains)
        ):
            return False
        if self.tags and subject.tags.isdisjoint(self.tags):
            return False
        status = 500 if subject.status_code is None else subject.status_code
        if self.min_status is not None and status < self.min_status:
            return False
        return not (
            self.min_rate_per_minute is not None
            and subject.rate_per_minute < self.min_rate_per_minute
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassificationRule:
        """Build a rule from operator config; errors name the rule and the bad key."""
        name = str(data.get("name") or "")
        if not name:
            raise ValueError("classification rule: 'name' is required")
        unknown = set(data) - set(_FIELDS)
        if unknown:
            raise ValueError(f"classification rule {name!r}: unknown keys {sorted(unknown)}")
        try:
            severity = Severity(str(data.get("severity", "")).lower())
        except ValueError:
            accepted = ", ".join(s.value for s in Severity)
            raise ValueError(
                f"classification rule {name!r}: severity must be one of {accepted}"
            ) from None

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key, ())
            return (value,) if isinstance(value, str) else tuple(str(v) for v in value)

        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        in_app = data.get("raised_in_app")
        min_status = number("min_status")
        return cls(
            name=name,
            severity=severity,
            exception_types=strings("exception_types"),
            modules=strings("modules"),
            raised_in_app=None if in_app is None else bool(in_app),
            route_contains=strings("route_contains"),
            tags=strings("tags"),
            min_status=None if min_status is None else int(min_status),
            min_rate_per_minute=number("min_rate_per_minute"),
        )


_FIELDS = ClassificationRule.__dataclass_fields__


def rules_from_dicts(items: Iterable[Mapping[str, Any]]) -> list[ClassificationRule]:
    """Load an ordered rule list (e.g. parsed from JSON/YAML/env); order is priority."""
    rules = [ClassificationRule.from_dict(item) for item in items]
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"classification rules: duplicate names {duplicates}")
    return rules


_DB_MODULES = ("sqlalchemy", "psycopg", "psycopg2", "asyncpg", "sqlite3", "aiosqlite")

DEFAULT_RULES: tuple[ClassificationRule, ...] = (
    ClassificationRule(
        name="integrity-error",
        severity=Severity.CRITICAL,
        exception_types=(
            "sqlalchemy.exc.IntegrityError",
            "sqlite3.IntegrityError",
            "psycopg.IntegrityError",
        ),
    ),
    ClassificationRule(name="lost-write", severity=Severity.CRITICAL, tags=("lost_write",)),
    ClassificationRule(
        name="database-unavailable",
        severity=Severity.HIGH,
        exception_types=(
            "sqlalchemy.exc.OperationalError",
            "sqlalchemy.exc.DisconnectionError",
            "sqlalchemy.exc.TimeoutError",  # connection pool exhausted
            "sqlalchemy.exc.InterfaceError",
            "psycopg.OperationalError",
            "psycopg.InterfaceError",
            "sqlite3.OperationalError",
        ),
    ),
    # A refused connection is only a database outage when a database driver was on the stack.
    ClassificationRule(
        name="database-connection-refused",
        severity=Severity.HIGH,
        exception_types=("ConnectionRefusedError",),
        modules=_DB_MODULES,
    ),
    ClassificationRule(
        name="assignment-path-5xx",
        severity=Severity.HIGH,
        route_contains=("/assignments",),
        min_status=500,
    ),
    ClassificationRule(
        name="validation-bug",
        severity=Severity.MEDIUM,
        exception_types=(
            "pydantic_core._pydantic_core.ValidationError",
            "pydantic.ValidationError",
        ),
    ),
    ClassificationRule(
        name="in-app-value-error",
        severity=Severity.MEDIUM,
        exception_types=("ValueError",),
        raised_in_app=True,
    ),
    ClassificationRule(name="default", severity=Severity.LOW),
)


@dataclass(frozen=True, slots=True)
class Classification:
    severity: Severity
    rule_name: str


@dataclass(slots=True)
class Classifier:
    """Applies an ordered rule list; no match at all falls back to ``fallback`` (low)."""

    rules: Sequence[ClassificationRule] = field(default_factory=lambda: DEFAULT_RULES)
    fallback: Classification = Classification(Severity.LOW, "fallback")

    def classify(self, subject: Subject) -> Classification:
        for rule in self.rules:
            if rule.matches(subject):
                return Classification(rule.severity, rule.name)
        return self.fallback
