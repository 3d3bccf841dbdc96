"""The game day's judge on /metrics scrapes rendered by prometheus_client, as an instance
serves them: findings only where the incident differs from the baseline by the stated factors,
none for unchanged traffic (the control), and requirements that demand the fault's size."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from experimentation_platform.gameday import CONTROL, SCENARIOS, Finding
from experimentation_platform.gameday.judge import evidence_findings, find, judge
from experimentation_platform.gameday.observe import MetricsSample
from experimentation_platform.gameday.scenarios import unjudged

MB = 2**20
ASSIGN = ("POST", "/api/v1/assignments")
EVENTS = ("POST", "/api/v1/events")
FLAGS = ("GET", "/api/v1/flags/{key}/evaluation")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)


def scenario(name: str) -> Any:
    return next(s for s in SCENARIOS if s.name == name)


class Instance:
    """The metrics an instance exports, advanced by the test; `scrape()` renders /metrics."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "http_requests", "", ["method", "route", "status_class"], registry=r
        )
        self.duration = Histogram(
            "http_request_duration_seconds", "", ["method", "route"], buckets=BUCKETS, registry=r
        )
        self.queries = Histogram("db_query_duration_seconds", "", ["operation"], registry=r)
        self.ready = Gauge("service_ready", "", ["dependency"], registry=r)
        self.rss = Gauge("process_resident_memory_bytes", "", registry=r)
        self.shipped = Counter("cloudwatch_events_shipped", "", registry=r)
        self.spooled = Gauge("cloudwatch_spooled_bytes", "", registry=r)
        for dependency in ("database", "cache"):
            self.ready.labels(dependency).set(1)
        self.rss.set(140 * MB)
        self.clock = 1_000.0

    def traffic(
        self,
        seconds: float,
        *,
        latency: float = 0.003,
        query: float = 0.0002,
        failing: float = 0.0,
        route: tuple[str, str] = ASSIGN,
    ) -> None:
        """About 10 requests a second per route for `seconds`; `route` gets the failures."""
        for _ in range(int(seconds * 10)):
            for method, path in (ASSIGN, EVENTS, FLAGS):
                spread = latency * self.rng.uniform(0.5, 1.5)
                failed = (method, path) == route and self.rng.random() < failing
                status = "5xx" if failed else "2xx"
                self.requests.labels(method, path, status).inc()
                self.duration.labels(method, path).observe(spread)
                self.queries.labels("select").observe(query * self.rng.uniform(0.9, 1.1))
            self.shipped.inc(3)

    def scrape(self, seconds: float = 1.0) -> MetricsSample:
        self.clock += seconds
        return MetricsSample.parse(generate_latest(self.registry).decode(), self.clock)


def windows(
    instance: Instance, before: float, during: dict[str, Any], after: float = 10.0
) -> tuple[list[MetricsSample], list[MetricsSample]]:
    """Baseline scrapes over `before` seconds of normal traffic, then incident scrapes over
    `after` seconds of traffic shaped by `during`."""
    baseline = [instance.scrape()]
    for _ in range(int(before)):
        instance.traffic(1.0)
        baseline.append(instance.scrape())
    incident = [instance.scrape(0.1)]
    for _ in range(int(after)):
        instance.traffic(1.0, **during)
        incident.append(instance.scrape())
    return baseline, incident


def group(fingerprint: str, kind: str, at: float, count: int = 5) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint,
        "type": kind,
        "message": "injected\n   failure",
        "count": count,
        "first_seen": datetime.fromtimestamp(at, UTC).isoformat(),
    }


def kinds(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.kind, f.subject) for f in findings}


def test_unchanged_traffic_yields_no_finding_and_the_control_passes() -> None:
    instance = Instance()
    baseline, incident = windows(instance, 15, {}, after=45)
    findings = find(baseline, incident, [], [], incident[0].at)
    assert findings == []
    assert judge(CONTROL, findings).cause_named is False


def test_a_finding_in_the_control_is_a_cause_named_where_there_is_none() -> None:
    made_up = Finding("route_latency", "POST /x", 500.0, 5.0, "slow")
    verdict = judge(CONTROL, [made_up])
    assert verdict.cause_named is True
    assert verdict.evidence == [made_up]


def test_a_slow_database_shows_in_its_queries_and_the_routes_with_its_size() -> None:
    instance = Instance()
    baseline, incident = windows(instance, 15, {"latency": 0.45, "query": 0.41})
    findings = find(baseline, incident, [], [], incident[0].at)
    found = {(f.kind, f.subject): f for f in findings}
    database = found[("dependency_latency", "database")]
    assert database.value == pytest.approx(410, rel=0.05)
    assert database.baseline == pytest.approx(0.2, rel=0.1)
    assert ("route_latency", "POST /api/v1/assignments") in found
    assert found[("route_latency", "POST /api/v1/assignments")].value >= 400
    verdict = judge(scenario("db-latency"), findings)
    assert verdict.cause_named
    assert verdict.missing == []


