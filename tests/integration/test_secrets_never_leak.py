"""The canary test: secrets of every detector type, sent through headers, query strings, JSON
bodies, exception messages and direct log calls, reach none of the sinks: stdout, the log
files, CloudWatch (moto), the error store, the Sentry envelope, the Slack notification.

Every sink is also checked to have received something, so an empty sink cannot pass."""

from __future__ import annotations

import gzip
import json
import random
import urllib.parse
from pathlib import Path

import boto3
import httpx
import pytest
import sqlalchemy as sa

from experimentation_platform.settings import Settings
from observability.logging import get_logger
from tests.observability.masking_corpus import FAMILIES, Secret, draw
from tests.observability.notifiers import smtp_server
from tests.observability.test_masking import CANARIES
from tests.support.platform import CLI, backend_settings, create_key, home_env, running_instance
from tests.support.servers import (
    ManagedProcess,
    MotoServer,
    RecordingHTTPServer,
    free_port,
    wait_for_http,
)

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


# -- a corpus the detectors were not written against ---------------------------------------


def _corpus(seed: int) -> list[Secret]:
    """One fresh value of every family (see tests/observability/masking_corpus.py)."""
    rng = random.Random(seed)
    return [draw(rng, family) for family in sorted(FAMILIES)]


def _cloudwatch_messages(moto: MotoServer) -> str:
    logs = boto3.client("logs", endpoint_url=moto.url, region_name="us-east-1")
    shipped: list[str] = []
    for group in (
        "/experimentation-platform/api",
        "/experimentation-platform/services",
        "/experimentation-platform/errors",
    ):
        token = None
        while True:
            kwargs = {"logGroupName": group, **({"nextToken": token} if token else {})}
            try:
                page = logs.filter_log_events(**kwargs)
            except logs.exceptions.ResourceNotFoundException:
                break
            shipped += [e["message"] for e in page["events"]]
            token = page.get("nextToken")
            if not token:
                break
    return "\n".join(shipped)


