"""The operations UI in a real browser (Debian chromium driven by Playwright) while traffic flows.

Every dashboard shows data in every panel, auto-refresh fetches again without a reload, the
drill-down reaches a request's log lines, and the console stays free of errors. An alert that
fires on a real `ep serve` links from the alerts page to its incident evidence. Screenshots at
1366x768 go to test-artifacts/dashboards/ (docs/images/ holds copies for docs/dashboards.md).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from experimentation_platform.telemetry.dashboards import DASHBOARDS
from observability import defaults
from tests.observability.dashboards.support import TOKEN, Stack, make_stack
from tests.support.platform import CLI, create_key, home_env
from tests.support.servers import (
    LOOPBACK,
    ManagedProcess,
    free_port,
    in_ci,
    wait_for_http,
    wait_for_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboards"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Every panel has something to show: a drawn chart, a number, or at least one table row.
PANELS_READY = """(() => {
  const cards = [...document.querySelectorAll('section.card[data-kind]')];
  return cards.length > 0 && cards.every(card => {
    const kind = card.dataset.kind;
    if (kind === 'timeseries') return card.querySelector('canvas') !== null;
    if (kind === 'stat') return [...card.querySelectorAll('.stat .value')]
        .some(v => v.textContent.trim() !== '' && v.textContent.trim() !== '\\u2013');
    return card.querySelectorAll('table.data tbody tr').length > 0;
  });
})()"""


def wait_until(page: object, expression: str, timeout: float = 30.0) -> None:
    """Poll a JS expression through page.evaluate (wait_for_function evaluates strings with
    eval(), which the UI's Content-Security-Policy rightly forbids)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(expression):  # type: ignore[attr-defined]
            return
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout}s: {expression[:80]}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    built = make_stack(tmp_path, history=True)
    yield built
    built.close()


