"""Incident evidence: for one alert, what changed most and everything an on-call person looks
at first, in one place.

evidence   `gather_evidence` and the document (`IncidentEvidence`)
changes    the incident window against a baseline: dependencies, routes, onset
signals    the toolkit's dependency signals (database, cache, CloudWatch, readiness)
groups     error groups new or spiking since the onset, older ones apart
curve      the metric that breached and its curve
bounded    sections side by side against one deadline
text       the document as text
"""

from observability.incident.changes import Change, DependencySignal
from observability.incident.evidence import (
    ConfigChange,
    CurvePoint,
    FailingRequest,
    IncidentEvidence,
    MetricEvidence,
    RouteEvidence,
    SlowQuerySample,
    alert_from_view,
    describe_query,
    gather_evidence,
)
from observability.incident.groups import ErrorGroupEvidence

__all__ = [
    "Change",
    "ConfigChange",
    "CurvePoint",
    "DependencySignal",
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
