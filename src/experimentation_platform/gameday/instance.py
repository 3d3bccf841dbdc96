"""Instance control for game days: start a fresh `ep serve` (and, for CloudWatch, a moto server
behind the game day's own TCP proxy), or target a running instance; drive demo traffic.

Everything listens on and talks to 127.0.0.1 only; every wait is bounded; every process the
game day starts is stopped when its scenario ends.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from experimentation_platform.demo import DemoTraffic, seed
from experimentation_platform.gameday.netfault import TcpProxy
from experimentation_platform.gameday.scenarios import Scenario
from experimentation_platform.settings import Settings, load_settings
from experimentation_platform.storage.db import Database, migrate
from experimentation_platform.storage.keys import KeyStore

__all__ = [
    "Target",
    "cloudwatch_endpoint_missing",
    "started_instance",
    "targeted_instance",
    "traffic",
]

LOOPBACK = "127.0.0.1"
ROUTING_KEY = "gameday-routing-key"  # not a secret: the recorder is the only PagerDuty here
# Not secrets: moto accepts any; set so boto3 never looks for real ones.
_MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "gameday",
    "AWS_SECRET_ACCESS_KEY": "gameday",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class Target:
    """The instance a scenario runs against and the game day's ways in."""

    base_url: str
    admin_key: str  # the traffic's key
    fault_key: str  # operator calls from the injection on (see `started_instance`)
    metrics_token: str
    settings: Settings  # where its alert state lives
    process: subprocess.Popen[bytes] | None = None
    cloudwatch_path: TcpProxy | None = None  # the network path to CloudWatch, breakable
    database_path: TcpProxy | None = None  # the network path to PostgreSQL, can slow down

    def operator(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.fault_key}"},
            timeout=15.0,
        )

    def rss_mb(self) -> float | None:
        if self.process is None:
            return None  # a targeted instance may run elsewhere
        try:
            return round(psutil.Process(self.process.pid).memory_info().rss / 2**20, 1)
        except psutil.Error:
            return None


def targeted_instance(base_url: str, admin_key: str) -> Target:
    """A running instance; the game day shares its EP_* settings (alert state is read there)."""
    return Target(base_url, admin_key, admin_key, admin_key, load_settings())


