"""Decoded views of a text, each able to map a span back to the text as logged.

Query strings and paths are logged as sent (``q=4111%201111%201111%200311``,
``user_id=4111+1111+1111+1319``), and JSON documents nested in strings arrive escaped
(``{\\"client_secret\\":\\"GOCSPX-...``, ``a\\u0026token=...``). Detectors run on every view;
a finding in a decoded view is mapped back to the raw characters it came from, so the logged
value keeps its shape (still encoded) with only the secret replaced.

Only ASCII escapes are decoded: every catalog format is ASCII, and one decoded character per
escape keeps the position map exact. Nested encodings (``%2540``) are peeled up to three times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["View", "views"]

_PERCENT = re.compile(r"%([0-7][0-9A-Fa-f])")
_JSON_ESCAPE = re.compile(r"\\(?:u00([0-7][0-9A-Fa-f])|x([0-7][0-9A-Fa-f])|([\"\\/bfnrt]))")
_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_MAX_DEPTH = 3


@dataclass(frozen=True)
class View:
    """`text` decoded from the raw text; `starts[i]` is the raw offset of decoded character i
    (one entry more than characters: the raw length). None for the raw text itself."""

    text: str
    starts: tuple[int, ...] | None = None

    def raw_span(self, start: int, end: int) -> tuple[int, int]:
        if self.starts is None:
            return start, end
        return self.starts[start], self.starts[end]


def _decode(view: View, pattern: re.Pattern[str], plus: bool) -> View:
    """`view` with `pattern`'s escapes (and '+' as a space when `plus`) decoded."""
    text = view.text
    pieces: list[str] = []
    starts: list[int] = []
    done = 0
    for match in pattern.finditer(text):
        _copy(text, done, match.start(), pieces, starts, plus)
        pieces.append(_value(match))
        starts.append(match.start())
        done = match.end()
    _copy(text, done, len(text), pieces, starts, plus)
    starts.append(len(text))
    if view.starts is not None:  # compose with the view this one was decoded from
        starts = [view.starts[i] for i in starts]
    return View("".join(pieces), tuple(starts))


def _copy(
    text: str, start: int, end: int, pieces: list[str], starts: list[int], plus: bool
) -> None:
    chunk = text[start:end]
    pieces.append(chunk.replace("+", " ") if plus else chunk)
    starts.extend(range(start, end))


def _value(match: re.Match[str]) -> str:
    hex_code = match.group(1) or (match.group(2) if match.re is _JSON_ESCAPE else None)
    if hex_code:
        return chr(int(hex_code, 16))
    simple = match.group(3)
    return _SIMPLE.get(simple, simple)


def views(text: str) -> list[View]:
    """The raw text, then each distinct decoded form worth scanning (usually none)."""
    found = [View(text)]
    if "\\" in text:
        unescaped = _decode(found[0], _JSON_ESCAPE, plus=False)
        if unescaped.text != text:
            found.append(unescaped)
    if "%" not in text and "+" not in text:
        return found
    for base in list(found):
        for plus in (False, True):
            if plus and "+" not in base.text:
                continue
            current, as_space = base, plus
            for _ in range(_MAX_DEPTH):
                decoded = _decode(current, _PERCENT, as_space)
                if decoded.text == current.text:
                    break
                found.append(decoded)
                current = decoded
                as_space = False  # '+' means a space once, at the outermost level
    return found
