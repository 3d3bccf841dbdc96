"""Error groups for operators: list and show (admin or viewer key); resolve, ignore and
reopen (admin key)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from experimentation_platform.api.deps import AdminKey, OperatorKey
from experimentation_platform.errors import NotFound
from experimentation_platform.observe import Observability
from observability.errors import ErrorGroup, ErrorStore, GroupDetail

router = APIRouter(prefix="/api/v1/ops/errors", tags=["ops"])

Fingerprint = Annotated[str, Path(pattern=r"^[0-9a-zA-Z_.:-]{1,128}$")]


def _store(request: Request) -> ErrorStore:
    observability: Observability = request.app.state.observability
    return observability.errors.store


def group_dict(group: ErrorGroup) -> dict[str, Any]:
    return {
        "fingerprint": group.fingerprint,
        "type": group.type,
        "message": group.message,
        "severity": str(group.severity),
        "rule": group.rule_name,
        "status": str(group.status),
        "count": group.count,
        "users": group.users,
        "first_seen": group.first_seen.isoformat(),
        "last_seen": group.last_seen.isoformat(),
        "first_request_id": group.first_request_id,
        "resolved_at": group.resolved_at.isoformat() if group.resolved_at else None,
        "resolution_seconds": group.resolution_seconds,
        "regression": group.regression,
        "regression_count": group.regression_count,
    }


def detail_dict(detail: GroupDetail) -> dict[str, Any]:
    return {
        **group_dict(detail.group),
        "routes": detail.routes,
        "occurrences": [
            {
                "timestamp": o.timestamp.isoformat(),
                "request_id": o.request_id,
                "trace_id": o.trace_id,
                "route": o.route,
                "method": o.method,
                "user_id": o.user_id,
                "message": o.message,
                "frames": o.frames,
            }
            for o in detail.occurrences
        ],
    }


@router.get("")
def list_error_groups(
    request: Request,
    _: OperatorKey,
    severity: Literal["critical", "high", "medium", "low"] | None = None,
    status: Literal["open", "resolved", "ignored"] | None = None,
    route: Annotated[str | None, Query(max_length=200)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: Literal["last_seen", "count", "first_seen", "users"] = "last_seen",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    groups = _store(request).list_groups(
        severity=severity,
        status=status,
        route=route,
        since=since,
        until=until,
        sort=sort,
        limit=limit,
    )
    return {"items": [group_dict(g) for g in groups]}


@router.get("/{fingerprint}")
def show_error_group(fingerprint: Fingerprint, request: Request, _: OperatorKey) -> dict[str, Any]:
    detail = _store(request).get_group(fingerprint)
    if detail is None:
        raise NotFound(f"error group '{fingerprint}' not found", field="fingerprint")
    return detail_dict(detail)


@router.post("/{fingerprint}/{action}")
def change_error_group(
    fingerprint: Fingerprint,
    action: Literal["resolve", "ignore", "reopen"],
    request: Request,
    _: AdminKey,
) -> dict[str, Any]:
    store = _store(request)
    changed = {"resolve": store.resolve, "ignore": store.ignore, "reopen": store.reopen}[action](
        fingerprint
    )
    detail = store.get_group(fingerprint, occurrences=0)
    if detail is None:
        raise NotFound(f"error group '{fingerprint}' not found", field="fingerprint")
    return {**group_dict(detail.group), "changed": changed}
