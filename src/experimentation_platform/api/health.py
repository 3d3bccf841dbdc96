"""Liveness and readiness, open without a key (load balancers call them).

Readiness checks what requests need, through `observability.readiness` (cached for
EP_READINESS_CACHE_SECONDS): the database answers a query on real tables and sits at the
migration revision this code expects, and the cache answers. A failure is a 503 naming the
dependency (`failing`) and why (the exception type or the check's own words), never a trace.
Each check's latency is in `latency_ms`; a check slower than EP_READINESS_DEGRADED_SECONDS
makes the status `degraded` (still 200: load balancers keep the instance) and names it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from experimentation_platform.container import Platform
from experimentation_platform.settings import Settings
from experimentation_platform.storage.db import head_revision
from observability.readiness import CheckFailed, Readiness

__all__ = ["build_readiness", "router"]

router = APIRouter(prefix="/health", tags=["health"])


def build_readiness(platform: Platform, settings: Settings) -> Readiness:
    expected = head_revision()

    def database() -> None:
        revision = platform.db.schema_revision()
        if revision != expected:
            raise CheckFailed(f"schema at revision {revision}, this release needs {expected}")

    return Readiness(
        {"database": database, "cache": platform.cache.ping},
        cache_seconds=settings.readiness_cache_seconds,
        degraded_seconds=settings.readiness_degraded_seconds,
    )


@router.get("/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
def ready(request: Request) -> JSONResponse:
    """200 when every dependency a request needs answers (status ok, or degraded when one
    answers slowly); 503 naming the ones that do not."""
    readiness: Readiness = request.app.state.readiness
    report = readiness.report()
    return JSONResponse(report.to_dict(), status_code=200 if report.ok else 503)
