"""Dependencies shared by the routers: the platform container and API-key authentication."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from experimentation_platform.container import Platform
from experimentation_platform.errors import PlatformError
from experimentation_platform.storage.keys import Principal
from experimentation_platform.telemetry.metrics import PlatformMetrics
from observability.context import bind

__all__ = ["AdminKey", "ClientKey", "MetricsDep", "PlatformDep"]


class Unauthorized(PlatformError):
    status_code = 401
    code = "unauthorized"


class Forbidden(PlatformError):
    status_code = 403
    code = "forbidden"


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def get_metrics(request: Request) -> PlatformMetrics:
    metrics: PlatformMetrics = request.app.state.telemetry.metrics
    return metrics


MetricsDep = Annotated[PlatformMetrics, Depends(get_metrics)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or X-API-Key: <API key>")


async def _principal(
    platform: PlatformDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_header)],
) -> Principal:
    # Async with a fast path: a recently verified key costs a hash and a dict lookup on the
    # event loop; only an unknown key goes to the database, in the threadpool.
    key = bearer.credentials if bearer else api_key
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
    principal = platform.keys.cached(key) or await run_in_threadpool(
        platform.keys.authenticate, key
    )
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    bind(principal=principal.key_id)  # the key's id names the caller in logs; never the key
    return principal


async def require_client(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    return principal  # admin keys may do everything a client key does


async def require_admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if principal.role != "admin":
        raise Forbidden("this operation needs an admin key")
    return principal


ClientKey = Annotated[Principal, Depends(require_client)]
AdminKey = Annotated[Principal, Depends(require_admin)]
