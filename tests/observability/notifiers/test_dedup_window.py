"""The Dispatcher de-duplicates over a window that follows the alert window scale (the platform's
EP_ALERT_WINDOW_SCALE), so a game day (scale 0.01) that fires the same alert group twice within
minutes gets both messages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from experimentation_platform.settings import load_settings
from experimentation_platform.telemetry.wiring import observability_config
from observability import NotifySettings, Observability
from observability.alerting.notifiers import Dispatcher, Notification
from observability.alerting.notifiers.factory import (
    DEDUP_WINDOW_S,
    MIN_DEDUP_WINDOW_S,
    build_dispatcher,
    dedup_window_seconds,
)
from observability.masking import Masker


@pytest.mark.parametrize(
    ("scale", "window"),
    [(1.0, 300.0), (0.1, 30.0), (0.02, 6.0), (0.01, 3.0), (0.001, MIN_DEDUP_WINDOW_S)],
)
def test_the_window_is_300_s_times_the_scale_with_a_floor(scale: float, window: float) -> None:
    assert dedup_window_seconds(scale) == pytest.approx(window)
    assert DEDUP_WINDOW_S == 300.0


def _dispatcher(scale: float) -> Dispatcher:
    return build_dispatcher(NotifySettings(), mask=Masker().mask_text, window_scale=scale)


def _low(key: str = "alert:severity=low") -> Notification:
    # low severity is routed to no receiver: what is left to observe is the de-duplication
    return Notification(key=key, status="firing", severity="low", title="t", summary="s")


def test_a_scaled_dispatcher_suppresses_an_immediate_repeat_then_lets_the_next_one_through() -> (
    None
):
    with _dispatcher(0.01) as dispatcher:
        assert dispatcher.dedup is not None
        assert dispatcher.dedup.window_seconds == MIN_DEDUP_WINDOW_S
        assert not dispatcher.dispatch(_low()).suppressed
        assert dispatcher.dispatch(_low()).suppressed  # a double send is still swallowed
        time.sleep(MIN_DEDUP_WINDOW_S + 0.2)  # a game day's minutes, scaled
        assert not dispatcher.dispatch(_low()).suppressed


def test_at_full_scale_the_window_stays_five_minutes() -> None:
    with _dispatcher(1.0) as dispatcher:
        assert dispatcher.dedup is not None
        assert dispatcher.dedup.window_seconds == 300.0
        assert not dispatcher.dispatch(_low()).suppressed
        assert dispatcher.dispatch(_low()).suppressed


def test_the_platform_dispatcher_follows_ep_alert_window_scale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EP_ALERT_WINDOW_SCALE", "0.05")
    settings = load_settings(var_dir=tmp_path, log_to_stdout=False)
    observability = Observability(observability_config(settings))
    try:
        assert observability.dispatcher.dedup is not None
        assert observability.dispatcher.dedup.window_seconds == pytest.approx(15.0)
    finally:
        observability.close()
