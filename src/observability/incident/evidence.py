"""Incident evidence: for one alert, everything an on-call person looks at first, in one place.

    evidence = gather_evidence(alert, definitions=defs, windows=windows, history=history,
                               errors=store, logs=LogSearch(log_dir), config_events=(...))
    print(evidence.render_text())          # the CLI, a notification body
    page_json = evidence.to_dict()         # a UI page

What it gathers (each part optional: a missing source leaves a note, never an exception), in
the order an on-call person reads it:

* `headline`: what changed most, in words ("database statement p95 4 ms -> 503 ms since
  11:11:33"), then the route that changed most and the top new error group;
* dependencies ranked by change: each `DependencySignal` (the database's statement latency,
  the cache's, CloudWatch lag, readiness...) over a baseline window before the incident and
  the incident window, with before/after values and when it started to move (`changes`);
* the metric that breached: the alert's query, value and threshold, and its recent curve --
  the same term the evaluator ran, re-evaluated by `observability.query` at earlier moments
  over the rolling windows (5 s slots while they hold the moment) and `MetricHistory` minutes
  (further back, longer windows, or when no windows are at hand);
* routes whose p95 or 5xx ratio rose most; the slowest and most failing routes of the
  incident window (live: the partial slot included);
* error groups new or spiking since the onset, ranked; older groups that merely go on apart;
* slow-query samples (statement shape, count, slowest) for latency alerts;
* sample failing requests (error-level log lines) with every log line of each request;
* recent configuration changes: log lines of the given `config_events` in the last hour.

Memory sections (windows) run first, then the store and log sections, all against one
deadline (`bounded`): what timed out is listed in `timed_out`, the rest is shown.

Why hand-written: it joins this toolkit's own stores (windows, history, error groups, log
search); no library knows them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from observability.alerting.rules import AlertDefinition
from observability.alerting.state import AlertInstance
from observability.errors.recent import RecentGroups
from observability.errors.store import ErrorStore
from observability.incident.bounded import run_bounded
from observability.incident.changes import (
    Change,
    DependencySignal,
    MemoryFirst,
    Windows,
    compare_dependencies,
    compare_routes,
    comparison_windows,
    onset,
    route_term,
)
from observability.incident.curve import (
    CurvePoint,
    MetricEvidence,
    describe_query,
    metric_evidence,
    window_or_none,
)
from observability.incident.groups import (
    ErrorGroupEvidence,
    rank_groups,
    recent_groups,
    stored_groups,
    with_routes,
)
from observability.incident.text import SUMMARY_SKIP, iso, render, since_text
from observability.logsearch import LogQuery, LogSearch, LogSearchError
from observability.metrics.history import MetricHistory
from observability.metrics.names import SLOW_QUERY
from observability.metrics.windows import RollingWindows
from observability.query.live import LiveSource
from observability.query.minutes import MinuteStore
from observability.query.model import (
    BurnRate,
    LatencyAbove,
    LatencyQuantile,
    MetricTerm,
)
from observability.query.source import MetricSource

__all__ = [
    "ConfigChange",
    "CurvePoint",
    "ErrorGroupEvidence",
    "FailingRequest",
    "IncidentEvidence",
    "MetricEvidence",
    "RouteEvidence",
    "SlowQuerySample",
    "alert_from_view",
    "describe_query",
    "gather_evidence",
]

_HOUR = 3600
_MINUTE = 60
_FIELD_LIMIT = 2000  # a stack trace in a log line is cut here: evidence, not an archive
_QUIET_FIELDS = ("service", "instance", "logger")  # the same on every line of one instance
# Correlation and client details: in the JSON lines for drill-down, noise in a summary.


# -- the evidence ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RouteEvidence:
    route: str  # "METHOD /template"
    requests: int
    errors_5xx: int
    error_rate: float
    p95_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class FailingRequest:
    request_id: str
    route: str | None
    status: int | None
    lines: list[dict[str, Any]]


@dataclass(frozen=True)
class ConfigChange:
    timestamp: str
    event: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class SlowQuerySample:
    """Statements slower than the slow-query threshold since the onset, by statement shape
    (literals already replaced by `?` where they were logged)."""

    statement: str
    operation: str
    count: int
    max_ms: float
    last_seen: str  # the newest line's timestamp


@dataclass
class IncidentEvidence:
    alert: dict[str, Any]
    gathered_at: float
    since: float
    headline: list[str] = field(default_factory=list)  # what changed most, in words
    onset: float | None = None  # when the first changed signal started to move
    windows: dict[str, float] = field(default_factory=dict)  # baseline and incident edges
    metric: MetricEvidence | None = None
    dependencies: list[Change] = field(default_factory=list)  # by change, from their signals
    route_changes: list[Change] = field(default_factory=list)  # p95 / 5xx ratio that rose most
    slowest_routes: list[RouteEvidence] = field(default_factory=list)
    failing_routes: list[RouteEvidence] = field(default_factory=list)
    error_groups: list[ErrorGroupEvidence] = field(default_factory=list)  # new or spiking
    earlier_error_groups: list[ErrorGroupEvidence] = field(default_factory=list)  # predate it
    slow_queries: list[SlowQuerySample] = field(default_factory=list)
    failing_requests: list[FailingRequest] = field(default_factory=list)
    config_changes: list[ConfigChange] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)  # sections that missed the deadline
    notes: list[str] = field(default_factory=list)  # sources that were missing or failed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (floats may be NaN-free None; times are epoch seconds and ISO text)."""
        data = asdict(self)
        data["gathered_at_iso"] = iso(self.gathered_at)
        data["since_iso"] = iso(self.since)
        data["onset_iso"] = iso(self.onset) if self.onset is not None else None
        data["complete"] = not self.timed_out
        return data

    def mentions(self, text: str) -> list[str]:
        """Which parts of the evidence name `text` (a route, a dependency, an error type, the
        value of a configuration change such as the fault that was injected)."""
        needle = text.lower()
        found = []
        if any(needle in d.subject.lower() for d in self.dependencies if d.changed):
            found.append("dependency")
        if any(needle in r.route.lower() for r in self.slowest_routes):
            found.append("slowest_routes")
        if any(needle in r.route.lower() for r in self.failing_routes):
            found.append("failing_routes")
        for g in self.error_groups:
            haystack = " ".join([g.type, g.message, g.rule, *g.routes]).lower()
            if needle in haystack:
                found.append("error_groups")
                break
        values = (str(v) for c in self.config_changes for v in c.fields.values())
        if any(needle in v.lower() for v in values):
            found.append("config_changes")
        return found

    def render_text(self, *, lines_per_request: int = 6) -> str:
        """Plain text for a terminal or a notification body: what changed most first."""
        return render(self, lines_per_request=lines_per_request)


