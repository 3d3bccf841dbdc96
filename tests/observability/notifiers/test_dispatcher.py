"""The dispatcher: routing, isolation of a failing or slow receiver, retries, fallback,
masking, dedup, and the notification log (in memory, SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import boto3
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from observability.alerting.notifiers import (
    DEFAULT_ROUTES,
    Deduplicator,
    Dispatcher,
    EmailNotifier,
    Notification,
    NotificationLog,
    Notifier,
    NotifierError,
    PagerDutyNotifier,
    RetryPolicy,
    Route,
    SlackNotifier,
    SnsNotifier,
    routes_from_table,
)
from tests.observability.notifiers import make_notification, smtp_server
from tests.support.servers import (
    LOOPBACK,
    MotoServer,
    RecordingHTTPServer,
    free_port,
    unavailable,
)

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_elapsed=5.0)
CANARY = "sk_live_CANARY_9f8e7d6c5b4a"


@dataclass
class MemoryNotifier:
    """An in-process receiver for routing tests: records what it was given."""

    name: str
    fail_times: int = 0
    retryable: bool = True
    sent: list[Notification] = field(default_factory=list)

    def send(self, notification: Notification) -> None:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise NotifierError(f"{self.name}: down", retryable=self.retryable)
        self.sent.append(notification)


@dataclass
class BlockingNotifier:
    """A receiver that hangs until the test releases it (a slow receiver, made certain)."""

    name: str = "slow"
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def send(self, notification: Notification) -> None:
        self.entered.set()
        if not self.release.wait(timeout=30):
            raise NotifierError("slow: never released", retryable=False)


def _memory(*names: str) -> dict[str, MemoryNotifier]:
    return {name: MemoryNotifier(name) for name in names}


def _unused_url() -> str:
    return f"http://{LOOPBACK}:{free_port()}/hook"  # nothing listens: connection refused


@pytest.fixture
def pagerduty_receiver() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer(status=202) as server:
        yield server


# -- routing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        ("critical", {"pagerduty"}),
        ("high", {"slack", "email"}),
        ("medium", {"slack"}),
        ("low", set()),
    ],
)
def test_default_routes_by_severity(severity: str, expected: set[str]) -> None:
    notifiers = _memory("pagerduty", "slack", "email")
    with Dispatcher(notifiers, retry=FAST_RETRY) as dispatcher:
        result = dispatcher.dispatch(make_notification(severity=severity))
    got = {name for name, n in notifiers.items() if n.sent}
    assert got == expected
    assert {o.receiver for o in result.outcomes if o.delivered} == expected
    if not expected:  # low: dashboards only, but the log says why nobody was told
        (record,) = dispatcher.log.recent(10)
        assert record.outcome == "unrouted"


def test_routing_table_is_configurable() -> None:
    notifiers = _memory("sns", "slack")
    routes = routes_from_table({"critical": ["sns", "slack"], "low": ["slack"]})
    with Dispatcher(notifiers, routes=routes, retry=FAST_RETRY) as dispatcher:
        dispatcher.dispatch(make_notification(severity="low"))
        dispatcher.dispatch(make_notification(severity="critical"))
        dispatcher.dispatch(make_notification(severity="high"))  # no route: nobody
    assert [n.severity for n in notifiers["slack"].sent] == ["low", "critical"]
    assert [n.severity for n in notifiers["sns"].sent] == ["critical"]


def test_label_matchers_route_before_the_severity_table() -> None:
    notifiers = _memory("pagerduty", "slack", "email", "payments-slack", "errors-mail")
    routes = [
        Route(("payments-slack",), labels={"team": "payments"}, continue_matching=True),
        Route(("errors-mail",), source="error", label_patterns={"service": "api|web"}),
        *DEFAULT_ROUTES,
    ]
    with Dispatcher(notifiers, routes=routes, retry=FAST_RETRY) as dispatcher:
        payments = dispatcher.dispatch(make_notification(labels={"team": "payments"}))
        error = dispatcher.dispatch(make_notification(source="error", labels={"service": "web"}))
        other = dispatcher.dispatch(make_notification(source="error", labels={"service": "db"}))
    assert [o.receiver for o in payments.outcomes] == ["payments-slack", "slack", "email"]
    assert [o.receiver for o in error.outcomes] == ["errors-mail"]  # first match, no continue
    assert [o.receiver for o in other.outcomes] == ["slack", "email"]  # high, by severity


def test_unconfigured_receivers_are_reported_not_raised() -> None:
    with Dispatcher(_memory("slack"), retry=FAST_RETRY) as dispatcher:
        assert dispatcher.unknown_receivers == ("email", "pagerduty")
        result = dispatcher.dispatch(make_notification(severity="high"))
    email = result.outcome("email")
    assert email is not None
    assert not email.delivered
    assert email.error == "receiver not configured"
    slack = result.outcome("slack")
    assert slack is not None
    assert slack.delivered
    assert result.delivered


def test_a_bad_fallback_name_fails_at_start() -> None:
    with pytest.raises(ValueError, match="fallback receiver 'pager'"):
        Dispatcher(_memory("slack"), fallback="pager")


# -- isolation, retries, fallback -------------------------------------------------------


def test_one_receiver_down_does_not_fail_the_others(
    pagerduty_receiver: RecordingHTTPServer,
) -> None:
    pagerduty = PagerDutyNotifier("routing-key", url=pagerduty_receiver.url)
    slack = SlackNotifier(_unused_url())
    routes = [Route(("pagerduty", "slack", "email"))]
    with smtp_server() as smtp:
        email = EmailNotifier(
            host=LOOPBACK, port=smtp.port, sender="a@example.test", recipients=["b@example.test"]
        )
        with Dispatcher([pagerduty, slack, email], routes=routes, retry=FAST_RETRY) as dispatcher:
            result = dispatcher.dispatch(make_notification(severity="critical"))
            stats = dispatcher.stats()
        assert len(smtp.handler.messages) == 1
    pagerduty.close()
    slack.close()

    assert len(pagerduty_receiver.requests) == 1
    outcomes = {o.receiver: o for o in result.outcomes}
    assert outcomes["pagerduty"].delivered
    assert outcomes["pagerduty"].attempts == 1
    assert outcomes["email"].delivered
    assert outcomes["email"].attempts == 1
    assert not outcomes["slack"].delivered
    assert outcomes["slack"].attempts == FAST_RETRY.max_attempts  # refused is worth retrying
    assert "ConnectError" in (outcomes["slack"].error or "")
    assert stats["retries"] == FAST_RETRY.max_attempts - 1
    assert stats["delivered"] == 2
    assert stats["failed"] == 1
    assert not result.fallback_used  # some receivers delivered


def test_a_slow_receiver_does_not_hold_back_the_others(receiver: RecordingHTTPServer) -> None:
    slow = BlockingNotifier()
    slack = SlackNotifier(receiver.url)
    dispatcher = Dispatcher([slow, slack], routes=[Route(("slow", "slack"))], retry=FAST_RETRY)
    try:
        futures = [dispatcher.submit(make_notification(key=f"k{i}")) for i in range(3)]
        # All three reach Slack while the slow receiver still holds its first call.
        assert len(receiver.wait_for(3)) == 3
        assert slow.entered.is_set()
        assert not any(f is None or f.done() for f in futures)
        slow.release.set()
        results = [f.result(timeout=30) for f in futures if f is not None]
    finally:
        slow.release.set()
        dispatcher.close()
        slack.close()
    assert all(r.outcome("slow").delivered for r in results)  # type: ignore[union-attr]
    assert all(r.outcome("slack").delivered for r in results)  # type: ignore[union-attr]


def test_retries_are_counted_and_bounded() -> None:
    flaky = MemoryNotifier("slack", fail_times=2)
    with Dispatcher([flaky], routes=[Route(("slack",))], retry=FAST_RETRY) as dispatcher:
        result = dispatcher.dispatch(make_notification())
        assert result.outcome("slack").attempts == 3  # type: ignore[union-attr]
        assert dispatcher.stats()["retries"] == 2

        never = MemoryNotifier("slack", fail_times=100)
    with Dispatcher([never], routes=[Route(("slack",))], retry=FAST_RETRY) as dispatcher:
        result = dispatcher.dispatch(make_notification())
    assert result.outcome("slack").attempts == FAST_RETRY.max_attempts  # type: ignore[union-attr]
    (record,) = dispatcher.log.recent(5)
    assert record.outcome == "failed"
    assert record.attempts == FAST_RETRY.max_attempts


def test_total_retry_time_is_bounded_even_with_a_long_retry_after() -> None:
    class Throttled(MemoryNotifier):
        def send(self, notification: Notification) -> None:
            self.sent.append(notification)
            raise NotifierError("slack: HTTP 429", retryable=True, retry_after=3600)

    throttled = Throttled("slack")
    policy = RetryPolicy(max_attempts=5, base_delay=0.01, max_elapsed=1.0)
    with Dispatcher([throttled], routes=[Route(("slack",))], retry=policy) as dispatcher:
        result = dispatcher.dispatch(make_notification())
    # Waiting an hour would break the time budget, so the dispatcher gives up at once.
    assert result.outcome("slack").attempts == 1  # type: ignore[union-attr]
    assert len(throttled.sent) == 1


def test_fallback_is_used_when_every_receiver_of_the_route_failed(
    receiver: RecordingHTTPServer,
) -> None:
    slack = SlackNotifier(_unused_url())
    email = EmailNotifier(
        host=LOOPBACK, port=free_port(), sender="a@example.test", recipients=["b@example.test"]
    )
    backup = SlackNotifier(receiver.url, name="backup-webhook")
    with Dispatcher(
        [slack, email, backup], fallback="backup-webhook", retry=FAST_RETRY
    ) as dispatcher:
        result = dispatcher.dispatch(make_notification(severity="high"))
        stats = dispatcher.stats()
    for notifier in (slack, backup):
        notifier.close()

    assert result.fallback_used
    assert result.delivered
    assert [(o.receiver, o.delivered, o.fallback) for o in result.outcomes] == [
        ("slack", False, False),
        ("email", False, False),
        ("backup-webhook", True, True),
    ]
    assert stats["fallback_used"] == 1
    assert len(receiver.wait_for(1)) == 1
    logged = dispatcher.log.recent(10, receiver="backup-webhook")
    assert [(r.outcome, r.fallback) for r in logged] == [("delivered", True)]


def test_fallback_is_not_used_when_a_receiver_delivered() -> None:
    notifiers = {**_memory("email", "backup"), "slack": MemoryNotifier("slack", fail_times=9)}
    with Dispatcher(notifiers, fallback="backup", retry=FAST_RETRY) as dispatcher:
        result = dispatcher.dispatch(make_notification(severity="high"))
    assert not result.fallback_used
    assert notifiers["backup"].sent == []


def test_receivers_never_raise_into_the_caller() -> None:
    class Broken(MemoryNotifier):
        def send(self, notification: Notification) -> None:
            raise RuntimeError("bug in a notifier")

    with Dispatcher([Broken("slack")], routes=[Route(("slack",))], retry=FAST_RETRY) as d:
        result = d.dispatch(make_notification())
        future = d.submit(make_notification())
        assert future is not None
        assert not future.result(timeout=10).delivered
        assert d.stats()["internal_errors"] == 2
    assert not result.delivered
    assert "RuntimeError" in (result.outcomes[0].error or "")
    assert d.submit(make_notification()) is None  # closed: dropped, not raised
    assert d.stats()["dropped"] == 1


# -- masking ----------------------------------------------------------------------------


def _mask(text: str) -> str:
    return text.replace(CANARY, "[MASKED]")


@pytest.mark.integration
def test_secrets_never_reach_a_receiver_or_the_log(
    receiver: RecordingHTTPServer,
    pagerduty_receiver: RecordingHTTPServer,
    moto: MotoServer,
    tmp_path: Path,
) -> None:
    secret_notification = make_notification(
        key=f"rule|token={CANARY}",
        severity="critical",
        title=f"login failures for {CANARY}",
        summary=f"token {CANARY} rejected 40 times",
        description=f"Authorization: Bearer {CANARY}",
        labels={"api_key": CANARY, f"x-{CANARY}": "v"},
        evidence_url=f"http://127.0.0.1/logs?q={CANARY}",
    )
    # A rejecting receiver that echoes the secret back: the error text must be masked too.
    rejecting = RecordingHTTPServer(status=400, response_body=f"bad field {CANARY}".encode())
    sns_endpoint = RecordingHTTPServer()
    db_path = tmp_path / "log.db"
    log = NotificationLog(engine=sa.create_engine(f"sqlite:///{db_path}"))
    log.create_schema()
    with rejecting, sns_endpoint, smtp_server() as smtp, capture_logs() as logged:
        sns = boto3.client("sns", region_name="us-east-1", endpoint_url=moto.url)
        topic = sns.create_topic(Name=f"canary-{uuid.uuid4().hex[:8]}")["TopicArn"]
        sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=sns_endpoint.url)
        notifiers: list[Notifier] = [
            PagerDutyNotifier("routing-key", url=pagerduty_receiver.url),
            SlackNotifier(receiver.url),
            SlackNotifier(rejecting.url, name="rejecting"),
            EmailNotifier(
                host=LOOPBACK, port=smtp.port, sender="a@example.test", recipients=["b@x.test"]
            ),
            SnsNotifier(topic, region_name="us-east-1", endpoint_url=moto.url),
        ]
        routes = [Route(("pagerduty", "slack", "rejecting", "email", "sns"))]
        with Dispatcher(
            notifiers, routes=routes, retry=FAST_RETRY, mask=_mask, log=log
        ) as dispatcher:
            for status in ("firing", "resolved"):
                result = dispatcher.dispatch(replace(secret_notification, status=status))
        for notifier in notifiers:
            getattr(notifier, "close", lambda: None)()
        raw = [
            r.body
            for server in (pagerduty_receiver, receiver, rejecting, sns_endpoint)
            for r in server.requests
        ]
        raw += [m.as_bytes() for m in smtp.handler.messages]
        published = [json.loads(r.body) for r in sns_endpoint.requests]

    assert len([p for p in published if p.get("Type") == "Notification"]) == 2
    assert len(raw) >= 5 * 2  # every receiver got firing and resolved
    assert all(CANARY.encode() not in body for body in raw)
    assert any(b"[MASKED]" in body for body in raw)
    assert CANARY not in repr(result)
    records = log.recent(50)
    assert len(records) == 10
    assert CANARY not in repr(records)
    assert any("[MASKED]" in (r.error or "") for r in records)
    assert CANARY.encode() not in db_path.read_bytes()
    failed = [e for e in logged if e["event"] == "notification_failed"]
    assert failed
    # The alert's status has its own name: `status` is a request line's HTTP status.
    assert {e["alert_status"] for e in failed} == {"firing", "resolved"}
    assert not any("status" in e for e in failed)
    assert CANARY not in repr(logged)
    # Trigger and resolve still pair up: masking is deterministic.
    trigger, resolve = (json.loads(r.body) for r in pagerduty_receiver.requests)
    assert trigger["dedup_key"] == resolve["dedup_key"]


def test_a_failing_mask_drops_the_notification_rather_than_leak() -> None:
    def broken_mask(text: str) -> str:
        raise RuntimeError(f"cannot mask {text}")

    slack = MemoryNotifier("slack")
    with Dispatcher([slack], routes=[Route(("slack",))], mask=broken_mask) as dispatcher:
        result = dispatcher.dispatch(make_notification(title=CANARY))
    assert slack.sent == []
    assert result.error == "masking failed: RuntimeError"
    assert CANARY not in repr(result)


# -- dedup ------------------------------------------------------------------------------


def test_dedup_suppresses_repeats_within_the_window_and_counts_them() -> None:
    now = [1000.0]
    dedup = Deduplicator(window_seconds=60, clock=lambda: now[0])
    slack = MemoryNotifier("slack")
    with Dispatcher([slack], routes=[Route(("slack",))], dedup=dedup) as dispatcher:
        first = dispatcher.dispatch(make_notification())
        repeat = dispatcher.dispatch(make_notification())
        resolved = dispatcher.dispatch(make_notification(status="resolved"))
        other = dispatcher.dispatch(make_notification(key="another-rule"))
        now[0] += 61
        later = dispatcher.dispatch(make_notification())
        stats = dispatcher.stats()
    assert [first.suppressed, repeat.suppressed, resolved.suppressed] == [False, True, False]
    assert not other.suppressed
    assert not later.suppressed
    assert len(slack.sent) == 4
    assert dedup.suppressed == 1
    assert stats["suppressed"] == 1
    assert [r.outcome for r in dispatcher.log.recent(10)].count("suppressed") == 1


def test_dedup_lets_a_retry_through_when_nothing_was_delivered() -> None:
    dedup = Deduplicator(window_seconds=600)
    slack = MemoryNotifier("slack", fail_times=1, retryable=False)
    with Dispatcher([slack], routes=[Route(("slack",))], dedup=dedup) as dispatcher:
        assert not dispatcher.dispatch(make_notification()).delivered
        assert dispatcher.dispatch(make_notification()).delivered


def test_dedup_is_bounded() -> None:
    dedup = Deduplicator(window_seconds=600, max_keys=2)
    for key in ("a", "b", "c"):
        assert dedup.allow(key, "firing")
    assert dedup.allow("a", "firing")  # forgotten: the oldest key was evicted
    assert not dedup.allow("c", "firing")


# -- submit, metrics, log ---------------------------------------------------------------


def test_submit_is_bounded_and_close_drains(receiver: RecordingHTTPServer) -> None:
    slow = BlockingNotifier()
    dispatcher = Dispatcher([slow], routes=[Route(("slow",))], max_pending=2)
    first = dispatcher.submit(make_notification(key="a"))
    second = dispatcher.submit(make_notification(key="b"))
    third = dispatcher.submit(make_notification(key="c"))
    assert first is not None
    assert second is not None
    assert third is None
    assert dispatcher.stats()["dropped"] == 1
    slow.release.set()
    dispatcher.close()  # drains: both in-flight notifications finish
    assert first.done()
    assert second.done()
    assert first.result().delivered
    assert second.result().delivered


def test_prometheus_counter_by_receiver_and_outcome() -> None:
    registry = CollectorRegistry()
    notifiers = {"slack": MemoryNotifier("slack"), "email": MemoryNotifier("email", fail_times=9)}
    with Dispatcher(notifiers, retry=FAST_RETRY, registry=registry) as dispatcher:
        dispatcher.dispatch(make_notification(severity="high"))
    value = registry.get_sample_value
    assert value("notifications_total", {"receiver": "slack", "outcome": "delivered"}) == 1
    assert value("notifications_total", {"receiver": "email", "outcome": "failed"}) == 1


def test_log_ring_is_bounded_and_filters_by_receiver() -> None:
    log = NotificationLog(capacity=3)
    with Dispatcher(_memory("slack", "email"), retry=FAST_RETRY, log=log) as dispatcher:
        for i in range(3):
            dispatcher.dispatch(make_notification(key=f"k{i}", severity="high"))
    records = log.recent(10)
    assert len(records) == 3  # 6 written, 3 kept
    assert records[0].key == "k2"  # newest first
    assert [(r.key, r.receiver) for r in records] == [
        ("k2", "email"),
        ("k2", "slack"),
        ("k1", "email"),
    ]
    assert [r.key for r in log.recent(10, receiver="email")] == ["k2", "k1"]


@pytest.fixture
def postgres_engine() -> Iterator[sa.Engine]:
    admin = sa.create_engine("postgresql+psycopg://root@127.0.0.1:5432/test")
    schema = f"notifiers_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        unavailable(f"PostgreSQL is not reachable: {exc}")
    engine = sa.create_engine(
        "postgresql+psycopg://root@127.0.0.1:5432/test",
        connect_args={"options": f"-csearch_path={schema}"},
    )
    yield engine
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.mark.integration
def test_log_persists_to_postgresql_and_survives_a_restart(postgres_engine: sa.Engine) -> None:
    log = NotificationLog(engine=postgres_engine)
    log.create_schema()
    notifiers = {"slack": MemoryNotifier("slack"), "email": MemoryNotifier("email", fail_times=9)}
    with Dispatcher(notifiers, retry=FAST_RETRY, log=log, mask=_mask) as dispatcher:
        dispatcher.dispatch(make_notification(severity="high", title="t" * 2000))
        dispatcher.dispatch(make_notification(severity="medium", key="m"))

    reopened = NotificationLog(engine=postgres_engine)  # a new process: empty ring
    records = reopened.recent(10)
    assert [(r.key, r.receiver, r.outcome) for r in records] == [
        ("m", "slack", "delivered"),  # newest first
        (records[1].key, "email", "failed"),
        (records[1].key, "slack", "delivered"),
    ]
    assert len(records[1].title) == 512  # cut to the column size PostgreSQL enforces
    assert {r.receiver for r in reopened.recent(10, receiver="email")} == {"email"}
    failed = reopened.recent(1, receiver="email")[0]
    assert failed.attempts == FAST_RETRY.max_attempts
    assert failed.error == "email: down"
    assert failed.at.tzinfo is not None
    assert reopened.persist_failures == 0
    assert log.persist_failures == 0


def test_a_broken_database_never_breaks_delivery(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'log.db'}")  # no such dir
    log = NotificationLog(engine=engine)
    slack = MemoryNotifier("slack")
    with Dispatcher([slack], routes=[Route(("slack",))], log=log) as dispatcher:
        assert dispatcher.dispatch(make_notification()).delivered
    assert log.persist_failures == 1
    assert [r.receiver for r in log.recent(5)] == ["slack"]  # the ring still answers
    assert log.read_failures == 1
