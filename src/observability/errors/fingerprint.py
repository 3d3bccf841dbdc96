"""Fingerprints: which exceptions are "the same bug".

A fingerprint is a short sha256 hex of three parts:

1. the exception type (qualified name, ``builtins.`` dropped);
2. the normalised in-app frames: ``module:function`` for every frame whose module sits under one
   of the configured package prefixes. Line numbers, file paths and addresses are left out, so an
   edit that shifts code, or a different deployment path, keeps the group. Consecutive identical
   frames (recursion) collapse into one, so recursion depth does not split a group;
3. the parametrised message: UUIDs, e-mails, hex ids, quoted strings and numbers replaced by
   placeholders, so ``user 42 not found`` and ``user 97 not found`` group together.

A custom fingerprint overrides all of this: an exception attribute ``__fingerprint__``, an explicit
argument, or the first matching :class:`FingerprintRule`.
"""

from __future__ import annotations

import hashlib
import re
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

__all__ = [
    "FINGERPRINT_LENGTH",
    "FingerprintRule",
    "Fingerprinter",
    "Frame",
    "extract_frames",
    "hash_parts",
    "parametrize_message",
    "qualified_type_names",
    "type_name",
]

FINGERPRINT_LENGTH = 16  # 64 bits of sha256: collisions are negligible at error-group scale
MAX_FRAMES = 64  # deep stacks keep their innermost frames, where the bug usually is

# Order matters: the specific shapes go first so a UUID is not eaten digit by digit.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""), "<str>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    # Long hex runs with at least one digit: object ids, hashes, commit shas.
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"(?<![\w<])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<num>"),
)


def parametrize_message(message: str) -> str:
    """Replace the variable parts of an error message by placeholders."""
    for pattern, placeholder in _PATTERNS:
        message = pattern.sub(placeholder, message)
    return message


def type_name(exc_type: type[BaseException]) -> str:
    """``module.QualName`` of an exception type, without the ``builtins.`` prefix."""
    module = exc_type.__module__
    if module in ("builtins", "__builtin__"):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def qualified_type_names(exc_type: type[BaseException]) -> frozenset[str]:
    """Every name the type answers to: itself and its base classes, with and without ``builtins.``.

    Rules then match ``ValueError`` and ``builtins.ValueError`` alike, and a rule for a base class
    (``sqlalchemy.exc.DBAPIError``) matches its subclasses.
    """
    cached = _TYPE_NAMES.get(exc_type)
    if cached is not None:
        return cached
    names: set[str] = set()
    for klass in exc_type.__mro__:
        if klass is object:
            continue
        names.add(f"{klass.__module__}.{klass.__qualname__}")
        if klass.__module__ == "builtins":
            names.add(klass.__qualname__)
    if len(_TYPE_NAMES) >= 4096:  # classes made at runtime must not grow it without bound
        _TYPE_NAMES.clear()
    result = _TYPE_NAMES[exc_type] = frozenset(names)
    return result


# Called several times per capture; exception types are few (the code defines them), so the
# cache stays small. A racing double computation is harmless.
_TYPE_NAMES: dict[type[BaseException], frozenset[str]] = {}


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame, outermost first, as stored and as used for grouping."""

    module: str
    function: str
    filename: str
    lineno: int
    in_app: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "function": self.function,
            "filename": self.filename,
            "lineno": self.lineno,
            "in_app": self.in_app,
        }


def _is_in_app(module: str, prefixes: Sequence[str]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def extract_frames(
    tb: TracebackType | None, in_app_prefixes: Sequence[str] = (), limit: int = MAX_FRAMES
) -> list[Frame]:
    """The frames of a traceback, outermost first, innermost ``limit`` kept.

    With no prefixes configured every frame counts as in-app (nothing better is known).
    """
    frames: list[Frame] = []
    for frame, lineno in traceback.walk_tb(tb):
        code = frame.f_code
        module = str(frame.f_globals.get("__name__") or "?")
        frames.append(
            Frame(
                module=module,
                function=getattr(code, "co_qualname", code.co_name),
                filename=code.co_filename,
                lineno=int(lineno or 0),
                in_app=not in_app_prefixes or _is_in_app(module, in_app_prefixes),
            )
        )
    return frames[-limit:]


def hash_parts(parts: Iterable[str]) -> str:
    """sha256 over the parts (NUL-separated so parts cannot run into each other), short hex."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8", "backslashreplace")).hexdigest()
    return digest[:FINGERPRINT_LENGTH]


