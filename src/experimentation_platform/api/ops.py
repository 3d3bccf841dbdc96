"""Operator endpoints: reads for admin and viewer keys; changes (log levels, faults,
self-tests) for admin keys only."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as FastApiPath
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from experimentation_platform.api.deps import AdminKey, OperatorKey, PlatformDep
from experimentation_platform.container import Platform
from experimentation_platform.errors import InvalidInput, NotFound
from experimentation_platform.faults import Faults
from observability import Observability
from observability.logging.levels import LEVELS

router = APIRouter(prefix="/api/v1/ops", tags=["ops"])

LevelName = Annotated[str, StringConstraints(pattern="^(?i:DEBUG|INFO|WARNING|ERROR|CRITICAL)$")]
LoggerName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LogLevels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: LevelName | None = Field(default=None, description="the global level")
    levels: dict[LoggerName, LevelName | None] = Field(
        default_factory=dict,
        max_length=100,
        description="per logger; null removes the override",
    )


def _observability(request: Request) -> Observability:
    observability: Observability = request.app.state.observability
    return observability


@router.get("/log-levels")
def get_log_levels(request: Request, _: OperatorKey) -> dict[str, object]:
    return _observability(request).logs.policy.as_dict()


@router.put("/log-levels")
def set_log_levels(body: LogLevels, request: Request, _: AdminKey) -> dict[str, object]:
    """Change levels without a restart (this instance only; each instance has its own)."""
    policy = _observability(request).logs.policy
    if body.level is None and not body.levels:
        raise InvalidInput("nothing to change: give 'level' and/or 'levels'", field="body")
    policy.set(
        level=LEVELS[body.level.upper()] if body.level else None,
        levels={name: LEVELS[lvl.upper()] for name, lvl in body.levels.items() if lvl},
    )
    for name, lvl in body.levels.items():
        if lvl is None:
            policy.reset_logger(name)
    return policy.as_dict()


class FaultChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    db_latency_ms: float | None = Field(default=None, ge=0, le=60_000)
    db_unavailable: bool | None = None
    cache_unavailable: bool | None = None
    assignment_error_rate: float | None = Field(default=None, ge=0, le=1)
    memory_pressure_mb: int | None = Field(default=None, ge=0, le=4096)


def _faults(platform: Platform) -> Faults:
    if not platform.faults.enabled:
        raise NotFound("fault injection is off (EP_FAULT_INJECTION=true turns it on)")
    return platform.faults


@router.get("/faults")
def get_faults(platform: PlatformDep, _: OperatorKey) -> dict[str, Any]:
    return asdict(_faults(platform).state)


@router.put("/faults")
def set_faults(
    body: FaultChanges, request: Request, platform: PlatformDep, _: AdminKey
) -> dict[str, Any]:
    """Inject faults in this running instance (game days)."""
    changes = body.model_dump(exclude_none=True)
    state = asdict(_faults(platform).update(**changes))
    request.app.state.readiness.invalidate()  # readiness shows the fault at the next probe
    return state


@router.delete("/faults")
def clear_faults(request: Request, platform: PlatformDep, _: AdminKey) -> dict[str, Any]:
    state = asdict(_faults(platform).clear())
    request.app.state.readiness.invalidate()
    return state


@router.get("/windows")
def rolling_windows(request: Request, _: OperatorKey) -> dict[str, Any]:
    """Request rate, error rate and p50/p95/p99 per route and overall over the last 1 minute,
    5 minutes and 1 hour, plus business counters and domain latencies (this instance)."""
    return _observability(request).windows.snapshot()


@router.get("/incidents/{alert}")
def incident_evidence(
    alert: Annotated[str, FastApiPath(min_length=1, max_length=300)],
    request: Request,
    _: OperatorKey,
) -> dict[str, Any]:
    """One view of a firing alert: the breached metric and its live curve, top error groups
    since it started, slowest and most failing routes, sample failing requests with their log
    lines, recent configuration changes, runbook and dashboard links. The /ops incident page
    (where alert notifications link) shows the same document."""
    evidence = _observability(request).evidence(alert)
    if evidence is None:
        raise NotFound(f"no alert named '{alert}' on this instance", field="alert")
    return evidence


class SelfTestError(RuntimeError):
    """Raised on purpose to prove the error pipeline end to end."""


class SelfTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(default="", max_length=500, description="appended to the message")


@router.post("/selftest/error", status_code=500)
def selftest_error(_: AdminKey, body: SelfTestRequest | None = None) -> None:
    """Raise an unhandled exception on purpose: the client gets a 500 with its request_id,
    the error appears in the logs, the error store, Sentry (when configured) and, classified
    medium, in Slack. The note lets an operator check that secrets in exception messages are
    masked in every sink."""
    note = f": {body.note}" if body and body.note else ""
    raise SelfTestError(f"self-test: deliberate unhandled exception{note}")
