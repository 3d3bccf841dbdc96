"""The canary test: secrets of every detector type, sent through headers, query strings, JSON
bodies, exception messages and direct log calls, reach none of the sinks: stdout, the log
files, CloudWatch (moto), the error store, the Sentry envelope, the Slack notification.

Every sink is also checked to have received something, so an empty sink cannot pass."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import boto3
import pytest

from experimentation_platform.settings import Settings
from observability.logging import get_logger
from tests.observability.test_masking import CANARIES
from tests.support.platform import backend_settings, running_instance
from tests.support.servers import MotoServer, RecordingHTTPServer

SECRETS = sorted({secret for _, _, parts in CANARIES for secret in parts})
TEXTS = [text for _, text, _ in CANARIES]


def _settings(
    tmp_path: Path, moto: MotoServer, sentry: RecordingHTTPServer, slack: RecordingHTTPServer
) -> Settings:
    base = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:")
    return base.model_copy(
        update={
            "cloudwatch_enabled": True,
            "aws_endpoint_url": moto.url,
            "sentry_dsn": f"http://public@127.0.0.1:{sentry.port}/1",
            "slack_webhook_url": f"{slack.url}/slack",
        }
    )


def _leaks(blob: str, extra: list[str]) -> list[str]:
    return [s for s in [*SECRETS, *extra] if s in blob]


def test_canaries_reach_no_sink(
    tmp_path: Path, moto: MotoServer, capfd: pytest.CaptureFixture[str]
) -> None:
    moto.reset()
    with RecordingHTTPServer() as sentry, RecordingHTTPServer() as slack:
        settings = _settings(tmp_path, moto, sentry, slack)
        with running_instance(settings) as api:
            key = api.admin["Authorization"].removeprefix("Bearer ")
            every = " | ".join(TEXTS)
            # Headers: only allowlisted ones are logged, secret ones masked to 4 characters.
            api.client.get(
                "/api/v1/experiments",
                headers={"X-API-Key": key, "Cookie": f"session={SECRETS[0]}", "User-Agent": every},
            )
            # Query strings and an end user's id that is an e-mail address.
            api.client.get(
                "/api/v1/flags/missing/evaluation",
                params={"user_id": "canary.user@example.org", "token": "CanaryTok3n"},
                headers=api.user,
            )
            # JSON bodies, one of them invalid (the error names the field, never echoes it).
            api.client.post(
                "/api/v1/events",
                json={"events": [{"user_id": "u", "name": "n", "password": "CanaryHunter2"}]},
                headers=api.user,
            )
            # Exception messages: an unhandled error whose message carries every canary.
            failed = api.client.post(
                "/api/v1/ops/selftest/error", json={"note": every[:500]}, headers=api.admin
            )
            assert failed.status_code == 500
            failed2 = api.client.post(
                "/api/v1/ops/selftest/error",
                json={"note": " ".join(TEXTS[8:])[:500]},
                headers=api.admin,
            )
            assert failed2.status_code == 500
            # Direct log calls, fields and message.
            log = get_logger("canary.test")
            log.info("canary_logged", password="CanaryHunter2", note=every, api_key=key)
            log.warning(f"upstream said {every}")
            observability = api.client.app.state.observability  # type: ignore[attr-defined]
            assert observability.errors.flush(10)
            assert slack.wait_for(1, timeout=15), "the medium self-test error notified Slack"
            assert sentry.wait_for(1, timeout=15), "Sentry received the error"
            observability.logs.flush(5)
            assert observability.shipper.flush(20)
            error_db = Path(settings.resolved_observability_database_url.removeprefix("sqlite:///"))
            groups = observability.errors.store.list_groups()
        # After shutdown: every sink flushed.
        stdout = capfd.readouterr().out
        files = "".join(p.read_text() for p in (tmp_path / "log").glob("*.log"))
        logs = boto3.client("logs", endpoint_url=moto.url, region_name="us-east-1")
        shipped = []
        for group in (
            "/experimentation-platform/api",
            "/experimentation-platform/services",
            "/experimentation-platform/errors",
        ):
            token = None
            while True:
                kwargs = {"logGroupName": group, **({"nextToken": token} if token else {})}
                page = logs.filter_log_events(**kwargs)
                shipped += [e["message"] for e in page["events"]]
                token = page.get("nextToken")
                if not token:
                    break
        store_bytes = error_db.read_bytes().decode("latin-1")
        sentry_bodies = []
        for request in sentry.requests:
            body = request.body
            if request.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            sentry_bodies.append(body.decode("utf-8", "replace"))
        slack_bodies = [r.body.decode() for r in slack.requests]

    sinks = {
        "stdout": stdout,
        "files": files,
        "cloudwatch": "\n".join(shipped),
        "error store": store_bytes,
        "sentry": "\n".join(sentry_bodies),
        "slack": "\n".join(slack_bodies),
    }
    for name, blob in sinks.items():
        assert blob, f"{name} received nothing: the test would prove nothing"
        leaked = _leaks(blob, [key])
        where = [blob[max(0, blob.find(s) - 300) : blob.find(s) + 60] for s in leaked]
        assert leaked == [], f"secrets leaked into {name}: {where}"
    # The sinks saw the events we sent (masked), not just anything.
    assert "canary_logged" in files
    assert "canary_logged" in sinks["cloudwatch"]
    assert "[MASKED" in files
    assert any(g.type.endswith("SelfTestError") for g in groups)
    assert "SelfTestError" in sinks["sentry"]
    assert "SelfTestError" in sinks["slack"]
    assert json.loads(slack_bodies[0])["text"]