@dataclass(frozen=True, slots=True)
class FingerprintRule:
    """Send every exception that matches into one named group.

    All given conditions must hold; an empty condition matches anything. ``exception_types``
    match the type or any base class by qualified name; ``modules`` match any frame's module
    by package prefix; ``message_pattern`` is a regular expression searched in the message.
    """

    name: str
    fingerprint: str
    exception_types: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    message_pattern: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FingerprintRule:
        unknown = set(data) - {
            "name",
            "fingerprint",
            "exception_types",
            "modules",
            "message_pattern",
        }
        if unknown:
            raise ValueError(f"fingerprint rule: unknown keys {sorted(unknown)}")
        if not data.get("name") or not data.get("fingerprint"):
            raise ValueError("fingerprint rule: 'name' and 'fingerprint' are required")
        pattern = data.get("message_pattern")
        if pattern is not None:
            re.compile(str(pattern))  # fail at load time, naming the rule, not at capture time
        return cls(
            name=str(data["name"]),
            fingerprint=str(data["fingerprint"]),
            exception_types=tuple(str(t) for t in data.get("exception_types", ())),
            modules=tuple(str(m) for m in data.get("modules", ())),
            message_pattern=None if pattern is None else str(pattern),
        )

    def matches(self, names: frozenset[str], frames: Sequence[Frame], message: str) -> bool:
        if self.exception_types and names.isdisjoint(self.exception_types):
            return False
        if self.modules and not any(_is_in_app(f.module, self.modules) for f in frames):
            return False
        return not (self.message_pattern and not re.search(self.message_pattern, message))


class Fingerprinter:
    """Computes fingerprints; configured once, then called per exception (thread-safe, no state)."""

    def __init__(
        self, in_app_prefixes: Sequence[str] = (), rules: Sequence[FingerprintRule] = ()
    ) -> None:
        self.in_app_prefixes = tuple(in_app_prefixes)
        self.rules = tuple(rules)

    def frames(self, exc: BaseException) -> list[Frame]:
        return extract_frames(exc.__traceback__, self.in_app_prefixes)

    def fingerprint(
        self,
        exc: BaseException,
        frames: Sequence[Frame],
        message: str,
        custom: str | Sequence[str] | None = None,
    ) -> str:
        """The group key of ``exc`` (``message`` is the masked message; frames from :meth:`frames`).

        Precedence: the ``custom`` argument, then ``exc.__fingerprint__``, then the first
        matching rule, then the computed default.
        """
        custom = custom if custom is not None else getattr(exc, "__fingerprint__", None)
        if custom is not None:
            parts = [custom] if isinstance(custom, str) else [str(p) for p in custom]
            return hash_parts(["custom", *parts])
        names = qualified_type_names(type(exc))
        for rule in self.rules:
            if rule.matches(names, frames, message):
                return hash_parts(["rule", rule.fingerprint])
        return hash_parts(self.default_parts(exc, frames, message))

    def default_parts(self, exc: BaseException, frames: Sequence[Frame], message: str) -> list[str]:
        """The parts hashed by default; handy to explain why two errors (do not) group."""
        in_app = [f for f in frames if f.in_app] or list(frames[-1:])
        normalised: list[str] = []
        for frame in in_app:
            key = f"{frame.module}:{frame.function}"
            if not normalised or normalised[-1] != key:
                normalised.append(key)
        return [type_name(type(exc)), *normalised, parametrize_message(message)]
