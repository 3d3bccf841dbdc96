"""Attribute targeting: a list of conditions, all of which must hold (AND)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Condition", "Operator", "matches"]

Operator = Literal["eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "exists"]

Scalar = str | int | float | bool


class Condition(BaseModel):
    """One test on a user attribute, e.g. {"attribute": "country", "operator": "in",
    "values": ["US", "CA"]}."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attribute: str = Field(min_length=1, max_length=100)
    operator: Operator = "eq"
    value: Scalar | None = None
    values: list[Scalar] | None = Field(default=None, max_length=1000)

    @model_validator(mode="after")
    def _operands(self) -> Condition:
        if self.operator in ("in", "not_in"):
            if not self.values:
                raise ValueError(f"operator '{self.operator}' needs a non-empty 'values' list")
        elif self.operator != "exists" and self.value is None:
            raise ValueError(f"operator '{self.operator}' needs a 'value'")
        return self


def _compare(actual: Any, operator: str, expected: Any) -> bool:
    try:
        if operator == "gt":
            return bool(actual > expected)
        if operator == "gte":
            return bool(actual >= expected)
        if operator == "lt":
            return bool(actual < expected)
        return bool(actual <= expected)
    except TypeError:  # comparing a string with a number: not a match, not an error
        return False


def _holds(condition: Condition, attributes: Mapping[str, Any]) -> bool:
    present = condition.attribute in attributes
    if condition.operator == "exists":
        return present
    if not present:
        return condition.operator in ("neq", "not_in")
    actual = attributes[condition.attribute]
    op = condition.operator
    if op == "eq":
        return bool(actual == condition.value)
    if op == "neq":
        return bool(actual != condition.value)
    if op == "in":
        return actual in (condition.values or [])
    if op == "not_in":
        return actual not in (condition.values or [])
    if op == "contains":
        if isinstance(actual, str):
            return isinstance(condition.value, str) and condition.value in actual
        return isinstance(actual, list) and condition.value in actual
    return _compare(actual, op, condition.value)


def matches(conditions: Sequence[Condition], attributes: Mapping[str, Any]) -> bool:
    return all(_holds(condition, attributes) for condition in conditions)
