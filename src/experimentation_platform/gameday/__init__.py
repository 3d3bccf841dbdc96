"""Game days: inject a real fault into a platform instance and measure what operations see.

scenarios   what each scenario breaks, what must detect it, what evidence must name it
instance    start `ep serve` (moto and the CloudWatch proxy too) or target one; traffic
netfault    a TCP proxy that refuses or blackholes a network path for real
recorder    the local Slack/PagerDuty stand-in that records notifications
observe     what an operator sees: /metrics scrapes, alert state, error groups, evidence
judge       findings against the pre-fault baseline; was the cause named?
runner      one scenario end to end, and all of them
report      the text report and the --json lines
"""

from __future__ import annotations

from experimentation_platform.gameday.judge import Finding
from experimentation_platform.gameday.report import json_lines, render_report
from experimentation_platform.gameday.runner import (
    GameDayConfig,
    ScenarioResult,
    run_gameday,
    run_scenario,
)
from experimentation_platform.gameday.scenarios import (
    CONTROL,
    SCENARIOS,
    Requirement,
    Scenario,
    scenarios_named,
)

__all__ = [
    "CONTROL",
    "SCENARIOS",
    "Finding",
    "GameDayConfig",
    "Requirement",
    "Scenario",
    "ScenarioResult",
    "json_lines",
    "render_report",
    "run_gameday",
    "run_scenario",
    "scenarios_named",
]
