"""Experiments: create, list, read, edit while draft, start, pause, complete, results."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from experimentation_platform.api.deps import AdminKey, MetricsDep, PlatformDep, ReaderKey
from experimentation_platform.api.schemas import (
    ExperimentCreate,
    ExperimentOut,
    ExperimentPage,
    ExperimentUpdate,
)
from experimentation_platform.storage.models import Experiment
from experimentation_platform.telemetry.names import EXPERIMENT_CREATED, EXPERIMENT_STATUS_CHANGED
from observability.logging import get_logger

router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"])
log = get_logger("experimentation_platform.experiments")

KeyPath = Annotated[str, Path(min_length=1, max_length=100)]


def _out(row: Experiment) -> ExperimentOut:
    return ExperimentOut.model_validate(row, from_attributes=True)


@router.post("", status_code=201, response_model=ExperimentOut)
def create_experiment(
    body: ExperimentCreate, platform: PlatformDep, metrics: MetricsDep, _: AdminKey
) -> ExperimentOut:
    row = platform.experiments.create(body.model_dump(mode="json"))
    metrics.experiment_created()
    log.info(EXPERIMENT_CREATED, experiment_key=row.key, variants=len(row.variants))
    return _out(row)


@router.get("", response_model=ExperimentPage)
def list_experiments(
    platform: PlatformDep,
    _: ReaderKey,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status: Literal["draft", "running", "paused", "completed"] | None = None,
) -> ExperimentPage:
    rows, total = platform.experiments.list(offset, limit, status)
    return ExperimentPage(items=[_out(r) for r in rows], total=total, offset=offset, limit=limit)


@router.get("/{key}", response_model=ExperimentOut)
def get_experiment(key: KeyPath, platform: PlatformDep, _: ReaderKey) -> ExperimentOut:
    return _out(platform.experiments.get(key))


@router.patch("/{key}", response_model=ExperimentOut)
def update_experiment(
    key: KeyPath, body: ExperimentUpdate, platform: PlatformDep, _: AdminKey
) -> ExperimentOut:
    changes = body.model_dump(mode="json", exclude_unset=True, exclude_none=True)
    return _out(platform.experiments.update(key, changes))


def _transition(action: str):  # type: ignore[no-untyped-def]
    def endpoint(key: KeyPath, platform: PlatformDep, _: AdminKey) -> ExperimentOut:
        row = platform.experiments.transition(key, action)
        # A configuration change: incident evidence lists these next to a regression.
        log.info(
            EXPERIMENT_STATUS_CHANGED,
            experiment_key=key,
            action=action,
            experiment_status=row.status,  # `status` is the HTTP status of request lines
        )
        return _out(row)

    endpoint.__name__ = f"{action}_experiment"
    endpoint.__doc__ = f"{action.capitalize()} the experiment (validated status transition)."
    return endpoint


for _action in ("start", "pause", "complete"):
    router.add_api_route(
        f"/{{key}}/{_action}", _transition(_action), methods=["POST"], response_model=ExperimentOut
    )


@router.get("/{key}/results")
def experiment_results(
    key: KeyPath,
    platform: PlatformDep,
    _: ReaderKey,
    event: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
) -> dict[str, object]:
    """Per variant: exposures, converting users, conversion rate; and the SRM check."""
    return platform.events.results(key, event)