def test_a_slowdown_smaller_than_the_fault_does_not_name_its_cause() -> None:
    # 150 ms everywhere: slower than before (found), but not the 400 ms that was injected.
    instance = Instance()
    baseline, incident = windows(instance, 15, {"latency": 0.15, "query": 0.15})
    findings = find(baseline, incident, [], [], incident[0].at)
    assert ("dependency_latency", "database") in kinds(findings)
    verdict = judge(scenario("db-latency"), findings)
    assert not verdict.cause_named
    assert verdict.missing == ["dependency_latency of database >= 360", "route_latency >= 400"]


def test_slower_by_a_factor_but_under_the_floor_is_not_a_finding() -> None:
    instance = Instance()
    baseline, incident = windows(instance, 15, {"latency": 0.06, "query": 0.01})
    assert find(baseline, incident, [], [], incident[0].at) == []


def test_errors_on_one_route_and_a_new_error_group_name_the_assignment_fault() -> None:
    instance = Instance()
    baseline, incident = windows(instance, 15, {"failing": 0.5})
    injected = incident[0].at
    old = group("old", "builtins.ValueError", injected - 20, count=40)
    new = group("new", "experimentation_platform.faults.FaultInjectedError", injected + 1)
    findings = find(baseline, incident, [old], [old, new], injected)
    found = {(f.kind, f.subject): f for f in findings}
    errors = found[("route_errors", "POST /api/v1/assignments")]
    assert 0.3 < errors.value < 0.7
    assert errors.baseline == 0.0
    assert ("new_error_group", "FaultInjectedError") in found
    assert ("new_error_group", "ValueError") not in found  # seen before the injection
    assert [k for k in kinds(findings) if k[0] == "route_errors"] == [
        ("route_errors", "POST /api/v1/assignments")
    ]
    assert judge(scenario("assignment-errors"), findings).cause_named


def test_a_route_already_failing_as_much_before_is_not_a_finding() -> None:
    instance = Instance()
    baseline = [instance.scrape()]
    for _ in range(15):
        instance.traffic(1.0, failing=0.3)
        baseline.append(instance.scrape())
    incident = [instance.scrape(0.1)]
    for _ in range(10):
        instance.traffic(1.0, failing=0.3)
        incident.append(instance.scrape())
    assert find(baseline, incident, [], [], incident[0].at) == []


def test_a_dependency_is_down_after_two_scrapes_at_zero_following_a_ready_baseline() -> None:
    instance = Instance()
    baseline, _ = windows(instance, 10, {}, after=0)
    instance.ready.labels("cache").set(0)
    down = instance.scrape(0.1)
    instance.ready.labels("cache").set(1)
    blip = [down, instance.scrape()]
    assert find(baseline, blip, [], [], blip[0].at) == []  # one failed ping is not an outage
    instance.ready.labels("cache").set(0)
    incident = [instance.scrape(0.1), instance.scrape()]
    findings = find(baseline, incident, [], [], incident[0].at)
    assert kinds(findings) == {("dependency_down", "cache")}
    assert judge(scenario("cache-unavailable"), findings).cause_named
    # Flapping before the injection: no steady baseline to differ from, no finding.
    flapping = [*baseline[:-1], incident[-1], baseline[-1]]
    assert find(flapping, incident, [], [], incident[0].at) == []


def test_memory_growth_is_measured_against_the_baseline_peak() -> None:
    instance = Instance()
    baseline, _ = windows(instance, 10, {}, after=0)
    instance.rss.set(650 * MB)
    incident = [instance.scrape(0.1), instance.scrape()]
    findings = find(baseline, incident, [], [], incident[0].at)
    [memory] = findings
    assert (memory.kind, memory.subject) == ("process_memory", "process")
    assert memory.value == pytest.approx(510)
    assert judge(scenario("memory-pressure"), findings).cause_named
    instance.rss.set(200 * MB)  # +60 MB: growth, but not pressure
    assert find(baseline, [instance.scrape(0.1), instance.scrape()], [], [], 0.0) == []


def test_shipping_stalls_only_when_events_wait() -> None:
    instance = Instance()
    baseline, _ = windows(instance, 10, {}, after=0)
    # No traffic at all: nothing shipped, nothing waiting: not a stall.
    quiet = [instance.scrape(0.1), instance.scrape(), instance.scrape()]
    assert find(baseline, quiet, [], [], quiet[0].at) == []
    instance.spooled.set(500_000)  # events wait and none are shipped
    stalled = [instance.scrape(0.1), instance.scrape(), instance.scrape()]
    findings = find(baseline, stalled, [], [], stalled[0].at)
    assert kinds(findings) == {("shipping_stalled", "cloudwatch")}
    assert judge(scenario("cloudwatch-unreachable"), findings).cause_named