# -- gathering --------------------------------------------------------------------------------
# Sections that read memory (windows, remembered gauge readings) run first: their onset tells
# the store and log sections which error groups and requests belong to the incident.
_MEMORY_SHARE = 0.6  # of the deadline, for the memory sections


def gather_evidence(
    alert: AlertInstance,
    *,
    definitions: Sequence[AlertDefinition] = (),
    windows: RollingWindows | None = None,
    history: MetricHistory | None = None,
    gauges: LiveSource | None = None,
    dependency_signals: Sequence[DependencySignal] = (),
    route_stats: Mapping[str, Mapping[str, Any]] | None = None,
    errors: ErrorStore | None = None,
    recent_errors: RecentGroups | None = None,
    logs: LogSearch | None = None,
    config_events: Sequence[str] = (),
    slow_query_event: str | None = SLOW_QUERY,
    mask: Callable[[Any], Any] | None = None,
    now: float | None = None,
    lookback_s: float = 300.0,
    top: int = 5,
    sample_requests: int = 3,
    deadline_s: float = 1.5,
    clock: Callable[[], float] | None = None,
) -> IncidentEvidence:
    """Evidence for `alert` (an evaluator `AlertInstance`, see `alert_from_view`).

    The window opens at the alert's start less the rule's window (or `lookback_s` for gauges),
    at most an hour back; the baseline is the window before it (see `changes`). Memory first:
    with `windows`, requests and latencies come from them alone, gauges from the remembered
    readings of `gauges` (the evaluator's source: never a fresh read, which may ping the slow
    dependency), error groups from `recent_errors` before the `errors` store; without
    windows (a CLI), from `history`. `route_stats` ({"METHOD /route": {"requests",
    "errors_5xx", "p95_ms", ...}}, e.g. a `/windows` snapshot of a remote instance) stands in
    for `windows`. Each section runs against `deadline_s`; those that miss it are listed in
    `timed_out`. `mask` is applied to log lines and messages once more (they are masked at
    the source already).
    """
    now = (clock or time.time)() if now is None else now
    began = time.monotonic()
    definition = next((d for d in definitions if d.name == alert.name), None)
    expr = definition.clauses[0][0].expr if definition is not None else None
    window_s = window_or_none(expr)
    started = alert.active_since or alert.fired_at or now
    since = max(started - min(float(window_s or lookback_s), _HOUR), now - _HOUR)
    since = min(since, now - 1.0)
    evidence = IncidentEvidence(alert=alert.view(), gathered_at=now, since=since)
    live = windows is not None
    compared = comparison_windows(since, now, live=live, alert_start=started)
    evidence.windows = {
        "baseline_start": compared.baseline_start,
        "baseline_end": compared.baseline_end,
        "incident_start": compared.incident_start,
        "incident_end": compared.incident_end,
    }
    source: MetricSource | None = None
    if windows is not None or history is not None:
        store = MinuteStore(retention_s=now - compared.baseline_start + 4 * _MINUTE)
        past = None if windows is not None else history  # memory first
        source = MemoryFirst(
            LiveSource(windows, history=past, store=store, clock=lambda: now), gauges
        )

    memory: list[tuple[str, Callable[[IncidentEvidence], None]]] = []
    if definition is None:
        evidence.notes.append(f"no rule definition for {alert.name!r}: metric curve skipped")
    else:
        memory.append(("metric", lambda ev: _metric(ev, alert, definition, windows, history)))
    if source is not None and dependency_signals:
        memory.append(
            ("dependencies", lambda ev: _dependencies(ev, source, dependency_signals, compared))
        )
    prefer = "p95" if _is_latency(expr) else "5xx ratio"  # the alert's kind of route change
    memory.append(
        ("routes", lambda ev: _routes(ev, source, route_stats, compared, live, top, prefer))
    )
    _run_sections(evidence, memory, deadline_s * _MEMORY_SHARE)
    _headline_and_onset(evidence)

    onset_at = evidence.onset if evidence.onset is not None else since
    recent = recent_groups(recent_errors, compared, onset_at) if recent_errors else []
    stores: list[tuple[str, Callable[[IncidentEvidence], None]]] = []
    if errors is None:
        evidence.notes.append("error groups: no error store")
    else:
        stores.append(("error groups", lambda ev: _error_groups(ev, errors, compared, top, recent)))
    if logs is None:
        evidence.notes.append("logs: no log directory")
    else:
        stores.append(("failing requests", lambda ev: _failing(ev, logs, sample_requests)))
        stores.append(("config changes", lambda ev: _changes(ev, logs, config_events)))
        if slow_query_event is not None and _wants_slow_queries(evidence, expr):
            stores.append(("slow queries", lambda ev: _slow(ev, logs, slow_query_event, top)))
    missed = _run_sections(evidence, stores, max(0.1, deadline_s - (time.monotonic() - began)))
    if recent and (errors is None or "error groups" in missed):
        evidence.error_groups, evidence.earlier_error_groups = rank_groups(recent, top)
        why = "no error store" if errors is None else "the store did not answer"
        evidence.notes.append(
            f"error groups: from this instance's memory ({why}): "
            "'new' means first seen by this instance"
        )
    _headline_errors(evidence)
    if mask is not None:
        _mask_evidence(evidence, mask)
    return evidence


