"""Assignment of a user to an experiment's variant."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from experimentation_platform.api.deps import ClientKey, MetricsDep, PlatformDep
from experimentation_platform.api.schemas import AssignmentOut, AssignmentRequest
from experimentation_platform.domain.experiments import assign
from experimentation_platform.errors import NotFound
from observability.context import bind

router = APIRouter(prefix="/api/v1/assignments", tags=["assignments"])


@router.post("", response_model=AssignmentOut)
async def assign_user(
    body: AssignmentRequest, platform: PlatformDep, metrics: MetricsDep, _: ClientKey
) -> AssignmentOut:
    """Deterministic and sticky; users outside targeting or allocation get
    `in_experiment: false` with the reason, not an error."""
    bind(user_id=body.user_id, experiment_key=body.experiment_key)
    started = time.perf_counter()
    if platform.faults.enabled:
        platform.faults.maybe_fail_assignment()
    experiments = platform.experiments
    # Fast path on the event loop: configuration cached in-process and a returning user
    # whose exposure is already recorded need no I/O and no thread hop.
    config = experiments.config_without_io(body.experiment_key)
    if config is False:
        config = await run_in_threadpool(experiments.config_after_fast_path, body.experiment_key)
    if config is None or isinstance(config, bool):
        raise NotFound(f"experiment '{body.experiment_key}' not found", field="experiment_key")
    result = assign(config, body.user_id, body.attributes)
    exposed = None
    if (
        result.in_experiment
        and result.variant is not None
        and not experiments.already_exposed(config.id, body.user_id)
    ):
        await run_in_threadpool(
            experiments.record_exposure, config.id, body.user_id, result.variant
        )
        exposed = result.variant
    metrics.assignment(config.key, result.reason, time.perf_counter() - started, exposed)
    return AssignmentOut(
        experiment_key=body.experiment_key,
        user_id=body.user_id,
        in_experiment=result.in_experiment,
        variant=result.variant,
        reason=result.reason,
    )
