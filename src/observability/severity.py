"""One severity scale for everything the toolkit tells a human: error groups, alert rules,
notifications and their routes. A `StrEnum`, so it compares equal to (and serialises as)
its plain spelling: ``Severity.HIGH == "high"``."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["SEVERITIES", "Severity"]


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Higher is worse; used to escalate a group, never to downgrade it silently."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: str) -> Severity:
        """The severity spelled `value` (any case); ValueError naming the accepted ones."""
        try:
            return cls(value.strip().lower())
        except (ValueError, AttributeError):
            accepted = ", ".join(s.value for s in cls)
            raise ValueError(f"severity must be one of {accepted}, got {value!r}") from None


_RANK: Final = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
SEVERITIES: Final[tuple[Severity, ...]] = tuple(Severity)
