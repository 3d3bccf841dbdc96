"""Log lines for a person at a terminal: structlog's ConsoleRenderer, coloured, one per line.

Only stdout changes: files and CloudWatch keep the JSON lines. The sink receives the records
the pipeline already masked, so a secret masked in the JSON is masked here too; every string
then goes through `safe_data`, so logged data (a user id holding an escape sequence or a
newline) is shown escaped on its one line and never drives the terminal. The renderer's own
colours are added after that, so they are the only escapes that reach the screen.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, BinaryIO, Literal

import structlog

from observability.logging.sinks import LogRecordOut
from observability.terminal import safe_data

__all__ = ["CONSOLE_MODES", "ConsoleMode", "ConsoleSink", "wants_console"]

ConsoleMode = Literal["auto", "json", "pretty"]
CONSOLE_MODES: tuple[str, ...] = ("auto", "json", "pretty")

# The same on every line of a process: noise at a terminal (the JSON keeps them).
_CONSTANT_FIELDS = ("service", "instance")


def wants_console(mode: str, stream: Any = None) -> bool:
    """`pretty` always, `json` never, `auto` when the stream (stdout) is a terminal."""
    if mode not in CONSOLE_MODES:
        raise ValueError(f"bad console mode {mode!r}: expected one of {', '.join(CONSOLE_MODES)}")
    if mode == "auto":
        stream = sys.stdout if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return mode == "pretty"


class ConsoleSink:
    """Human-friendly coloured lines to a binary stream (stdout by default)."""

    name = "stdout"  # the stdout sink, rendered for people: counted under the same name

    def __init__(self, stream: BinaryIO | None = None, colors: bool = True) -> None:
        self.stream = stream or sys.stdout.buffer
        self._render = structlog.dev.ConsoleRenderer(
            colors=colors, sort_keys=False, pad_event_to=24
        )

    def _line(self, event: dict[str, Any]) -> bytes:
        fields = {k: v for k, v in event.items() if k not in _CONSTANT_FIELDS}
        text = self._render(None, str(fields.get("level", "info")), safe_data(fields))
        return (str(text) + "\n").encode("utf-8", "replace")

    def write(self, records: Sequence[LogRecordOut]) -> None:
        self.stream.write(b"".join(self._line(dict(event)) for _, event, _ in records))

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()
