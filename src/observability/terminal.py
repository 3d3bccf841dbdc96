"""Logged data printed to a terminal, safely: control characters shown, never obeyed.

Log lines, error messages and alert summaries hold whatever clients sent (a user id, an
experiment name, an exception message). Printed raw, an ANSI or OSC escape in them clears the
screen, recolours it or retitles the window, and a newline forges a row of its own. Every
command that prints such data passes it through `safe_text`: C0 and C1 control characters,
DEL and the Unicode bidirectional overrides become visible escapes (``\\x1b``, ``\\n``,
``\\u202e``), so one record stays one row and what is shown is what is stored.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["safe_data", "safe_json", "safe_text"]

T = TypeVar("T")

_NAMED = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
# Explicit directional embeddings, overrides and isolates reorder what a terminal shows
# ("Trojan Source"); line and paragraph separators break a row like a newline.
_FORMAT = (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))

_TABLE: dict[int, str] = {
    code: _NAMED.get(code, f"\\x{code:02x}") for code in (*range(0x20), *range(0x7F, 0xA0))
}
_TABLE.update({code: f"\\u{code:04x}" for code in _FORMAT})


def safe_text(value: object) -> str:
    """`str(value)` with every control character escaped visibly (one line, no escapes run)."""
    return str(value).translate(_TABLE)


# For a JSON document: the same characters as JSON escapes, so the output stays valid JSON
# (orjson already escapes C0; C1, DEL and the bidi controls are legal raw in JSON strings).
_JSON_TABLE: dict[int, str] = {code: f"\\u{code:04x}" for code in _TABLE}
_JSON_TABLE.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})


def safe_json(text: str) -> str:
    """A JSON line with every control character written as a JSON escape (still valid JSON,
    the same value once parsed, inert on a terminal)."""
    return text.translate(_JSON_TABLE)


def safe_data(value: T) -> T:
    """A copy of `value` (dicts, lists, tuples, dataclasses, nested) whose strings, keys
    included, went through `safe_text`: for renderers that interpolate data into text."""
    return _safe(value)  # type: ignore[no-any-return]


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_safe(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: _safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return dataclasses.replace(value, **changes)
    return value
