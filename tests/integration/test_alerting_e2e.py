"""Alerting end to end with real components.

Path 1 (scale-out): two uvicorn processes of a small test app (ObservabilityMiddleware plus
prometheus_client instruments named like the platform's) -> real Prometheus scraping both,
loaded with rules rendered from a short-window test rule set -> real Alertmanager with the
rendered configuration -> local Slack and PagerDuty receivers. An induced 5xx burst must reach
both receivers with well-formed payloads, and the resolve must follow recovery.

Path 2 (embedded): the same scenario without Prometheus: the app in-process, rolling windows,
the embedded evaluator and the real Dispatcher -> e-mail at an aiosmtpd server and SNS at the
moto server (delivered to an HTTP subscription).

Only the windows are short (configuration); the code paths are the production ones.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.testclient import TestClient

from observability.alerting.alertmanager_render import (
    PagerDutyReceiver,
    SlackReceiver,
    render_alertmanager_config,
)
from observability.alerting.evaluator import Evaluator, EvaluatorConfig
from observability.alerting.grouping import Grouping
from observability.alerting.notifiers import (
    Dispatcher,
    EmailNotifier,
    RetryPolicy,
    SnsNotifier,
    routes_from_table,
)
from observability.alerting.prometheus_render import render_rules_yaml, to_yaml
from observability.alerting.rules import BurnWindow, Rule, SloRule, ThresholdRule
from observability.asgi import ObservabilityMiddleware, RequestRecord
from observability.metrics.windows import RollingWindows
from observability.query.live import LiveSource
from observability.query.model import ErrorRatio
from observability.query.promql import PromNames
from tests.observability.notifiers import smtp_server
from tests.support.servers import (
    AWS_TEST_ENV,
    LOOPBACK,
    ManagedProcess,
    MotoServer,
    RecordingHTTPServer,
    free_port,
    require_binary,
    wait_for_http,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
FLAG_ENV = "E2E_ALERTING_FAIL_FLAG"
ROUTING_KEY = "e2e-routing-key-0123456789abcdef"  # a canary: checked where it must appear

# The test rule set: production rule types, seconds-long windows.
RULES: tuple[Rule, ...] = (
    SloRule(
        "e2e_availability",
        objective=0.9,  # budget 10%: a burn rate of 2 means 20% of requests fail
        sli=ErrorRatio(),
        windows=(BurnWindow(long_s=10, short_s=5, burn_rate=2.0, action="page"),),
        summary="burning the error budget at {value:.1f}x",
        labels={"service": "e2e", "signal": "availability"},
    ),
    ThresholdRule(
        "e2e_error_spike",
        expr=ErrorRatio(window_s=5),
        comparison=">",
        threshold=0.3,
        severity="high",
        summary="5xx ratio {value:.0%}",
        labels={"service": "e2e", "signal": "errors"},
    ),
)
GROUPING = Grouping(
    group_by=("alertname",), group_wait_s=1, group_interval_s=1, repeat_interval_s=3600
)


# -- the test app (the Prometheus metrics module is written elsewhere: minimal instruments) -----
def create_test_app() -> FastAPI:
    """Served by uvicorn in a child process: `/work` fails while the flag file exists."""
    flag = Path(os.environ[FLAG_ENV])
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests", "Requests.", ["method", "route", "status_class"], registry=registry
    )
    duration = Histogram(
        "http_request_duration_seconds",
        "Latency.",
        ["method", "route"],
        buckets=(0.05, 0.3, 1.0),
        registry=registry,
    )
    for cls in ("2xx", "5xx"):  # pre-created: rate() needs the series before the first error
        requests.labels("GET", "/work", cls)

    def observe(record: RequestRecord) -> None:
        if record.route == "/metrics":
            return
        requests.labels(record.method, record.route, f"{record.status // 100}xx").inc()
        duration.labels(record.method, record.route).observe(record.duration_s)

    app = FastAPI()

    @app.get("/work")
    def work() -> Response:
        if flag.exists():
            return JSONResponse({"error": "induced"}, status_code=500)
        return JSONResponse({"ok": True})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    app.add_middleware(ObservabilityMiddleware, observers=[observe])
    return app


class Traffic:
    """Background GET /work against every target until stopped (bounded by `stop`)."""

    def __init__(self, send: Callable[[int], None], targets: int, per_second: float) -> None:
        self._send, self._targets, self._pause = send, targets, 1.0 / per_second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            for i in range(self._targets):
                try:
                    self._send(i)
                    self.sent += 1
                except httpx.HTTPError:
                    pass
            self._stop.wait(self._pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _bodies(server: RecordingHTTPServer) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in list(server.requests) if r.body]


# -- path 1: Prometheus + Alertmanager ----------------------------------------------------------
@pytest.fixture
def apps(tmp_path: Path) -> Iterator[tuple[list[int], Path]]:
    flag = tmp_path / "fail"
    env = {**os.environ, FLAG_ENV: str(flag)}
    ports = [free_port(), free_port()]
    procs = []
    for port in ports:
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.integration.test_alerting_e2e:create_test_app",
        ]
        args += ["--factory", "--host", LOOPBACK, "--port", str(port), "--no-access-log"]
        args += ["--log-level", "warning"]
        procs.append(
            ManagedProcess(args, env=env, cwd=ROOT, log_path=tmp_path / f"app-{port}.log").start()
        )
    try:
        for port in ports:
            wait_for_http(f"http://{LOOPBACK}:{port}/metrics", timeout=30)
        yield ports, flag
    finally:
        for proc in procs:
            proc.stop()


def test_burst_reaches_slack_and_pagerduty_through_prometheus_and_alertmanager(
    apps: tuple[list[int], Path], tmp_path: Path
) -> None:
    prometheus = require_binary("prometheus")
    alertmanager = require_binary("prometheus-alertmanager")
    ports, flag = apps
    with RecordingHTTPServer() as slack, RecordingHTTPServer(status=202) as pagerduty:
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "routing_key").write_text(ROUTING_KEY)
        (secrets / "slack_url").write_text(f"{slack.url}/services/T0/B0/x")
        am_config = render_alertmanager_config(
            {"critical": ["pagerduty"], "high": ["slack"]},
            [
                PagerDutyReceiver(
                    routing_key_file=str(secrets / "routing_key"),
                    url=f"{pagerduty.url}/v2/enqueue",
                ),
                SlackReceiver(api_url_file=str(secrets / "slack_url"), channel="#e2e"),
            ],
            grouping=GROUPING,
        )
        (tmp_path / "alertmanager.yml").write_text(to_yaml(am_config))
        (tmp_path / "rules.yml").write_text(render_rules_yaml(RULES, names=PromNames()))
        am_port, prom_port = free_port(), free_port()
        prom_config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp_path / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "e2e",
                    "static_configs": [{"targets": [f"{LOOPBACK}:{p}" for p in ports]}],
                }
            ],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [f"{LOOPBACK}:{am_port}"]}]}]
            },
        }
        (tmp_path / "prometheus.yml").write_text(to_yaml(prom_config))
        am = ManagedProcess(
            [
                alertmanager,
                f"--config.file={tmp_path / 'alertmanager.yml'}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address={LOOPBACK}:{am_port}",
                "--cluster.listen-address=",
            ],
            log_path=tmp_path / "alertmanager.log",
        )
        prom = ManagedProcess(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                f"--web.listen-address={LOOPBACK}:{prom_port}",
                "--rules.alert.resend-delay=1s",
            ],
            log_path=tmp_path / "prometheus.log",
        )
        clients = [httpx.Client(base_url=f"http://{LOOPBACK}:{p}", timeout=5) for p in ports]
        with am, prom, Traffic(lambda i: clients[i].get("/work") and None, 2, 25):
            wait_for_http(f"http://{LOOPBACK}:{am_port}/-/ready", timeout=30)
            wait_for_http(f"http://{LOOPBACK}:{prom_port}/-/ready", timeout=30)

            def both_scraped() -> bool:
                query = 'count(rate(http_requests_total{status_class="2xx"}[5s]) > 0)'
                response = httpx.get(
                    f"http://{LOOPBACK}:{prom_port}/api/v1/query", params={"query": query}
                )
                result = response.json()["data"]["result"]
                return bool(result) and result[0]["value"][1] == "2"

            wait_until(both_scraped, 20, "Prometheus to scrape both app processes")
            flag.touch()  # the burst: every request fails
            page = wait_until(
                lambda: [b for b in _bodies(pagerduty) if b.get("event_action") == "trigger"],
                25,
                "the PagerDuty trigger",
            )[0]
            chat = wait_until(
                lambda: [b for b in _bodies(slack) if "FIRING" in b["attachments"][0]["title"]],
                10,
                "the Slack message",
            )[0]
            flag.unlink()  # recovery
            resolve = wait_until(
                lambda: [b for b in _bodies(pagerduty) if b.get("event_action") == "resolve"],
                25,
                "the PagerDuty resolve",
            )[0]
            resolved_chat = wait_until(
                lambda: [b for b in _bodies(slack) if "RESOLVED" in b["attachments"][0]["title"]],
                10,
                "the Slack resolve",
            )[0]
        for client in clients:
            client.close()

    assert page["routing_key"] == ROUTING_KEY  # read from the *_file, never written literally
    assert ROUTING_KEY not in (tmp_path / "alertmanager.yml").read_text()
    assert page["payload"]["severity"] == "critical", page
    assert page["payload"]["summary"].startswith("e2e_availability_page: burning the error budget")
    assert page["payload"]["custom_details"]["runbook_url"] == "docs/runbook.md#e2e_availability"
    assert resolve["dedup_key"] == page["dedup_key"]
    attachment = chat["attachments"][0]
    assert chat["channel"] == "#e2e"
    assert attachment["title"] == "[FIRING] e2e_error_spike (high)"
    assert "5xx ratio" in attachment["text"]
    assert "Runbook: docs/runbook.md#e2e_error_spike" in attachment["text"]
    assert resolved_chat["attachments"][0]["title"] == "[RESOLVED] e2e_error_spike (high)"


# -- path 2: the embedded evaluator ----------------------------------------------------------------
def test_embedded_evaluator_mails_and_publishes_the_same_burst(
    moto: MotoServer, receiver: RecordingHTTPServer, tmp_path: Path
) -> None:
    region = AWS_TEST_ENV["AWS_DEFAULT_REGION"]
    sns = boto3.client("sns", region_name=region, endpoint_url=moto.url)
    topic = sns.create_topic(Name=f"e2e-alerts-{os.getpid()}-{time.monotonic_ns()}")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="http", Endpoint=f"{receiver.url}/sns")

    windows = RollingWindows(slot_seconds=1)
    os.environ[FLAG_ENV] = str(tmp_path / "fail")
    try:
        app = create_test_app()
    finally:
        del os.environ[FLAG_ENV]
    app.user_middleware.clear()  # re-add with the windows as the observer
    app.add_middleware(
        ObservabilityMiddleware,
        observers=[lambda r: windows.observe_request(r.method, r.route, r.status, r.duration_s)],
    )
    flag = tmp_path / "fail"

    with smtp_server() as smtp:
        email = EmailNotifier(
            host=LOOPBACK,
            port=smtp.port,
            sender="alerts@example.test",
            recipients=["oncall@example.test"],
            timeout=5,
        )
        sns_notifier = SnsNotifier(topic, region_name=region, endpoint_url=moto.url)
        dispatcher = Dispatcher(
            [email, sns_notifier],
            routes=routes_from_table({"critical": ["sns"], "high": ["email"]}),
            retry=RetryPolicy(max_attempts=2, base_delay=0.1, max_elapsed=5),
        )
        evaluator = Evaluator(
            RULES,
            LiveSource(windows),
            dispatcher=dispatcher,
            config=EvaluatorConfig(
                grouping=Grouping(group_by=("alertname",), group_wait_s=0, group_interval_s=1),
                # Seconds-long windows cross a threshold jerkily; damping is tested elsewhere.
                flap_threshold=50,
                log_transitions=False,
            ),
        )
        with TestClient(app) as client:

            def firing() -> set[str]:
                alerts = evaluator.active_alerts()
                return {a["alertname"] for a in alerts if a["state"] == "firing"}

            def run(seconds: float, failing: bool, until: Callable[[], bool] | None = None) -> None:
                if failing:
                    flag.touch()
                else:
                    flag.unlink(missing_ok=True)
                end = time.monotonic() + seconds
                while time.monotonic() < end and not (until and until()):
                    for _ in range(10):
                        client.get("/work")
                    evaluator.evaluate_once()
                    time.sleep(0.1)

            run(3, failing=False)
            assert evaluator.active_alerts() == []
            both = {"e2e_availability_page", "e2e_error_spike"}
            run(4, failing=True)
            assert firing() == both
            run(20, failing=False, until=lambda: not firing())
            run(2, failing=False)  # one more group_interval: the resolved messages go out
            assert {a["state"] for a in evaluator.active_alerts()} == {"resolved"}
        dispatcher.close(drain=True, timeout=30)
        mails = smtp.handler.wait_for(2, timeout=10)

    subjects = [m["Subject"] for m in mails]
    assert subjects == [
        "[HIGH][FIRING] e2e_error_spike",
        "[HIGH][RESOLVED] e2e_error_spike",
    ]

    def notes() -> list[dict[str, Any]]:
        return [b for b in _bodies(receiver) if b.get("Type") == "Notification"]

    published = wait_until(lambda: len(notes()) >= 2 and notes(), 15, "two SNS notifications")
    assert {b["TopicArn"] for b in published} == {topic}
    assert [b["Subject"] for b in published] == [
        "[CRITICAL][FIRING] e2e_availability_page",
        "[CRITICAL][RESOLVED] e2e_availability_page",
    ]
    assert "burning the error budget" in published[0]["Message"]
    assert {r.outcome for r in dispatcher.log.recent()} == {"delivered"}
