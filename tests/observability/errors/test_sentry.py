"""The Sentry bridge against a local envelope receiver: our fingerprint, tags, and no secrets."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk

from observability.errors.fingerprint import Fingerprinter
from observability.errors.sentry import (
    capture_to_sentry,
    init_sentry,
    make_before_send,
    sentry_failures,
    shutdown_sentry,
)
from observability.errors.store import ErrorStore
from observability.errors.tracker import ErrorTracker
from tests.observability.errors import CANARIES, canary_mask
from tests.support.servers import RecordedRequest, RecordingHTTPServer

PASSWORD, TOKEN, BODY = CANARIES


def raw_body(request: RecordedRequest) -> bytes:
    """The envelope bytes, whether the SDK gzipped them or not."""
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        return gzip.decompress(request.body)
    return request.body


def envelope_items(body: bytes) -> list[tuple[dict[str, Any], Any]]:
    """Parse a Sentry envelope: a header line, then (item header, payload) pairs."""
    items: list[tuple[dict[str, Any], Any]] = []
    _, _, rest = body.partition(b"\n")
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] :].lstrip(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((header, json.loads(payload) if payload.startswith(b"{") else payload))
    return items


def events_from(requests: list[RecordedRequest]) -> list[tuple[bytes, dict[str, Any]]]:
    found = []
    for request in requests:
        body = raw_body(request)
        for header, payload in envelope_items(body):
            if header.get("type") == "event":
                found.append((body, payload))
    return found


@pytest.fixture
def sentry(receiver: RecordingHTTPServer) -> Iterator[RecordingHTTPServer]:
    yield receiver
    shutdown_sentry()


def start(receiver: RecordingHTTPServer, **options: Any) -> None:
    init_sentry(
        f"http://public@127.0.0.1:{receiver.port}/1",
        "staging",
        "experimentation-platform@1.4.2",
        canary_mask,
        **options,
    )


def checkout(card_password: str) -> None:
    session_token = TOKEN  # a frame local Sentry would otherwise ship  # noqa: F841
    raise PermissionError(f"checkout refused for password={card_password} CANARY-55de-BODY")


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_event_carries_our_fingerprint_tags_and_no_secrets(
    sentry: RecordingHTTPServer, compression: str
) -> None:
    options = {"_experiments": {"transport_compression_level": 0}} if compression == "none" else {}
    start(sentry, **options)
    sentry_sdk.add_breadcrumb(message=f"login with {PASSWORD}", data={"token": TOKEN})
    try:
        checkout(PASSWORD)
    except PermissionError as exc:
        event_id = capture_to_sentry(
            exc,
            {
                "request_id": "req-42",
                "trace_id": "trace-42",
                "route": "/experiments/{key}",
                "method": "POST",
                "user_id": "user-9",
                "tags": {"area": "billing"},
                "headers": {"Authorization": f"Bearer {TOKEN}", "X-Debug": BODY},
                "body": {"password": PASSWORD, "note": f"hello {BODY}"},
                "principal": f"svc {TOKEN}",
            },
            "0123456789abcdef",
        )
    assert event_id is not None
    sentry_sdk.flush(timeout=5)
    requests = sentry.wait_for(1)
    assert all(r.path == "/api/1/envelope/" for r in requests)
    [(body, event)] = events_from(requests)

    assert event["fingerprint"] == ["0123456789abcdef"]
    assert event["environment"] == "staging"
    assert event["release"] == "experimentation-platform@1.4.2"
    tags = event["tags"]
    assert (tags["request_id"], tags["trace_id"], tags["route"], tags["area"]) == (
        "req-42",
        "trace-42",
        "/experiments/{key}",
        "billing",
    )
    assert event["request"]["method"] == "POST"
    assert event["request"]["headers"]["Authorization"] == "[MASKED]"
    assert "[MASKED]" in event["exception"]["values"][0]["value"]
    for canary in CANARIES:
        assert canary.encode() not in body
    if compression == "gzip":
        assert requests[0].headers.get("Content-Encoding") == "gzip"


def test_tracker_sends_its_fingerprint_to_sentry(
    sentry: RecordingHTTPServer, tmp_path: Path
) -> None:
    start(sentry)
    store = ErrorStore.from_url(f"sqlite:///{tmp_path / 'errors.db'}")
    store.create_schema()
    tracker = ErrorTracker(
        store,
        mask=canary_mask,
        fingerprinter=Fingerprinter([__name__]),
        sentry=capture_to_sentry,
    )
    try:
        checkout(PASSWORD)
    except PermissionError as exc:
        fp = tracker.capture(exc, {"request_id": "req-7", "headers": {"Cookie": TOKEN}})
    assert tracker.flush()
    tracker.close()
    store.dispose()
    sentry_sdk.flush(timeout=5)
    [(body, event)] = events_from(sentry.wait_for(1))
    assert event["fingerprint"] == [fp]
    assert event["tags"]["request_id"] == "req-7"
    for canary in CANARIES:
        assert canary.encode() not in body


def test_masking_failure_drops_the_event() -> None:
    def broken(value: Any) -> Any:
        raise RuntimeError("policy crashed")

    before = sentry_failures()
    before_send = make_before_send(broken)
    assert before_send({"message": "x", "exception": {"values": [{"value": "y"}]}}, {}) is None
    assert sentry_failures() == before + 1


def test_before_send_masks_every_section() -> None:
    frame = {"vars": {"password": PASSWORD}, "context_line": f"x = '{TOKEN}'"}
    event: dict[str, Any] = {
        "message": f"m {PASSWORD}",
        "logentry": {"message": f"m {TOKEN}", "params": [BODY]},
        "exception": {"values": [{"value": BODY, "stacktrace": {"frames": [frame]}}]},
        "threads": {"values": [{"stacktrace": {"frames": [dict(frame)]}}]},
        "request": {"data": BODY, "cookies": {"session": TOKEN}, "query_string": PASSWORD},
        "extra": {"note": TOKEN},
        "contexts": {"request_context": {"principal": PASSWORD}},
        "user": {"id": BODY},
        "breadcrumbs": {"values": [{"message": TOKEN, "data": {"x": PASSWORD}}]},
    }
    scrubbed = make_before_send(canary_mask)(event, {})
    text = json.dumps(scrubbed)
    for canary in CANARIES:
        assert canary not in text


def test_capture_without_init_is_harmless() -> None:
    assert capture_to_sentry(RuntimeError("x"), {}, "fp") is None
