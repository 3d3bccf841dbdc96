"""Error tracking under fire, through a real server: a storm of identical exceptions is one
group with an exact count and one notification, and a dead error database never fails a
request."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import psycopg

from tests.support.platform import (
    CLI,
    POSTGRES_ADMIN_DSN,
    backend_settings,
    create_key,
    home_env,
    postgres_database,
    running_instance,
)
from tests.support.servers import ManagedProcess, RecordingHTTPServer, free_port, wait_for_http

STORM = 10_000


def test_ten_thousand_identical_exceptions_are_one_group_and_one_notification(
    tmp_path: Path,
) -> None:
    with RecordingHTTPServer() as slack:
        env = home_env(tmp_path, EP_SLACK_WEBHOOK_URL=f"{slack.url}/hook")
        key = create_key(env, "admin")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        statuses: Counter[int] = Counter()
        lock = threading.Lock()

        def hammer(count: int) -> None:
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as c:
                for _ in range(count):
                    status = c.post("/api/v1/ops/selftest/error").status_code
                    with lock:
                        statuses[status] += 1

        with ManagedProcess(
            [*CLI, "serve", "--port", str(port)], env=env, log_path=tmp_path / "out"
        ):
            wait_for_http(f"{base}/health/ready", timeout=30)
            threads = [threading.Thread(target=hammer, args=(STORM // 16,)) for _ in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert statuses == {500: STORM}  # every request answered, with our JSON 500
            auth = {"Authorization": f"Bearer {key}"}
            deadline_groups: list[dict[str, object]] = []
            for _ in range(100):  # the writer drains in batches; wait for the last one
                deadline_groups = httpx.get(f"{base}/api/v1/ops/errors", headers=auth).json()[
                    "items"
                ]
                if deadline_groups and deadline_groups[0]["count"] == STORM:
                    break
                threading.Event().wait(0.2)
            assert len(deadline_groups) == 1
            assert deadline_groups[0]["count"] == STORM
            assert deadline_groups[0]["severity"] == "medium"
            slack.wait_for(1, timeout=10)
            threading.Event().wait(1.0)  # any second notification would have arrived by now
        assert len(slack.requests) == 1
        assert "SelfTestError" in slack.requests[0].body.decode()


def test_requests_succeed_while_the_error_database_is_gone(tmp_path: Path) -> None:
    with postgres_database() as errors_url:
        settings = backend_settings(
            tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:"
        ).model_copy(update={"errors_database_url": errors_url, "log_to_stdout": False})
        with running_instance(settings) as api:
            tracker = api.client.app.state.observability.errors  # type: ignore[attr-defined]
            assert (
                api.client.post("/api/v1/ops/selftest/error", headers=api.admin).status_code == 500
            )
            assert tracker.flush(10)
            name = errors_url.rsplit("/", 1)[1]
            with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            before = tracker.stats()
            for _ in range(50):
                response = api.client.post("/api/v1/ops/selftest/error", headers=api.admin)
                assert response.status_code == 500
                assert response.json()["error"]["code"] == "internal_error"
            assert api.client.get("/api/v1/experiments", headers=api.user).status_code == 200
            tracker.flush(1)
            after = tracker.stats()
            assert after.captured - before.captured == 50
            assert after.buffered + after.dropped > before.buffered + before.dropped
            assert after.write_failures > before.write_failures
            with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')  # so the fixture can drop it
