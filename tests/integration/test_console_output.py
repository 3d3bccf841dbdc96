"""What a person at a terminal sees (issue 18): `ep serve` on a real pseudo-terminal prints
coloured lines for people while the log file keeps masked JSON; `ep quickstart` keeps its banner
with a one-line status instead of scrolling it away; every command's help fits 80 columns."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx
import pytest
import typer.main
from typer.testing import CliRunner

from experimentation_platform.cli import app
from tests.support.platform import CLI, create_key, home_env
from tests.support.servers import free_port, wait_for_http
from tests.support.terminal import on_terminal

CLEAR = "\x1b[2J\x1b[H"  # clear the screen: logged data must never do this
EMAIL = "alice.console@example.com"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes only


def _file_lines(log_dir: Path) -> list[dict[str, object]]:
    lines = []
    for path in sorted(log_dir.glob("*.log")):
        lines += [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()]
    return lines


def test_serve_on_a_terminal_prints_coloured_masked_lines_and_the_file_keeps_json(
    tmp_path: Path,
) -> None:
    env = home_env(tmp_path, EP_LOG_TO_STDOUT="true")
    admin = create_key(env, "admin")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with on_terminal([*CLI, "serve", "--port", str(port)], env) as terminal:
        wait_for_http(f"{base}/health/live", timeout=60)
        response = httpx.post(
            f"{base}/api/v1/assignments",
            json={"experiment_key": "no-such", "user_id": f"{EMAIL}{CLEAR}"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert response.status_code == 404
        request_id = response.headers["x-request-id"]
        text = terminal.read_until(lambda t: request_id in t, timeout=20)
    assert request_id in text, text[-2000:]
    rows = [row for row in text.splitlines() if request_id in row]
    assert len(rows) == 1  # one request, one row: nothing in it broke the line
    row = rows[0]
    # For people: coloured, "key=value" pairs, no JSON document.
    assert ANSI.search(row), row
    plain = ANSI.sub("", row)
    assert "request_completed" in plain
    assert "status=404" in plain
    assert not any(line.lstrip().startswith('{"') for line in ANSI.sub("", text).splitlines())
    # Masked as in the JSON, and the escape sequence shown, never obeyed.
    assert EMAIL not in text
    assert CLEAR not in text
    assert "\\x1b[2J" in plain
    assert "[MASKED:email" in plain
    # The file (and so CloudWatch, which ships the same records) keeps masked JSON.
    lines = _file_lines(tmp_path / "log")
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert [line["event"] for line in mine] == ["request_completed"]
    assert EMAIL not in json.dumps(lines)
    assert "[MASKED:email" in str(mine[0].get("user_id"))


def test_serve_into_a_pipe_prints_json(tmp_path: Path) -> None:
    """Not a terminal (a log collector, `| jq`): stdout stays one JSON object per line."""
    env = home_env(tmp_path, EP_LOG_TO_STDOUT="true")
    port = free_port()
    with subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    ) as process:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/health/live", timeout=60)
        finally:
            process.terminate()
        out, _ = process.communicate(timeout=30)
    lines = out.decode().splitlines()
    assert lines
    assert all(json.loads(line)["event"] for line in lines)
    assert "\x1b[" not in out.decode()


def test_quickstart_keeps_its_banner_and_updates_one_status_line(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    env.pop("EP_LOG_TO_STDOUT")  # quickstart itself keeps the log lines off the terminal
    port = free_port()
    args = [*CLI, "quickstart", "--port", str(port), "--rate", "20"]

    def two_updates(text: str) -> bool:
        return len(re.findall(r"demo traffic: \d+ requests", text)) >= 2

    with on_terminal(args, env) as terminal:
        text = terminal.read_until(two_updates, timeout=90)
        assert two_updates(text), text[-2000:]
    banner = text[text.index("Experimentation platform running at") :]
    assert f"http://127.0.0.1:{port}/ops" in banner
    key = re.search(r"Admin API key:\s+(\S+)", banner)
    assert key is not None
    assert len(key.group(1)) >= 20
    # The status rewrites one line in place ("\r", erase line): every update on that line...
    status = text[text.index("demo traffic:") :]
    assert status.count("\r\x1b[K") >= 1
    assert "\n" not in status
    # ... and no request line scrolls the banner away: the requests went to the file only.
    assert "request_completed" not in text
    events = [line["event"] for line in _file_lines(tmp_path / "log")]
    assert events.count("request_completed") >= 2


def _commands(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "ep")
def test_help_fits_80_columns_and_shows_every_option_whole(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    text = result.output
    too_long = [line for line in text.splitlines() if len(line) > 80]
    assert too_long == [], too_long
    assert "…" not in text  # nothing cut to fit
    # Every option and environment variable is printed whole, not cut at the column edge.
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    tokens = set(re.findall(r"[\w-]+", text))
    for param in command.params:  # type: ignore[attr-defined]
        if getattr(param, "hidden", False):
            continue
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert opt.lstrip("-") in {t.lstrip("-") for t in tokens}, (opt, text)
        envvars = param.envvar if isinstance(param.envvar, list) else [param.envvar]
        for envvar in filter(None, envvars):
            assert envvar in tokens, (envvar, text)


def test_gameday_help_in_a_real_80_column_terminal() -> None:
    result = subprocess.run(
        [*CLI, "gameday", "--help"],
        env={**home_env(Path("/nonexistent")), "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "EP_GAMEDAY_ADMIN_KEY" in result.stdout
    assert "--resolve-timeout" in result.stdout
