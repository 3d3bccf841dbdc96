"""Readiness: named checks, the failing one named, re-checked at most once per cache period."""

from __future__ import annotations

import time

from observability.readiness import CheckFailed, Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_check_is_named_with_its_reason_and_no_text_of_the_exception() -> None:
    def database() -> None:
        raise RuntimeError("password=hunter2 in a DSN")

    def schema() -> None:
        raise CheckFailed("schema at revision 0001, this release needs 0002")

    report = Readiness({"database": database, "schema": schema, "cache": lambda: None}).report()
    assert not report.ok
    body = report.to_dict()
    assert set(body.pop("latency_ms")) == {"database", "schema", "cache"}
    assert body == {
        "status": "unavailable",
        "checks": {
            "database": "unavailable: RuntimeError",
            "schema": "unavailable: schema at revision 0001, this release needs 0002",
            "cache": "ok",
        },
        "failing": ["database", "schema"],
    }


def test_checks_run_at_most_once_per_cache_period_and_invalidate_forces_a_run() -> None:
    calls: list[int] = []
    clock = Clock()
    readiness = Readiness({"db": lambda: calls.append(1)}, cache_seconds=1.0, clock=clock)
    for _ in range(50):
        assert readiness.report().ok
    assert len(calls) == 1
    clock.now += 1.01
    readiness.report()
    assert len(calls) == 2
    readiness.invalidate()
    readiness.report()
    assert len(calls) == 3


def test_a_recovered_dependency_is_seen_after_the_cache_period() -> None:
    clock = Clock()
    state = {"up": False}

    def cache() -> None:
        if not state["up"]:
            raise ConnectionError

    readiness = Readiness({"cache": cache}, cache_seconds=2.0, clock=clock)
    assert readiness.report().failing == ["cache"]
    state["up"] = True
    assert readiness.report().failing == ["cache"]  # still within the cache period
    clock.now += 2.0
    assert readiness.report().ok


def test_a_check_slower_than_the_threshold_is_degraded_but_still_ready() -> None:
    def slow_database() -> None:
        time.sleep(0.06)

    readiness = Readiness({"database": slow_database, "cache": lambda: None}, degraded_seconds=0.05)
    report = readiness.report()
    assert report.ok  # still ready: a load balancer keeps the instance
    assert (report.status, report.degraded) == ("degraded", ["database"])
    body = report.to_dict()
    assert body["status"] == "degraded"
    assert body["degraded"] == ["database"]
    assert body["latency_ms"]["database"] >= 60
    # No threshold: only ok or not.
    assert Readiness({"database": slow_database}).report().status == "ok"


def test_a_failing_check_is_unavailable_even_when_another_is_slow() -> None:
    def down() -> None:
        raise ConnectionError

    def slow() -> None:
        time.sleep(0.03)

    report = Readiness({"db": slow, "cache": down}, degraded_seconds=0.01).report()
    assert (report.ok, report.status, report.failing) == (False, "unavailable", ["cache"])
    assert report.degraded == ["db"]
