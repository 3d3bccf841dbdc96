"""Assignment of a user to an experiment's variant."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from experimentation_platform.api.deps import ClientKey, PlatformDep
from experimentation_platform.api.schemas import AssignmentOut, AssignmentRequest
from experimentation_platform.domain.experiments import assign
from experimentation_platform.errors import NotFound
from observability.context import bind

router = APIRouter(prefix="/api/v1/assignments", tags=["assignments"])


@router.post("", response_model=AssignmentOut)
async def assign_user(
    body: AssignmentRequest, platform: PlatformDep, _: ClientKey
) -> AssignmentOut:
    """Deterministic and sticky; users outside targeting or allocation get
    `in_experiment: false` with the reason, not an error."""
    bind(user_id=body.user_id, experiment_key=body.experiment_key)
    experiments = platform.experiments
    # Fast path on the event loop: configuration cached in-process and a returning user
    # whose exposure is already recorded need no I/O and no thread hop.
    config = experiments.config_without_io(body.experiment_key)
    if config is False:
        _config, result = await run_in_threadpool(
            experiments.assign, body.experiment_key, body.user_id, body.attributes
        )
    else:
        if config is None or config is True:
            raise NotFound(f"experiment '{body.experiment_key}' not found", field="experiment_key")
        result = assign(config, body.user_id, body.attributes)
        if (
            result.in_experiment
            and result.variant is not None
            and not experiments.already_exposed(config.id, body.user_id)
        ):
            await run_in_threadpool(
                experiments.record_exposure, config.id, body.user_id, result.variant
            )
    return AssignmentOut(
        experiment_key=body.experiment_key,
        user_id=body.user_id,
        in_experiment=result.in_experiment,
        variant=result.variant,
        reason=result.reason,
    )
