"""Judge a scenario from what an operator could see, against the instance's own baseline.

The judge never reads the alert's labels, the fault the game day injected or the platform's
`fault_injected` log line. It compares two windows of the same /metrics scrapes and error
groups: the baseline (warm-up traffic up to the moment of injection) and the incident (from
injection to the moment of judgement), and lists every *finding*, the same way for every
scenario, the control included:

- `route_latency` (a route): p95 >= 4x its baseline p95 and >= baseline + 100 ms, with at
  least 5 requests in each window;
- `route_errors` (a route): 5xx share >= 5% and >= 3x its baseline share, at least 3 answers
  5xx;
- `dependency_latency` (`database`): mean query time >= 4x its baseline and >= baseline +
  50 ms;
- `dependency_down` (a dependency): readiness 0 in >= 2 scrapes, after 1 in every baseline
  scrape;
- `process_memory` (`process`): resident memory >= 1.5x its baseline peak and >= +100 MB;
- `shipping_stalled` (`cloudwatch`): events shipped per second <= 10% of the baseline rate
  while the journal's backlog grew past its baseline peak;
- `new_error_group` (an exception type): an error group first seen after the injection;

and, from the instance's own incident evidence for the detected alert (`evidence_findings`):
`evidence_answered` (seconds the incidents API took), `evidence_dependency` (its first-ranked
dependency, changed, named in its first line; value: the rise in ms), `evidence_slow_queries`
(slow statements sampled) and `evidence_older_group_apart` (groups older than the fault shown
apart, none of them on top).

A scenario names its cause when every one of its `Requirement`s is met by a finding (kind,
subject, and a value of at least the stated size: "the 400 ms must show", not just "slower").
The control must end with no finding at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from experimentation_platform.gameday.observe import MetricsSample
from experimentation_platform.gameday.scenarios import Requirement, Scenario

__all__ = [
    "Finding",
    "Verdict",
    "evidence_findings",
    "find",
    "judge",
]

LATENCY_FACTOR = 4.0
LATENCY_FLOOR_MS = 100.0
DB_LATENCY_FACTOR = 4.0
DB_LATENCY_FLOOR_MS = 50.0
ERROR_SHARE_MIN = 0.05
ERROR_FACTOR = 3.0
MIN_5XX = 3
MIN_REQUESTS = 5
DOWN_SCRAPES = 2
MEMORY_FACTOR = 1.5
MEMORY_GROWTH_MB = 100.0
SHIPPED_SHARE_MAX = 0.10
# The game day's own calls and the operator's probes are not the product's traffic.
OPERATOR_ROUTES = ("/api/v1/ops", "/ops", "/metrics", "/health")

_REQUESTS = "http_requests_total"
_DURATION = "http_request_duration_seconds_bucket"
_MB = 2**20


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str
    value: float  # in the kind's unit: ms, share, MB, count
    baseline: float | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    cause_named: bool
    evidence: list[Finding]  # the findings that met the requirements (control: every finding)
    missing: list[str]  # requirements no finding met


@dataclass(frozen=True)
class _Window:
    first: MetricsSample
    last: MetricsSample
    samples: list[MetricsSample]  # every scrape in the window, both ends included

    @property
    def seconds(self) -> float:
        return max(1e-9, self.last.at - self.first.at)

    def delta(self, name: str, **labels: str) -> float | None:
        end = self.last.total(name, **labels)
        if end is None:
            return None
        return end - (self.first.total(name, **labels) or 0.0)


def find(
    baseline: Sequence[MetricsSample],
    incident: Sequence[MetricsSample],
    groups_before: Iterable[dict[str, Any]],
    groups_after: Iterable[dict[str, Any]],
    injected_at: float,
) -> list[Finding]:
    """Every finding of the incident window against the baseline window: the scrapes from
    warm-up to just before the injection, and from just after it to the judgement."""
    if len(baseline) < 2 or len(incident) < 2:
        return []
    before = _Window(baseline[0], baseline[-1], list(baseline))
    after = _Window(incident[0], incident[-1], list(incident))
    findings: list[Finding] = []
    for route in sorted(_routes(after.last)):
        findings += _route_latency(route, before, after)
        findings += _route_errors(route, before, after)
    findings += _database_latency(before, after)
    findings += _dependencies_down(before, after)
    findings += _process_memory(before, after)
    findings += _shipping_stalled(before, after)
    findings += _new_error_groups(groups_before, groups_after, injected_at)
    return findings


def judge(scenario: Scenario, findings: Sequence[Finding]) -> Verdict:
    if scenario.is_control:
        # Any finding is a cause named where there is none.
        return Verdict(bool(findings), list(findings), [])
    evidence: list[Finding] = []
    missing: list[str] = []
    for requirement in scenario.requires:
        met = [f for f in findings if _meets(f, requirement)]
        if met:
            evidence += [f for f in met if f not in evidence]
        else:
            missing.append(requirement.describe())
    return Verdict(bool(scenario.requires) and not missing, evidence, missing)


def _meets(finding: Finding, requirement: Requirement) -> bool:
    return (
        finding.kind == requirement.kind
        and (requirement.subject is None or finding.subject == requirement.subject)
        and (requirement.at_least is None or finding.value >= requirement.at_least)
        and (requirement.at_most is None or finding.value <= requirement.at_most)
    )


# -- the instance's own incident evidence ------------------------------------------------------
def evidence_findings(
    doc: Mapping[str, Any] | None,
    answered_s: float | None,
    groups_before: Iterable[Mapping[str, Any]],
) -> list[Finding]:
    """What the instance's incident evidence (`GET /api/v1/ops/incidents/{alert}`) says, read
    as an operator reads it: its most changed dependency (first row, changed, named in the
    first line), slow-query samples, where the error groups older than the fault are ranked,
    and how long it took to answer."""
    if doc is None or answered_s is None:
        return []
    partial = ", ".join(doc.get("timed_out") or [])
    findings = [
        Finding(
            "evidence_answered",
            "incidents API",
            round(answered_s, 2),
            None,
            f"GET /api/v1/ops/incidents answered in {answered_s:.2f} s"
            + (f" (partial: {partial} timed out)" if partial else ""),
        )
    ]
    findings += _evidence_dependency(doc)
    slow = sum(int(q.get("count", 0)) for q in doc.get("slow_queries") or [])
    if slow:
        shapes = len(doc.get("slow_queries") or [])
        findings.append(
            Finding(
                "evidence_slow_queries",
                "database",
                float(slow),
                None,
                f"evidence samples {slow} slow statement(s) of {shapes} shape(s)",
            )
        )
    findings += _older_groups_apart(doc, groups_before)
    return findings


def _evidence_dependency(doc: Mapping[str, Any]) -> list[Finding]:
    rows = doc.get("dependencies") or []
    headline = doc.get("headline") or [""]
    if not rows or not rows[0].get("changed") or rows[0].get("unit") != "ms":
        return []
    top = rows[0]
    name = str(top["subject"])
    before, after = top.get("before"), top.get("after")
    if before is None or after is None or not str(headline[0]).startswith(name):
        return []
    return [
        Finding(
            "evidence_dependency",
            name,
            round(after - before, 1),
            round(before, 2),
            f"evidence ranks {name} first: {top['measure']} {before:.1f} ms -> {after:.0f} ms; "
            f"first line: {headline[0]}",
        )
    ]


def _older_groups_apart(
    doc: Mapping[str, Any], groups_before: Iterable[Mapping[str, Any]]
) -> list[Finding]:
    older = {g["fingerprint"] for g in groups_before}
    top = [g["fingerprint"] for g in doc.get("error_groups") or []]
    apart = [g for g in doc.get("earlier_error_groups") or [] if g["fingerprint"] in older]
    if not apart or any(fp in older for fp in top):
        return []
    kinds = ", ".join(str(g["type"]).rsplit(".", 1)[-1] for g in apart)
    return [
        Finding(
            "evidence_older_group_apart",
            "error groups",
            float(len(apart)),
            None,
            f"{len(apart)} error group(s) older than the fault shown apart, not on top: {kinds}",
        )
    ]


# -- routes ----------------------------------------------------------------------------------
def _routes(sample: MetricsSample) -> set[tuple[str, str]]:
    found = set()
    for labels, _ in sample.matching(_REQUESTS):
        route = labels.get("route", "")
        if route and not route.startswith(OPERATOR_ROUTES):
            found.add((labels.get("method", ""), route))
    return found


def _route_latency(route: tuple[str, str], before: _Window, after: _Window) -> list[Finding]:
    method, path = route
    now, now_count = _p95_ms(after, method, path)
    then, then_count = _p95_ms(before, method, path)
    if now is None or then is None or now_count < MIN_REQUESTS or then_count < MIN_REQUESTS:
        return []
    if now < LATENCY_FACTOR * then or now - then < LATENCY_FLOOR_MS:
        return []
    name = f"{method} {path}"
    return [
        Finding(
            "route_latency",
            name,
            round(now, 1),
            round(then, 1),
            f"{name} p95 {now:.0f} ms over {now_count} requests, {then:.0f} ms before "
            f"(>= {LATENCY_FACTOR:g}x and +{LATENCY_FLOOR_MS:g} ms)",
        )
    ]


def _p95_ms(window: _Window, method: str, route: str) -> tuple[float | None, int]:
    """p95 of the route's requests in the window from the histogram's bucket deltas,
    interpolated inside the bucket as Prometheus' histogram_quantile does."""
    buckets: list[tuple[float, float]] = []
    for labels, end in window.last.matching(_DURATION, method=method, route=route):
        start = window.first.total(_DURATION, method=method, route=route, le=labels["le"])
        buckets.append((float(labels["le"]), end - (start or 0.0)))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None, 0
    total = buckets[-1][1]
    rank = 0.95 * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return lower * 1000, int(total)  # past the last finite bound: that bound
            share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
            return (lower + (bound - lower) * share) * 1000, int(total)
        lower, below = bound, cumulative
    return lower * 1000, int(total)


