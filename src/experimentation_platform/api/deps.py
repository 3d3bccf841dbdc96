"""Dependencies shared by the routers: the platform container and API-key authentication."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from experimentation_platform.container import Platform
from experimentation_platform.errors import PlatformError
from experimentation_platform.storage.keys import Principal, Role
from experimentation_platform.telemetry.metrics import PlatformMetrics
from observability.context import bind

__all__ = [
    "AdminKey",
    "ClientKey",
    "MetricsDep",
    "OperatorKey",
    "PlatformDep",
    "ReaderKey",
    "authenticate_key",
    "known_key",
    "require_admin",
    "require_client",
    "require_operator",
    "require_reader",
]


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
    request: Request,
    platform: PlatformDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_header)],
) -> Principal:
    # The ASGI gate (observability.access.AuthGate, wired in app.py) has already checked the
    # key before the body was read; this path serves routes mounted outside its prefixes.
    gated = getattr(request.state, "principal", None)
    if isinstance(gated, Principal):
        return gated
    key = bearer.credentials if bearer else api_key
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key'")
    principal = await authenticate_key(platform, key)
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    return principal


async def authenticate_key(platform: Platform, key: str) -> Principal | None:
    """The key's principal, bound to the request context (its id names the caller in logs,
    never the key). Async with a fast path: a recently verified key costs a hash and a dict
    lookup on the event loop; only an unknown key goes to the database, in the threadpool."""
    principal = platform.keys.cached(key) or await run_in_threadpool(
        platform.keys.authenticate, key
    )
    if principal is not None:
        bind(principal=principal.key_id)
        if platform.keys.use_to_record(principal.key_id):
            await run_in_threadpool(platform.keys.record_use, principal.key_id)
    return principal


def known_key(platform: Platform) -> Callable[[str], Principal | None]:
    """The principal of a key verified recently, without I/O (the gate's backoff path)."""

    def known(key: str) -> Principal | None:
        principal = platform.keys.cached(key)
        if principal is not None:
            bind(principal=principal.key_id)
        return principal

    return known


def _needs(*roles: Role) -> Any:
    allowed = frozenset(roles)
    names = " or ".join(roles)

    async def check(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if principal.role not in allowed:
            raise Forbidden(f"this operation needs an {names} key")  # every list starts "admin"
        return principal

    check.__name__ = "require_" + "_or_".join(roles)
    return check


# Who may call what (docs/configuration.md, "Roles"): admin keys everything; client keys the
# product API (assign, evaluate, track, read configuration); viewer keys read-only operator
# views (/ops, dashboards, errors, alerts, incident evidence, log drill-down) and reads of
# configuration, never a change.
require_admin = _needs("admin")
require_client = _needs("admin", "client")
require_operator = _needs("admin", "viewer")
require_reader = _needs("admin", "client", "viewer")

AdminKey = Annotated[Principal, Depends(require_admin)]
ClientKey = Annotated[Principal, Depends(require_client)]
OperatorKey = Annotated[Principal, Depends(require_operator)]
ReaderKey = Annotated[Principal, Depends(require_reader)]