def _log_files(directory: Path) -> tuple[str, str]:
    """(active file, rotated files decompressed)."""
    active = (
        (directory / "platform.log").read_text() if (directory / "platform.log").exists() else ""
    )
    rotated = []
    for path in sorted(directory.glob("platform.*.log*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as handle:
            rotated.append(handle.read())
    return active, "".join(rotated)


def _bodies(server: RecordingHTTPServer) -> str:
    out = []
    for request in server.requests:
        body = request.body
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        out.append(body.decode("utf-8", "replace"))
    return "\n".join(out)


def _assert_clean(sinks: dict[str, str], corpus: list[Secret]) -> None:
    for name, blob in sinks.items():
        assert blob, f"{name} received nothing: the test would prove nothing"
        readable = [blob, urllib.parse.unquote(blob), urllib.parse.unquote_plus(blob)]
        leaks = [
            (secret.family, piece)
            for secret in corpus
            for piece in secret.pieces
            if any(piece in form for form in readable)
        ]
        assert leaks == [], f"{name} leaked {leaks}"


def test_fresh_corpus_through_a_real_ep_serve_reaches_no_sink(
    tmp_path: Path, moto: MotoServer
) -> None:
    """Path segments, query strings (raw and encoded), user_id, headers and an exception
    message of a real `ep serve` process: stdout, the log file and its rotated, gzipped
    predecessors, CloudWatch (moto), the error store, Sentry and Slack get none of it."""
    moto.reset()
    corpus = _corpus(seed=1605)
    with RecordingHTTPServer() as sentry, RecordingHTTPServer() as slack:
        env = home_env(
            tmp_path,
            EP_LOG_TO_STDOUT="true",
            EP_LOG_MAX_FILE_BYTES="4096",  # rotates (and gzips) several times during the test
            EP_CLOUDWATCH_ENABLED="true",
            EP_AWS_ENDPOINT_URL=moto.url,
            EP_SENTRY_DSN=f"http://public@127.0.0.1:{sentry.port}/1",
            EP_SLACK_WEBHOOK_URL=f"{slack.url}/slack",
        )
        admin = {"Authorization": f"Bearer {create_key(env, 'admin')}"}
        client = {"Authorization": f"Bearer {create_key(env, 'client')}"}
        port = free_port()
        stdout = tmp_path / "server.out"
        with ManagedProcess(
            [*CLI, "serve", "--port", str(port)], env=env, log_path=stdout
        ) as server:
            base = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base}/health/ready", timeout=30)
            with httpx.Client(base_url=base, timeout=10) as http:
                for secret in corpus:
                    text = secret.text
                    segment = urllib.parse.quote(text, safe="")
                    http.get(f"/api/v1/flags/{segment}/evaluation", headers=client)
                    http.get(
                        "/api/v1/flags/missing/evaluation",
                        params={"user_id": text, "note": text},  # form-encoded by httpx
                        headers=client,
                    )
                    raw_query = urllib.parse.quote(text, safe="=&:/@")
                    http.get(f"/api/v1/experiments?cursor={raw_query}", headers=admin)
                    http.post(
                        "/api/v1/assignments",
                        json={"experiment_key": "none", "user_id": text},
                        headers=client,
                    )
                    agent = text.replace("\n", " ")[:200]  # a header holds no newline
                    http.get("/api/v1/experiments", headers={**admin, "User-Agent": agent})
                    failed = http.post(
                        "/api/v1/ops/selftest/error",
                        json={"note": f"upstream answered {text}"[:500]},
                        headers=admin,
                    )
                    assert failed.status_code == 500
            assert slack.wait_for(1, timeout=20), "the medium self-test errors notified Slack"
            assert sentry.wait_for(len(corpus), timeout=30), "Sentry received the errors"
            server.stop()  # SIGTERM: the server flushes its pipeline and the shipper
        active, rotated = _log_files(tmp_path / "log")
        store = (tmp_path / "observability.db").read_bytes().decode("latin-1")
        sinks = {
            "stdout": stdout.read_text(),
            "log file": active,
            "rotated files": rotated,
            "cloudwatch": _cloudwatch_messages(moto),
            "error store": store,
            "sentry": _bodies(sentry),
            "slack": _bodies(slack),
        }
    _assert_clean(sinks, corpus)
    assert len(list((tmp_path / "log").glob("platform.*.log.gz"))) >= 2
    assert "[MASKED:" in sinks["rotated files"]
    assert "SelfTestError" in sinks["error store"]


def test_fresh_corpus_in_errors_and_log_fields_reaches_no_receiver(
    tmp_path: Path, moto: MotoServer, capfd: pytest.CaptureFixture[str]
) -> None:
    """Database errors whose messages, causes and SQL parameters carry the corpus (a critical
    IntegrityError pages PagerDuty, a high OperationalError goes to Slack and e-mail) and log
    calls whose fields carry it: no receiver, store or log sink gets any of it."""
    moto.reset()
    corpus = _corpus(seed=2612)
    texts = [secret.text for secret in corpus]
    with RecordingHTTPServer() as sentry, RecordingHTTPServer() as hooks, smtp_server() as smtp:
        base = backend_settings(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", False, "x:")
        settings = base.model_copy(
            update={
                "cloudwatch_enabled": True,
                "aws_endpoint_url": moto.url,
                "sentry_dsn": f"http://public@127.0.0.1:{sentry.port}/1",
                "slack_webhook_url": f"{hooks.url}/slack",
                "pagerduty_routing_key": "R0UT1NGKEY0000000000000000000000",
                "pagerduty_url": f"{hooks.url}/pagerduty",
                "smtp_host": smtp.host,
                "smtp_port": smtp.port,
                "smtp_to": "oncall@example.org",
            }
        )
        engine = sa.create_engine("sqlite://")
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE accounts (token TEXT UNIQUE, note TEXT)"))
            connection.execute(sa.text("INSERT INTO accounts VALUES ('taken', '')"))
        with running_instance(settings) as api:
            observability = api.client.app.state.observability  # type: ignore[attr-defined]
            for index, text in enumerate(texts):
                # A constraint violation with the value in its parameters: critical.
                try:
                    with engine.begin() as connection:
                        connection.execute(
                            sa.text("INSERT INTO accounts VALUES (:token, :note)"),
                            {"token": "taken", "note": f"{index} {text}"},
                        )
                except sa.exc.IntegrityError as exc:
                    observability.errors.capture(exc, {"route": "/api/v1/accounts"})
                # A lost connection whose cause names the value: high.
                try:
                    try:
                        raise ConnectionRefusedError(f"peer refused {text}")
                    except ConnectionRefusedError as cause:
                        raise sa.exc.OperationalError(
                            "SELECT * FROM accounts WHERE token = ?", (text,), cause
                        ) from cause
                except sa.exc.OperationalError as exc:
                    observability.errors.capture(exc, {"route": f"/api/v1/accounts/{index}"})
            log = get_logger("corpus.test")
            for text in texts:
                log.info(
                    "upstream_replied",
                    body=json.dumps({"detail": text}),
                    headers=[{"name": "Authorization", "value": text}],
                    note=f"see {text}",
                    nested={"values": [text, urllib.parse.quote_plus(text)]},
                )
            assert observability.errors.flush(20)
            assert len(hooks.wait_for(2, timeout=20)) >= 2
            assert smtp.handler.wait_for(1, timeout=20)
            assert sentry.wait_for(1, timeout=20)
            observability.logs.flush(5)
            assert observability.shipper.flush(20)
        pagerduty = "\n".join(
            r.body.decode() for r in hooks.requests if r.path.endswith("/pagerduty")
        )
        slack = "\n".join(r.body.decode() for r in hooks.requests if r.path.endswith("/slack"))
        mails = "\n".join(m.as_string() for m in smtp.handler.messages)
        sinks = {
            "stdout": capfd.readouterr().out,
            "log file": _log_files(tmp_path / "log")[0],
            "cloudwatch": _cloudwatch_messages(moto),
            "error store": (tmp_path / "observability.db").read_bytes().decode("latin-1"),
            "sentry": _bodies(sentry),
            "pagerduty": pagerduty,
            "slack": slack,
            "e-mail": mails,
        }
    _assert_clean(sinks, corpus)
    assert "IntegrityError" in sinks["pagerduty"]
    assert "OperationalError" in sinks["e-mail"]
    assert "[parameters: [MASKED:sql_parameters]" in sinks["log file"] + sinks["error store"]
    assert "upstream_replied" in sinks["cloudwatch"]