def _run_sections(
    evidence: IncidentEvidence,
    sections: Sequence[tuple[str, Callable[[IncidentEvidence], None]]],
    deadline_s: float,
) -> set[str]:
    """Each section fills a scratch copy in its own thread; what finished in time is merged,
    what did not is named (`timed_out`) with a note. One failing source costs only its part.
    Returns the sections that gave nothing: timed out or failed."""

    def scratch_run(fn: Callable[[IncidentEvidence], None]) -> Callable[[], IncidentEvidence]:
        def run() -> IncidentEvidence:
            part = replace(evidence, notes=[], timed_out=[])
            for name in _SECTION_FIELDS:
                setattr(part, name, _empty(getattr(evidence, name)))
            fn(part)
            return part

        return run

    outcomes = run_bounded([(name, scratch_run(fn)) for name, fn in sections], deadline_s)
    missed = set()
    for outcome in outcomes:
        if not outcome.done or outcome.error is not None:
            missed.add(outcome.name)
        if not outcome.done:
            evidence.timed_out.append(outcome.name)
            evidence.notes.append(
                f"{outcome.name}: timed out after {deadline_s:.1f}s (its source answers slowly;"
                " the other sections are shown)"
            )
        elif outcome.error is not None:
            exc = outcome.error
            if isinstance(exc, LogSearchError):
                evidence.notes.append(f"{outcome.name}: {exc}")
            else:
                evidence.notes.append(f"{outcome.name}: unavailable ({type(exc).__name__})")
        elif outcome.value is not None:
            part = outcome.value
            for name in _SECTION_FIELDS:
                value = getattr(part, name)
                if value:
                    setattr(evidence, name, value)
            evidence.notes.extend(part.notes)
    return missed


