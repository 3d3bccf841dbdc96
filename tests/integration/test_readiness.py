"""Readiness tells the truth on a real `ep serve`.

Issue 14: with the SQLite file deleted under load, 2,167 requests got 500 "no such table"
while /health/ready answered 200 {"database": "ok"}.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from alembic import command
from alembic.config import Config

from experimentation_platform.storage.db import MIGRATIONS_DIR, make_engine
from tests.support.platform import create_key, home_env
from tests.support.raw_http import served


def _downgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, revision)
    finally:
        engine.dispose()


def _ready(base: str) -> httpx.Response:
    return httpx.get(f"{base}/health/ready", timeout=10)


def test_a_deleted_database_file_makes_readiness_fail_and_name_it(tmp_path: Path) -> None:
    env = home_env(tmp_path, EP_READINESS_CACHE_SECONDS="1")
    key = create_key(env, "client")
    with served(env, tmp_path) as server:
        first = _ready(server.base).json()
        assert (first["status"], first["checks"]) == ("ok", {"database": "ok", "cache": "ok"})
        stop = threading.Event()
        statuses: list[int] = []

        def load() -> None:  # bounded: stops with the test, loopback only
            with httpx.Client(base_url=server.base, timeout=10) as http:
                while not stop.is_set() and len(statuses) < 5_000:
                    response = http.get(
                        "/api/v1/experiments", headers={"Authorization": f"Bearer {key}"}
                    )
                    statuses.append(response.status_code)

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        try:
            time.sleep(0.5)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{tmp_path / 'platform.db'}{suffix}").unlink(missing_ok=True)
            deadline = time.monotonic() + 5
            ready = _ready(server.base)
            while ready.status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
                ready = _ready(server.base)
        finally:
            stop.set()
            worker.join(15)
        assert ready.status_code == 503
        body = ready.json()
        assert body["failing"] == ["database"]
        assert body["checks"]["database"] == "unavailable: FileNotFoundError"
        assert body["checks"]["cache"] == "ok"
        assert 200 in statuses  # the load ran before the file went


def test_a_schema_behind_this_release_is_not_ready(tmp_path: Path) -> None:
    env = home_env(tmp_path, EP_READINESS_CACHE_SECONDS="0")
    create_key(env, "admin")  # migrates to the head revision
    _downgrade(f"sqlite:///{tmp_path / 'platform.db'}", "0001")  # an operator rolled back
    with served(env, tmp_path, "--no-migrate") as server:
        ready = _ready(server.base)
        assert ready.status_code == 503
        message = ready.json()["checks"]["database"]
        assert message.startswith("unavailable: schema at revision 0001, this release needs ")
