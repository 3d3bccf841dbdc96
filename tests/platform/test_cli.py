"""The `ep` command as an operator runs it: a real subprocess with EP_* settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from experimentation_platform.storage.db import Database
from experimentation_platform.storage.keys import KeyStore
from observability.store import head_revision


def ep(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EP_VAR_DIR": str(tmp_path), "EP_LOG_DIR": str(tmp_path / "log")}
    return subprocess.run(
        [sys.executable, "-m", "experimentation_platform.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    result = ep(tmp_path, "keys", "create", "--role", "admin", "--name", "ops")
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("epk_")
    db = Database(f"sqlite:///{tmp_path / 'platform.db'}")
    try:
        principal = KeyStore(db).authenticate(key)
    finally:
        db.dispose()
    assert principal is not None
    assert principal.role == "admin"
    assert key not in result.stderr


def test_bad_role_and_bad_setting_fail_clearly(tmp_path: Path) -> None:
    bad_role = ep(tmp_path, "keys", "create", "--role", "root")
    assert bad_role.returncode == 2
    assert "--role must be 'admin', 'client' or 'viewer'" in bad_role.stderr
    env_result = subprocess.run(
        [sys.executable, "-m", "experimentation_platform.cli", "db", "upgrade"],
        env={**os.environ, "EP_VAR_DIR": str(tmp_path), "EP_LOG_LEVEL": "LOUD"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert env_result.returncode == 2
    assert "EP_LOG_LEVEL" in env_result.stderr
    assert "'DEBUG'" in env_result.stderr


def test_db_upgrade_is_idempotent(tmp_path: Path) -> None:
    assert ep(tmp_path, "db", "upgrade").returncode == 0
    second = ep(tmp_path, "db", "upgrade")
    assert second.returncode == 0
    assert second.stdout.strip().endswith(
        f"database at revision head; observability store at {head_revision()}"
    )
