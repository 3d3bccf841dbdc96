"""Assignment of a user to an experiment's variant."""

from __future__ import annotations

from fastapi import APIRouter

from experimentation_platform.api.deps import ClientKey, PlatformDep
from experimentation_platform.api.schemas import AssignmentOut, AssignmentRequest
from observability.context import bind

router = APIRouter(prefix="/api/v1/assignments", tags=["assignments"])


@router.post("", response_model=AssignmentOut)
def assign_user(body: AssignmentRequest, platform: PlatformDep, _: ClientKey) -> AssignmentOut:
    """Deterministic and sticky; users outside targeting or allocation get
    `in_experiment: false` with the reason, not an error."""
    bind(user_id=body.user_id, experiment_key=body.experiment_key)
    experiments = platform.experiments
    _config, result = experiments.assign(body.experiment_key, body.user_id, body.attributes)
    return AssignmentOut(
        experiment_key=body.experiment_key,
        user_id=body.user_id,
        in_experiment=result.in_experiment,
        variant=result.variant,
        reason=result.reason,
    )
