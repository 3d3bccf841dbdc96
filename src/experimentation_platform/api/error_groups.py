"""Error groups for operators: list and show (admin or viewer key); resolve, ignore and
reopen (admin key)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request

from experimentation_platform.api.deps import AdminKey, OperatorKey
from experimentation_platform.errors import NotFound
from observability import Observability
from observability.errors import ErrorStore

router = APIRouter(prefix="/api/v1/ops/errors", tags=["ops"])

Fingerprint = Annotated[str, Path(pattern=r"^[0-9a-zA-Z_.:-]{1,128}$")]


def _store(request: Request) -> ErrorStore:
    observability: Observability = request.app.state.observability
    return observability.store.errors


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
    return {"items": [g.to_dict() for g in groups]}


@router.get("/{fingerprint}")
def show_error_group(fingerprint: Fingerprint, request: Request, _: OperatorKey) -> dict[str, Any]:
    detail = _store(request).get_group(fingerprint)
    if detail is None:
        raise NotFound(f"error group '{fingerprint}' not found", field="fingerprint")
    return detail.to_dict()


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
    return {**detail.group.to_dict(), "changed": changed}
