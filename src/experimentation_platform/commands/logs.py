"""`ep logs`: search the platform's local JSON log files (active, rotated, gzipped), or follow them.

    ep logs --request-id 4f2c9a...              every line of one request, across all files
    ep logs --level warning --route /api/v1/assignments --since 2h
    ep logs --where status=500 --where exception.type=KeyError --format json
    ep logs --event request_completed --follow

Registered in cli.py with `app.command("logs")(logs.search)`. `app` here runs the same command
on its own (tests invoke it with typer.testing.CliRunner).
"""

from __future__ import annotations

import inspect
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from sqlalchemy.exc import SQLAlchemyError

from observability.logsearch import (
    LogLine,
    LogQuery,
    LogSearch,
    LogSearchError,
    QueryError,
    parse_condition,
    parse_time,
)
from observability.terminal import safe_json, safe_text

__all__ = ["OutputFormat", "app", "audit", "format_line", "group", "search"]

app = typer.Typer(
    rich_markup_mode=None, help="Search the platform's local log files.", add_completion=False
)

# Shown in their own columns, so left out of the compact "other fields" column.
_COLUMNS = frozenset(
    {"timestamp", "level", "event", "method", "route", "status", "duration_ms", "request_id"}
)
# Present on every line and rarely what an operator is looking for in a table.
_QUIET = frozenset({"logger", "service", "instance", "trace_id", "span_id", "headers"})
_LEVEL_STYLE: dict[str, dict[str, Any]] = {
    "debug": {"dim": True},
    "info": {"fg": "green"},
    "warning": {"fg": "yellow"},
    "error": {"fg": "red"},
    "critical": {"fg": "red", "bold": True},
}
_OTHER_WIDTH = 240
_REQUEST_WIDTH = 32  # a generated request id (uuid4 hex); longer client ids just push right


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


def _compact(value: Any) -> str:
    if isinstance(value, dict) and "type" in value and "message" in value:
        return f"{value['type']}: {value['message']}"  # a structured exception, in one line
    if isinstance(value, str):
        return value if value and " " not in value else repr(value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_line(line: LogLine) -> str:
    """One table row: time, level, event, method route, status, duration, the whole request
    id (a copied id must find the request), then the remaining fields as key=value (long
    values cut)."""
    # Every piece of logged data goes through safe_text: a value holding an escape sequence or
    # a newline is shown escaped, on this one row, and never drives the terminal.
    fields = line.fields
    stamp = safe_text(line.timestamp)
    when = f"{stamp[:10]} {stamp[11:23]}" if len(stamp) >= 23 else stamp
    level = safe_text(fields.get("level", "-"))
    styled_level = typer.style(f"{level.upper():<8}", **_LEVEL_STYLE.get(level, {}))
    route = safe_text(" ".join(str(fields[k]) for k in ("method", "route") if fields.get(k)))
    route = route or "-"
    status = safe_text(fields.get("status", "-"))
    duration = fields.get("duration_ms")
    took = f"{duration:.1f}ms" if isinstance(duration, int | float) else "-"
    request_id = safe_text(fields.get("request_id") or "-")
    others = safe_text(
        " ".join(
            f"{key}={_compact(value)}"
            for key, value in fields.items()
            if key not in _COLUMNS and key not in _QUIET and value is not None
        )
    )
    if len(others) > _OTHER_WIDTH:
        others = others[: _OTHER_WIDTH - 1] + "…"
    event = safe_text(fields.get("event", "-"))
    return (
        f"{when}  {styled_level} {event:<24} {route:<36} {status:>3} {took:>9}  "
        f"{request_id:<{_REQUEST_WIDTH}}  {others}"
    ).rstrip()


def _header() -> str:
    return (
        f"{'time':<23}  {'level':<8} {'event':<24} {'route':<36} {'st':>3} {'duration':>9}  "
        f"{'request':<{_REQUEST_WIDTH}}  fields"
    )


def _emit(line: LogLine, output: OutputFormat) -> None:
    # color=None: click keeps the colours on a terminal and strips them anywhere else.
    text = safe_json(line.raw) if output is OutputFormat.json else format_line(line)
    typer.echo(text, color=None)


def _log_location(directory: Path | None) -> tuple[Path, str]:
    if directory is not None:
        return directory, "platform"
    from experimentation_platform.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return settings.log_dir, settings.log_file_stem


def _build_query(
    *,
    request_id: str | None,
    trace_id: str | None,
    user_id: str | None,
    level: str | None,
    route: str | None,
    event: str | None,
    since: str | None,
    until: str | None,
    where: list[str],
    limit: int,
) -> LogQuery:
    return LogQuery(
        request_id=request_id,
        trace_id=trace_id,
        user_id=user_id,
        level=level,
        route=route,
        event=event,
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        where=tuple(parse_condition(spec) for spec in where),
        limit=limit,
    )


@app.command()
def search(
    request_id: Annotated[
        str | None, typer.Option("--request-id", help="every line of one request")
    ] = None,
    trace_id: Annotated[str | None, typer.Option("--trace-id", help="lines of one trace")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="one user's journey")] = None,
    level: Annotated[
        str | None,
        typer.Option(help="minimum level: debug, info, warning, error, critical"),
    ] = None,
    route: Annotated[
        str | None, typer.Option(help="route template, e.g. /api/v1/flags/{key}")
    ] = None,
    event: Annotated[str | None, typer.Option(help="event name, e.g. request_failed")] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO time (2024-05-01T12:00Z) or relative: 15m, 2h, 1d")
    ] = None,
    until: Annotated[str | None, typer.Option(help="ISO time or relative, like --since")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="field=value, repeatable; also != > >= < <=; typed: numbers compare as "
            "numbers, and > >= < <= never match text against a number; dotted paths reach "
            "nested fields (exception.type=KeyError)"
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="show the newest N matches")] = 200,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="table, or json: the original lines")
    ] = OutputFormat.table,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="then keep printing new matching lines")
    ] = False,
    follow_seconds: Annotated[
        float | None, typer.Option(min=0.0, help="stop following after N seconds")
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="log directory (default EP_LOG_DIR)")
    ] = None,
) -> None:
    """Search the local log files (rotated and gzipped included); newest matches last.
    Exit 0 when a line matched, 1 when none did (as grep does), 2 on bad usage."""
    try:
        query = _build_query(
            request_id=request_id,
            trace_id=trace_id,
            user_id=user_id,
            level=level,
            route=route,
            event=event,
            since=since,
            until=until,
            where=where or [],
            limit=limit,
        )
    except QueryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    log_dir, stem = _log_location(directory)
    engine = LogSearch(log_dir, stem)
    # Watching starts before the search, so following leaves no gap after its results.
    follower = engine.watch() if follow else None
    try:
        found = engine.search(query)
    except LogSearchError as exc:  # NoLogsError included: a missing directory, no files
        if follower is not None:
            follower.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if output_format is OutputFormat.table and found:
        typer.echo(_header())
    for line in found:
        _emit(line, output_format)
    matched = len(found)
    if follower is not None:
        try:
            for line in follower.lines(
                query, already_seen=[line.raw for line in found], seconds=follow_seconds
            ):
                _emit(line, output_format)
                matched += 1
        except KeyboardInterrupt:
            pass  # Ctrl+C is how following ends
        finally:
            follower.close()
    if not matched:
        # Like grep: scripts can test `ep logs ... && ...`; the message says where it looked.
        typer.echo(f"no lines matched in {log_dir}", err=True)
        raise typer.Exit(1)


