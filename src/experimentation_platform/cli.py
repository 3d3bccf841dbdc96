"""The `ep` command: serve, quickstart, demo, keys, db."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

import httpx
import typer
import uvicorn

from experimentation_platform.commands import alerts as alerts_commands
from experimentation_platform.commands import cloud as cloud_commands
from experimentation_platform.commands import errors as errors_commands
from experimentation_platform.commands import gameday as gameday_commands
from experimentation_platform.commands import incident as incident_commands
from experimentation_platform.commands import logs as logs_commands
from experimentation_platform.commands.failures import database_step, explain
from experimentation_platform.settings import Settings, SettingsError, load_settings
from experimentation_platform.storage.db import Database, migrate
from experimentation_platform.storage.keys import ROLES, KeyStore
from observability.metrics.prometheus import prepare_multiprocess_dir
from observability.store import ObservabilityStore
from observability.terminal import safe_text

app = typer.Typer(
    rich_markup_mode=None,
    help="Experimentation platform: run, operate and inspect it.",
    no_args_is_help=True,
)
keys_app = typer.Typer(rich_markup_mode=None, help="API keys.", no_args_is_help=True)
db_app = typer.Typer(rich_markup_mode=None, help="Database schema.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(errors_commands.app, name="errors")
app.add_typer(alerts_commands.app, name="alerts")
app.add_typer(cloud_commands.app, name="cloud")
app.add_typer(logs_commands.group, name="logs")
app.add_typer(incident_commands.app, name="incident")
app.command("gameday")(gameday_commands.run)


def _settings(prepare: bool = False) -> Settings:
    """The settings; `prepare` also creates the directories the command will write into."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if prepare:
        settings.ensure_directories()
    return settings


def _migrate(settings: Settings) -> None:
    with database_step(settings.resolved_database_url, "EP_DATABASE_URL"):
        migrate(settings.resolved_database_url)


