"""The game day's scenarios: what each breaks, which alerts count as its detection, and which
evidence must name its cause (see `judge` for how evidence is found, the same way for all).

A scenario's fault goes in one of two ways: through the instance's fault API
(`PUT /api/v1/ops/faults`, `via="api"`), or by breaking the network path to a dependency
(`via="network"`: the game day's own TCP proxy in front of the CloudWatch endpoint, or in
front of PostgreSQL, where it adds latency). The `control` scenario injects nothing: it must
end with no alert and no evidence at all.

Requirements of kind `evidence_*` are met by the instance's own incident evidence (its
`GET /api/v1/ops/incidents/{alert}` document, see `judge.evidence_findings`), the others by
/metrics and error groups against the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "CONTROL",
    "HOST_ALERTS",
    "MEMORY_BUDGET_MB",
    "SCENARIOS",
    "Requirement",
    "Scenario",
    "scenarios_named",
    "unjudged",
]

# memory-pressure: 512 MB of ballast + the instance's own ~150 MB is over 90% of 640 MB, while
# the instance alone stays near a quarter of it.
MEMORY_BUDGET_MB = 640
# Alerts about the machine, not the instance: system CPU, memory and disk. The game day's
# instances share the machine with whatever else runs there, and the shortened windows turn
# "over 90% for 10 minutes" into 6 s, which a busy shared machine reaches without any fault.
HOST_ALERTS = frozenset({"cpu_saturation", "memory_saturation", "disk_saturation"})


def unjudged(alert: str) -> str | None:
    """Why an alert is reported but never counted as a scenario's detection nor as the
    control's false alarm; None for the alerts a game day judges (every page, dependency,
    error, memory, shipping and pipeline alert)."""
    if alert in HOST_ALERTS:
        return "the machine, not the instance"
    if alert.endswith("_ticket"):
        # 1-day and 3-day burn windows (864 s and 2592 s at scale 0.01) that a game day's
        # instance, a minute old, fills with its first minute: there, 1% of slow calls on a
        # busy machine is already a 1x burn. A game day cannot exercise a slow burn.
        return "a slow-burn ticket, its days-long windows hold only the instance's first minute"
    return None


@dataclass(frozen=True)
class Requirement:
    """Evidence the judge must find for the cause to count as named: a finding of `kind` about
    `subject` (None: any subject) whose value is at least `at_least` (None: any value)."""

    kind: str
    subject: str | None = None
    at_least: float | None = None
    at_most: float | None = None

    def describe(self) -> str:
        about = f" of {self.subject}" if self.subject else ""
        bound = f" >= {self.at_least:g}" if self.at_least is not None else ""
        bound += f" <= {self.at_most:g}" if self.at_most is not None else ""
        return f"{self.kind}{about}{bound}"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    fault: Mapping[str, Any] | None  # the fault API body, or the network fault; None: control
    via: Literal["api", "network", "none"]
    expect: tuple[str, ...] = ()  # alerts that count as detection (the first to fire wins)
    expect_labels: Mapping[str, str] = field(default_factory=dict)
    requires: tuple[Requirement, ...] = ()  # all of them: the cause is named
    description: str = ""
    settings: Mapping[str, str] = field(default_factory=dict)  # EP_* of a started instance
    needs_cloudwatch: bool = False  # a started instance ships to a local moto server
    needs_postgres: bool = False  # a started instance's database is PostgreSQL behind a proxy
    older_error: bool = False  # a self-test error at warm-up: a group older than the fault
    # At least this much warm-up: evidence compares with the window before the alert's
    # window (36 s at scale 0.01), which must hold traffic.
    min_warmup_s: float = 0.0

    @property
    def is_control(self) -> bool:
        return self.via == "none"


CONTROL = Scenario(
    "control",
    "Control (no fault)",
    None,
    "none",
    description="Nothing is injected: the same traffic, the same watch. No alert may fire and "
    "the judge may find no evidence of any cause.",
)

SCENARIOS: tuple[Scenario, ...] = (
    CONTROL,
    Scenario(
        "db-latency",
        "Database latency",
        {"db_latency_ms": 400},
        "api",
        expect=("api_latency_page", "assignment_latency_page"),
        requires=(
            # The injected 400 ms must show in the database's own mean query time (within 10%:
            # a query caught mid-flight by the injection ran without the delay)...
            Requirement("dependency_latency", "database", at_least=360),
            # ...and in the p95 of a route that serves users.
            Requirement("route_latency", None, at_least=400),
        ),
        description="Every SQL statement of the platform database waits 400 ms.",
    ),
    Scenario(
        "assignment-errors",
        "Assignment error burst",
        {"assignment_error_rate": 0.5},
        "api",
        expect=("error_rate_spike", "api_availability_page"),
        requires=(
            # Half of the assignments fail: at least a quarter of the route's answers are 5xx.
            Requirement("route_errors", "POST /api/v1/assignments", at_least=0.25),
            Requirement("new_error_group", "FaultInjectedError"),
        ),
        description="Half of all assignments raise inside the assignment path (HTTP 500).",
    ),
    Scenario(
        "db-unavailable",
        "Database unavailable",
        {"db_unavailable": True},
        "api",
        expect=("dependency_not_ready",),
        expect_labels={"dependency": "database"},
        requires=(
            Requirement("dependency_down", "database"),
            Requirement("new_error_group", "OperationalError"),
        ),
        description="Every SQL statement fails as if the database refused connections.",
    ),
    Scenario(
        "cache-unavailable",
        "Cache unavailable",
        {"cache_unavailable": True},
        "api",
        expect=("dependency_not_ready",),
        expect_labels={"dependency": "cache"},
        requires=(Requirement("dependency_down", "cache"),),
        description="The configuration cache fails like a Redis that went away: reads miss "
        "(served from the database), invalidation and the readiness ping raise.",
    ),
    Scenario(
        "memory-pressure",
        "Memory pressure",
        {"memory_pressure_mb": 512},
        "api",
        expect=("process_memory_high",),
        # The process's own resident memory grew by most of the ballast.
        requires=(Requirement("process_memory", "process", at_least=400),),
        description="The instance allocates and holds 512 MB; its memory budget "
        f"(EP_MEMORY_BUDGET_MB={MEMORY_BUDGET_MB}) puts that plus its own ~150 MB over 90%.",
        settings={"EP_MEMORY_BUDGET_MB": str(MEMORY_BUDGET_MB)},
    ),
    Scenario(
        "cloudwatch-unreachable",
        "CloudWatch unreachable",
        {"cloudwatch_network": "blackhole"},
        "network",
        expect=("log_shipping_lag",),
        expect_labels={"dependency": "cloudwatch"},
        requires=(Requirement("shipping_stalled", "cloudwatch"),),
        description="The network path to CloudWatch Logs goes silent: the game day's TCP "
        "proxy in front of the endpoint accepts connections and never answers. Lines stay in "
        "the shipper's journal and the shipping lag grows.",
        needs_cloudwatch=True,
    ),
    Scenario(
        "db-network-latency",
        "Database network latency",
        {"database_network_latency_ms": 500},
        "network",
        expect=("api_latency_page", "assignment_latency_page"),
        requires=(
            # The 500 ms show in the database's own mean statement time on /metrics...
            Requirement("dependency_latency", "database", at_least=400),
            # ...and the instance's evidence ranks the database first among dependencies,
            # from its statement latency (p95 risen by at least 400 ms), names it in its
            # first line, samples the slow statements, keeps the self-test group from before
            # the fault apart (not on top), and answers within 3 s while the database is slow.
            Requirement("evidence_dependency", "database", at_least=400),
            Requirement("evidence_slow_queries", "database", at_least=1),
            Requirement("evidence_older_group_apart", None, at_least=1),
            Requirement("evidence_answered", "incidents API", at_most=3.0),
        ),
        description="The network path to PostgreSQL gets 500 ms slower per round trip: the "
        "game day's TCP proxy between the instance and the database delays every chunk "
        "(connections stay open). The platform's error store shares that database. A "
        "self-test error at warm-up leaves an unrelated, older error group.",
        needs_postgres=True,
        older_error=True,
        min_warmup_s=45.0,
    ),
)


def scenarios_named(names: Sequence[str]) -> list[Scenario]:
    """`all` or scenario names; an unknown name raises ValueError listing the known ones."""
    known: Mapping[str, Scenario] = {s.name: s for s in SCENARIOS}
    if list(names) in (["all"], []):
        return list(SCENARIOS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; known: all, {', '.join(known)}")
    return [known[n] for n in names]