def _route_errors(route: tuple[str, str], before: _Window, after: _Window) -> list[Finding]:
    method, path = route
    total = after.delta(_REQUESTS, method=method, route=path) or 0.0
    failed = after.delta(_REQUESTS, method=method, route=path, status_class="5xx") or 0.0
    if total < MIN_REQUESTS or failed < MIN_5XX:
        return []
    then_total = before.delta(_REQUESTS, method=method, route=path) or 0.0
    then_failed = before.delta(_REQUESTS, method=method, route=path, status_class="5xx") or 0.0
    share = failed / total
    then_share = then_failed / then_total if then_total else 0.0
    if share < ERROR_SHARE_MIN or share < ERROR_FACTOR * then_share:
        return []
    name = f"{method} {path}"
    return [
        Finding(
            "route_errors",
            name,
            round(share, 3),
            round(then_share, 3),
            f"{name} answered 5xx to {failed:.0f} of {total:.0f} requests ({share:.0%}), "
            f"{then_share:.0%} before (>= {ERROR_SHARE_MIN:.0%} and {ERROR_FACTOR:g}x)",
        )
    ]


# -- dependencies ----------------------------------------------------------------------------
def _database_latency(before: _Window, after: _Window) -> list[Finding]:
    def mean_ms(window: _Window) -> float | None:
        count = window.delta("db_query_duration_seconds_count")
        seconds = window.delta("db_query_duration_seconds_sum")
        if not count or seconds is None:
            return None
        return seconds / count * 1000

    now, then = mean_ms(after), mean_ms(before)
    if now is None or then is None:
        return []
    if now < DB_LATENCY_FACTOR * then or now - then < DB_LATENCY_FLOOR_MS:
        return []
    return [
        Finding(
            "dependency_latency",
            "database",
            round(now, 1),
            round(then, 2),
            f"database queries took {now:.0f} ms on average, {then:.1f} ms before "
            f"(>= {DB_LATENCY_FACTOR:g}x and +{DB_LATENCY_FLOOR_MS:g} ms)",
        )
    ]


