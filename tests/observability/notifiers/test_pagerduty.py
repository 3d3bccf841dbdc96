"""PagerDuty Events API v2 notifier against a real loopback HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import pytest

from observability.alerting.notifiers import (
    Dispatcher,
    NotifierError,
    PagerDutyNotifier,
    RetryPolicy,
    Route,
)
from tests.observability.notifiers import make_notification
from tests.support.servers import RecordingHTTPServer

ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"
PD_SEVERITIES = {"critical", "error", "warning", "info"}
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_elapsed=5.0)


@pytest.fixture
def pagerduty(receiver: RecordingHTTPServer) -> Iterator[PagerDutyNotifier]:
    receiver.status = 202
    receiver.response_body = b'{"status":"success","message":"Event processed"}'
    notifier = PagerDutyNotifier(ROUTING_KEY, url=f"{receiver.url}/v2/enqueue")
    yield notifier
    notifier.close()


def test_trigger_then_resolve_share_one_dedup_key(
    pagerduty: PagerDutyNotifier, receiver: RecordingHTTPServer
) -> None:
    firing = make_notification(severity="critical")
    pagerduty.send(firing)
    pagerduty.send(make_notification(severity="critical", status="resolved"))

    trigger_req, resolve_req = receiver.wait_for(2)
    assert trigger_req.method == "POST"
    assert trigger_req.path == "/v2/enqueue"
    assert trigger_req.headers["Content-Type"] == "application/json"
    trigger, resolve = json.loads(trigger_req.body), json.loads(resolve_req.body)

    assert trigger["routing_key"] == resolve["routing_key"] == ROUTING_KEY
    assert trigger["event_action"] == "trigger"
    assert resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert 0 < len(trigger["dedup_key"]) <= 255

    payload = trigger["payload"]
    assert payload["severity"] == "critical"
    assert firing.title in payload["summary"]
    assert payload["source"]
    assert payload["component"] == "api"
    assert payload["group"] == "platform"
    assert payload["class"] == "ErrorRateHigh"
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
    details = payload["custom_details"]
    assert details["value"] == pytest.approx(0.073)
    assert details["threshold"] == pytest.approx(0.05)
    assert details["labels"]["service"] == "api"
    assert {link["text"] for link in trigger["links"]} == {"Runbook", "Dashboard", "Evidence"}
    assert all(link["href"].startswith("http") for link in trigger["links"])


def test_different_keys_get_different_dedup_keys(pagerduty: PagerDutyNotifier) -> None:
    first = pagerduty.build_event(make_notification(key="rule-a"))
    second = pagerduty.build_event(make_notification(key="rule-b"))
    assert first["dedup_key"] != second["dedup_key"]
    assert first["dedup_key"] == pagerduty.build_event(make_notification(key="rule-a"))["dedup_key"]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("critical", "critical"), ("high", "error"), ("medium", "warning"), ("low", "info")],
)
def test_severities_map_to_the_values_pagerduty_accepts(
    pagerduty: PagerDutyNotifier, ours: str, theirs: str
) -> None:
    event = pagerduty.build_event(make_notification(severity=ours))
    assert event["payload"]["severity"] == theirs
    assert theirs in PD_SEVERITIES


def test_summary_is_cut_to_the_api_limit(
    pagerduty: PagerDutyNotifier, receiver: RecordingHTTPServer
) -> None:
    pagerduty.send(make_notification(title="x" * 5000))
    (request,) = receiver.wait_for(1)
    assert len(json.loads(request.body)["payload"]["summary"]) <= 1024


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_throttling_and_server_errors_are_retryable(
    pagerduty: PagerDutyNotifier, receiver: RecordingHTTPServer, status: int
) -> None:
    receiver.statuses = [status]
    with pytest.raises(NotifierError) as caught:
        pagerduty.send(make_notification())
    assert caught.value.retryable
    assert caught.value.status_code == status


def test_bad_request_is_not_retried_and_hides_the_routing_key(
    pagerduty: PagerDutyNotifier, receiver: RecordingHTTPServer
) -> None:
    receiver.status = 400
    receiver.response_body = f'{{"status":"invalid event","key":"{ROUTING_KEY}"}}'.encode()
    with pytest.raises(NotifierError) as caught:
        pagerduty.send(make_notification())
    assert not caught.value.retryable
    assert ROUTING_KEY not in str(caught.value)
    assert ROUTING_KEY not in repr(pagerduty)


def test_dispatcher_retries_500_and_429_until_accepted(
    pagerduty: PagerDutyNotifier, receiver: RecordingHTTPServer
) -> None:
    receiver.statuses = [500, 429]
    routes = [Route(("pagerduty",))]
    with Dispatcher([pagerduty], routes=routes, retry=FAST_RETRY) as dispatcher:
        result = dispatcher.dispatch(make_notification(severity="critical"))
        stats = dispatcher.stats()
    outcome = result.outcome("pagerduty")
    assert outcome is not None
    assert outcome.delivered
    assert outcome.attempts == 3
    assert stats["retries"] == 2
    bodies = [json.loads(r.body) for r in receiver.wait_for(3)]
    assert len({b["dedup_key"] for b in bodies}) == 1  # retries resend the same event


def test_dispatcher_does_not_retry_a_rejected_event(
    pagerduty: PagerDutyNotifier, receiver: RecordingHTTPServer
) -> None:
    receiver.status = 400
    with Dispatcher([pagerduty], routes=[Route(("pagerduty",))], retry=FAST_RETRY) as dispatcher:
        result = dispatcher.dispatch(make_notification(severity="critical"))
    outcome = result.outcome("pagerduty")
    assert outcome is not None
    assert not outcome.delivered
    assert outcome.attempts == 1
    assert len(receiver.requests) == 1
