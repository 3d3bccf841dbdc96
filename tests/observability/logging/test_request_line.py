"""The request line through the real middleware, pipeline and default masker: what is
masked and what is written verbatim."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

import observability.logging
from observability.asgi import ObservabilityMiddleware
from observability.context import bind
from observability.logging import RequestLogObserver
from observability.logging.pipeline import LogPipeline, install
from observability.logging.sinks import RotatingFileSink
from observability.masking import default_masker

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"  # a key-shaped id that passes the request-id syntax check


def _lines(tmp_path: Path, **request: object) -> list[dict[str, object]]:
    app = FastAPI()

    @app.get("/users/{user}")
    def user(user: str) -> dict[str, str]:
        bind(user_id=user, note=f"reach me at {user}")
        return {"ok": user}

    pipeline = LogPipeline(
        [RotatingFileSink(tmp_path)],
        mask=default_masker().mask_event,
        flush_interval=0.005,
        static_fields={"service": "svc"},
    )
    install(pipeline, capture_stdlib=False)
    try:
        with TestClient(ObservabilityMiddleware(app, observers=[RequestLogObserver()])) as client:
            response = client.get("/users/alice@example.com", **request)  # type: ignore[arg-type]
            assert response.status_code == 200
        assert pipeline.flush()
    finally:
        observability.logging.reset()
    lines = [
        json.loads(line)
        for f in tmp_path.glob("*.log*")
        for line in f.read_text().split("\n")
        if line
    ]
    return [line for line in lines if line["event"] == "request_completed"]


def test_a_client_request_id_is_masked_a_generated_one_is_written_as_is(tmp_path: Path) -> None:
    (sent,) = _lines(tmp_path / "sent", headers={"X-Request-ID": AWS_KEY})
    assert AWS_KEY not in json.dumps(sent)
    assert sent["request_id_source"] == "client"
    (ours,) = _lines(tmp_path / "ours")
    assert isinstance(ours["request_id"], str)
    assert len(ours["request_id"]) == 32
    int(ours["request_id"], 16)  # the generated id, verbatim


def test_path_user_and_bound_fields_are_masked_trusted_fields_kept(tmp_path: Path) -> None:
    (line,) = _lines(tmp_path, headers={"Authorization": "Bearer sekret-token-1234"})
    text = json.dumps(line)
    assert "alice@example.com" not in text
    assert "sekret-token" not in text
    assert "last4=1234" in line["headers"]["authorization"]  # type: ignore[index]
    assert list(line)[:5] == ["timestamp", "level", "logger", "event", "service"]
    assert line["route"] == "/users/{user}"
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert len(line["trace_id"]) == 32
    assert len(line["span_id"]) == 16
    assert "note" in line
    assert "user_id" in line
