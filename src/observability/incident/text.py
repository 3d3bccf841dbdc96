"""Incident evidence as plain text, for a terminal or a notification body (what changed most
first), and the small formatting helpers the evidence shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from observability.incident.curve import CurvePoint
from observability.incident.groups import ErrorGroupEvidence

if TYPE_CHECKING:
    from observability.incident.evidence import IncidentEvidence, RouteEvidence

__all__ = ["iso", "one_line", "render", "since_text"]

# Correlation and client details: in the JSON lines for drill-down, noise in a summary.
SUMMARY_SKIP = ("trace_id", "span_id", "client_ip", "user_agent", "path", "bytes_in", "bytes_out")


def render(evidence: IncidentEvidence, *, lines_per_request: int = 6) -> str:
    """Plain text for a terminal or a notification body: what changed most first."""
    a = evidence.alert
    out = [f"  {line}" for line in evidence.headline] or ["  (no change against the baseline)"]
    out = ["WHAT CHANGED MOST", *out, ""]
    out += [
        f"ALERT {a.get('alertname')} [{a.get('severity')}] {str(a.get('state', '')).upper()}",
        f"  {a.get('summary') or ''}".rstrip(),
        f"  since {iso(a.get('fired_at') or a.get('active_since'))}; "
        f"evidence from {iso(evidence.since)} to {iso(evidence.gathered_at)}",
    ]
    labels = {k: v for k, v in (a.get("labels") or {}).items() if k not in ("alertname",)}
    if labels:
        out.append("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    if evidence.timed_out:
        out.append("  PARTIAL: timed out: " + ", ".join(evidence.timed_out))
    if evidence.dependencies:
        out += ["", "DEPENDENCIES (most changed first; before -> during)"]
        for d in evidence.dependencies:
            mark = "CHANGED" if d.changed else "steady "
            out.append(f"  {mark} {d.describe()}{since_text(d.onset)}")
    m = evidence.metric
    if m is not None:
        out += ["", "METRIC"]
        out.append(
            f"  {m.query}: value {_num(m.value)} {m.comparison} threshold {_num(m.threshold)}"
        )
        if m.curve:
            shown = [p for p in m.curve if p.value is not None]
            out.append(f"  curve ({m.resolution_s}s steps, oldest first): {_sparkline(shown)}")
            if shown:
                peak = max(shown, key=lambda p: p.value or 0.0)
                out.append(f"  peak {_num(peak.value)} at {iso(peak.t)}")
    if evidence.route_changes:
        out += ["", "ROUTES THAT CHANGED MOST (before -> during)"]
        out += [f"  {r.describe()}{since_text(r.onset)}" for r in evidence.route_changes]
    if evidence.failing_routes:
        out += ["", "MOST FAILING ROUTES (incident window)"]
        out += [_route_line(r) for r in evidence.failing_routes]
    if evidence.slowest_routes:
        out += ["", "SLOWEST ROUTES (incident window)"]
        out += [_route_line(r) for r in evidence.slowest_routes]
    if evidence.slow_queries:
        out += ["", "SLOW QUERIES (since the onset)"]
        for q in evidence.slow_queries:
            out.append(f"  {q.count:>5}x max {q.max_ms:.0f} ms  {q.statement[:160]}")
    if evidence.error_groups:
        out += ["", "TOP ERROR GROUPS (new or spiking since the onset)"]
        out += _group_lines(evidence.error_groups)
    if evidence.earlier_error_groups:
        out += ["", "EARLIER ERROR GROUPS (predate the incident)"]
        out += _group_lines(evidence.earlier_error_groups)
    if evidence.failing_requests:
        out += ["", "FAILING REQUESTS"]
        for req in evidence.failing_requests:
            out.append(f"  request_id={req.request_id} {req.route or ''} status={req.status}")
            for line in req.lines[:lines_per_request]:
                out.append("    " + _line_text(line))
    if evidence.config_changes:
        out += ["", "CONFIGURATION CHANGES (last hour)"]
        for c in evidence.config_changes:
            detail = ", ".join(f"{k}={v}" for k, v in c.fields.items())
            out.append(f"  {c.timestamp} {c.event} {detail}".rstrip())
    if evidence.notes:
        out += ["", "NOTES"] + [f"  {n}" for n in evidence.notes]
    return "\n".join(out) + "\n"


def _group_lines(groups: Sequence[ErrorGroupEvidence]) -> list[str]:
    out = []
    for g in groups:
        routes = ", ".join(sorted(g.routes, key=lambda r: -g.routes[r])[:3])
        tag = " (new)" if g.new else " (spiking)" if g.spiking else ""
        during = f" {g.during} since the onset," if g.during is not None else ""
        out.append(f"  {g.count:>6}x [{g.severity}] {g.type}: {one_line(g.message)[:120]}{tag}")
        out.append(f"         {during} {g.fingerprint} rule={g.rule} routes: {routes or '-'}")
    return out


def since_text(onset: float | None) -> str:
    return "" if onset is None else f" since {_clock(onset)}"


def _clock(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%H:%M:%S")


def iso(stamp: Any) -> str:
    if not isinstance(stamp, int | float):
        return "-"
    return datetime.fromtimestamp(float(stamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


_BARS = " ▁▂▃▄▅▆▇█"


def _sparkline(points: Sequence[CurvePoint]) -> str:
    values = [p.value for p in points if p.value is not None]
    if not values:
        return "(no data)"
    high = max(values) or 1.0
    bars = "".join(_BARS[min(8, int((v / high) * 8))] if high > 0 else _BARS[0] for v in values)
    return f"{bars}  (max {_num(max(values))})"


def _route_line(r: RouteEvidence) -> str:
    p95 = "-" if r.p95_ms is None else f"{r.p95_ms:.0f}"
    return (
        f"  {r.route:<40} {r.requests:>6} req  {r.errors_5xx:>5} 5xx "
        f"({r.error_rate:.1%})  p95 {p95} ms"
    )


def one_line(text: str) -> str:
    return " ".join(text.split())  # SQL errors and tracebacks span lines


def _line_text(line: Mapping[str, Any]) -> str:
    head = f"{line.get('timestamp', '')} {line.get('level', '')!s:<7} {line.get('event', '')}"
    skip = ("timestamp", "level", "event", "request_id", "principal", *SUMMARY_SKIP)
    parts = []
    for key, value in line.items():
        if key in skip:
            continue
        if isinstance(value, dict) and "message" in value:  # an exception
            value = f"{value.get('type')}: {value.get('message')}"
        elif isinstance(value, dict | list):
            continue
        parts.append(f"{key}={value}")
    rest = one_line(", ".join(parts))
    return (head + " " + rest)[:300]