# --- ep logs audit ------------------------------------------------------------------------
# `ep logs` is a group: without a subcommand it searches (the callback below), `ep logs audit`
# scans for secrets. Registered in cli.py with `app.add_typer(logs.group, name="logs")`.
group = typer.Typer(
    rich_markup_mode=None,
    help="Search the platform's local log files, or audit them for secrets.",
    add_completion=False,
)


def _search_unless_subcommand(ctx: typer.Context, **options: Any) -> None:
    if ctx.invoked_subcommand is None:
        search(**options)


# The callback takes search's options as they are (one definition of them) plus the context.
_SEARCH = inspect.signature(search, eval_str=True)
_search_unless_subcommand.__signature__ = _SEARCH.replace(  # type: ignore[attr-defined]
    parameters=[
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        *_SEARCH.parameters.values(),
    ]
)
_search_unless_subcommand.__annotations__ = {**search.__annotations__, "ctx": typer.Context}
group.callback(invoke_without_command=True)(_search_unless_subcommand)


def _error_store() -> Any:
    """The observability store's errors, opened read-only in spirit: a SQLite file that does
    not exist yet is not created (there is nothing in it to audit)."""
    import sqlalchemy as sa

    from experimentation_platform.settings import load_settings
    from observability.errors import ErrorStore

    url = load_settings().resolved_observability_database_url
    parsed = sa.make_url(url)
    file_based = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "")
    if file_based and parsed.database != ":memory:" and not Path(str(parsed.database)).exists():
        return None
    return ErrorStore.from_url(url)


@group.command("audit")
def audit(
    since: Annotated[
        str | None, typer.Option(help="only lines and errors since: ISO time or 15m, 2h, 1d")
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="log directory (default EP_LOG_DIR)")
    ] = None,
    errors: Annotated[
        bool, typer.Option("--errors/--no-errors", help="also scan the error store")
    ] = True,
) -> None:
    """Scan the stored logs (rotated and gzipped included) and the error store with the whole
    masking catalog. Prints file:line, field and detector of each finding (never the value)
    and exits 1 when anything is found."""
    from observability.logaudit import audit as run_audit

    try:
        floor = parse_time(since) if since else None
    except QueryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    log_dir, stem = _log_location(directory)
    store = _error_store() if errors else None
    try:
        report = run_audit(
            log_dir if log_dir.is_dir() else None,
            stem,
            store_engine=store.engine if store is not None else None,
            since=floor,
        )
    except SQLAlchemyError as exc:
        # An audit that could not read everything must not look clean.
        typer.echo(f"error: cannot read the error store ({type(exc).__name__}); "
                   "audit the logs alone with --no-errors", err=True)  # fmt: skip
        raise typer.Exit(2) from None
    finally:
        if store is not None:
            store.dispose()
    for finding in report.findings:
        # File names and JSON keys come from stored data: escaped like every logged value.
        typer.echo(safe_text(str(finding)))
    where = f"{report.files} log files ({report.lines} lines)"
    if errors:
        where += f" and {report.rows} error-store rows"
    if report.findings:
        counts = ", ".join(f"{n} {name}" for name, n in report.by_detector().most_common())
        typer.echo(f"{len(report.findings)} findings in {where}: {counts}", err=True)
        raise typer.Exit(1)
    typer.echo(f"nothing found in {where}", err=True)
