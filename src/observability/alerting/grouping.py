"""How firing alerts become notifications: Alertmanager-style grouping and inhibition, shared
by the embedded evaluator and the Alertmanager renderer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from observability.alerting.notifiers.base import Severity

__all__ = ["DEFAULT_INHIBIT_RULES", "Grouping", "InhibitRule"]


@dataclass(frozen=True)
class Grouping:
    """Alertmanager-style notification grouping (its defaults: 30 s / 5 m / 4 h)."""

    group_by: tuple[str, ...] = ("alertname", "service")
    group_wait_s: int = 30
    group_interval_s: int = 300
    repeat_interval_s: int = 4 * 3600


@dataclass(frozen=True)
class InhibitRule:
    """A firing alert of a source severity mutes target-severity alerts with equal labels.

    Unlike Alertmanager (where two missing labels count as equal) every `equal` label must be
    present on both alerts; the rendered Alertmanager rule adds `label=~".+"` matchers to match.
    """

    source_severities: tuple[Severity, ...] = (Severity.CRITICAL,)
    target_severities: tuple[Severity, ...] = (Severity.HIGH, Severity.MEDIUM, Severity.LOW)
    equal: tuple[str, ...] = ("inhibit_key",)

    def mutes(self, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        if source.get("severity") not in self.source_severities:
            return False
        if target.get("severity") not in self.target_severities:
            return False
        return all(
            source.get(name) is not None and source.get(name) == target.get(name)
            for name in self.equal
        )


DEFAULT_INHIBIT_RULES: tuple[InhibitRule, ...] = (InhibitRule(),)
