"""Liveness and readiness, open without a key (load balancers call them)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from experimentation_platform.api.deps import PlatformDep

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
def ready(platform: PlatformDep) -> JSONResponse:
    """Ready when the database and the cache answer; each check's error is named, not dumped."""
    checks: dict[str, str] = {}
    for name, probe in (("database", platform.db.ping), ("cache", platform.cache.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # any failure means not ready; report its type only
            checks[name] = f"unavailable: {type(exc).__name__}"
    ok = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )
