"""The built-in operations UI at /ops: four dashboards, alerts with their incident evidence, and
errors, with drill-down from an error group to a request's log lines. Admin and viewer API
keys log in (a
bearer token kept in the browser tab's sessionStorage, never in a URL or cookie)."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import FastAPI

from experimentation_platform.api.deps import require_operator
from experimentation_platform.commands.incident import instance_evidence
from experimentation_platform.instrumentation import Instrumentation
from experimentation_platform.observe import Observability, instance_id
from experimentation_platform.settings import Settings
from experimentation_platform.telemetry.dashboards import DASHBOARDS
from observability.dashboards.data import DashboardData
from observability.logsearch import LogQuery, LogSearch, LogSearchError
from observability.web import build_ops_ui

__all__ = ["mount_ops_ui"]


def mount_ops_ui(
    app: FastAPI, settings: Settings, observability: Observability, instruments: Instrumentation
) -> None:
    data = DashboardData(
        DASHBOARDS,
        windows=instruments.windows,
        history=instruments.history,
        errors=observability.errors.store,
        instance=instance_id(settings),
        gauges=lambda: instruments._gauges() if instruments._gauges else {},
    )
    search = LogSearch(settings.log_dir, settings.log_file_stem)

    def log_lookup(request_id: str) -> list[dict[str, Any]]:
        observability.logs.flush(1.0)  # the request just happened: its lines may be queued
        try:
            return [
                line.fields for line in search.search(LogQuery(request_id=request_id, limit=500))
            ]
        except LogSearchError:
            return []

    alerts = getattr(app.state, "alerts_provider", None)
    alerting = getattr(app.state, "alerting", None)
    # The incident page shows the same document as GET /api/v1/ops/incidents/{alert}.
    incident = (
        None
        if alerting is None
        else partial(
            instance_evidence,
            evaluator=alerting.evaluator,
            settings=settings,
            observability=observability,
            instruments=instruments,
        )
    )
    app.include_router(
        build_ops_ui(
            data,
            auth=require_operator,
            log_lookup=log_lookup,
            alerts_provider=alerts,
            incident_provider=incident,
            refresh_seconds=settings.ops_refresh_seconds,
        )
    )
