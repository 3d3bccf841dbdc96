"""Slack incoming-webhook notifier against a real loopback HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from observability.alerting.notifiers import (
    Dispatcher,
    NotifierError,
    RetryPolicy,
    Route,
    SlackNotifier,
)
from tests.observability.notifiers import make_notification
from tests.support.servers import RecordingHTTPServer

SECRET_PATH = "/services/T0000/B0000/XXXXSECRETXXXX"
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_elapsed=5.0)


@pytest.fixture
def slack(receiver: RecordingHTTPServer) -> Iterator[SlackNotifier]:
    notifier = SlackNotifier(receiver.url + SECRET_PATH)
    yield notifier
    notifier.close()


def _all_text(message: dict[str, Any]) -> str:
    """Every string in the message, flattened: what a reader can see."""
    return json.dumps(message, ensure_ascii=False)


def test_firing_message_says_what_value_since_severity_and_links(
    slack: SlackNotifier, receiver: RecordingHTTPServer
) -> None:
    notification = make_notification()
    slack.send(notification)
    (request,) = receiver.wait_for(1)
    assert request.path == SECRET_PATH
    message = json.loads(request.body)

    assert "FIRING" in message["text"]
    assert notification.title in message["text"]  # fallback for notifications and old clients
    assert message["blocks"][0]["type"] == "header"
    assert notification.title in message["blocks"][0]["text"]["text"]
    text = _all_text(message)
    assert "HIGH" in text
    assert "value 0.073 (threshold 0.05)" in text
    assert "since " in text
    assert "12m ago" in text
    assert f"<{notification.runbook_url}|Runbook>" in text
    assert f"<{notification.dashboard_url}|Dashboard>" in text
    assert "Evidence>" in text
    assert "service=api" in text


def test_resolved_message_is_distinct(slack: SlackNotifier, receiver: RecordingHTTPServer) -> None:
    started = datetime(2030, 1, 2, 3, 0, tzinfo=UTC)
    resolved_at = started + timedelta(minutes=12, seconds=30)
    notification = make_notification(status="resolved", started_at=started, resolved_at=resolved_at)
    slack.send(make_notification())
    slack.send(notification)
    firing, resolved = (json.loads(r.body) for r in receiver.wait_for(2))
    assert resolved["text"].startswith("RESOLVED")
    assert "FIRING" not in _all_text(resolved)
    assert ":white_check_mark:" in resolved["blocks"][0]["text"]["text"]
    assert "Resolved at 2030-01-02 03:12:30 UTC after 12m" in _all_text(resolved)
    assert resolved["blocks"][0] != firing["blocks"][0]


def test_markup_in_text_is_escaped(slack: SlackNotifier) -> None:
    message = slack.build_message(make_notification(summary="<!channel> a & b > c"))
    text = _all_text(message["blocks"])
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; a &amp; b &gt; c" in text


def test_blocks_respect_slack_limits(slack: SlackNotifier) -> None:
    message = slack.build_message(make_notification(title="t" * 500, description="d" * 9000))
    header = message["blocks"][0]["text"]["text"]
    assert len(header) <= 150
    for block in message["blocks"]:
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= 3000


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_server_errors_are_retryable(
    slack: SlackNotifier, receiver: RecordingHTTPServer, status: int
) -> None:
    receiver.statuses = [status]
    with pytest.raises(NotifierError) as caught:
        slack.send(make_notification())
    assert caught.value.retryable


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_final_and_never_show_the_webhook_url(
    slack: SlackNotifier, receiver: RecordingHTTPServer, status: int
) -> None:
    receiver.status = status
    receiver.response_body = f"no_service {receiver.url}{SECRET_PATH}".encode()
    with pytest.raises(NotifierError) as caught:
        slack.send(make_notification())
    assert not caught.value.retryable
    assert "SECRET" not in str(caught.value)
    assert "SECRET" not in repr(slack)


def test_retry_after_is_honoured_and_capped() -> None:
    answers = iter(["7", "3600", "Wed, 21 Oct 2015 07:28:00 GMT"])

    def throttled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": next(answers)}, text="rate_limited")

    client = httpx.Client(transport=httpx.MockTransport(throttled))
    slack = SlackNotifier("https://hooks.invalid/x", http_client=client, max_retry_after=30)
    waits = []
    for _ in range(3):
        with pytest.raises(NotifierError) as caught:
            slack.send(make_notification())
        assert caught.value.retryable
        waits.append(caught.value.retry_after)
    assert waits == [7.0, 30.0, 0.0]  # seconds, capped, a date already past
    client.close()


def test_dispatcher_retries_until_slack_recovers(
    slack: SlackNotifier, receiver: RecordingHTTPServer
) -> None:
    receiver.statuses = [503, 429, 500]
    with Dispatcher([slack], routes=[Route(("slack",))], retry=FAST_RETRY) as dispatcher:
        result = dispatcher.dispatch(make_notification())
    outcome = result.outcome("slack")
    assert outcome is not None
    assert outcome.delivered
    assert outcome.attempts == 4
    bodies = {r.body for r in receiver.wait_for(4)}
    assert len(bodies) == 1  # every retry carries the same message
