"""SNS notifier against a moto server, with real HTTP and SQS subscriptions."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from observability.alerting.notifiers import NotifierError, SnsNotifier
from observability.alerting.notifiers.sns import sns_subject
from tests.observability.notifiers import make_notification
from tests.support.servers import AWS_TEST_ENV, MotoServer, RecordingHTTPServer, free_port

pytestmark = pytest.mark.integration

REGION = AWS_TEST_ENV["AWS_DEFAULT_REGION"]


def _client(moto: MotoServer, service: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=moto.url)


def _topic(moto: MotoServer) -> str:
    name = f"alerts-{uuid.uuid4().hex[:8]}"  # unique: the moto server is shared by the session
    return str(_client(moto, "sns").create_topic(Name=name)["TopicArn"])


def _notifications(receiver: RecordingHTTPServer, count: int) -> list[dict[str, Any]]:
    """SNS 'Notification' envelopes delivered to the HTTP endpoint (skip confirmations)."""
    bodies = [json.loads(r.body) for r in receiver.wait_for(count)]
    return [b for b in bodies if b.get("Type") == "Notification"]


def test_publish_reaches_an_http_subscription(
    moto: MotoServer, receiver: RecordingHTTPServer
) -> None:
    topic = _topic(moto)
    _client(moto, "sns").subscribe(TopicArn=topic, Protocol="http", Endpoint=receiver.url + "/sns")
    notification = make_notification()
    SnsNotifier(topic, region_name=REGION, endpoint_url=moto.url).send(notification)

    (delivered,) = _notifications(receiver, 1)
    assert delivered["TopicArn"] == topic
    assert delivered["Subject"] == f"[HIGH][FIRING] {notification.title}"
    assert notification.summary in delivered["Message"]
    assert "value 0.073 (threshold 0.05)" in delivered["Message"]
    assert notification.runbook_url in delivered["Message"]


def test_message_attributes_carry_severity_and_status(moto: MotoServer) -> None:
    topic = _topic(moto)
    sqs = _client(moto, "sqs")
    queue_url = sqs.create_queue(QueueName=f"alerts-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    _client(moto, "sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    notifier = SnsNotifier(topic, region_name=REGION, endpoint_url=moto.url)
    notifier.send(make_notification(severity="critical", status="resolved"))

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=5)
    envelope = json.loads(messages["Messages"][0]["Body"])
    attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert attributes["severity"] == "critical"
    assert attributes["status"] == "resolved"
    assert attributes["source"] == "alert"
    assert len(attributes["dedup_key"]) == 64
    assert envelope["Subject"].startswith("[CRITICAL][RESOLVED]")


def test_a_topic_per_severity(moto: MotoServer, receiver: RecordingHTTPServer) -> None:
    sns = _client(moto, "sns")
    critical, high = _topic(moto), _topic(moto)
    sns.subscribe(TopicArn=critical, Protocol="http", Endpoint=receiver.url + "/critical")
    notifier = SnsNotifier(
        {"critical": critical, "high": high}, region_name=REGION, endpoint_url=moto.url
    )
    notifier.send(make_notification(severity="high"))  # to the other topic: nothing arrives here
    notifier.send(make_notification(severity="critical", title="page me"))

    delivered = _notifications(receiver, 1)
    assert [d["TopicArn"] for d in delivered] == [critical]
    assert "page me" in delivered[0]["Subject"]
    with pytest.raises(NotifierError, match="no topic") as caught:
        notifier.send(make_notification(severity="low"))
    assert not caught.value.retryable


def test_long_multiline_unicode_titles_still_publish(
    moto: MotoServer, receiver: RecordingHTTPServer
) -> None:
    title = "Ünïcödé\nlatency p99 ✈ " + "x" * 300
    subject = sns_subject(make_notification(title=title))
    assert len(subject) < 100
    assert subject.isascii()
    assert subject.isprintable()

    topic = _topic(moto)
    _client(moto, "sns").subscribe(TopicArn=topic, Protocol="http", Endpoint=receiver.url)
    SnsNotifier(topic, region_name=REGION, endpoint_url=moto.url).send(
        make_notification(title=title)
    )
    (delivered,) = _notifications(receiver, 1)
    assert delivered["Subject"] == subject
    assert title in delivered["Message"]  # the body keeps the original text


def test_missing_topic_is_a_final_error(moto: MotoServer) -> None:
    missing = f"arn:aws:sns:{REGION}:123456789012:does-not-exist-{uuid.uuid4().hex[:6]}"
    with pytest.raises(NotifierError) as caught:
        SnsNotifier(missing, region_name=REGION, endpoint_url=moto.url).send(make_notification())
    assert not caught.value.retryable


def test_unreachable_endpoint_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(key, value)  # signing needs credentials even when nobody listens
    notifier = SnsNotifier(
        f"arn:aws:sns:{REGION}:123456789012:alerts",
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        timeout=2,
    )
    with pytest.raises(NotifierError) as caught:
        notifier.send(make_notification())
    assert caught.value.retryable
