"""Alertmanager as the fleet's router: the leader posts its alerts to Alertmanager's v2 API
(`POST /api/v2/alerts`) the way Prometheus does, and Alertmanager groups, deduplicates,
silences and notifies.

Every evaluation round re-posts each firing alert with `endsAt` a few rounds ahead (Prometheus:
4 x max(resend delay, evaluation interval)): if the poster dies, Alertmanager resolves the
alert by itself once that passes, unless a new leader re-posts it first. A resolved alert is
posted with `endsAt` = when it resolved, every round while the evaluator still remembers it,
so a lost request is made good by the next one. Alertmanager keys an alert by its label set,
so re-posting (by this leader or the next) never notifies twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from observability.alerting.state import AlertInstance
from observability.logging import get_logger

__all__ = ["AlertmanagerClient", "postable_alert"]

log = get_logger("observability.alerting")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def postable_alert(
    alert: AlertInstance,
    now: float,
    *,
    hold_s: float,
    annotations: dict[str, str],
    generator_url: str,
) -> dict[str, Any]:
    """One alert in Alertmanager's `postableAlert` shape (labels incl. alertname and
    severity; annotations incl. summary; startsAt/endsAt; generatorURL)."""
    started = alert.fired_at or alert.active_since or now
    ends = alert.resolved_at or now if alert.state == "resolved" else now + hold_s
    notes = {"summary": alert.summary or alert.name, **annotations}
    if alert.description:
        notes["description"] = alert.description
    return {
        "labels": {k: str(v) for k, v in alert.labels.items()},
        "annotations": {k: v for k, v in notes.items() if v},
        "startsAt": _iso(started),
        "endsAt": _iso(ends),
        "generatorURL": generator_url,
    }


class AlertmanagerClient:
    """Posts the evaluator's firing and resolved alerts after every round (`publish`)."""

    def __init__(
        self,
        url: str,
        *,
        hold_s: float,
        annotations: Callable[[AlertInstance], dict[str, str]] = lambda _a: {},
        generator_url: Callable[[AlertInstance], str] = lambda _a: "",
        timeout_s: float = 5.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/api/v2/alerts"
        self.hold_s = hold_s
        self._annotations = annotations
        self._generator_url = generator_url
        self._client = http_client or httpx.Client(timeout=timeout_s)
        self.posted = 0
        self.failures = 0

    def __repr__(self) -> str:  # the URL may carry basic-auth credentials
        return "AlertmanagerClient(...)"

    def alerts_to_post(self, alerts: Sequence[AlertInstance], now: float) -> list[dict[str, Any]]:
        return [
            postable_alert(
                a,
                now,
                hold_s=self.hold_s,
                annotations=self._annotations(a),
                generator_url=self._generator_url(a),
            )
            for a in alerts
            if a.state in ("firing", "resolved") and a.fired_at is not None
        ]

    def publish(self, alerts: Sequence[AlertInstance], now: float) -> None:
        """POST this round's alerts; never raises (the next round posts them again)."""
        body = self.alerts_to_post(alerts, now)
        if not body:
            return
        try:
            response = self._client.post(self.endpoint, json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self.failures += 1
            log.warning("alertmanager_post_failed", error=type(exc).__name__, alerts=len(body))
            return
        self.posted += len(body)

    def close(self) -> None:
        self._client.close()
