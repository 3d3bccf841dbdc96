"""Request and response bodies of the public API (they shape the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from experimentation_platform.domain.targeting import Condition

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
Key = Field(pattern=KEY_PATTERN, description="lowercase letters, digits, '_', '.', '-'")
UserId = Field(min_length=1, max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Variant(Strict):
    key: str = Field(pattern=KEY_PATTERN)
    weight: int = Field(ge=0, le=100, description="integer percent; all weights sum to 100")


class ExperimentCreate(Strict):
    key: str = Key
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    variants: list[Variant] = Field(min_length=2, max_length=20)
    targeting: list[Condition] = Field(default_factory=list, max_length=50)
    traffic_allocation: float = Field(default=100.0, ge=0.0, le=100.0)

    @field_validator("variants")
    @classmethod
    def _weights(cls, variants: list[Variant]) -> list[Variant]:
        total = sum(v.weight for v in variants)
        if total != 100:
            raise ValueError(f"variant weights must sum to 100 (they sum to {total})")
        if len({v.key for v in variants}) != len(variants):
            raise ValueError("variant keys must be unique")
        return variants


class ExperimentUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    variants: list[Variant] | None = Field(default=None, min_length=2, max_length=20)
    targeting: list[Condition] | None = Field(default=None, max_length=50)
    traffic_allocation: float | None = Field(default=None, ge=0.0, le=100.0)

    @field_validator("variants")
    @classmethod
    def _weights(cls, variants: list[Variant] | None) -> list[Variant] | None:
        return None if variants is None else ExperimentCreate._weights(variants)


class ExperimentOut(BaseModel):
    key: str
    name: str
    description: str
    status: Literal["draft", "running", "paused", "completed"]
    variants: list[Variant]
    targeting: list[dict[str, Any]]
    traffic_allocation: float
    version: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None


class ExperimentPage(BaseModel):
    items: list[ExperimentOut]
    total: int
    offset: int
    limit: int


class AssignmentRequest(Strict):
    experiment_key: str = Field(min_length=1, max_length=100)
    user_id: str = UserId
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=100)


class AssignmentOut(BaseModel):
    experiment_key: str
    user_id: str
    in_experiment: bool
    variant: str | None
    reason: Literal["assigned", "not_running", "targeting", "traffic_allocation"]


class FlagRuleIn(Strict):
    conditions: list[Condition] = Field(min_length=1, max_length=50)
    enabled: bool


class FlagCreate(Strict):
    key: str = Key
    description: str = Field(default="", max_length=2000)
    enabled: bool = False
    rollout_percentage: float = Field(default=0.0, ge=0.0, le=100.0)
    rules: list[FlagRuleIn] = Field(default_factory=list, max_length=50)


class FlagUpdate(Strict):
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = None
    rollout_percentage: float | None = Field(default=None, ge=0.0, le=100.0)
    rules: list[FlagRuleIn] | None = Field(default=None, max_length=50)


class FlagOut(BaseModel):
    key: str
    description: str
    enabled: bool
    rollout_percentage: float
    rules: list[dict[str, Any]]
    version: int
    created_at: datetime
    updated_at: datetime


class FlagEvaluationOut(BaseModel):
    key: str
    user_id: str
    enabled: bool
    reason: Literal["disabled", "rule_match", "rollout", "rollout_excluded"]
    version: int


class BatchEvaluationRequest(Strict):
    user_id: str = UserId
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=100)


class BatchEvaluationOut(BaseModel):
    user_id: str
    flags: dict[str, FlagEvaluationOut]


MAX_EVENTS = 1000


class EventIn(Strict):
    user_id: str = UserId
    name: str = Field(min_length=1, max_length=100)
    experiment_key: str | None = Field(default=None, min_length=1, max_length=100)
    value: float | None = Field(default=None, allow_inf_nan=False)
    timestamp: AwareDatetime | None = None


class EventBatch(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsAccepted(BaseModel):
    accepted: int


class KeyCreate(Strict):
    role: Literal["admin", "client"]
    name: str = Field(default="", max_length=100)


class KeyCreated(BaseModel):
    key_id: str
    role: str
    key: str = Field(description="shown once; store it now")
