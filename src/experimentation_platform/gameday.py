"""Game days: inject a real fault into a running platform and measure what the alerting sees.

For each scenario the runner

1. starts a fresh platform instance (or targets one) with fault injection on, shortened alert
   windows (EP_ALERT_WINDOW_SCALE) and its Slack and PagerDuty webhooks pointed at a recording
   HTTP server it runs itself on 127.0.0.1 (plus the scenario's own settings: a memory budget,
   CloudWatch shipping to a local moto server), then drives demo traffic (`DemoTraffic`);
2. injects the fault through `PUT /api/v1/ops/faults` and polls the evaluator's state in the
   observability database until an expected alert fires;
3. records the notification that alert produced and gathers the incident evidence;
4. removes the fault (`DELETE /api/v1/ops/faults`) and waits for the resolve notification.

Each scenario gets its own instance, so its windows, alert state and notification groups start
clean and one scenario's alert cannot be mistaken for the next one's.
Traffic goes to the instance on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, create_engine

from experimentation_platform.demo import DemoTraffic, seed
from experimentation_platform.settings import Settings, load_settings
from experimentation_platform.storage.db import Database, migrate
from experimentation_platform.storage.keys import KeyStore
from experimentation_platform.telemetry.alerts import BASE_RULES
from experimentation_platform.telemetry.evidence import stored_evidence
from observability.alerting.scaling import scale_rules
from observability.alerting.state import AlertInstance, StateStore
from observability.incident import IncidentEvidence

__all__ = [
    "SCENARIOS",
    "GameDayConfig",
    "Received",
    "Recorder",
    "Scenario",
    "ScenarioResult",
    "render_report",
    "run_gameday",
    "run_scenario",
]

LOOPBACK = "127.0.0.1"
ROUTING_KEY = "gameday-routing-key"  # not a secret: the recorder is the only PagerDuty here
# memory-pressure: 512 MB of ballast + the instance's own ~150 MB is over 90% of 640 MB, while
# the instance alone stays near a quarter of it.
MEMORY_BUDGET_MB = 640
# cloudwatch-unreachable: the fault goes in once the shipping lag is below this (steady: 1-3 s).
SHIPPING_IN_STEP_S = 5.0
# Not secrets: moto accepts any; set so boto3 never looks for real ones.
_MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "gameday",
    "AWS_SECRET_ACCESS_KEY": "gameday",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# -- scenarios ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: dict[str, Any]  # the PUT /api/v1/ops/faults body
    expect: tuple[str, ...]  # alerts that count as detection (the first to fire wins)
    expect_labels: dict[str, str] = field(default_factory=dict)
    cause: tuple[str, ...] = ()  # what the evidence should name: routes, dependencies, types
    error_type: str | None = None  # the top error group's type, where the fault raises
    description: str = ""
    settings: dict[str, str] = field(default_factory=dict)  # EP_* of a started instance
    needs_cloudwatch: bool = False  # a started instance ships to a local moto server


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "db-latency",
        "Database latency",
        {"db_latency_ms": 400},
        expect=("api_latency_page", "assignment_latency_page"),
        cause=("/api/v1/events", "/api/v1/assignments"),
        description="Every SQL statement of the platform database waits 400 ms.",
    ),
    Scenario(
        "assignment-errors",
        "Assignment error burst",
        {"assignment_error_rate": 0.5},
        expect=("error_rate_spike", "api_availability_page"),
        cause=("/api/v1/assignments",),
        error_type="FaultInjectedError",
        description="Half of all assignments raise inside the assignment path (HTTP 500).",
    ),
    Scenario(
        "db-unavailable",
        "Database unavailable",
        {"db_unavailable": True},
        expect=("dependency_not_ready",),
        expect_labels={"dependency": "database"},
        cause=("database",),
        error_type="OperationalError",
        description="Every SQL statement fails as if the database refused connections.",
    ),
    Scenario(
        "cache-unavailable",
        "Cache unavailable",
        {"cache_unavailable": True},
        expect=("dependency_not_ready",),
        expect_labels={"dependency": "cache"},
        cause=("cache",),
        description="The configuration cache fails like a Redis that went away: reads miss "
        "(served from the database), invalidation and the readiness ping raise.",
    ),
    Scenario(
        "memory-pressure",
        "Memory pressure",
        {"memory_pressure_mb": 512},
        expect=("process_memory_high",),
        # The evidence's configuration changes name the fault that holds the memory.
        cause=("memory_pressure_mb",),
        description="The instance allocates and holds 512 MB; its memory budget "
        f"(EP_MEMORY_BUDGET_MB={MEMORY_BUDGET_MB}) puts that plus its own ~150 MB over 90%.",
        settings={"EP_MEMORY_BUDGET_MB": str(MEMORY_BUDGET_MB)},
    ),
    Scenario(
        "cloudwatch-unreachable",
        "CloudWatch unreachable",
        {"cloudwatch_unreachable": True},
        expect=("log_shipping_lag",),
        expect_labels={"dependency": "cloudwatch"},
        cause=("cloudwatch",),
        description="Every call the log shipper makes to CloudWatch Logs fails like an "
        "unreachable endpoint; lines stay in its journal and the shipping lag grows.",
        needs_cloudwatch=True,
    ),
)


# -- the recording webhook server ---------------------------------------------------------
@dataclass(frozen=True)
class Received:
    at: float
    receiver: str  # "pagerduty" or "slack"
    scenario: str
    status: str  # "firing" or "resolved"
    title: str
    body: dict[str, Any]


class Recorder:
    """Slack and PagerDuty stand-in on 127.0.0.1: records every POST at /<receiver>/<scenario>."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                recorder._record(self.path, raw)
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"success"}')

            def log_message(self, format: str, *args: object) -> None:
                return  # the report says what arrived; no per-request stderr noise

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, path: str, raw: bytes) -> None:
        parts = path.strip("/").split("/")
        receiver, scenario = [*parts, "", ""][:2]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"raw": raw.decode("utf-8", "replace")}
        if receiver == "pagerduty":
            status = "resolved" if body.get("event_action") == "resolve" else "firing"
            title = str((body.get("payload") or {}).get("summary") or body.get("dedup_key", ""))
        else:
            text = str(body.get("text", ""))
            status = "resolved" if text.startswith("RESOLVED") else "firing"
            title = text
        with self._lock:
            self.received.append(Received(time.time(), receiver, scenario, status, title, body))

    def for_scenario(self, scenario: str, since: float = 0.0) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.scenario == scenario and r.at >= since]


