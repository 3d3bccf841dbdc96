"""Experiment rules: variants, status transitions and the assignment decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from experimentation_platform.domain.bucketing import BUCKETS, bucket, pick_variant
from experimentation_platform.domain.targeting import Condition, matches

__all__ = [
    "TRANSITIONS",
    "Assignment",
    "ExperimentConfig",
    "InvalidTransition",
    "Status",
    "assign",
    "check_transition",
]

Status = Literal["draft", "running", "paused", "completed"]
Action = Literal["start", "pause", "complete"]

# action -> (allowed current states, resulting state)
TRANSITIONS: dict[str, tuple[frozenset[str], Status]] = {
    "start": (frozenset({"draft", "paused"}), "running"),
    "pause": (frozenset({"running"}), "paused"),
    "complete": (frozenset({"running", "paused"}), "completed"),
}


class InvalidTransition(ValueError):
    def __init__(self, action: str, current: str) -> None:
        allowed = sorted(TRANSITIONS[action][0])
        super().__init__(
            f"cannot {action} an experiment that is {current}; {action} needs status "
            + " or ".join(allowed)
        )
        self.action = action
        self.current = current


def check_transition(action: str, current: str) -> Status:
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        raise InvalidTransition(action, current)
    return target


@dataclass(frozen=True, slots=True)
class ExperimentConfig:
    """What assignment needs to know, cached per experiment key."""

    id: int
    key: str
    status: str
    salt: str
    variants: tuple[tuple[str, int], ...]
    targeting: tuple[Condition, ...]
    traffic_allocation: float
    version: int

    @classmethod
    def from_row(cls, row: Any) -> ExperimentConfig:
        return cls(
            id=row.id,
            key=row.key,
            status=row.status,
            salt=row.salt,
            variants=tuple((v["key"], int(v["weight"])) for v in row.variants),
            targeting=tuple(Condition.model_validate(c) for c in row.targeting),
            traffic_allocation=float(row.traffic_allocation),
            version=row.version,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key": self.key,
            "status": self.status,
            "salt": self.salt,
            "variants": [{"key": k, "weight": w} for k, w in self.variants],
            "targeting": [c.model_dump(exclude_none=True) for c in self.targeting],
            "traffic_allocation": self.traffic_allocation,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        return cls(
            id=int(data["id"]),
            key=str(data["key"]),
            status=str(data["status"]),
            salt=str(data["salt"]),
            variants=tuple((v["key"], int(v["weight"])) for v in data["variants"]),
            targeting=tuple(Condition.model_validate(c) for c in data["targeting"]),
            traffic_allocation=float(data["traffic_allocation"]),
            version=int(data["version"]),
        )


Reason = Literal["assigned", "not_running", "targeting", "traffic_allocation"]


@dataclass(frozen=True, slots=True)
class Assignment:
    in_experiment: bool
    variant: str | None
    reason: Reason


def assign(
    config: ExperimentConfig, user_id: str, attributes: Mapping[str, Any] | None = None
) -> Assignment:
    """Decide a user's variant. Pure: no I/O, the same answer on every instance."""
    if config.status != "running":
        return Assignment(False, None, "not_running")
    if config.targeting and not matches(config.targeting, attributes or {}):
        return Assignment(False, None, "targeting")
    if config.traffic_allocation < 100.0:
        threshold = round(config.traffic_allocation * BUCKETS / 100)
        if bucket("allocation", config.salt, user_id) >= threshold:
            return Assignment(False, None, "traffic_allocation")
    variant = pick_variant(config.variants, bucket("variant", config.salt, user_id))
    return Assignment(True, variant, "assigned")


def validate_variants(variants: Sequence[Mapping[str, Any]]) -> None:
    """Raise ValueError with a precise message when variants are not usable."""
    if len(variants) < 2:
        raise ValueError("an experiment needs at least 2 variants")
    keys = [v["key"] for v in variants]
    if len(set(keys)) != len(keys):
        raise ValueError("variant keys must be unique")
    total = sum(int(v["weight"]) for v in variants)
    if total != 100:
        raise ValueError(f"variant weights must sum to 100 (they sum to {total})")
