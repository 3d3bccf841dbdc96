"""The console renderer's choice (terminal or not) and what it prints: the masked record, its
logged data escaped, colours only from the renderer itself."""

from __future__ import annotations

import io
import os

import pytest

from observability.logging import LoggingConfig, configure_logging, reset
from observability.logging.console import ConsoleSink, wants_console
from observability.logging.sinks import StreamSink
from observability.settings import LogSettings


def test_auto_means_pretty_on_a_terminal_and_json_in_a_pipe() -> None:
    master, slave = os.openpty()
    read, write = os.pipe()
    try:
        with open(slave, "w", closefd=False) as tty, open(write, "w", closefd=False) as pipe:
            assert wants_console("auto", tty) is True
            assert wants_console("auto", pipe) is False
            assert wants_console("pretty", pipe) is True
            assert wants_console("json", tty) is False
    finally:
        for fd in (master, slave, read, write):
            os.close(fd)
    with pytest.raises(ValueError, match=r"bad console mode 'colour'"):
        wants_console("colour")
    with pytest.raises(ValueError, match=r"log\.console"):
        LogSettings(console="colour")


def test_configure_logging_picks_the_sink_from_the_mode(tmp_path: object) -> None:
    try:
        pretty = configure_logging(LoggingConfig(directory=None, console="pretty"))
        assert [type(s) for s in pretty.sinks] == [ConsoleSink]
        pretty.close()
        plain = configure_logging(LoggingConfig(directory=None, console="json"))
        assert [type(s) for s in plain.sinks] == [StreamSink]
        plain.close()
    finally:
        reset()


def test_console_lines_escape_logged_data_and_drop_constant_fields() -> None:
    out = io.BytesIO()
    sink = ConsoleSink(out, colors=False)
    event = {
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "level": "warning",
        "event": "request_completed",
        "service": "ep",
        "instance": "vm:1",
        "user_id": "mallory\x1b[2J\n{forged}",
        "status": 404,
    }
    # A message from a library (stdlib logging) is free text: the renderer prints the event
    # and logger raw, so they are escaped before it sees them.
    library = {**event, "event": "GET /\x1b]0;owned\x07\nforged", "logger": "lib\x1b[31m"}
    sink.write([(30, event, b""), (30, library, b"")])
    text = out.getvalue().decode()
    assert text.count("\n") == 2  # one record, one line
    assert "\x1b" not in text  # colours off here, and the data's escape shown, not obeyed
    assert "\\x1b[2J\\n{forged}" in text
    assert "GET /\\x1b]0;owned\\x07\\nforged" in text
    assert "lib\\x1b[31m" in text
    assert "status=404" in text
    assert "request_completed" in text
    assert "service=" not in text
    assert "instance=" not in text
    coloured = io.BytesIO()
    ConsoleSink(coloured, colors=True).write([(30, dict(event), b"")])
    assert b"\x1b[" in coloured.getvalue()
    assert b"\x1b[2J" not in coloured.getvalue()