# -- configuration and results --------------------------------------------------------------
@dataclass
class GameDayConfig:
    scale: float = 0.01  # EP_ALERT_WINDOW_SCALE of a started instance
    interval_s: float = 1.0  # EP_ALERT_INTERVAL_SECONDS of a started instance
    warmup_s: float = 15.0
    rate_per_second: float = 20.0
    generators: int = 4
    detect_timeout_s: float = 120.0
    resolve_timeout_s: float = 90.0
    notify_timeout_s: float = 20.0
    base_url: str | None = None  # target a running instance instead of starting one
    admin_key: str | None = None
    work_dir: Path | None = None
    on_event: Callable[[str], None] | None = None


@dataclass
class ScenarioResult:
    scenario: str
    title: str
    fault: dict[str, Any]
    fault_at: float | None = None
    detected_alert: str | None = None
    detected_labels: dict[str, str] = field(default_factory=dict)
    time_to_detect_s: float | None = None  # fault injected -> alert firing
    time_to_notify_s: float | None = None  # fault injected -> notification received
    notification: dict[str, Any] | None = None
    other_alerts: list[str] = field(default_factory=list)
    baseline_alerts: list[str] = field(default_factory=list)
    evidence: dict[str, Any] | None = None
    evidence_text: str = ""
    cause_named_by: dict[str, list[str]] = field(default_factory=dict)
    cause_named: bool = False
    top_error_group: str | None = None
    error_group_named: bool | None = None  # None: the scenario raises nothing
    cleared_at: float | None = None
    time_to_resolve_s: float | None = None  # fault cleared -> resolve notification received
    resolved: bool = False
    # A started instance's resident memory: before the fault, at detection, after the resolve.
    instance_rss_mb: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def detected(self) -> bool:
        return self.time_to_detect_s is not None