@contextmanager
def _key_store(settings: Settings) -> Iterator[KeyStore]:
    """The key store of a migrated platform database; unreachable: one line, exit 1."""
    _migrate(settings)
    db = Database(settings.resolved_database_url)
    try:
        with database_step(settings.resolved_database_url, "EP_DATABASE_URL"):
            yield KeyStore(db)
    finally:
        db.dispose()


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the database migrations (idempotent)."""
    settings = _settings(prepare=True)
    with database_step(settings.resolved_database_url, "EP_DATABASE_URL"):
        migrate(settings.resolved_database_url, revision)
    url = settings.resolved_observability_database_url
    with database_step(url, "EP_OBSERVABILITY_DATABASE_URL"):
        store = ObservabilityStore.open(url)
        try:
            store.migrate()
            observability_revision = store.revision()
        finally:
            store.dispose()
    typer.echo(f"database at revision {revision}; observability store at {observability_revision}")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, client or viewer")],
    name: Annotated[str, typer.Option(help="a label for people")] = "",
) -> None:
    """Create an API key; the key alone is printed on the last line (it is never shown again)."""
    if role not in ROLES:
        typer.echo("error: --role must be 'admin', 'client' or 'viewer'", err=True)
        raise typer.Exit(2)
    settings = _settings(prepare=True)
    with _key_store(settings) as keys:
        key_id, key = keys.create(role, name)
    typer.echo(f"created {role} key {key_id} (the key is shown once; store it now):", err=True)
    typer.echo(key)


def _when(stamp: datetime | None) -> str:
    return "-" if stamp is None else f"{stamp:%Y-%m-%d %H:%M:%S}"


@keys_app.command("list")
def keys_list(
    active: Annotated[bool, typer.Option("--active", help="hide revoked keys")] = False,
) -> None:
    """Every key: id, role, name, created, last used (to the minute), revoked."""
    settings = _settings(prepare=True)
    with _key_store(settings) as store:
        keys = store.list_keys(include_revoked=not active)
    if not keys:
        typer.echo("no API keys (create one: ep keys create --role admin)")
        return
    typer.echo(f"{'ID':<14}{'ROLE':<8}{'CREATED':<21}{'LAST USED':<21}{'REVOKED':<21}NAME")
    for info in keys:
        typer.echo(
            f"{info.id:<14}{info.role:<8}{_when(info.created_at):<21}"
            f"{_when(info.last_used_at):<21}{_when(info.revoked_at):<21}{safe_text(info.name)}"
        )


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (ep keys list)")]) -> None:
    """Revoke a key: refused at once by new processes, by running ones within
    EP_KEY_CACHE_SECONDS (30 s by default)."""
    settings = _settings(prepare=True)
    with _key_store(settings) as keys:
        info = keys.revoke(key_id)
    if info is None:
        typer.echo(f"error: no API key {safe_text(key_id)!s} (see ep keys list)", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"revoked {info.role} key {info.id} at {_when(info.revoked_at)}; running servers refuse "
        f"it within {settings.key_cache_seconds:g} s (EP_KEY_CACHE_SECONDS)"
    )


def _bind(host: str | None, port: int | None) -> None:
    """--host/--port as EP_HOST/EP_PORT: the app factory (in every worker) reads its settings
    from the environment, so links it builds (EP_PUBLIC_BASE_URL unset) name the real port."""
    if host is not None:
        os.environ["EP_HOST"] = host
    if port is not None:
        os.environ["EP_PORT"] = str(port)


def _uvicorn_config(settings: Settings, host: str, port: int, workers: int) -> uvicorn.Config:
    return uvicorn.Config(
        "experimentation_platform.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,  # client IPs come from EP_TRUSTED_PROXIES in our middleware
        server_header=False,
        log_config=None,  # our pipeline renders uvicorn's lines as JSON like every other
    )


def _log_to_pipeline(settings: Settings) -> None:
    """JSON lines from the first moment: uvicorn's start-up lines go through our pipeline."""
    from experimentation_platform.telemetry.wiring import observability_config
    from observability.core import logging_config
    from observability.logging import configure_logging

    configure_logging(logging_config(observability_config(settings)))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default EP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default EP_PORT)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate")] = True,
) -> None:
    """Run the HTTP API."""
    _bind(host, port)
    settings = _settings(prepare=True)
    if migrate_first:
        _migrate(settings)
    config = _uvicorn_config(settings, settings.host, settings.port, workers)
    _log_to_pipeline(settings)
    if workers > 1:
        # Workers import prometheus_client fresh with this set, and write their samples here.
        prepare_multiprocess_dir(settings.var_dir / "prometheus")
        uvicorn.run(
            config.app,
            factory=True,
            host=config.host,
            port=config.port,
            workers=workers,
            server_header=False,
            proxy_headers=False,
            log_config=None,
        )
    else:
        uvicorn.Server(config).run()


@app.command()
def demo(
    base_url: Annotated[
        str, typer.Option(help="the platform's base URL")
    ] = "http://127.0.0.1:8000",
    admin_key: Annotated[
        str, typer.Option(envvar="EP_DEMO_ADMIN_KEY", help="an admin API key")
    ] = "",
    rate: Annotated[float, typer.Option(min=0.1, max=200.0, help="requests per second")] = 5.0,
    duration: Annotated[float | None, typer.Option(help="seconds; default until Ctrl+C")] = None,
) -> None:
    """Create sample experiments and flags, then drive bounded, realistic traffic."""
    from experimentation_platform.demo import DemoRejected, DemoTraffic

    if not admin_key:
        typer.echo("error: --admin-key (or EP_DEMO_ADMIN_KEY) is required", err=True)
        raise typer.Exit(2)
    traffic = DemoTraffic(base_url, admin_key, rate_per_second=rate, duration=duration)
    try:
        statuses = traffic.run(on_progress=lambda s: typer.echo(f"demo: {dict(s)}", err=True))
    except KeyboardInterrupt:
        statuses = traffic.statuses
    except DemoRejected as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"demo finished: {dict(statuses)}")
    if traffic.rejected:
        count = sum(traffic.rejected.values())
        typer.echo(
            f"error: {count} requests with the demo's key were rejected "
            f"({dict(traffic.rejected)}): was the key revoked? (ep keys list)",
            err=True,
        )
        raise typer.Exit(1)
    if statuses and set(statuses) == {0}:
        typer.echo(f"error: {base_url} stopped answering (--base-url)", err=True)
        raise typer.Exit(1)