_SECTION_FIELDS = (
    "metric",
    "dependencies",
    "route_changes",
    "slowest_routes",
    "failing_routes",
    "error_groups",
    "earlier_error_groups",
    "slow_queries",
    "failing_requests",
    "config_changes",
)


def _empty(value: Any) -> Any:
    return [] if isinstance(value, list) else None


def _is_latency(expr: MetricTerm | None) -> bool:
    term = expr.sli if isinstance(expr, BurnRate) else expr
    return isinstance(term, LatencyQuantile | LatencyAbove)


def _wants_slow_queries(evidence: IncidentEvidence, expr: MetricTerm | None) -> bool:
    """Slow statements explain latency: a latency alert, or a dependency whose latency rose."""
    changed = any(d.changed and d.unit == "ms" for d in evidence.dependencies)
    return _is_latency(expr) or changed


def _headline_and_onset(evidence: IncidentEvidence) -> None:
    """The first lines: the most changed dependency, then the most changed route; the onset
    is the earliest move among the changed rows."""
    changed = [d for d in evidence.dependencies if d.changed]
    onsets = [r.onset for r in (*changed, *evidence.route_changes) if r.onset is not None]
    # Without a moving signal the whole evidence window counts (its opening is the onset).
    evidence.onset = min(onsets) if onsets else None
    lines = []
    # A dependency first: a slower database explains slower routes, not the other way round.
    if changed:
        lines.append(changed[0].describe() + since_text(changed[0].onset))
    if evidence.route_changes:
        top_route = evidence.route_changes[0]
        lines.append(top_route.describe() + since_text(top_route.onset))
    evidence.headline = lines


def _headline_errors(evidence: IncidentEvidence) -> None:
    top_group = next(iter(evidence.error_groups), None)
    if top_group is not None:
        what = "new error group" if top_group.new else "error group spiking"
        count = top_group.during if top_group.during is not None else top_group.count
        evidence.headline.append(
            f"{what} {top_group.type} ({count}x){since_text(top_group.first_seen)}"
            if top_group.new
            else f"{what} {top_group.type} ({count}x{since_text(evidence.onset or evidence.since)})"
        )
    if not evidence.headline:
        evidence.headline.append(
            "no dependency, route or error group changed against the baseline"
            + (
                " (partial: " + ", ".join(evidence.timed_out) + " timed out)"
                if evidence.timed_out
                else ""
            )
        )


# -- the metric -----------------------------------------------------------------------------
def _metric(
    evidence: IncidentEvidence,
    alert: AlertInstance,
    definition: AlertDefinition,
    windows: RollingWindows | None,
    history: MetricHistory | None,
) -> None:
    evidence.metric, notes = metric_evidence(
        alert, definition, windows, history, start=evidence.since, now=evidence.gathered_at
    )
    evidence.notes.extend(notes)


# -- what changed ---------------------------------------------------------------------------
def _dependencies(
    evidence: IncidentEvidence,
    source: MetricSource,
    signals: Sequence[DependencySignal],
    compared: Windows,
) -> None:
    evidence.dependencies = compare_dependencies(source, signals, compared)