def test_the_game_days_own_calls_are_not_product_routes() -> None:
    instance = Instance()
    baseline, _ = windows(instance, 10, {}, after=0)
    for _ in range(20):
        instance.requests.labels("PUT", "/api/v1/ops/faults", "5xx").inc()
        instance.duration.labels("PUT", "/api/v1/ops/faults").observe(2.0)
    incident = [instance.scrape(0.1), instance.scrape()]
    assert find(baseline, incident, [], [], incident[0].at) == []


def test_every_fault_scenario_requires_evidence_and_the_control_none() -> None:
    for s in SCENARIOS:
        if s.is_control:
            assert s.requires == ()
            assert s.fault is None
        else:
            assert s.requires, s.name
            assert not judge(s, []).cause_named


def test_only_host_alerts_and_slow_burn_tickets_go_unjudged() -> None:
    assert unjudged("cpu_saturation") == "the machine, not the instance"
    assert unjudged("assignment_latency_ticket") is not None
    for judged in ("assignment_latency_page", "dependency_not_ready", "log_shipping_lag"):
        assert unjudged(judged) is None
    # No scenario is detected by an alert the game day does not judge.
    assert all(unjudged(name) is None for s in SCENARIOS for name in s.expect)


# -- the instance's own incident evidence (db-network-latency) ----------------------------------
OLD_GROUP = {"fingerprint": "selftest-fp", "type": "experimentation_platform.api.ops.SelfTestError"}


def evidence_doc(**changes: Any) -> dict[str, Any]:
    """An incident document as GET /api/v1/ops/incidents/ALERT answers it, database first."""
    doc: dict[str, Any] = {
        "headline": ["database statement p95 4.1 ms \u2192 1010 ms since 11:11:33"],
        "dependencies": [
            {"subject": "database", "measure": "statement p95", "unit": "ms", "before": 4.1,
             "after": 1010.0, "changed": True},
            {"subject": "cache", "measure": "operation p95", "unit": "ms", "before": 0.1,
             "after": 0.1, "changed": False},
        ],
        "slow_queries": [{"statement": "SELECT e.key FROM experiments AS e WHERE e.key = %(k)s",
                          "count": 12, "max_ms": 1500.0}],
        "error_groups": [],
        "earlier_error_groups": [OLD_GROUP],
        "timed_out": [],
    }  # fmt: skip
    doc.update(changes)
    return doc


def drill_findings(doc: dict[str, Any], answered_s: float = 1.2) -> list[Finding]:
    metrics = [
        Finding("dependency_latency", "database", 900.0, 6.0, "database queries took 900 ms")
    ]
    return metrics + evidence_findings(doc, answered_s, [OLD_GROUP])


def test_the_drill_is_named_when_the_evidence_ranks_the_database_first() -> None:
    verdict = judge(scenario("db-network-latency"), drill_findings(evidence_doc()))
    assert verdict.missing == []
    assert verdict.cause_named
    [named] = [f for f in verdict.evidence if f.kind == "evidence_dependency"]
    assert (named.subject, named.value, named.baseline) == ("database", 1005.9, 4.1)


@pytest.mark.parametrize(
    ("changes", "answered_s", "missing"),
    [
        # No dependency ranking (or nothing changed): the database is not named.
        ({"dependencies": []}, 1.2, "evidence_dependency of database >= 400"),
        (
            {"dependencies": [{**evidence_doc()["dependencies"][0], "changed": False}]},
            1.2,
            "evidence_dependency of database >= 400",
        ),
        # Ranked first but the first line says something else.
        (
            {"headline": ["GET /x p95 2 ms \u2192 900 ms"]},
            1.2,
            "evidence_dependency of database >= 400",
        ),
        ({"slow_queries": []}, 1.2, "evidence_slow_queries of database >= 1"),
        # The self-test from before the fault on top, or not shown at all.
        (
            {"error_groups": [OLD_GROUP], "earlier_error_groups": []},
            1.2,
            "evidence_older_group_apart >= 1",
        ),
        ({"earlier_error_groups": []}, 1.2, "evidence_older_group_apart >= 1"),
        # Too slow while the database is slow.
        ({}, 3.4, "evidence_answered of incidents API <= 3"),
    ],
)
def test_the_drill_is_not_named_without_each_part_of_the_evidence(
    changes: dict[str, Any], answered_s: float, missing: str
) -> None:
    doc = evidence_doc(**changes)
    verdict = judge(scenario("db-network-latency"), drill_findings(doc, answered_s))
    assert not verdict.cause_named
    assert verdict.missing == [missing]


def test_no_evidence_document_gives_no_evidence_finding() -> None:
    assert evidence_findings(None, None, [OLD_GROUP]) == []
