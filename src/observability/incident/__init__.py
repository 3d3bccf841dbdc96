"""Incident evidence: for one alert, what changed most and everything an on-call person looks
at first, in one place (`evidence`), compared against a baseline (`changes`), each section
against a deadline (`bounded`)."""

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