@pytest.fixture
def server(stack: Stack) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        stack.app, host=LOOPBACK, port=port, log_config=None, access_log=False, lifespan="off"
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    wait_for_port(port)
    yield f"http://{LOOPBACK}:{port}"
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def traffic(server: str) -> Iterator[None]:
    """Requests flow for the whole test; the loop is bounded and stops with the test."""
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(base_url=server, timeout=5) as client:
            for _ in range(5_000):
                if stop.is_set():
                    return
                for path in ("/hello", "/hello", "/slow", "/boom", "/missing"):
                    with contextlib.suppress(httpx.HTTPError):
                        client.get(path)
                stop.wait(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if in_ci():
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def logged_in_page(browser: object, base: str, path: str, token: str) -> tuple[Any, list[str]]:
    """A fresh 1366x768 page sent to `path`, through the login form with `token`, and the list
    its console errors and page errors are collected in."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1366, "height": 768})  # type: ignore[attr-defined]
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{base}{path}")
    page.wait_for_url("**/ops/login?next=*")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{path}")
    return page, problems


def test_dashboards_show_live_data_refresh_and_drill_down(
    server: str, traffic: None, browser: object, stack: Stack
) -> None:
    # Not logged in: any page sends the browser to the login form; the key never enters a URL.
    page, problems = logged_in_page(
        browser, server, "/ops/dashboards/api-performance?refresh=2&range=15m", TOKEN
    )
    assert TOKEN not in page.url

    for board in DASHBOARDS:
        page.goto(f"{server}/ops/dashboards/{board.name}?refresh=2&range=15m")
        wait_until(page, PANELS_READY)
        assert page.locator("section.card").count() == len(board.panels)
        # Auto-refresh: another fetch of the dashboard's JSON, no reload of the page.
        fetched = int(page.evaluate("document.body.dataset.fetches"))
        page.evaluate("window.__sameDocument = true")
        wait_until(page, f"Number(document.body.dataset.fetches) > {fetched}", timeout=15)
        assert page.evaluate("window.__sameDocument") is True
        wait_until(page, PANELS_READY)
        page.screenshot(path=str(ARTIFACTS / f"{board.name}.png"), full_page=True)

    # A longer range reads the history store.
    page.goto(f"{server}/ops/dashboards/api-performance?refresh=2&range=24h")
    wait_until(page, PANELS_READY)
    assert page.locator(".ranges button[aria-pressed=true]").inner_text() == "24h"

    # Slow route -> its latency over time.
    page.goto(f"{server}/ops/dashboards/api-performance?refresh=2&range=15m")
    wait_until(page, PANELS_READY)
    page.locator("#panel-top-endpoints-by-latency a", has_text="GET /slow").first.click()
    page.wait_for_url("**/ops/routes?route=GET%20%2Fslow*")
    page.wait_for_selector("#panel-route-latency canvas", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "route.png"), full_page=True)

    # Error group -> occurrences -> a request id -> that request's log lines.
    stack.tracker.flush()
    page.goto(f"{server}/ops/errors?refresh=2")
    page.locator("#panel-groups a", has_text="Boom").first.click()
    page.wait_for_url("**/ops/errors/*")
    page.wait_for_selector("a.request-link", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "error-group.png"), full_page=True)
    page.locator("a.request-link").first.click()
    page.wait_for_url("**/ops/requests/*")
    page.wait_for_selector("tr.log-line", timeout=15_000)
    events = page.locator("tr.log-line td:nth-child(3)").all_inner_texts()
    assert "about_to_fail" in events
    assert "request_completed" in events
    page.screenshot(path=str(ARTIFACTS / "request-logs.png"), full_page=True)

    page.goto(f"{server}/ops/alerts?refresh=2")
    page.wait_for_selector("#panel-notifications table.data")
    assert "HighErrorRate" in page.locator("#panel-firing").inner_text()
    page.screenshot(path=str(ARTIFACTS / "alerts.png"), full_page=True)

    # Logging out forgets the key: the next page asks for it again.
    page.click("#logout")
    page.wait_for_url("**/ops/login")
    assert page.evaluate("sessionStorage.getItem('ops.token')") is None

    page.context.close()
    assert problems == []


@dataclass
class FailingPlatform:
    """A real `ep serve` whose self-test endpoint keeps failing requests."""

    base: str
    key: str
    failed_request_ids: list[str] = field(default_factory=list)


@pytest.fixture
def failing_platform(tmp_path: Path) -> Iterator[FailingPlatform]:
    """Alert windows shortened to seconds (EP_ALERT_WINDOW_SCALE, configuration only) and a
    5xx share far above 5%: error_rate_spike fires within seconds and stays firing."""
    env = home_env(tmp_path, EP_ALERT_WINDOW_SCALE="0.01", EP_ALERT_INTERVAL_SECONDS="1")
    key = create_key(env, "admin")
    port = free_port()
    with ManagedProcess(
        [*CLI, "serve", "--port", str(port)], env=env, log_path=tmp_path / "server.out"
    ):
        platform = FailingPlatform(f"http://{LOOPBACK}:{port}", key)
        wait_for_http(f"{platform.base}/health/ready", timeout=30)
        stop = threading.Event()

        def run() -> None:
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=platform.base, timeout=5) as client:
                for _ in range(3_000):
                    if stop.is_set():
                        return
                    with contextlib.suppress(httpx.HTTPError):
                        client.get("/health/live")
                        failed = client.post("/api/v1/ops/selftest/error", headers=headers)
                        platform.failed_request_ids.append(failed.json()["request_id"])
                    stop.wait(0.1)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        yield platform
        stop.set()
        thread.join(timeout=10)


def test_alert_links_to_its_incident_page(
    failing_platform: FailingPlatform, browser: object
) -> None:
    base, key = failing_platform.base, failing_platform.key
    headers = {"Authorization": f"Bearer {key}"}

    def firing() -> list[str]:
        alerts = httpx.get(f"{base}/ops/api/alerts", headers=headers, timeout=5).json()
        return [a["alertname"] for a in alerts["firing"]]

    deadline = time.monotonic() + 60
    while "error_rate_spike" not in firing():
        assert time.monotonic() < deadline, "error_rate_spike did not fire within 60 s"
        time.sleep(0.5)

    page, problems = logged_in_page(browser, base, "/ops/alerts?refresh=2", key)

    # The firing alert links to its incident page (the page alert notifications link to).
    page.locator("#panel-firing a", has_text="error_rate_spike").first.click()
    page.wait_for_url("**/ops/incidents/error_rate_spike")
    page.wait_for_selector("#panel-alert dl.meta", timeout=15_000)
    assert page.locator("#page-title").inner_text() == "Incident: error_rate_spike"
    alert = page.locator("#panel-alert").inner_text()
    assert "firing" in alert
    runbook = page.locator("#panel-alert a", has_text="Runbook").get_attribute("href") or ""
    assert runbook.endswith("docs/runbook.md#error_rate_spike")
    dashboard = page.locator("#panel-alert a", has_text="Dashboard").get_attribute("href")
    assert dashboard == "/ops/dashboards/api-performance"
    # The metric that breached, its threshold and its curve.
    page.wait_for_selector("#panel-metric canvas", timeout=15_000)
    metric = page.locator("#panel-metric").inner_text()
    assert "5xx ratio" in metric
    spike = next(r for r in defaults.rules() if r.name == "error_rate_spike")
    assert f"threshold {spike.threshold:g}" in metric
    # The top error group links to its error page; a failing request shows its request_id.
    wait_until(page, "document.querySelector('#panel-error-groups a.error-link') !== null")
    top_group = page.locator("#panel-error-groups a.error-link").first
    assert "SelfTestError" in top_group.inner_text()
    assert "/ops/errors/" in (top_group.get_attribute("href") or "")
    wait_until(page, "document.querySelector('#panel-failing-requests a.request-link') !== null")
    shown = page.locator("#panel-failing-requests a.request-link").all_inner_texts()
    assert set(shown) & set(failing_platform.failed_request_ids)
    assert page.locator("#panel-failing-requests tr.log-line").count() > 0
    assert "POST /api/v1/ops/selftest/error" in page.locator("#panel-failing-routes").inner_text()
    page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)

    # A request id drills down to that request's log lines.
    page.locator("#panel-failing-requests a.request-link").first.click()
    page.wait_for_url("**/ops/requests/*")
    page.wait_for_selector("tr.log-line", timeout=15_000)

    assert problems == []

    # An alert the instance does not know: a clear message, not an error banner. (The browser
    # reports the JSON's 404 on its console; that is the only message allowed.)
    page.goto(f"{base}/ops/incidents/no_such_alert?refresh=2")
    page.wait_for_selector("#panel-not-found", timeout=15_000)
    assert "knows no alert named" in page.locator("#panel-not-found").inner_text()
    assert page.locator("#banner").is_hidden()
    page.context.close()
    assert problems
    assert all("status of 404" in problem for problem in problems), problems


def copy_screenshots_to_docs() -> None:  # pragma: no cover - run by hand after a green run
    docs = Path(__file__).resolve().parents[2] / "docs" / "images"
    docs.mkdir(parents=True, exist_ok=True)
    for png in ARTIFACTS.glob("*.png"):
        shutil.copy(png, docs / f"dashboards-{png.name}")