def demo_status(statuses: Mapping[int, int]) -> str:
    """The quickstart's one status line: requests so far by status class."""
    classes: Counter[str] = Counter()
    for status, count in statuses.items():
        classes["unreachable" if status == 0 else f"{status // 100}xx"] += count
    total = sum(statuses.values())
    detail = " ".join(f"{name} {classes[name]}" for name in sorted(classes))
    return f"demo traffic: {total} requests" + (f" ({detail})" if detail else "")


@app.command()
def quickstart(
    port: Annotated[int | None, typer.Option(help="port (default EP_PORT)")] = None,
    rate: Annotated[float, typer.Option(help="demo requests per second")] = 5.0,
) -> None:
    """Migrate, create an admin key, start the platform with gentle demo traffic."""
    from experimentation_platform.demo import DemoTraffic

    # The demo's request lines would scroll the banner away: the log lines go to the log
    # file only (the app reads its settings from the environment, so it is set there).
    os.environ["EP_LOG_TO_STDOUT"] = "false"
    _bind(None, port)
    settings = _settings(prepare=True)
    with _key_store(settings) as keys:
        _, admin_key = keys.create("admin", "quickstart")
        _, demo_key = keys.create("admin", "demo-traffic")
    host, port = settings.host, settings.port
    base_url = f"http://{host}:{port}"
    log_file = settings.log_dir / f"{settings.log_file_stem}.log"
    _log_to_pipeline(settings)
    server = uvicorn.Server(_uvicorn_config(settings, host, port, 1))
    traffic = DemoTraffic(base_url, demo_key, rate_per_second=rate)
    live = sys.stderr.isatty()

    def show_status(statuses: Mapping[int, int]) -> None:
        # One line rewritten in place on a terminal ("\r" + erase line); nothing elsewhere.
        if live:
            print(f"\r\x1b[K  {demo_status(statuses)}", end="", file=sys.stderr, flush=True)

    def drive() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not server.started:
            time.sleep(0.1)
        try:
            httpx.get(f"{base_url}/health/live", timeout=5).raise_for_status()
        except httpx.HTTPError:
            return
        banner = (
            f"\n  Experimentation platform running at {base_url}\n"
            f"  API docs:        {base_url}/docs\n"
            f"  Operations UI:   {base_url}/ops  (log in with the admin key)\n"
            f"  Admin API key:   {admin_key}\n"
            f"  Demo traffic:    {rate:g} requests/s (Ctrl+C stops everything)\n"
            f"  Logs:            {log_file}  (ep logs --level warning, ep logs --follow)\n"
        )
        print(banner, file=sys.stderr, flush=True)
        traffic.run(on_progress=show_status, progress_every=1.0)

    threading.Thread(target=drive, name="demo-traffic", daemon=True).start()
    try:
        server.run()
    finally:
        traffic.stop()
        if live:
            print(file=sys.stderr)  # leave the status line behind, whole
    if not server.started:
        typer.echo(f"error: the platform did not start; see {log_file}", err=True)
        raise typer.Exit(1)


def main() -> None:
    """`ep`: expected failures (a database, server or directory out of reach, a rejected key)
    end in one ``error: ...`` line naming the setting or URL, and exit 1; a bug keeps its
    traceback."""
    try:
        app()
    except SettingsError as exc:  # raised by a command that loads settings itself
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
