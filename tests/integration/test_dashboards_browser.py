"""The operations UI in a real browser (Debian chromium driven by Playwright) against a real
`ep serve` with real traffic: `ep demo` for the whole module, real errors from the admin
self-test (one group resolved by the operator API), and a real firing alert from fault
injection (half of all assignments fail). Alert windows are shortened (EP_ALERT_WINDOW_SCALE,
configuration only); nothing is injected into the UI's data.

Every panel of the four dashboards must show data, in the page and in the dashboard API,
attributed to what it measures (a row or a legend entry named "-" is an unlabelled total, not
data about anything; the per-variant table names each variant); a panel that only has
data when something is lost (dropped log lines) must be empty exactly when /metrics says
nothing was lost. Auto-refresh fetches
again without a reload, the drill-downs reach a route's latency and a request's log lines,
the firing alert links to its incident page, and the console stays free of errors.
Screenshots at 1366x768 go to test-artifacts/dashboards/ (docs/images/ holds copies).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from experimentation_platform.demo import EXPERIMENTS
from experimentation_platform.telemetry.dashboards import DASHBOARDS
from tests.support.platform import CLI, create_key, home_env
from tests.support.servers import LOOPBACK, ManagedProcess, free_port, in_ci, wait_for_http

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
# Panels a fresh instance cannot fill at once: the fixture waits for them (bounded), and a
# failure says why.
FRESH_INSTANCE = {
    ("system-health", "network-i-o"): (
        "a rate of the host's byte counters, which are recorded once a minute: its first point "
        "needs two recorded minutes (up to 2 minutes after start)"
    ),
}
# Panels that show data only when something goes wrong, and must stay empty on this healthy
# instance: the test checks the emptiness is true (the metric reads 0 or does not exist yet).
EMPTY_WHEN_HEALTHY = {
    ("system-health", "log-lines-dropped"): (
        "observability_log_events_dropped_total",
        "lines are dropped only when the log queue overflows or a sink fails",
    ),
}
PANELS_WAIT_S = 200.0  # from the server's start: past two recorded minutes
# Per panel: does it show data, and which labels are unnamed ("-") placeholders.
PANEL_STATES = """(() => [...document.querySelectorAll('section.card[data-kind]')].map(card => {
  const kind = card.dataset.kind;
  const text = node => (node.textContent || '').trim();
  const placeholder = t => t === '' || t === '-' || t === '\\u2013';
  let shown = false;
  let unnamed = [];
  let span = null;
  if (kind === 'timeseries') {
    shown = card.querySelector('canvas') !== null;
    const chart = card.querySelector('.chart');
    span = chart && chart.dataset.xspan ? Number(chart.dataset.xspan) : null;
    unnamed = [...card.querySelectorAll('.u-legend .u-series')].slice(1)
      .map(row => row.querySelector('.u-label')).filter(l => l && placeholder(text(l))).map(text);
  } else if (kind === 'stat') {
    shown = [...card.querySelectorAll('.stat .value')].some(v => !placeholder(text(v)));
  } else {
    const rows = [...card.querySelectorAll('table.data tbody tr')];
    shown = rows.length > 0;
    for (const row of rows) {
      for (const cell of row.querySelectorAll('td')) {
        if (cell.classList.contains('num')) break;  // the label cells come first
        if (placeholder(text(cell))) unnamed.push(text(cell));
      }
    }
  }
  return {id: card.id.replace(/^panel-/, ''), kind, shown, unnamed, span};
}))()"""


def wait_until(page: Any, expression: str, timeout: float = 30.0) -> None:
    """Poll a JS expression through page.evaluate (wait_for_function evaluates strings with
    eval(), which the UI's Content-Security-Policy rightly forbids)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if page.evaluate(expression):
            return
        time.sleep(0.2)
    raise AssertionError(f"not true within {timeout}s: {expression[:80]}")


@dataclass
class Live:
    """A real `ep serve` under demo traffic, with errors and a firing alert."""

    base: str
    key: str
    started: float
    selftest_request_ids: list[str] = field(default_factory=list)
    resolved_group: str = ""
    problems: list[str] = field(default_factory=list)  # console and page errors, every page

    def get(self, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        response = httpx.get(f"{self.base}{path}", params=params, headers=headers, timeout=10)
        response.raise_for_status()
        return response.json()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("live")
    env = home_env(
        home,
        EP_FAULT_INJECTION="true",
        EP_ALERT_WINDOW_SCALE="0.01",
        EP_ALERT_INTERVAL_SECONDS="1",
    )
    key = create_key(env, "admin")
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    demo = [*CLI, "demo", "--base-url", base, "--admin-key", key, "--rate", "15"]
    with ManagedProcess(
        [*CLI, "serve", "--port", str(port)], env=env, log_path=home / "server.out"
    ):
        wait_for_http(f"{base}/health/ready", timeout=30)
        platform = Live(base, key, time.monotonic())
        # Bounded: the demo stops by itself after 10 minutes, or with the module.
        with ManagedProcess([*demo, "--duration", "600"], env=env, log_path=home / "demo.out"):
            time.sleep(5)  # the demo seeds its experiments and flags first
            for _ in range(3):  # one group: the same message each time
                failed = platform.call("POST", "/api/v1/ops/selftest/error")
                assert failed.status_code == 500
                platform.selftest_request_ids.append(failed.json()["request_id"])
            groups = platform.get("/api/v1/ops/errors")["items"]
            [selftest] = [g for g in groups if g["type"].endswith("SelfTestError")]
            resolved = platform.call(
                "POST", f"/api/v1/ops/errors/{selftest['fingerprint']}/resolve"
            )
            assert resolved.status_code == 200, resolved.text
            platform.resolved_group = selftest["fingerprint"]
            injected = platform.call(
                "PUT", "/api/v1/ops/faults", json={"assignment_error_rate": 0.5}
            )
            assert injected.status_code == 200, injected.text
            try:
                yield platform
            finally:
                platform.call("DELETE", "/api/v1/ops/faults")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if in_ci():
            pytest.fail("chromium is not installed")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def logged_in_page(browser: Any, base: str, path: str, token: str) -> tuple[Any, list[str]]:
    """A fresh 1366x768 page sent to `path`, through the login form with `token`, and the list
    its console errors and page errors are collected in."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1366, "height": 768})
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


@pytest.fixture(scope="module")
def page(live: Live, browser: Any) -> Iterator[Any]:
    """One logged-in page for the module; its console errors end up in `live.problems`."""
    opened, live.problems = logged_in_page(
        browser, live.base, "/ops/dashboards/api-performance?refresh=2&range=15m", live.key
    )
    assert live.key not in opened.url  # the key never enters a URL
    yield opened
    opened.context.close()


def test_the_firing_alert_links_to_its_incident_page(live: Live, page: Any) -> None:
    deadline = time.monotonic() + 60
    firing: list[str] = []
    while not {"error_rate_spike", "api_availability_page"} & set(firing):
        assert time.monotonic() < deadline, f"no alert within 60 s of the fault: {firing}"
        time.sleep(0.5)
        firing = [a["alertname"] for a in live.get("/ops/api/alerts")["firing"]]
    alert = "error_rate_spike" if "error_rate_spike" in firing else "api_availability_page"

    page.goto(f"{live.base}/ops/alerts?refresh=2")
    page.wait_for_selector("#panel-notifications table.data")
    assert alert in page.locator("#panel-firing").inner_text()
    page.screenshot(path=str(ARTIFACTS / "alerts.png"), full_page=True)
    page.locator("#panel-firing a", has_text=alert).first.click()
    page.wait_for_url(f"**/ops/incidents/{alert}")
    page.wait_for_selector("#panel-alert dl.meta", timeout=15_000)
    assert page.locator("#page-title").inner_text() == f"Incident: {alert}"
    assert "firing" in page.locator("#panel-alert").inner_text()
    runbook = page.locator("#panel-alert a", has_text="Runbook").get_attribute("href") or ""
    # The instance serves the runbook (/ops/runbook#section) unless EP_RUNBOOK_BASE_URL.
    page_url, _, section = runbook.partition("#")
    assert page_url.endswith("/ops/runbook")
    assert section
    assert alert.startswith(section)  # an SLO's page and ticket share its section
    page.wait_for_selector("#panel-metric canvas", timeout=15_000)
    # The fault's own error group, its route, and a failing request with its log lines.
    wait_until(page, "document.querySelector('#panel-error-groups a.error-link') !== null")
    top_group = page.locator("#panel-error-groups a.error-link").first
    assert "FaultInjectedError" in top_group.inner_text()
    assert "POST /api/v1/assignments" in page.locator("#panel-failing-routes").inner_text()
    wait_until(page, "document.querySelector('#panel-failing-requests a.request-link') !== null")
    assert page.locator("#panel-failing-requests tr.log-line").count() > 0
    page.screenshot(path=str(ARTIFACTS / "incident.png"), full_page=True)
    page.locator("#panel-failing-requests a.request-link").first.click()
    page.wait_for_url("**/ops/requests/*")
    page.wait_for_selector("tr.log-line", timeout=15_000)


def test_an_error_group_drills_down_to_a_requests_log_lines(live: Live, page: Any) -> None:
    # Resolved by the fixture; the demo's own rare self-test call may have reopened it since.
    status = next(
        s
        for s in ("resolved", "open")
        if any(
            g["fingerprint"] == live.resolved_group
            for g in live.get("/api/v1/ops/errors", status=s)["items"]
        )
    )
    page.goto(f"{live.base}/ops/errors?status={status}&refresh=2")
    page.locator("#panel-groups a", has_text="SelfTestError").first.click()
    page.wait_for_url(f"**/ops/errors/{live.resolved_group}")
    page.wait_for_selector("a.request-link", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "error-group.png"), full_page=True)
    shown = page.locator("a.request-link").all_inner_texts()
    assert set(shown) & set(live.selftest_request_ids)
    page.locator("a.request-link").first.click()
    page.wait_for_url("**/ops/requests/*")
    page.wait_for_selector("tr.log-line", timeout=15_000)
    events = page.locator("tr.log-line td:nth-child(3)").all_inner_texts()
    assert "request_failed" in events
    assert "request_completed" in events
    page.screenshot(path=str(ARTIFACTS / "request-logs.png"), full_page=True)


def test_a_route_drills_down_to_its_latency_and_refresh_needs_no_reload(
    live: Live, page: Any
) -> None:
    page.goto(f"{live.base}/ops/dashboards/api-performance?refresh=2&range=15m")
    wait_until(page, "document.querySelector('#panel-top-endpoints-by-latency a') !== null")
    fetched = int(page.evaluate("document.body.dataset.fetches"))
    page.evaluate("window.__sameDocument = true")
    wait_until(page, f"Number(document.body.dataset.fetches) > {fetched}", timeout=15)
    assert page.evaluate("window.__sameDocument") is True
    page.locator("#panel-top-endpoints-by-latency a", has_text="POST /api/v1/assignments").click()
    page.wait_for_url("**/ops/routes?route=POST%20%2Fapi%2Fv1%2Fassignments*")
    page.wait_for_selector("#panel-route-latency canvas", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "route.png"), full_page=True)
    # A longer range reads the per-minute history store.
    page.goto(f"{live.base}/ops/dashboards/api-performance?refresh=2&range=24h")
    wait_until(page, "document.querySelector('#panel-request-rate canvas') !== null", 60)
    assert page.locator(".ranges button[aria-pressed=true]").inner_text() == "24h"


@pytest.fixture(scope="module")
def panels(live: Live, page: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Every panel's state, each dashboard watched until its panels show attributed data
    or until PANELS_WAIT_S after the server started."""
    states: dict[tuple[str, str], dict[str, Any]] = {}
    for board in DASHBOARDS:
        page.goto(f"{live.base}/ops/dashboards/{board.name}?refresh=2&range=15m")
        wait_until(page, "document.querySelectorAll('section.card[data-loaded]').length > 0")
        while True:
            seen = {s["id"]: s for s in page.evaluate(PANEL_STATES)}
            awaited = [
                slug
                for slug in seen
                if (board.name, slug) not in EMPTY_WHEN_HEALTHY
                and (not seen[slug]["shown"] or seen[slug]["unnamed"])
            ]
            if not awaited or time.monotonic() - live.started > PANELS_WAIT_S:
                break
            time.sleep(2)
        page.screenshot(path=str(ARTIFACTS / f"{board.name}.png"), full_page=True)
        # What the dashboard API answered at the same moment, for a failure's message.
        answered = live.get(f"/ops/api/dashboards/{board.name}", range="15m")["panels"]
        for slug, state in seen.items():
            api = next((p for p in answered if p["slug"] == slug), {})
            state["api"] = {k: api.get(k) for k in ("series", "stats", "table", "error")}
            states[(board.name, slug)] = state
    return states


def _panel_params() -> list[Any]:
    params = []
    for board in DASHBOARDS:
        for panel in board.panels:
            params.append(pytest.param(board.name, panel.slug, id=f"{board.name}/{panel.slug}"))
    return params


@pytest.mark.parametrize(("board", "slug"), _panel_params())
def test_every_panel_shows_attributed_data(
    live: Live, panels: dict[tuple[str, str], dict[str, Any]], board: str, slug: str
) -> None:
    state = panels.get((board, slug))
    assert state is not None, f"{board}/{slug} is not on the page"
    if (board, slug) in EMPTY_WHEN_HEALTHY:
        metric, why = EMPTY_WHEN_HEALTHY[(board, slug)]
        lost = _metric_total(live, metric)
        # Empty exactly when nothing was lost: data here would have to show the loss.
        assert state["shown"] == (lost > 0), f"{board}/{slug}: {metric} = {lost} ({why})"
        return
    why = FRESH_INSTANCE.get((board, slug), "")
    assert state["shown"], f"{board}/{slug} shows no data {why}; the API: {state['api']}"
    assert not state["unnamed"], f"{board}/{slug} shows unnamed data: {state['unnamed']}"
    if state["kind"] == "timeseries":
        # The time axis covers the selected range (15 minutes here), however few points it
        # has: a single point once stretched it over a thousand days.
        assert state["span"] is not None
        assert 0 < state["span"] <= 2 * 900, f"{board}/{slug} spans {state['span']} s"


def test_the_per_variant_table_names_each_variant_and_links_to_results(
    live: Live, page: Any
) -> None:
    page.goto(f"{live.base}/ops/dashboards/business-metrics?refresh=2&range=15m")
    first = EXPERIMENTS[0]  # the demo's experiment everyone is eligible for
    rows = "#panel-conversion-rate-per-variant table.data tbody tr"
    wait_until(page, f"document.querySelectorAll('{rows}').length > 0", timeout=60)
    cells = [row.locator("td").all_inner_texts() for row in page.locator(rows).all()]
    shown = {(c[0], c[1]) for c in cells}
    assert {(first["key"], v["key"]) for v in first["variants"]} <= shown, cells
    # A row's link fetches the experiment's results with the operator's token.
    page.locator(f"{rows} a.results-link", has_text=first["key"]).first.click()
    results = "#panel-conversion-rate-per-variant pre.results"
    wait_until(
        page,
        f"(document.querySelector('{results}') || {{}}).textContent"
        " && document.querySelector('" + results + "').textContent.includes('(200)')",
    )
    text = page.locator(results).inner_text()
    assert "conversion_rate_ci" in text
    assert "sample_ratio_mismatch" in text
    page.screenshot(path=str(ARTIFACTS / "business-metrics-results.png"), full_page=True)


def _api_shows(panel: dict[str, Any]) -> tuple[bool, list[str]]:
    """Does a panel of the dashboard API carry data, and which of its names are unnamed "-"."""
    if panel.get("series") is not None:
        shown = any(v is not None for s in panel["series"] for v in s["values"])
        return shown, [s["label"] for s in panel["series"] if s["label"] in ("", "-")]
    if panel.get("stats") is not None:
        return any(s["value"] is not None for s in panel["stats"]), []
    table = panel.get("table") or {}
    rows = table.get("rows") or []
    unnamed = [cell for row in rows for cell in row if cell in ("", "-")]
    return bool(rows), unnamed


def test_the_dashboard_api_has_data_in_every_panel(live: Live) -> None:
    """The built-in UI's data, without a browser: after the demo traffic, every panel of every
    dashboard answers data attributed to what it measures (waiting, bounded, for the panels a
    fresh instance cannot fill at once)."""
    missing: dict[tuple[str, str], Any] = {}
    while True:
        missing = {}
        for board in DASHBOARDS:
            answered = live.get(f"/ops/api/dashboards/{board.name}", range="15m")["panels"]
            for panel in answered:
                key = (board.name, panel["slug"])
                shown, unnamed = _api_shows(panel)
                if key in EMPTY_WHEN_HEALTHY:
                    metric, why = EMPTY_WHEN_HEALTHY[key]
                    if shown != (_metric_total(live, metric) > 0):
                        missing[key] = f"{metric}: {why}"
                elif not shown or unnamed or panel.get("error"):
                    missing[key] = {k: panel.get(k) for k in ("series", "stats", "table", "error")}
        if not missing or time.monotonic() - live.started > PANELS_WAIT_S:
            break
        time.sleep(2)
    assert not missing, missing


def _metric_total(live: Live, name: str) -> float:
    """The sum of a metric's samples in the instance's /metrics (0 when it has none)."""
    response = live.call("GET", "/metrics")
    response.raise_for_status()
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name
    )


def test_the_instance_selector_offers_the_fleet_and_narrows_to_one(live: Live, page: Any) -> None:
    page.goto(f"{live.base}/ops/dashboards/api-performance?refresh=2&range=15m")
    wait_until(page, "document.querySelector('#instance').options.length > 1")
    assert page.locator(".instance-pick").is_visible()
    values = page.evaluate("[...document.querySelector('#instance').options].map(o => o.value)")
    assert values[0] == ""  # "all (the fleet)" first, the default
    assert len(values) == 2  # one process (SQLite): itself
    assert page.evaluate("document.querySelector('#instance').value") == ""
    page.select_option("#instance", values[1])
    picked = json.dumps(values[1])
    wait_until(page, f"new URLSearchParams(location.search).get('instance') === {picked}")
    wait_until(page, "document.querySelector('#panel-request-rate canvas') !== null", 30)


def test_logging_out_forgets_the_key_and_no_page_logged_an_error(live: Live, page: Any) -> None:
    page.goto(f"{live.base}/ops/dashboards/error-tracking?refresh=2")
    page.click("#logout")
    page.wait_for_url("**/ops/login")
    assert page.evaluate("sessionStorage.getItem('ops.token')") is None
    # An alert this instance does not know: a clear message, not an error banner.
    other, problems = logged_in_page(
        page.context.browser, live.base, "/ops/incidents/no_such_alert?refresh=2", live.key
    )
    other.wait_for_selector("#panel-not-found", timeout=15_000)
    assert "knows no alert named" in other.locator("#panel-not-found").inner_text()
    assert other.locator("#banner").is_hidden()
    other.context.close()
    # The browser reports the JSON's 404 on its console; that is the only message allowed.
    assert problems
    assert all("status of 404" in problem for problem in problems), problems
    # Every page the module's tests opened: no console error, no page error.
    assert live.problems == []


def copy_screenshots_to_docs() -> None:  # pragma: no cover - run by hand after a green run
    docs = Path(__file__).resolve().parents[2] / "docs" / "images"
    docs.mkdir(parents=True, exist_ok=True)
    for png in ARTIFACTS.glob("*.png"):
        shutil.copy(png, docs / f"dashboards-{png.name}")
