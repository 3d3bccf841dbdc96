"""Every Grafana panel of the four dashboards, asked of a real Prometheus scraping a real
`ep serve` after `ep demo` traffic (assignments, exposures, flags, conversions, 4xx) and the
admin self-test errors: each panel's PromQL, exactly as rendered to deploy/grafana/, returns
data. Only Grafana's variables are filled in (`$__rate_interval`, `$__range`, `$instance`,
`$route`), as Grafana itself does; store-backed panels (text panels) have no query."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from experimentation_platform.demo import EXPERIMENTS
from experimentation_platform.telemetry.dashboards import DASHBOARDS
from observability.dashboards.grafana import render_grafana_dashboard
from tests.support.platform import CLI, create_key, home_env
from tests.support.prometheus import query, running_prometheus, scalar, wait_until
from tests.support.servers import LOOPBACK, ManagedProcess, free_port, wait_for_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "scrape-token-for-grafana-panels"
# Grafana's variables as Grafana fills them: a rate window of several scrape intervals (1 s
# here), the selected range, and "All" for the instance and route filters.
VARIABLES = {
    "$__rate_interval": "30s",
    "$__range": "5m",
    "$instance": ".*",
    "$route": ".*",
}
# Panels with data only when something is lost: empty exactly when /metrics shows no loss.
EMPTY_WHEN_HEALTHY = {
    ("system-health", "Log lines dropped"): "observability_log_events_dropped_total"
}
DEADLINE_S = 120.0  # demo seeding, two state-gauge reads (every 30 s), rate windows filled


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL with the variables filled in) for every query."""
    found = []
    for board in DASHBOARDS:
        for panel in render_grafana_dashboard(board)["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                assert "$" not in expr, f"an unfilled Grafana variable in {expr}"
                found.append((board.name, panel["title"], expr))
    return found


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real Prometheus scraping one `ep serve` under demo traffic; yields (its URL, the
    platform's base URL)."""
    home = tmp_path_factory.mktemp("grafana")
    env = home_env(home, EP_METRICS_TOKEN=TOKEN)
    key = create_key(env, "admin")
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    demo = [*CLI, "demo", "--base-url", base, "--admin-key", key, "--rate", "15"]
    with ManagedProcess([*CLI, "serve", "--port", str(port)], env=env, log_path=home / "out"):
        wait_for_http(f"{base}/health/ready", timeout=30)
        with (
            running_prometheus(home, [f"{LOOPBACK}:{port}"], TOKEN) as url,
            ManagedProcess([*demo, "--duration", "300"], env=env, log_path=home / "demo.out"),
        ):
            wait_until(lambda: scalar(url, 'sum(up{job="platform"})') == 1.0)
            time.sleep(5)  # the demo seeds its experiments and flags first
            headers = {"Authorization": f"Bearer {key}"}
            for _ in range(3):  # real 5xx responses and a real error group
                failed = httpx.post(f"{base}/api/v1/ops/selftest/error", headers=headers)
                assert failed.status_code == 500
            yield url, base


def _lost(base: str, metric: str) -> float:
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric
    )


def test_every_grafana_query_returns_data(prometheus: tuple[str, str]) -> None:
    url, base = prometheus
    queries = panel_queries()
    assert len(queries) >= 30  # every dashboard's panels, not a subset
    empty: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + DEADLINE_S
    while True:
        empty = [
            (board, title, expr)
            for board, title, expr in queries
            if (board, title) not in EMPTY_WHEN_HEALTHY and not query(url, expr)
        ]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not empty, "panels without data:\n" + "\n".join(f"{b} / {t}: {e}" for b, t, e in empty)
    for (board, title), metric in EMPTY_WHEN_HEALTHY.items():
        [expr] = [e for b, t, e in queries if (b, t) == (board, title)]
        has_data = any(float(r["value"][1]) > 0 for r in query(url, expr))
        assert has_data == (_lost(base, metric) > 0), f"{board} / {title}"


def test_the_per_variant_panels_name_each_variant(prometheus: tuple[str, str]) -> None:
    url, _ = prometheus
    wanted = {
        "Conversion rate per variant": "ep_experiment_conversion_ratio",
        "Exposures per variant": "ep_exposures_total",
        "Conversion events rate": "ep_conversion_events_total",
    }
    for title, metric in wanted.items():
        [expr] = [e for _, t, e in panel_queries() if t == title and f"({metric}{{" in e]
        wait_until(lambda expr=expr: bool(query(url, expr)), timeout=DEADLINE_S)
        series = {(r["metric"]["experiment"], r["metric"]["variant"]) for r in query(url, expr)}
        # The demo's first experiment (everyone is eligible): each of its variants, by name.
        first = EXPERIMENTS[0]
        assert {(first["key"], v["key"]) for v in first["variants"]} <= series, title