def _dependencies_down(before: _Window, after: _Window) -> list[Finding]:
    findings = []
    names = {labels["dependency"] for labels, _ in after.last.matching("service_ready")}
    for dependency in sorted(names):
        then = [s.total("service_ready", dependency=dependency) for s in before.samples]
        now = [s.total("service_ready", dependency=dependency) for s in after.samples]
        if not then or any(v != 1.0 for v in then):
            continue  # not steadily ready before: no baseline to differ from
        down = sum(1 for v in now if v == 0.0)
        if down >= DOWN_SCRAPES:
            findings.append(
                Finding(
                    "dependency_down",
                    dependency,
                    float(down),
                    0.0,
                    f"readiness of {dependency} was 0 in {down} of {len(now)} scrapes, "
                    f"1 in all {len(then)} before",
                )
            )
    return findings


def _process_memory(before: _Window, after: _Window) -> list[Finding]:
    def peak(window: _Window) -> float | None:
        values = [s.total("process_resident_memory_bytes") for s in window.samples]
        known = [v for v in values if v is not None]
        return max(known) / _MB if known else None

    now, then = peak(after), peak(before)
    if now is None or then is None:
        return []
    growth = now - then
    if now < MEMORY_FACTOR * then or growth < MEMORY_GROWTH_MB:
        return []
    return [
        Finding(
            "process_memory",
            "process",
            round(growth, 1),
            round(then, 1),
            f"resident memory peaked at {now:.0f} MB, {then:.0f} MB before (+{growth:.0f} MB; "
            f">= {MEMORY_FACTOR:g}x and +{MEMORY_GROWTH_MB:g} MB)",
        )
    ]


