"""`ep` commands fail like an operator tool: one line naming the setting or URL, exit != 0.

Issue 14: an unreachable database printed a 456-line traceback; a missing var directory with
EP_DATABASE_URL pointing elsewhere failed with "unable to open database file"; `ep demo`
against a stopped server printed a traceback, and with a wrong key printed `{401: 9}` and
exited 0.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.platform import CLI, create_key, home_env
from tests.support.raw_http import served
from tests.support.servers import free_port


def ep(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _dead_postgres() -> str:
    return f"postgresql+psycopg://root:s3cret-pw@127.0.0.1:{free_port()}/test"


@pytest.mark.parametrize(
    "args",
    [("serve",), ("db", "upgrade"), ("keys", "create", "--role", "admin"), ("keys", "list")],
    ids=["serve", "db-upgrade", "keys-create", "keys-list"],
)
def test_an_unreachable_database_is_one_line_naming_the_setting(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    url = _dead_postgres()
    line = one_error_line(ep(home_env(tmp_path, EP_DATABASE_URL=url), *args))
    assert "EP_DATABASE_URL" in line
    assert f"127.0.0.1:{url.rsplit(':', 1)[1]}" in line  # the address, to check it
    assert "s3cret-pw" not in line  # never the password


@pytest.mark.parametrize(
    "args",
    [("errors", "list"), ("alerts", "list"), ("incident", "show", "api_latency_page")],
    ids=["errors", "alerts", "incident"],
)
def test_an_unreachable_error_store_names_its_setting(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    env = home_env(tmp_path, EP_OBSERVABILITY_DATABASE_URL=_dead_postgres())
    line = one_error_line(ep(env, *args))
    assert "EP_OBSERVABILITY_DATABASE_URL" in line
    assert "s3cret-pw" not in line


def test_a_sqlite_file_elsewhere_still_gets_its_var_directory(tmp_path: Path) -> None:
    var_dir = tmp_path / "not" / "yet" / "var"
    database = tmp_path / "elsewhere" / "deeper" / "platform.db"
    env = home_env(
        var_dir, EP_DATABASE_URL=f"sqlite:///{database}", EP_LOG_DIR=str(tmp_path / "logs")
    )
    key = create_key(env, "admin")
    with served(env, tmp_path) as server:
        ready = httpx.get(f"{server.base}/health/ready")
        assert ready.status_code == 200, ready.text
        listed = httpx.get(
            f"{server.base}/api/v1/experiments", headers={"Authorization": f"Bearer {key}"}
        )
        assert listed.status_code == 200
    assert database.exists()
    assert (var_dir / "observability.db").exists()


def test_demo_against_a_stopped_server_names_the_url(tmp_path: Path) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    result = ep(home_env(tmp_path), "demo", "--base-url", base, "--admin-key", "epk_x.y")
    line = one_error_line(result)
    assert base in line
    assert line.startswith("error: cannot reach ")


def test_demo_with_a_key_the_platform_refuses_exits_non_zero(tmp_path: Path) -> None:
    env = home_env(tmp_path)
    viewer = create_key(env, "viewer")
    with served(env, tmp_path) as server:
        for key, status in (("epk_000000000000.wrong", "401"), (viewer, "403")):
            result = ep(env, "demo", "--base-url", server.base, "--admin-key", key)
            line = one_error_line(result)
            assert f"refused the admin key ({status}" in line
            assert "--admin-key" in line


def test_demo_exits_non_zero_when_its_key_is_revoked_midway(tmp_path: Path) -> None:
    env = home_env(tmp_path, EP_KEY_CACHE_SECONDS="0")
    operator = create_key(env, "admin")
    demo_key = create_key(env, "admin")
    with served(env, tmp_path) as server:
        result: dict[str, subprocess.CompletedProcess[str]] = {}

        def run_demo() -> None:
            result["demo"] = ep(
                env,
                "demo",
                "--base-url",
                server.base,
                "--admin-key",
                demo_key,
                "--rate",
                "50",
                "--duration",
                "5",
            )

        runner = threading.Thread(target=run_demo)
        runner.start()
        # Revoke once the demo is past its key check: its sample experiments are running.
        operator_headers = {"Authorization": f"Bearer {operator}"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            items = httpx.get(f"{server.base}/api/v1/experiments", headers=operator_headers).json()[
                "items"
            ]
            if any(e["status"] == "running" for e in items):
                break
            time.sleep(0.1)
        key_id = demo_key.removeprefix("epk_").split(".", 1)[0]
        revoked = httpx.post(
            f"{server.base}/api/v1/keys/{key_id}/revoke",
            headers=operator_headers,
        )
        assert revoked.status_code == 200
        runner.join(60)
    demo = result["demo"]
    assert demo.returncode == 1
    assert demo.stdout.strip().splitlines()[-1].startswith("demo finished:")
    assert "requests with the demo's key were rejected" in demo.stderr


def test_logs_in_a_missing_directory_is_one_line(tmp_path: Path) -> None:
    line = one_error_line(ep(home_env(tmp_path), "logs", "--dir", str(tmp_path / "nowhere")))
    assert str(tmp_path / "nowhere") in line