@contextlib.contextmanager
def started_instance(
    scenario: Scenario,
    var_dir: Path,
    recorder_url: str,
    settings: Mapping[str, str],
    postgres_dsn: str | None = None,
) -> Iterator[Target]:
    """A fresh `ep serve` on a free port with its own SQLite and log files under `var_dir`,
    fault injection on, its Slack and PagerDuty pointed at the recorder; for a scenario that
    needs CloudWatch, a moto server behind a `TcpProxy` the scenario can break; for one that
    needs PostgreSQL, a fresh database (created through `postgres_dsn`, dropped after) that
    the instance reaches through a `TcpProxy` (the game day itself reads it directly)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        database_url = ""
        database_proxy: TcpProxy | None = None
        if scenario.needs_postgres:
            if not postgres_dsn:
                raise ValueError(f"{scenario.name} needs PostgreSQL: pass its admin DSN")
            database_url = stack.enter_context(_postgres_database(postgres_dsn))
            host, port = _host_port(database_url)
            database_proxy = stack.enter_context(TcpProxy(host, port))
        instance_settings = load_settings(
            var_dir=var_dir,
            log_dir=var_dir / "log",
            database_url=database_url,
            observability_database_url="",
            errors_database_url="",
            redis_url="",
        )
        target = stack.enter_context(
            _serve(scenario, var_dir, recorder_url, settings, instance_settings, database_proxy)
        )
        yield target


def _host_port(url: str) -> tuple[str, int]:
    parsed = make_url(url)
    return parsed.host or LOOPBACK, parsed.port or 5432


@contextlib.contextmanager
def _postgres_database(admin_dsn: str) -> Iterator[str]:
    """A fresh database on the server of `admin_dsn` (dropped afterwards); yields its
    SQLAlchemy URL. Only 127.0.0.1 / localhost servers: the game day stays on this machine."""
    admin = make_url(admin_dsn)
    if admin.host not in (LOOPBACK, "localhost", "::1"):
        raise ValueError(f"the game day's PostgreSQL must be on this machine, not {admin.host}")
    name = f"ep_gameday_{os.getpid()}_{secrets.token_hex(4)}"
    plain = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def _serve(
    scenario: Scenario,
    var_dir: Path,
    recorder_url: str,
    settings: Mapping[str, str],
    instance_settings: Settings,
    database_proxy: TcpProxy | None,
) -> Iterator[Target]:
    migrate(instance_settings.resolved_database_url)
    db = Database(instance_settings.resolved_database_url)
    try:
        keys = KeyStore(db)
        _, admin_key = keys.create("admin", "gameday-traffic")
        # A key of its own for operator calls, first used at injection: the platform
        # remembers a verified key 30 s, so it still works while the database is down.
        _, fault_key = keys.create("admin", "gameday-faults")
    finally:
        db.dispose()
    metrics_token = secrets.token_urlsafe(24)  # /metrics without the database
    served_database = ""
    if database_proxy is not None:
        # The instance goes through the proxy; the game day reads alert state directly.
        direct = make_url(instance_settings.resolved_database_url)
        served_database = direct.set(host=LOOPBACK, port=database_proxy.port).render_as_string(
            hide_password=False
        )
    with contextlib.ExitStack() as stack:
        cloud: dict[str, str] = {}
        proxy: TcpProxy | None = None
        if scenario.needs_cloudwatch:
            moto_port = stack.enter_context(_moto_server(var_dir))
            proxy = stack.enter_context(TcpProxy(LOOPBACK, moto_port))
            cloud = {
                **_MOTO_CREDENTIALS,
                "EP_CLOUDWATCH_ENABLED": "true",
                "EP_AWS_REGION": _MOTO_CREDENTIALS["AWS_DEFAULT_REGION"],
                "EP_AWS_ENDPOINT_URL": proxy.url,
            }
        port = _free_port()
        env = {
            # No AWS_* of this shell: only the stand-in endpoint gets (dummy) credentials.
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "EP_VAR_DIR": str(var_dir),
            "EP_LOG_DIR": str(var_dir / "log"),
            "EP_DATABASE_URL": served_database,
            "EP_OBSERVABILITY_DATABASE_URL": "",  # PostgreSQL: the platform's own database
            "EP_ERRORS_DATABASE_URL": "",
            "EP_REDIS_URL": "",
            "EP_HOST": LOOPBACK,
            "EP_PORT": str(port),
            "EP_PUBLIC_BASE_URL": "",
            "EP_FAULT_INJECTION": "true",
            "EP_ALERTS_ENABLED": "true",
            "EP_METRICS_TOKEN": metrics_token,
            "EP_SLACK_WEBHOOK_URL": f"{recorder_url}/slack/{scenario.name}",
            "EP_PAGERDUTY_URL": f"{recorder_url}/pagerduty/{scenario.name}",
            "EP_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "EP_LOG_TO_STDOUT": "false",
            "EP_CLOUDWATCH_ENABLED": "false",
            "EP_SENTRY_DSN": "",
            "EP_SMTP_HOST": "",
            "EP_SNS_TOPIC_ARN": "",
            **settings,
            **scenario.settings,
            **cloud,
        }
        out = stack.enter_context((var_dir / "server.out").open("wb"))
        process = subprocess.Popen(
            [sys.executable, "-m", "experimentation_platform.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        stack.callback(_stop, process)
        base_url = f"http://{LOOPBACK}:{port}"
        _wait_http(f"{base_url}/health/ready", process, timeout=60.0)
        yield Target(
            base_url,
            admin_key,
            fault_key,
            metrics_token,
            instance_settings,
            process,
            proxy,
            database_proxy,
        )


def cloudwatch_endpoint_missing() -> str | None:
    """Why a started instance cannot get a local CloudWatch endpoint, or None if it can."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        return (
            "not run: needs a CloudWatch endpoint; the game day starts a local moto server "
            "(pip install 'moto[server]', a dev dependency: `make install`)"
        )
    return None


@contextlib.contextmanager
def _moto_server(var_dir: Path) -> Iterator[int]:
    """A moto server (CloudWatch Logs stand-in) on 127.0.0.1; yields its port."""
    port = _free_port()
    with (var_dir / "moto.out").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
            env={**os.environ, **_MOTO_CREDENTIALS},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://{LOOPBACK}:{port}"
            _wait_http(f"{url}/moto-api/", process, timeout=30.0, what="the moto server")
            yield port
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_http(
    url: str, process: subprocess.Popen[bytes], timeout: float, what: str = "the platform"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start (code {process.returncode})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} at {url} was not ready within {timeout:.0f}s")


@contextlib.contextmanager
def traffic(
    base_url: str, admin_key: str, rate_per_second: float, generators: int
) -> Iterator[Sequence[DemoTraffic]]:
    """Demo traffic from `generators` threads, without the demo's deliberate self-test 500
    (one call in a few thousand): at game-day window sizes that alone can page, and a page
    already sent for a group hides the fault's own page for 5 minutes (de-duplication)."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        # Seed once: generators seeding in parallel would race on the same experiment keys.
        seed(client, {"Authorization": f"Bearer {admin_key}"})
    each = rate_per_second / generators
    running = [
        DemoTraffic(
            base_url, admin_key, rate_per_second=each, seed_value=100 + i, selftest_rate=0.0
        )
        for i in range(generators)
    ]
    threads = [threading.Thread(target=g.run, daemon=True) for g in running]
    for thread in threads:
        thread.start()
    try:
        yield running
    finally:
        for g in running:
            g.stop()
        for thread in threads:
            thread.join(15)
