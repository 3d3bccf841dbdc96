"""The game day report: a summary table, then each scenario's timeline, the evidence that named
its cause (or what was missing), and a short view of the instance's own incident evidence.
`json_lines` is the `--json` output: one object per scenario."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from experimentation_platform.gameday.judge import Finding
from experimentation_platform.gameday.runner import ScenarioResult
from experimentation_platform.gameday.scenarios import unjudged

__all__ = ["json_lines", "render_report"]


def json_lines(results: Sequence[ScenarioResult]) -> str:
    return "".join(orjson.dumps(r.to_json()).decode() + "\n" for r in results)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def render_report(results: Sequence[ScenarioResult], *, evidence: bool = True) -> str:
    lines = [
        "GAME DAY REPORT",
        "",
        f"{'scenario':<22} {'alert':<24} {'detect':>7} {'notify':>7} {'resolve':>8}  "
        f"{'cause named':<11}  verdict",
    ]
    for r in results:
        alert = r.detected_alert or ("quiet" if r.control else "NOT DETECTED")
        if not r.ran:
            alert = "NOT RUN"
        cause = "yes" if r.cause_named else "no"
        lines.append(
            f"{r.scenario:<22} {alert:<24} {_seconds(r.detected_s):>7} "
            f"{_seconds(r.notified_s):>7} {_seconds(r.resolved_s):>8}  {cause:<11}  "
            f"{'pass' if r.passed else 'FAIL'}"
        )
    for r in results:
        lines += ["", f"== {r.scenario}: {r.title} -- fault {r.fault}"]
        lines += _timeline(r)
        if evidence and r.incident:
            lines += _incident_summary(r.incident)
    return "\n".join(lines) + "\n"


def _timeline(r: ScenarioResult) -> list[str]:
    out = []
    if r.baseline_alerts:
        out.append(f"  firing before the fault: {', '.join(r.baseline_alerts)}")
    if r.detected:
        verb = "FALSE ALARM" if r.control else "detected by"
        out.append(f"  {verb} {r.detected_alert} after {_seconds(r.detected_s)}")
    elif r.control and r.ran:
        out.append(f"  no alert during the watch ({_seconds(r.judged_after_s)})")
    if r.notification:
        out.append(
            f"  notified via {r.notification['receiver']} after {_seconds(r.notified_s)}: "
            f"{str(r.notification['title'])[:160]}"
        )
    if r.other_alerts:
        out.append(f"  also firing: {', '.join(r.other_alerts)}")
    for label in r.unjudged_alerts:
        out.append(f"  not judged: {label} ({unjudged(label.split('{')[0])})")
    if r.judged_after_s is not None:
        out.append(f"  judged {_seconds(r.judged_after_s)} after the injection, from /metrics and")
        out.append("  error groups against the warm-up baseline:")
    mark = "  finds (no fault!):" if r.control else "  names the cause:"
    out += _listed(mark, r.evidence)
    for missing in r.missing:
        out.append(f"  MISSING evidence: {missing}")
    out += _listed("  also found:", [f for f in r.findings if f not in r.evidence])
    if r.control and r.ran and not r.findings:
        out.append("  no finding: nothing differs from the baseline")
    if r.resolved:
        out.append(f"  resolve notified {_seconds(r.resolved_s)} after removal")
    if r.instance_rss_mb:
        moments = {"before": "before", "fault": "with the fault", "after": "after"}
        out.append(
            "  instance RSS: "
            + ", ".join(f"{mb:.0f} MB {moments[k]}" for k, mb in r.instance_rss_mb.items())
        )
    out += [f"  note: {n}" for n in r.notes]
    return out


def _listed(mark: str, findings: Sequence[Finding], per_kind: int = 3) -> list[str]:
    """Findings, at most `per_kind` of each kind (a database outage opens a group per query)."""
    out: list[str] = []
    shown: dict[str, int] = {}
    for finding in findings:
        shown[finding.kind] = shown.get(finding.kind, 0) + 1
        if shown[finding.kind] <= per_kind:
            out.append(f"{mark} {finding.text}")
    for kind, count in shown.items():
        if count > per_kind:
            out.append(f"{mark} ... and {count - per_kind} more {kind}")
    return out


def _incident_summary(doc: dict[str, Any]) -> list[str]:
    """The instance's own incident evidence (GET /api/v1/ops/incidents/ALERT), in short."""
    out = ["  the instance's incident evidence:"]
    out += [f"  | {line}" for line in doc.get("headline") or []]
    if doc.get("timed_out"):
        out.append(f"  | partial: {', '.join(doc['timed_out'])} timed out")
    for dep in [d for d in doc.get("dependencies") or [] if d.get("changed")][:3]:
        out.append(
            f"  | dependency {dep.get('subject')} {dep.get('measure')}: "
            f"{_shown(dep.get('before'))} -> {_shown(dep.get('after'))} {dep.get('unit')}"
        )
    for query in (doc.get("slow_queries") or [])[:2]:
        out.append(
            f"  | slow query {query.get('count')}x max {query.get('max_ms', 0):.0f} ms: "
            f"{str(query.get('statement'))[:100]}"
        )
    metric = doc.get("metric") or {}
    if metric:
        value = metric.get("value")
        shown = "-" if value is None else f"{value:.3g}"
        out.append(
            f"  | metric {metric.get('query')}: value {shown} (threshold {metric.get('threshold')})"
        )
    for title, key in (("failing", "failing_routes"), ("slowest", "slowest_routes")):
        for route in (doc.get(key) or [])[:3]:
            p95 = route.get("p95_ms")
            shown = "-" if p95 is None else f"{p95:.0f}"
            out.append(
                f"  | {title} route {route.get('route')}: {route.get('requests')} req, "
                f"{route.get('errors_5xx')} 5xx, p95 {shown} ms"
            )
    for title, key in (("error group", "error_groups"), ("earlier group", "earlier_error_groups")):
        for group in (doc.get(key) or [])[:3]:
            kind = str(group.get("type", "")).rsplit(".", 1)[-1]
            out.append(f"  | {title} {kind} ({group.get('count')}x)")
    return out


def _shown(value: Any) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.4g}"