def _shipping_stalled(before: _Window, after: _Window) -> list[Finding]:
    shipped_then = before.delta("cloudwatch_events_shipped_total")
    shipped_now = after.delta("cloudwatch_events_shipped_total")
    if shipped_then is None or shipped_now is None or shipped_then <= 0:
        return []
    rate_then = shipped_then / before.seconds
    rate_now = shipped_now / after.seconds
    spooled_then = max(s.total("cloudwatch_spooled_bytes") or 0.0 for s in before.samples)
    spooled_now = after.last.total("cloudwatch_spooled_bytes") or 0.0
    if rate_now > SHIPPED_SHARE_MAX * rate_then or spooled_now <= spooled_then:
        return []
    return [
        Finding(
            "shipping_stalled",
            "cloudwatch",
            round(rate_now, 2),
            round(rate_then, 2),
            f"CloudWatch shipping: {rate_now:.1f} events/s shipped over {after.seconds:.0f} s, "
            f"{rate_then:.1f}/s before; journal backlog {spooled_now / 1024:.0f} KiB, at most "
            f"{spooled_then / 1024:.0f} KiB before",
        )
    ]


# -- error groups ----------------------------------------------------------------------------
def _new_error_groups(
    before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]], injected_at: float
) -> list[Finding]:
    known = {g["fingerprint"] for g in before}
    findings = []
    for group in after:
        first_seen = datetime.fromisoformat(group["first_seen"]).timestamp()
        if group["fingerprint"] in known or first_seen < injected_at:
            continue
        kind = str(group["type"]).rsplit(".", 1)[-1]
        message = " ".join(str(group["message"]).split())[:80]  # SQL errors span lines
        findings.append(
            Finding(
                "new_error_group",
                kind,
                float(group["count"]),
                None,
                f"new error group {kind} ({group['count']}x since the injection): {message}",
            )
        )
    return findings
