"""`ep errors list|show|resolve|ignore|reopen`: the error store from a terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import orjson
import typer

from experimentation_platform.commands.failures import database_step
from experimentation_platform.settings import load_settings
from observability.errors import ErrorStore
from observability.store import ObservabilityStore
from observability.terminal import safe_data, safe_json, safe_text

app = typer.Typer(
    rich_markup_mode=None, help="Error groups: list, show, resolve, ignore.", no_args_is_help=True
)


def _store() -> ErrorStore:
    url = load_settings().resolved_observability_database_url
    store = ObservabilityStore.open(url).errors
    with database_step(url, "EP_OBSERVABILITY_DATABASE_URL"):
        store.create_schema()
    return store


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if value[-1:] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("use 15m, 2h, 1d or an ISO time", param_hint="--since") from None


@app.command("list")
def list_groups(
    severity: Annotated[str | None, typer.Option(help="critical|high|medium|low")] = None,
    status: Annotated[str | None, typer.Option(help="open|resolved|ignored")] = "open",
    route: Annotated[str | None, typer.Option(help="route template contains")] = None,
    since: Annotated[str | None, typer.Option(help="15m, 2h, 1d or ISO time")] = None,
    sort: Annotated[str, typer.Option(help="last_seen|count|first_seen|users")] = "last_seen",
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """Error groups, newest first."""
    if severity and severity not in ("critical", "high", "medium", "low"):
        raise typer.BadParameter("critical, high, medium or low", param_hint="--severity")
    if status and status not in ("open", "resolved", "ignored", "all"):
        raise typer.BadParameter("open, resolved, ignored or all", param_hint="--status")
    store = _store()
    try:
        groups = store.list_groups(
            severity=severity,
            status=None if status == "all" else status,
            route=route,
            since=_since(since),
            sort=sort,
            limit=limit,
        )
    finally:
        store.dispose()
    if as_json:
        for group in groups:
            typer.echo(safe_json(orjson.dumps(group.to_dict()).decode()))
        return
    if not groups:
        typer.echo("no error groups match")
        return
    typer.echo(
        f"{'FINGERPRINT':<18}{'SEVERITY':<10}{'STATUS':<10}{'COUNT':>7}{'USERS':>7}  "
        f"{'LAST SEEN':<20}  TYPE: MESSAGE"
    )
    for g in groups:
        # Type and message come from exceptions, often quoting client input: shown escaped.
        typer.echo(
            f"{safe_text(g.fingerprint):<18}{g.severity!s:<10}{g.status!s:<10}{g.count:>7}"
            f"{g.users:>7}  {g.last_seen:%Y-%m-%d %H:%M:%S}  "
            f"{safe_text(g.type)}: {safe_text(g.message[:80])}"
        )


@app.command("show")
def show(fingerprint: str, occurrences: Annotated[int, typer.Option(min=0, max=100)] = 10) -> None:
    """A group with its recent occurrences and the request_ids to search in the logs."""
    store = _store()
    try:
        detail = store.get_group(fingerprint, occurrences=occurrences)
    finally:
        store.dispose()
    if detail is None:
        typer.echo(f"error: no error group {fingerprint}", err=True)
        raise typer.Exit(1)
    detail = safe_data(detail)  # every string from the store, escaped for the terminal
    g = detail.group
    typer.echo(f"{g.type}: {g.message}")
    typer.echo(
        f"  fingerprint {g.fingerprint}  severity {g.severity} (rule {g.rule_name})  "
        f"status {g.status}{'  REGRESSION' if g.regression else ''}"
    )
    typer.echo(
        f"  {g.count} occurrences, {g.users} users, first {g.first_seen:%Y-%m-%d %H:%M:%S}, "
        f"last {g.last_seen:%Y-%m-%d %H:%M:%S}"
    )
    typer.echo("  routes: " + ", ".join(f"{r} ({n})" for r, n in detail.routes.items()))
    for o in detail.occurrences:
        typer.echo(
            f"  {o.timestamp:%Y-%m-%d %H:%M:%S}  {o.method or ''} {o.route or ''}  "
            f"request_id={o.request_id}  -> ep logs --request-id {o.request_id}"
        )


def _change(fingerprint: str, action: str) -> None:
    store = _store()
    try:
        if store.get_group(fingerprint, occurrences=0) is None:
            typer.echo(f"error: no error group {fingerprint}", err=True)
            raise typer.Exit(1)
        changed = {"resolve": store.resolve, "ignore": store.ignore, "reopen": store.reopen}[
            action
        ](fingerprint)
    finally:
        store.dispose()
    typer.echo(f"{fingerprint}: {action}d" if changed else f"{fingerprint}: already so")


@app.command("resolve")
def resolve(fingerprint: str) -> None:
    """Mark fixed; a recurrence reopens it as a regression."""
    _change(fingerprint, "resolve")


@app.command("ignore")
def ignore(fingerprint: str) -> None:
    """Stop notifying about this group."""
    _change(fingerprint, "ignore")


@app.command("reopen")
def reopen(fingerprint: str) -> None:
    """Open a resolved or ignored group again."""
    _change(fingerprint, "reopen")