def _routes(
    evidence: IncidentEvidence,
    source: MetricSource | None,
    route_stats: Mapping[str, Mapping[str, Any]] | None,
    compared: Windows,
    live: bool,
    top: int,
    prefer: str,
) -> None:
    rows: list[RouteEvidence] = []
    if source is not None:
        changes, current = compare_routes(source, compared, top=top, prefer=prefer)
        evidence.route_changes = [
            replace(
                c,
                onset=onset(
                    source, route_term(c.subject, c.measure), c.unit, compared, c.before, c.after
                ),
            )
            for c in changes
        ]
        for key, n, e5, p95, p99 in current:
            rows.append(RouteEvidence(key, int(n), int(e5), e5 / n if n else 0.0, p95, p99))
        if not live:
            evidence.notes.append("routes: from minute history (complete minutes only)")
    elif route_stats is not None:
        for key, raw in route_stats.items():
            n = int(raw.get("requests", 0))
            e5 = int(raw.get("errors_5xx", 0))
            rows.append(
                RouteEvidence(
                    key, n, e5, e5 / n if n else 0.0, raw.get("p95_ms"), raw.get("p99_ms")
                )
            )
    else:
        evidence.notes.append("routes: no rolling windows, snapshot or history")
        return
    rows = [r for r in rows if r.requests > 0]
    evidence.slowest_routes = sorted(rows, key=lambda r: -(r.p95_ms or 0.0))[:top]
    failing = [r for r in rows if r.errors_5xx > 0]
    evidence.failing_routes = sorted(failing, key=lambda r: (-r.errors_5xx, -r.error_rate))[:top]


# -- error groups ---------------------------------------------------------------------------
def _error_groups(
    evidence: IncidentEvidence,
    errors: ErrorStore,
    compared: Windows,
    top: int,
    memory: Sequence[ErrorGroupEvidence],
) -> None:
    onset_at = evidence.onset if evidence.onset is not None else evidence.since
    rows = stored_groups(errors, compared, onset_at, memory)
    ranked, earlier = rank_groups(rows, top)
    missing = [r.fingerprint for r in ranked if not r.routes]
    routes = errors.group_routes(missing) if missing else {}
    evidence.error_groups = with_routes(ranked, routes)
    evidence.earlier_error_groups = earlier


def _slow(evidence: IncidentEvidence, logs: LogSearch, event: str, top: int) -> None:
    """Slow statements logged since the onset, grouped by their shape."""
    onset_at = evidence.onset if evidence.onset is not None else evidence.since
    since = datetime.fromtimestamp(onset_at, UTC)
    found: dict[str, dict[str, Any]] = {}
    for line in logs.search(LogQuery(event=event, since=since, limit=500)):
        fields = line.fields
        statement = fields.get("statement")
        if not isinstance(statement, str):
            continue
        duration = fields.get("duration_ms")
        ms = float(duration) if isinstance(duration, int | float) else 0.0
        row = found.setdefault(
            statement,
            {"operation": str(fields.get("operation", "")), "count": 0, "max": 0.0, "last": ""},
        )
        row["count"] += 1
        row["max"] = max(row["max"], ms)
        row["last"] = max(row["last"], line.timestamp)
    ranked = sorted(found.items(), key=lambda item: (-item[1]["count"], -item[1]["max"]))
    evidence.slow_queries = [
        SlowQuerySample(statement, r["operation"], r["count"], r["max"], r["last"])
        for statement, r in ranked[:top]
    ]


