"""The dashboard model: panels of query terms, validation, and the platform's four dashboards."""

from __future__ import annotations

import pytest

from experimentation_platform.telemetry import names as domain
from experimentation_platform.telemetry.dashboards import DASHBOARDS, dashboard_by_name
from observability.dashboards.model import Dashboard, Panel
from observability.metrics import names
from observability.query.model import RequestRate, metric_names

SIGNAL_NAMES = {
    v
    for module in (names, domain)
    for k, v in vars(module).items()
    if k.isupper() and isinstance(v, str)
}


def test_panels_and_dashboards_validate_their_shape() -> None:
    with pytest.raises(ValueError, match="needs a description"):
        Panel("stat", "Empty", " ", (RequestRate(),))
    with pytest.raises(ValueError, match="no queries"):
        Panel("stat", "None", "d", ())
    with pytest.raises(ValueError, match="unknown kind"):
        Panel("pie", "Pie", "d", (RequestRate(),))  # type: ignore[arg-type]
    panel = Panel("stat", "Same title", "d", (RequestRate(),))
    with pytest.raises(ValueError, match="duplicate panel titles"):
        Dashboard("x", "X", "d", (panel, panel))
    with pytest.raises(ValueError, match="slug"):
        Dashboard("Not A Slug", "X", "d", ())
    assert Panel("stat", "Latency p50 / p95", "d", (RequestRate(),)).slug == "latency-p50-p95"
    with pytest.raises(ValueError, match=r"observability\.query terms"):
        Panel("stat", "Raw", "d", ("sum(rate(x[5m]))",))  # type: ignore[arg-type]


def test_the_platform_has_the_four_dashboards() -> None:
    assert [d.name for d in DASHBOARDS] == [
        "system-health",
        "api-performance",
        "business-metrics",
        "error-tracking",
    ]
    assert dashboard_by_name("api-performance").title == "API performance"


def test_every_metric_a_panel_names_is_a_signal_constant() -> None:
    used = {n for d in DASHBOARDS for p in d.panels for q in p.queries for n in metric_names(q)}
    assert used
    assert used <= SIGNAL_NAMES, used - SIGNAL_NAMES


def test_every_panel_says_what_bad_looks_like_and_where_to_go_next() -> None:
    for board in DASHBOARDS:
        for panel in board.panels:
            assert "Bad" in panel.description, panel.title
            assert "Next" in panel.description, panel.title


def test_the_brief_panels_are_there() -> None:
    titles = {d.name: {p.title for p in d.panels} for d in DASHBOARDS}
    assert {"CPU usage", "Memory usage", "Disk usage", "Network I/O", "Event-loop lag"} <= titles[
        "system-health"
    ]
    assert {"Request rate", "Latency p50 / p95 / p99", "Top endpoints by errors"} <= titles[
        "api-performance"
    ]
    assert {"Conversion rate per variant", "Sample-ratio status"} <= titles["business-metrics"]
    assert {"Top error groups", "Open vs resolved", "Mean resolution time"} <= titles[
        "error-tracking"
    ]
