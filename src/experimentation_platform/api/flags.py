"""Feature flags: manage, evaluate one, evaluate all for a user."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from experimentation_platform.api.deps import (
    AdminKey,
    ClientKey,
    MetricsDep,
    PlatformDep,
    ReaderKey,
)
from experimentation_platform.api.schemas import (
    BatchEvaluationOut,
    BatchEvaluationRequest,
    FlagCreate,
    FlagEvaluationOut,
    FlagOut,
    FlagUpdate,
)
from experimentation_platform.container import Platform
from experimentation_platform.domain.flags import FlagConfig, FlagResult, evaluate
from experimentation_platform.errors import NotFound
from experimentation_platform.storage.models import Flag
from experimentation_platform.telemetry.names import FLAG_CHANGED
from observability.context import bind
from observability.logging import get_logger

router = APIRouter(prefix="/api/v1/flags", tags=["flags"])
log = get_logger("experimentation_platform.flags")

KeyPath = Annotated[str, Path(min_length=1, max_length=100)]


def _out(row: Flag) -> FlagOut:
    return FlagOut.model_validate(row, from_attributes=True)


def _evaluation(result: FlagResult, user_id: str) -> FlagEvaluationOut:
    return FlagEvaluationOut(
        key=result.key,
        user_id=user_id,
        enabled=result.enabled,
        reason=result.reason,
        version=result.version,
    )


@router.post("", status_code=201, response_model=FlagOut)
def create_flag(body: FlagCreate, platform: PlatformDep, _: AdminKey) -> FlagOut:
    row = platform.flags.create(body.model_dump(mode="json"))
    log.info(FLAG_CHANGED, flag_key=row.key, change="created", enabled=row.enabled)
    return _out(row)


@router.get("", response_model=list[FlagOut])
def list_flags(platform: PlatformDep, _: ReaderKey) -> list[FlagOut]:
    return [_out(row) for row in platform.flags.list()]


@router.get("/{key}", response_model=FlagOut)
def get_flag(key: KeyPath, platform: PlatformDep, _: ReaderKey) -> FlagOut:
    return _out(platform.flags.get(key))


@router.patch("/{key}", response_model=FlagOut)
def update_flag(key: KeyPath, body: FlagUpdate, platform: PlatformDep, _: AdminKey) -> FlagOut:
    changes = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    row = platform.flags.update(key, changes)
    log.info(FLAG_CHANGED, flag_key=key, change="updated", fields=sorted(changes))
    return _out(row)


async def _configs(platform: Platform) -> dict[str, FlagConfig]:
    # In-process cache: no I/O, stay on the event loop; otherwise the threadpool.
    configs = platform.flags.configs_without_io()
    if configs is None:
        configs = await run_in_threadpool(platform.flags.configs_after_fast_path)
    return configs


@router.get("/{key}/evaluation", response_model=FlagEvaluationOut)
async def evaluate_flag(
    key: KeyPath,
    platform: PlatformDep,
    metrics: MetricsDep,
    _: ClientKey,
    user_id: Annotated[str, Query(min_length=1, max_length=200)],
) -> FlagEvaluationOut:
    bind(user_id=user_id, flag_key=key)
    config = (await _configs(platform)).get(key)
    if config is None:
        raise NotFound(f"flag '{key}' not found", field="key")
    started = time.perf_counter()
    result = evaluate(config, user_id)
    metrics.flag_evaluation(key, result.enabled, time.perf_counter() - started)
    return _evaluation(result, user_id)


@router.post("/evaluations", response_model=BatchEvaluationOut)
async def evaluate_all_flags(
    body: BatchEvaluationRequest, platform: PlatformDep, metrics: MetricsDep, _: ClientKey
) -> BatchEvaluationOut:
    """Every flag for one user, with attributes for rule matching."""
    bind(user_id=body.user_id)
    flags = {}
    for key, config in (await _configs(platform)).items():
        started = time.perf_counter()
        result = evaluate(config, body.user_id, body.attributes)
        metrics.flag_evaluation(key, result.enabled, time.perf_counter() - started)
        flags[key] = _evaluation(result, body.user_id)
    return BatchEvaluationOut(user_id=body.user_id, flags=flags)
