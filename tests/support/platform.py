"""Build real platform instances for tests: SQLite or PostgreSQL, in-process cache or Redis."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from fastapi.testclient import TestClient

from experimentation_platform.app import create_app
from experimentation_platform.container import Platform
from experimentation_platform.settings import Settings, load_settings
from experimentation_platform.storage.db import migrate

CLI = [sys.executable, "-m", "experimentation_platform.cli"]


def home_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a platform process whose files live under `home`: its SQLite
    database, log files and journals; EP_* settings given here come on top."""
    env = {
        **os.environ,
        "EP_VAR_DIR": str(home),
        "EP_LOG_DIR": str(home / "log"),
        "EP_LOG_TO_STDOUT": "false",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(settings)
    return env


def create_key(env: dict[str, str], role: str = "admin") -> str:
    """`ep keys create` as an operator runs it: the key is the last line of stdout."""
    result = subprocess.run(
        [*CLI, "keys", "create", "--role", role],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.strip().splitlines()[-1]


POSTGRES_ADMIN_DSN = os.environ.get("EP_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("EP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards; yields its URL."""
    name = f"ep_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def redis_flush_prefix(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class Instance:
    """One running platform (in-process ASGI) with an admin and a client key."""

    app_settings: Settings
    client: TestClient
    admin: dict[str, str]
    user: dict[str, str]

    @property
    def platform(self) -> Platform:
        platform: Platform = self.client.app.state.platform  # type: ignore[attr-defined]
        return platform


def backend_settings(tmp_path: Path, database_url: str, use_redis: bool, prefix: str) -> Settings:
    return load_settings(
        var_dir=tmp_path,
        database_url=database_url,
        redis_url=REDIS_URL if use_redis else "",
        cache_prefix=prefix,
        log_dir=tmp_path / "log",
    )


@contextlib.contextmanager
def running_instance(settings: Settings, keys: tuple[str, str] | None = None) -> Iterator[Instance]:
    migrate(settings.resolved_database_url)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        platform: Platform = app.state.platform
        if keys is None:
            keys = (
                platform.keys.create("admin", "test")[1],
                platform.keys.create("client", "test")[1],
            )
        yield Instance(
            settings,
            client,
            {"Authorization": f"Bearer {keys[0]}"},
            {"Authorization": f"Bearer {keys[1]}"},
        )
