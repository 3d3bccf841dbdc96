"""Key lifecycle on a real `ep serve`: list, revoke (CLI and API), last use, failed-key backoff.

Issue 14: keys could not be revoked without hand-written SQL, there was no `ep keys list` and
no audit of key use, and 300 wrong keys in 3.7 s met no throttling.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from tests.support.platform import CLI, create_key, home_env
from tests.support.raw_http import served


def ep(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _key_id(key: str) -> str:
    return key.removeprefix("epk_").split(".", 1)[0]


def _columns(row: str) -> list[str]:
    """id, role, then created / last used / revoked as 'created', 'used', 'revoked' or '-'."""
    fields = [row[:14].strip(), row[14:22].strip()]
    for start, word in ((22, "created"), (43, "used"), (64, "revoked")):
        stamp = row[start : start + 21].strip()
        fields.append("-" if stamp == "-" else word if stamp[:4].isdigit() else stamp)
    return fields


def test_list_and_revoke_from_the_cli_within_the_cache_bound(tmp_path: Path) -> None:
    env = home_env(tmp_path, EP_KEY_CACHE_SECONDS="1")
    admin = create_key(env, "admin")
    client = create_key(env, "client")
    with served(env, tmp_path) as server:
        url = f"{server.base}/api/v1/experiments"
        assert httpx.get(url, headers=_bearer(client)).status_code == 200
        listed = ep(env, "keys", "list")
        assert listed.returncode == 0, listed.stderr
        rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
        assert set(rows) == {_key_id(admin), _key_id(client)}
        assert admin not in listed.stdout  # ids only, never a key
        # The client key was used through the server: its last use is recorded; not revoked.
        assert _columns(rows[_key_id(client)])[1:] == ["client", "created", "used", "-"]
        assert _columns(rows[_key_id(admin)])[3] == "-"  # never used yet
        revoked = ep(env, "keys", "revoke", _key_id(client))
        assert revoked.returncode == 0, revoked.stderr
        assert "EP_KEY_CACHE_SECONDS" in revoked.stdout
        deadline = time.monotonic() + 10
        status = 200
        while time.monotonic() < deadline and status == 200:
            status = httpx.get(url, headers=_bearer(client)).status_code
            time.sleep(0.2)
        refused = httpx.get(url, headers=_bearer(client))
        assert refused.status_code == 401
        assert refused.json()["error"]["message"] == "invalid or revoked API key"
        assert httpx.get(url, headers=_bearer(admin)).status_code == 200
        again = {line.split()[0]: line for line in ep(env, "keys", "list").stdout.splitlines()}
        assert _columns(again[_key_id(client)])[4] == "revoked"
        missing = ep(env, "keys", "revoke", "ffffffffffff")
        assert missing.returncode == 1
        assert missing.stderr.strip().startswith("error: no API key ffffffffffff")


def test_the_admin_api_lists_creates_and_revokes_at_once(tmp_path: Path) -> None:
    env = home_env(tmp_path)  # the default 30 s cache: the API revocation must not wait for it
    admin = create_key(env, "admin")
    with served(env, tmp_path) as server:
        keys_url = f"{server.base}/api/v1/keys"
        created = httpx.post(
            keys_url, json={"role": "viewer", "name": "team"}, headers=_bearer(admin)
        )
        assert created.status_code == 201, created.text
        viewer = created.json()["key"]
        ops = f"{server.base}/ops/api/session"
        assert httpx.get(ops, headers=_bearer(viewer)).status_code == 200
        listed = httpx.get(keys_url, headers=_bearer(admin)).json()["items"]
        by_id = {item["id"]: item for item in listed}
        assert by_id[created.json()["id"]]["role"] == "viewer"
        assert by_id[created.json()["id"]]["last_used_at"] is not None
        assert all("key" not in item and "key_hash" not in item for item in listed)
        assert httpx.get(keys_url, headers=_bearer(viewer)).status_code == 403
        gone = httpx.post(f"{keys_url}/{created.json()['id']}/revoke", headers=_bearer(admin))
        assert gone.status_code == 200
        assert gone.json()["revoked_at"] is not None
        assert httpx.get(ops, headers=_bearer(viewer)).status_code == 401


def test_repeated_wrong_keys_earn_a_backoff_but_known_keys_go_on(tmp_path: Path) -> None:
    env = home_env(
        tmp_path,
        EP_AUTH_MAX_FAILURES="5",
        EP_AUTH_FAILURE_WINDOW_SECONDS="60",
        EP_AUTH_BACKOFF_SECONDS="8",
        EP_KEY_CACHE_SECONDS="0.5",  # so the known key must be checked again during the backoff
    )
    admin = create_key(env, "admin")
    idle = create_key(env, "client")  # valid, but never used before the backoff
    with served(env, tmp_path) as server:
        url = f"{server.base}/api/v1/experiments"
        with httpx.Client() as http:
            assert http.get(url, headers=_bearer(admin)).status_code == 200
            statuses = [
                http.get(url, headers=_bearer(f"epk_{n:012x}.wrong")).status_code for n in range(60)
            ]
            blocked_at = time.monotonic()
            assert statuses[:5] == [401] * 5
            assert set(statuses[5:]) == {429}
            throttled = http.get(url, headers=_bearer("epk_000000000000.guess"))
            assert throttled.status_code == 429
            assert 1 <= int(throttled.headers["retry-after"]) <= 8
            assert throttled.json()["error"]["code"] == "too_many_failed_attempts"
            assert throttled.json()["request_id"] == throttled.headers["x-request-id"]
            time.sleep(0.6)  # the admin key's cache entry expired: it is checked again
            # The address's legitimate caller is not locked out; an unknown one waits.
            assert http.get(url, headers=_bearer(admin)).status_code == 200
            assert http.get(url, headers=_bearer(idle)).status_code == 429
            time.sleep(max(0.0, blocked_at + 8.2 - time.monotonic()))
            assert http.get(url, headers=_bearer("epk_000000000000.x")).status_code == 401
            assert http.get(url, headers=_bearer(idle)).status_code == 200
