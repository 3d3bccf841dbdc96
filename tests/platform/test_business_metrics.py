"""Business metrics per variant, end to end: real assignments and conversions over HTTP, then
what /metrics, the results endpoint and the business dashboard's API say about them."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from scipy import stats as scipy_stats

from experimentation_platform.domain.stats import wilson_interval
from experimentation_platform.telemetry import names as domain
from tests.platform.test_api_assignments import assign, running_experiment
from tests.support.platform import Instance


def traffic(api: Instance, users: int = 120) -> tuple[Counter[str], Counter[str]]:
    """Assign `users` users; every third converts (plus one event from a user never exposed)."""
    exposed: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    events = []
    for n in range(users):
        variant = str(assign(api, f"u{n}")["variant"])
        exposed[variant] += 1
        if n % 3 == 0:
            converted[variant] += 1
            events.append({"user_id": f"u{n}", "name": "purchase", "experiment_key": "exp"})
    events.append({"user_id": "stranger", "name": "purchase", "experiment_key": "exp"})
    sent = api.client.post("/api/v1/events", json={"events": events}, headers=api.user)
    assert sent.status_code == 202, sent.text
    return exposed, converted


def samples(api: Instance, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = api.client.get("/metrics", headers=api.admin).text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def board(api: Instance) -> dict[str, dict[str, Any]]:
    api.client.app.state.telemetry.state.refresh()  # type: ignore[attr-defined]
    answer = api.client.get("/ops/api/dashboards/business-metrics?range=15m", headers=api.admin)
    assert answer.status_code == 200, answer.text
    return {p["slug"]: p for p in answer.json()["panels"]}


def test_wilson_interval_matches_scipy() -> None:
    for successes, trials in ((0, 10), (3, 10), (10, 10), (40, 400), (1, 1)):
        expected = scipy_stats.binomtest(successes, trials).proportion_ci(0.95, "wilson")
        low, high = wilson_interval(successes, trials)
        assert abs(low - expected.low) < 1e-9
        assert abs(high - expected.high) < 1e-9
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 12)[0] == 0.0  # exactly, not 2.8e-17
    assert wilson_interval(12, 12)[1] == 1.0


def test_conversions_are_counted_per_variant_the_user_was_exposed_to(api: Instance) -> None:
    running_experiment(api)
    exposed, converted = traffic(api)
    conversions = samples(api, f"{domain.CONVERSION_EVENTS}")
    expected = {(("experiment", "exp"), ("variant", v)): float(n) for v, n in converted.items()}
    expected[(("experiment", "exp"), ("variant", "unexposed"))] = 1.0
    assert conversions == expected
    exposures = samples(api, domain.EXPOSURES)
    assert exposures == {
        (("experiment", "exp"), ("variant", v)): float(n) for v, n in exposed.items()
    }


def test_results_carry_a_wilson_interval_per_variant(sqlite_api: Instance) -> None:
    running_experiment(sqlite_api)
    exposed, converted = traffic(sqlite_api)
    results = sqlite_api.client.get("/api/v1/experiments/exp/results", headers=sqlite_api.user)
    for variant in results.json()["variants"]:
        low, high = wilson_interval(converted[variant["key"]], exposed[variant["key"]])
        assert variant["conversion_rate_ci"] == {"low": low, "high": high, "confidence": 0.95}
        assert low < variant["conversion_rate"] < high


def test_the_business_dashboard_names_each_variant(sqlite_api: Instance) -> None:
    running_experiment(sqlite_api)
    exposed, converted = traffic(sqlite_api)
    panels = board(sqlite_api)
    table = panels["conversion-rate-per-variant"]["table"]
    assert table["columns"] == [
        "experiment",
        "variant",
        "exposed",
        "converted",
        "rate",
        "95% low",
        "95% high",
    ]
    rows = {(row[0], row[1]): row[2:] for row in table["rows"]}
    assert set(rows) == {("exp", v) for v in exposed}
    for (_, variant), (n_exposed, n_converted, rate, low, high) in rows.items():
        assert (n_exposed, n_converted) == (exposed[variant], converted[variant])
        assert rate == converted[variant] / exposed[variant]
        assert (low, high) == wilson_interval(converted[variant], exposed[variant])
    assert table["hrefs"] == ["/api/v1/experiments/exp/results"] * len(rows)
    linked = sqlite_api.client.get(table["hrefs"][0], headers=sqlite_api.admin)
    assert linked.status_code == 200
    assert panels["sample-ratio-status"]["table"]["rows"] == [["exp", 0.0]]
    # Time series: one line per experiment and variant (or outcome / result), none unnamed.
    for slug, names in {
        "conversion-events-rate": {f"exp {v}" for v in [*converted, "unexposed"]},
        "exposures-per-variant": {f"exp {v}" for v in exposed},
        "assignment-rate": {"assigned"},
    }.items():
        assert {s["label"] for s in panels[slug]["series"]} == names, slug
    assert panels["conversion-events"]["stats"][0]["value"] == sum(converted.values()) + 1


def test_open_error_groups_are_a_metric_by_severity(sqlite_api: Instance) -> None:
    """`error_groups_open{severity}` (Grafana's and CloudWatch's "Open vs resolved") follows
    the error store: the self-test error opens a medium group, resolving it closes it."""
    before = samples(sqlite_api, "error_groups_open")
    assert before[(("severity", "medium"),)] == 0.0
    failed = sqlite_api.client.post("/api/v1/ops/selftest/error", headers=sqlite_api.admin)
    assert failed.status_code == 500
    observability = sqlite_api.client.app.state.observability  # type: ignore[attr-defined]
    observability.open_groups.max_age_s = 0  # read the store now, not in up to 15 s
    deadline = time.monotonic() + 10  # the tracker writes to the store in the background
    groups: list[dict[str, Any]] = []
    while not groups and time.monotonic() < deadline:
        time.sleep(0.1)
        groups = sqlite_api.client.get("/api/v1/ops/errors", headers=sqlite_api.admin).json()[
            "items"
        ]
    [group] = groups
    assert samples(sqlite_api, "error_groups_open")[(("severity", "medium"),)] == 1.0
    resolved = sqlite_api.client.post(
        f"/api/v1/ops/errors/{group['fingerprint']}/resolve", headers=sqlite_api.admin
    )
    assert resolved.status_code == 200
    assert samples(sqlite_api, "error_groups_open")[(("severity", "medium"),)] == 0.0


def test_platform_metrics_carry_the_app_prefix_and_no_created_series(
    sqlite_api: Instance,
) -> None:
    running_experiment(sqlite_api)
    traffic(sqlite_api, users=6)
    sqlite_api.client.app.state.telemetry.state.refresh()  # type: ignore[attr-defined]
    text = sqlite_api.client.get("/metrics", headers=sqlite_api.admin).text
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert not [n for n in names if n.endswith("_created")]  # prometheus_client's timestamps
    # The platform's names (telemetry/names.py) that /metrics exports: each with `ep_`.
    declared = {v for k, v in vars(domain).items() if k.isupper() and isinstance(v, str)}
    exported = {
        n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for n in names
    }
    platform = declared & exported
    assert {domain.ASSIGNMENTS, domain.EXPOSURES, domain.CONVERSION_RATE} <= platform
    assert all(n.startswith("ep_") for n in platform)