# -- instances -------------------------------------------------------------------------------
@dataclass
class _Target:
    base_url: str
    admin_key: str
    settings: Settings
    fault_key: str
    process: subprocess.Popen[bytes] | None = None


def _instance_settings(var_dir: Path) -> Settings:
    # Isolated on purpose: SQLite and log files under var_dir, in-process cache, no cloud.
    return load_settings(
        var_dir=var_dir,
        log_dir=var_dir / "log",
        database_url="",
        errors_database_url="",
        redis_url="",
    )


@contextlib.contextmanager
def _started_instance(
    scenario: Scenario,
    config: GameDayConfig,
    recorder: Recorder,
    var_dir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[_Target]:
    var_dir.mkdir(parents=True, exist_ok=True)
    settings = _instance_settings(var_dir)
    migrate(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    try:
        keys = KeyStore(db)
        _, admin_key = keys.create("admin", "gameday-traffic")
        # A key of its own for the fault endpoints, first used at injection: the platform
        # remembers a verified key 30 s, so it still works while the database is down.
        _, fault_key = keys.create("admin", "gameday-faults")
    finally:
        db.dispose()
    port = _free_port()
    env = {
        # No AWS_* of this shell: only a scenario's stand-in endpoint gets (dummy) credentials.
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "EP_VAR_DIR": str(var_dir),
        "EP_LOG_DIR": str(var_dir / "log"),
        "EP_DATABASE_URL": "",
        "EP_OBSERVABILITY_DATABASE_URL": "",
        "EP_ERRORS_DATABASE_URL": "",
        "EP_REDIS_URL": "",
        "EP_HOST": LOOPBACK,
        "EP_PORT": str(port),
        "EP_PUBLIC_BASE_URL": "",
        "EP_FAULT_INJECTION": "true",
        "EP_ALERTS_ENABLED": "true",
        "EP_ALERT_WINDOW_SCALE": repr(config.scale),
        "EP_ALERT_INTERVAL_SECONDS": repr(config.interval_s),
        "EP_SLACK_WEBHOOK_URL": f"{recorder.url}/slack/{scenario.name}",
        "EP_PAGERDUTY_URL": f"{recorder.url}/pagerduty/{scenario.name}",
        "EP_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "EP_LOG_TO_STDOUT": "false",
        "EP_CLOUDWATCH_ENABLED": "false",
        "EP_SENTRY_DSN": "",
        "EP_SMTP_HOST": "",
        "EP_SNS_TOPIC_ARN": "",
        **scenario.settings,
        **(extra_env or {}),
    }
    out = (var_dir / "server.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "experimentation_platform.cli", "serve", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://{LOOPBACK}:{port}"
    try:
        _wait_http(f"{base_url}/health/ready", process, timeout=60.0)
        yield _Target(base_url, admin_key, settings, fault_key, process)
    finally:
        _stop(process)
        out.close()


def cloudwatch_endpoint_missing() -> str | None:
    """Why a started instance cannot get a local CloudWatch endpoint, or None if it can."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        return (
            "not run: needs a CloudWatch endpoint; the game day starts a local moto server "
            "(pip install 'moto[server]', a dev dependency: `make install`), or target an "
            "instance that ships to CloudWatch with --base-url"
        )
    return None


@contextlib.contextmanager
def _moto_server(var_dir: Path) -> Iterator[dict[str, str]]:
    """A moto server (CloudWatch Logs stand-in) on 127.0.0.1; yields the instance's env."""
    var_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {**os.environ, **_MOTO_CREDENTIALS}
    out = (var_dir / "moto.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        _wait_http(f"{url}/moto-api/", process, timeout=30.0, what="the moto server")
        yield {
            **_MOTO_CREDENTIALS,
            "EP_CLOUDWATCH_ENABLED": "true",
            "EP_AWS_REGION": _MOTO_CREDENTIALS["AWS_DEFAULT_REGION"],
            "EP_AWS_ENDPOINT_URL": url,
        }
    finally:
        _stop(process)
        out.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_http(
    url: str, process: subprocess.Popen[bytes], timeout: float, what: str = "the platform"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start (code {process.returncode})")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} at {url} was not ready within {timeout:.0f}s")


# -- traffic --------------------------------------------------------------------------------
class _NoSelfTest:
    """The demo's client, minus its deliberate self-test 500 (one call in a hundred): at
    game-day window sizes that alone burns the availability budget fast enough to page, and a
    page already sent for a group hides the fault's own page for 5 minutes (de-duplication)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        if url.endswith("/selftest/error"):
            return self._client.get(
                "/api/v1/experiments", params={"limit": 20}, headers=kwargs.get("headers")
            )
        return self._client.post(url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _GameDayTraffic(DemoTraffic):
    def _one_call(self, client: httpx.Client, headers: dict[str, str], rng: Any, user: str) -> int:
        return super()._one_call(cast(httpx.Client, _NoSelfTest(client)), headers, rng, user)


@contextlib.contextmanager
def _traffic(
    base_url: str, admin_key: str, config: GameDayConfig
) -> Iterator[Sequence[DemoTraffic]]:
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        # Seed once: generators seeding in parallel would race on the same experiment keys.
        seed(client, {"Authorization": f"Bearer {admin_key}"})
    each = config.rate_per_second / config.generators
    generators = [
        _GameDayTraffic(base_url, admin_key, rate_per_second=each, seed_value=100 + i)
        for i in range(config.generators)
    ]
    threads = [threading.Thread(target=g.run, daemon=True) for g in generators]
    for thread in threads:
        thread.start()
    try:
        yield generators
    finally:
        for g in generators:
            g.stop()
        for thread in threads:
            thread.join(15)


# -- one scenario ---------------------------------------------------------------------------
def _alerts(engine: Engine) -> dict[str, AlertInstance]:
    try:
        alerts, _ = StateStore(engine).load()
    except Exception:  # the table appears with the evaluator's first save: nothing yet
        return {}
    return alerts


def _matches(alert: AlertInstance, scenario: Scenario) -> bool:
    return alert.name in scenario.expect and all(
        alert.labels.get(k) == v for k, v in scenario.expect_labels.items()
    )


def _label(alert: AlertInstance) -> str:
    extra = {k: v for k, v in alert.labels.items() if k in ("dependency", "slo", "mount")}
    return alert.name + (f"{{{','.join(f'{k}={v}' for k, v in extra.items())}}}" if extra else "")


def _poll(check: Callable[[], Any], timeout: float, step: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def _route_stats(target: _Target, since: float) -> dict[str, Any] | None:
    try:
        response = httpx.get(
            f"{target.base_url}/api/v1/ops/windows",
            headers={"Authorization": f"Bearer {target.fault_key}"},
            timeout=5,
        )
        response.raise_for_status()
        windows = response.json()["windows"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None  # e.g. the database is down and the key must be checked again
    age = time.time() - since
    label = "1m" if age <= 60 else "5m" if age <= 300 else "1h"
    routes: dict[str, Any] = windows[label]["routes"]
    return routes


def _judge(result: ScenarioResult, scenario: Scenario, evidence: IncidentEvidence) -> None:
    for cause in scenario.cause:
        found = evidence.mentions(cause)
        if found:
            result.cause_named_by[cause] = found
    if scenario.name == "db-latency":
        # The slowest routes must be slower than the injected latency: the delay is visible.
        slow = [r.route for r in evidence.slowest_routes if (r.p95_ms or 0) >= 400]
        if slow:
            result.cause_named_by["latency >= 400 ms"] = slow
    result.cause_named = bool(result.cause_named_by)
    if evidence.error_groups:
        top = evidence.error_groups[0]
        message = " ".join(top.message.split())[:80]  # SQL errors span lines
        result.top_error_group = f"{top.type.rsplit('.', 1)[-1]}: {message} ({top.count}x)"
    if scenario.error_type is not None:
        result.error_group_named = any(
            scenario.error_type in g.type for g in evidence.error_groups[:3]
        )


def _rss_mb(target: _Target) -> float | None:
    if target.process is None:
        return None  # a targeted instance may run elsewhere
    try:
        return round(psutil.Process(target.process.pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return None


def _note_rss(result: ScenarioResult, target: _Target, moment: str) -> None:
    rss = _rss_mb(target)
    if rss is not None:
        result.instance_rss_mb[moment] = rss


def _gauge(target: _Target, name: str) -> float | None:
    """One unlabelled gauge from the instance's /metrics, as a scraper reads it."""
    try:
        response = httpx.get(
            f"{target.base_url}/metrics",
            headers={"Authorization": f"Bearer {target.admin_key}"},
            timeout=5,
        )
        response.raise_for_status()
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return None


def _shipping_caught_up(target: _Target, result: ScenarioResult, timeout: float) -> None:
    """Wait until the instance ships in step (lag of a few seconds): a shipper still starting,
    or starved of CPU, would make the lag grow without the fault."""

    def in_step() -> bool:
        lag = _gauge(target, "cloudwatch_shipping_lag_seconds")
        return lag is not None and lag < SHIPPING_IN_STEP_S

    if not _poll(in_step, timeout):
        lag = _gauge(target, "cloudwatch_shipping_lag_seconds")
        shown = "unknown" if lag is None else f"{lag:.0f}s"
        result.notes.append(f"shipping already behind before the fault (lag {shown})")


def run_scenario(
    scenario: Scenario, config: GameDayConfig, recorder: Recorder, work_dir: Path
) -> ScenarioResult:
    """Run one scenario end to end (bounded by the config's timeouts)."""
    say = config.on_event or (lambda _text: None)
    result = ScenarioResult(scenario.name, scenario.title, dict(scenario.fault))
    if scenario.needs_cloudwatch and not config.base_url:
        missing = cloudwatch_endpoint_missing()
        if missing is not None:
            result.notes.append(missing)
            say(f"[{scenario.name}] {missing}")
            return result
    with contextlib.ExitStack() as stack:
        if config.base_url:
            if not config.admin_key:
                raise ValueError("targeting an instance needs its admin key")
            target = _Target(
                config.base_url, config.admin_key, load_settings(), fault_key=config.admin_key
            )
            result.notes.append("targeted instance: notifications from its notification log")
        else:
            var_dir = work_dir / scenario.name
            cloud = stack.enter_context(_moto_server(var_dir)) if scenario.needs_cloudwatch else {}
            target = stack.enter_context(
                _started_instance(scenario, config, recorder, var_dir, cloud)
            )
        say(f"[{scenario.name}] instance ready at {target.base_url}; warming up")
        stack.enter_context(_traffic(target.base_url, target.admin_key, config))
        engine = create_engine(target.settings.resolved_observability_database_url)
        stack.callback(engine.dispose)
        time.sleep(config.warmup_s)
        faults = httpx.Client(
            base_url=target.base_url,
            headers={"Authorization": f"Bearer {target.fault_key}"},
            timeout=15.0,
        )
        stack.callback(faults.close)
        baseline = {k for k, a in _alerts(engine).items() if a.state == "firing"}
        result.baseline_alerts = sorted(
            _label(a) for k, a in _alerts(engine).items() if k in baseline
        )
        if scenario.needs_cloudwatch:
            _shipping_caught_up(target, result, timeout=60.0)
        _note_rss(result, target, "before")
        result.fault_at = time.time()
        injected = faults.put("/api/v1/ops/faults", json=scenario.fault)
        if injected.status_code >= 400:
            # e.g. CloudWatch shipping is off on a targeted instance: the answer says why.
            result.notes.append(f"fault not injected: HTTP {injected.status_code} {injected.text}")
            say(f"[{scenario.name}] {result.notes[-1]}")
            return result
        say(f"[{scenario.name}] fault injected: {scenario.fault}")
        try:
            detected = _poll(
                lambda: next(
                    (
                        a
                        for a in _alerts(engine).values()
                        if a.state == "firing" and a.key not in baseline and _matches(a, scenario)
                    ),
                    None,
                ),
                config.detect_timeout_s,
            )
            _note_rss(result, target, "fault")
            fresh = [
                _label(a)
                for k, a in _alerts(engine).items()
                if a.state == "firing" and k not in baseline
            ]
            if detected is None:
                result.notes.append(f"no expected alert within {config.detect_timeout_s:.0f}s")
                result.other_alerts = sorted(fresh)
            else:
                _record_detection(result, scenario, detected, recorder, target, config, engine)
                result.other_alerts = sorted(set(fresh) - {_label(detected)})
                say(f"[{scenario.name}] {detected.name} fired after {result.time_to_detect_s:.1f}s")
        finally:
            result.cleared_at = time.time()
            faults.delete("/api/v1/ops/faults").raise_for_status()
            say(f"[{scenario.name}] fault removed")
        if detected is not None:
            _record_resolve(result, detected, recorder, config, engine)
        _note_rss(result, target, "after")
    return result


def _record_detection(
    result: ScenarioResult,
    scenario: Scenario,
    alert: AlertInstance,
    recorder: Recorder,
    target: _Target,
    config: GameDayConfig,
    engine: Engine,
) -> None:
    assert result.fault_at is not None
    result.detected_alert = alert.name
    result.detected_labels = dict(alert.labels)
    result.time_to_detect_s = max(0.0, (alert.fired_at or time.time()) - result.fault_at)
    note = _poll(
        lambda: _notification(recorder, result, alert, engine, config, "firing"),
        config.notify_timeout_s,
    )
    if note is not None:
        result.time_to_notify_s = note["at"] - result.fault_at
        result.notification = note
    else:
        result.notes.append(f"no notification within {config.notify_timeout_s:.0f}s")
    rules = scale_rules(BASE_RULES, config.scale) if not config.base_url else None
    evidence = stored_evidence(
        target.settings,
        alert,
        route_stats=_route_stats(target, alert.active_since or result.fault_at),
        rules=rules,
    )
    result.evidence = evidence.to_dict()
    result.evidence_text = evidence.render_text()
    _judge(result, scenario, evidence)


def _notification(
    recorder: Recorder,
    result: ScenarioResult,
    alert: AlertInstance,
    engine: Engine,
    config: GameDayConfig,
    status: str,
    after: float | None = None,
) -> dict[str, Any] | None:
    since = after if after is not None else (result.fault_at or 0.0)
    if config.base_url:
        from observability.alerting.notifiers.log import NotificationLog

        for record in reversed(NotificationLog(engine=engine).recent(200)):
            at = record.at.timestamp()
            if at >= since and record.status == status and alert.name in record.title:
                return {"at": at, "receiver": record.receiver, "title": record.title}
        return None
    for received in recorder.for_scenario(result.scenario, since):
        if received.status != status:
            continue
        # A group's message names its first alert in the title and lists the others below.
        if status == "firing" and alert.name not in json.dumps(received.body):
            continue
        if status == "resolved" and not _same_group(received, result):
            continue
        return {
            "at": received.at,
            "receiver": received.receiver,
            "title": received.title,
            "body": received.body,
        }
    return None


def _same_group(received: Received, result: ScenarioResult) -> bool:
    firing = result.notification or {}
    if received.receiver == "pagerduty":
        return bool(received.body.get("dedup_key")) and received.body.get("dedup_key") == (
            firing.get("body") or {}
        ).get("dedup_key")
    return (result.detected_alert or "") in received.title


def _record_resolve(
    result: ScenarioResult,
    alert: AlertInstance,
    recorder: Recorder,
    config: GameDayConfig,
    engine: Engine,
) -> None:
    assert result.cleared_at is not None
    cleared = result.cleared_at
    note = _poll(
        lambda: _notification(recorder, result, alert, engine, config, "resolved", cleared),
        config.resolve_timeout_s,
    )
    state = _alerts(engine).get(alert.key)
    result.resolved = note is not None
    if note is not None:
        result.time_to_resolve_s = note["at"] - cleared
    elif state is not None and state.state == "resolved":
        result.notes.append("alert resolved, but no resolve notification arrived")
    else:
        result.notes.append(f"not resolved within {config.resolve_timeout_s:.0f}s")


# -- all scenarios ----------------------------------------------------------------------------
def run_gameday(
    scenarios: Sequence[Scenario], config: GameDayConfig | None = None
) -> list[ScenarioResult]:
    """Run the scenarios one after another; the recorder and work dir live for the whole run."""
    config = config or GameDayConfig()
    recorder = Recorder().start()
    try:
        with contextlib.ExitStack() as stack:
            if config.work_dir is not None:
                work_dir = config.work_dir
            else:
                work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gameday-")))
            return [run_scenario(s, config, recorder, work_dir) for s in scenarios]
    finally:
        recorder.stop()


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def render_report(results: Sequence[ScenarioResult], *, evidence: bool = True) -> str:
    """The game day report: a summary table, then each scenario's timeline and evidence."""
    lines = [
        "GAME DAY REPORT",
        "",
        f"{'scenario':<22} {'alert':<24} {'detect':>7} {'notify':>7} {'resolve':>8}  "
        "cause named  top error group",
    ]
    for r in results:
        cause = "yes" if r.cause_named else "no" if r.detected else "-"
        if r.error_group_named is False:
            cause += " (error group missing)"
        lines.append(
            f"{r.scenario:<22} {(r.detected_alert or 'NOT DETECTED'):<24} "
            f"{_seconds(r.time_to_detect_s):>7} {_seconds(r.time_to_notify_s):>7} "
            f"{_seconds(r.time_to_resolve_s):>8}  {cause:<11}  {r.top_error_group or '-'}"
        )
    for r in results:
        lines += ["", f"== {r.scenario}: {r.title} -- fault {r.fault}"]
        if r.baseline_alerts:
            lines.append(f"  firing before the fault: {', '.join(r.baseline_alerts)}")
        if r.detected:
            lines.append(f"  detected by {r.detected_alert} after {_seconds(r.time_to_detect_s)}")
        if r.notification:
            lines.append(
                f"  notified via {r.notification['receiver']} after "
                f"{_seconds(r.time_to_notify_s)}: {r.notification['title'][:160]}"
            )
        if r.other_alerts:
            lines.append(f"  also firing: {', '.join(r.other_alerts)}")
        for cause, parts in r.cause_named_by.items():
            lines.append(f"  evidence names {cause!r} in: {', '.join(parts)}")
        if r.resolved:
            lines.append(f"  resolve notified {_seconds(r.time_to_resolve_s)} after removal")
        if r.instance_rss_mb:
            moments = {"before": "before", "fault": "with the fault", "after": "after"}
            lines.append(
                "  instance RSS: "
                + ", ".join(f"{mb:.0f} MB {moments[k]}" for k, mb in r.instance_rss_mb.items())
            )
        lines += [f"  note: {n}" for n in r.notes]
        if evidence and r.evidence_text:
            lines += ["", *("  | " + line for line in r.evidence_text.rstrip("\n").splitlines())]
    return "\n".join(lines) + "\n"


def results_json(results: Sequence[ScenarioResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


def scenarios_named(names: Sequence[str]) -> list[Scenario]:
    """`all` or scenario names; an unknown name raises ValueError listing the known ones."""
    known: Mapping[str, Scenario] = {s.name: s for s in SCENARIOS}
    if list(names) in (["all"], []):
        return list(SCENARIOS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: all, {', '.join(known)}")
    return [known[n] for n in names]
