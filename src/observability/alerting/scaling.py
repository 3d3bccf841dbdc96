"""Shortened windows for game days and tests: every rule window, `for` duration, duration
threshold and grouping timer multiplied by one scale (0 < scale <= 1), so the same code path
detects within seconds. Renderings for Prometheus and CloudWatch always use unscaled rules.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Final

from observability.alerting.grouping import Grouping
from observability.alerting.rules import Rule, SloRule
from observability.query.model import MetricTerm, window_of, with_window

__all__ = [
    "MIN_SCALED_DURATION_THRESHOLD_S",
    "MIN_SCALED_WINDOW_S",
    "scale_grouping",
    "scale_rules",
]

# The embedded evaluator reads windows <= 1 h from RollingWindows in 5 s slots: a window shorter
# than two slots would see a fraction of one slot, so scaled windows stop at 10 s.
MIN_SCALED_WINDOW_S: Final = 10
# A scaled duration threshold must stay above what is normal for it: the shipping lag is 1-3 s
# in steady state (the shipper batches for 1 s, then one PutLogEvents), so 30 s is a backlog.
MIN_SCALED_DURATION_THRESHOLD_S: Final = 30.0


def _window(seconds: int, scale: float) -> int:
    return max(MIN_SCALED_WINDOW_S, round(seconds * scale))


def _scale_query(query: MetricTerm, scale: float) -> MetricTerm:
    window = window_of(query)
    scaled: MetricTerm = query if window is None else with_window(query, _window(window, scale))
    return scaled


def scale_rules(rules: tuple[Rule, ...], scale: float) -> tuple[Rule, ...]:
    """The rules with every window, `for` and duration threshold multiplied by `scale` (1.0
    returns them as is). Windows stop at 10 s, duration thresholds at 30 s (or their own
    value when that is lower)."""
    if scale == 1.0:
        return rules
    out: list[Rule] = []
    for rule in rules:
        if isinstance(rule, SloRule):
            windows = []
            for w in rule.windows:
                short = _window(w.short_s, scale)
                # Keep short < long (the burn-rate pair) even where both hit the floor.
                long = max(_window(w.long_s, scale), short + 5)
                windows.append(replace(w, long_s=long, short_s=short))
            out.append(
                replace(
                    rule,
                    windows=tuple(windows),
                    page_for_s=round(rule.page_for_s * scale),
                    ticket_for_s=round(rule.ticket_for_s * scale),
                )
            )
        else:
            threshold = rule.threshold
            if rule.threshold_is_duration:
                floor = min(threshold, MIN_SCALED_DURATION_THRESHOLD_S)
                threshold = max(floor, threshold * scale)
            out.append(
                replace(
                    rule,
                    expr=_scale_query(rule.expr, scale),
                    threshold=threshold,
                    for_seconds=round(rule.for_seconds * scale),
                )
            )
    return tuple(out)


def scale_grouping(grouping: Grouping, scale: float) -> Grouping:
    """Grouping timers multiplied by `scale` (a resolve would otherwise wait a full 5 minutes)."""
    if scale == 1.0:
        return grouping
    return replace(
        grouping,
        group_wait_s=max(1, round(grouping.group_wait_s * scale)),
        group_interval_s=max(1, round(grouping.group_interval_s * scale)),
        repeat_interval_s=max(1, round(grouping.repeat_interval_s * scale)),
    )
