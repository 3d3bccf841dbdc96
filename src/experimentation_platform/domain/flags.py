"""Feature flag evaluation: off switch, ordered attribute rules, then percentage rollout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from experimentation_platform.domain.bucketing import BUCKETS, bucket
from experimentation_platform.domain.targeting import Condition, matches

__all__ = ["FlagConfig", "FlagResult", "FlagRule", "evaluate"]


@dataclass(frozen=True, slots=True)
class FlagRule:
    conditions: tuple[Condition, ...]
    enabled: bool


@dataclass(frozen=True, slots=True)
class FlagConfig:
    key: str
    enabled: bool
    rollout_percentage: float
    rules: tuple[FlagRule, ...]
    salt: str
    version: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlagConfig:
        return cls(
            key=str(data["key"]),
            enabled=bool(data["enabled"]),
            rollout_percentage=float(data["rollout_percentage"]),
            rules=tuple(
                FlagRule(
                    conditions=tuple(Condition.model_validate(c) for c in rule["conditions"]),
                    enabled=bool(rule["enabled"]),
                )
                for rule in data["rules"]
            ),
            salt=str(data["salt"]),
            version=int(data["version"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "enabled": self.enabled,
            "rollout_percentage": self.rollout_percentage,
            "rules": [
                {
                    "conditions": [c.model_dump(exclude_none=True) for c in rule.conditions],
                    "enabled": rule.enabled,
                }
                for rule in self.rules
            ],
            "salt": self.salt,
            "version": self.version,
        }


Reason = Literal["disabled", "rule_match", "rollout", "rollout_excluded"]


@dataclass(frozen=True, slots=True)
class FlagResult:
    key: str
    enabled: bool
    reason: Reason
    version: int


def evaluate(
    flag: FlagConfig, user_id: str, attributes: Mapping[str, Any] | None = None
) -> FlagResult:
    """The kill switch wins; then the first matching rule; then the rollout percentage."""
    if not flag.enabled:
        return FlagResult(flag.key, False, "disabled", flag.version)
    attrs = attributes or {}
    for rule in flag.rules:
        if matches(rule.conditions, attrs):
            return FlagResult(flag.key, rule.enabled, "rule_match", flag.version)
    threshold = round(flag.rollout_percentage * BUCKETS / 100)
    if bucket("rollout", flag.salt, user_id) < threshold:
        return FlagResult(flag.key, True, "rollout", flag.version)
    return FlagResult(flag.key, False, "rollout_excluded", flag.version)