# -- logs -----------------------------------------------------------------------------------
def _failing(evidence: IncidentEvidence, logs: LogSearch, sample: int) -> None:
    # Since the onset: a request that failed before the incident began is not its sample.
    since = datetime.fromtimestamp(evidence.onset or evidence.since, UTC)
    errors = logs.search(LogQuery(level="error", since=since, limit=500))
    picked: dict[str, dict[str, Any]] = {}
    routes: set[str | None] = set()
    # Newest first, one request per route before a second of the same route: variety helps.
    for prefer_new_route in (True, False):
        for line in reversed(errors):
            fields = line.fields
            rid = fields.get("request_id")
            if not isinstance(rid, str) or rid in picked or len(picked) >= sample:
                continue
            route = fields.get("route")
            if prefer_new_route and route in routes:
                continue
            picked[rid] = fields
            routes.add(route)
    for rid, fields in picked.items():
        lines = logs.search(LogQuery(request_id=rid, limit=50))
        status = fields.get("status")
        evidence.failing_requests.append(
            FailingRequest(
                request_id=rid,
                route=_route_of(fields),
                status=int(status) if isinstance(status, int | float) else None,
                lines=[_compact(line.fields) for line in lines],
            )
        )


def _route_of(fields: Mapping[str, Any]) -> str | None:
    route = fields.get("route")
    if not isinstance(route, str):
        return None
    method = fields.get("method")
    return f"{method} {route}" if isinstance(method, str) else route


def _compact(fields: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _QUIET_FIELDS:
            continue
        if isinstance(value, dict) and "frames" in value:  # an exception: its frames are long
            frames = value.get("frames")
            value = {k: v for k, v in value.items() if k != "frames"}
            value["frames"] = len(frames) if isinstance(frames, list) else 0
        if isinstance(value, str) and len(value) > _FIELD_LIMIT:
            value = value[:_FIELD_LIMIT] + "..."
        elif isinstance(value, list | dict) and len(repr(value)) > _FIELD_LIMIT:
            value = repr(value)[:_FIELD_LIMIT] + "..."
        out[key] = value
    return out


def _changes(evidence: IncidentEvidence, logs: LogSearch, events: Sequence[str]) -> None:
    since = datetime.fromtimestamp(evidence.gathered_at - _HOUR, UTC)
    found: list[ConfigChange] = []
    for name in events:
        for line in logs.search(LogQuery(event=name, since=since, limit=20)):
            # The change itself and who made it; the request that carried it is not the point.
            skip: tuple[str, ...] = ("timestamp", "event", "level", "request_id", "method")
            skip += ("route", *_QUIET_FIELDS, *SUMMARY_SKIP)
            fields = {k: v for k, v in line.fields.items() if k not in skip}
            found.append(ConfigChange(line.timestamp, name, _compact(fields)))
    evidence.config_changes = sorted(found, key=lambda c: c.timestamp)[-30:]


def _mask_evidence(evidence: IncidentEvidence, mask: Callable[[Any], Any]) -> None:
    for i, req in enumerate(evidence.failing_requests):
        lines = [m if isinstance(m := mask(line), dict) else line for line in req.lines]
        evidence.failing_requests[i] = FailingRequest(req.request_id, req.route, req.status, lines)
    for i, change in enumerate(evidence.config_changes):
        masked = mask(change.fields)
        fields = masked if isinstance(masked, dict) else change.fields
        evidence.config_changes[i] = ConfigChange(change.timestamp, change.event, fields)
    for groups in (evidence.error_groups, evidence.earlier_error_groups):
        for i, g in enumerate(groups):
            message = mask(g.message)
            groups[i] = replace(g, message=message if isinstance(message, str) else g.message)
    for i, q in enumerate(evidence.slow_queries):
        statement = mask(q.statement)
        if isinstance(statement, str):
            evidence.slow_queries[i] = replace(q, statement=statement)


# -- alerts from views -------------------------------------------------------------------------
def alert_from_view(view: Mapping[str, Any]) -> AlertInstance:
    """An `AlertInstance` from `AlertInstance.view()` (e.g. the `/ops/api/alerts` JSON)."""
    labels = {str(k): str(v) for k, v in (view.get("labels") or {}).items()}
    name = str(view.get("alertname") or view.get("name") or labels.get("alertname", ""))
    return AlertInstance(
        key=str(view.get("key") or name),
        name=name,
        rule=str(view.get("rule") or name),
        severity=str(view.get("severity") or labels.get("severity", "")),
        labels=labels,
        state=view.get("state") or "firing",
        active_since=view.get("active_since"),
        fired_at=view.get("fired_at"),
        resolved_at=view.get("resolved_at"),
        value=view.get("value"),
        threshold=view.get("threshold"),
        summary=str(view.get("summary") or ""),
    )
