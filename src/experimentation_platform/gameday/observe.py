"""What the game day reads from an instance: only what an operator can see.

- `/metrics`, scraped about once a second by a `MetricsWatcher` (with the metrics token, which
  needs no database, so scrapes go on while the database is down);
- the alert state the embedded evaluator saves (`alert_instances`, what `ep alerts list` reads);
- error groups (`GET /api/v1/ops/errors`) and incident evidence
  (`GET /api/v1/ops/incidents/{alert}`), as the operations UI shows them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from observability.alerting.state import AlertInstance, StateStore

__all__ = [
    "MetricsSample",
    "MetricsWatcher",
    "alert_label",
    "alerts",
    "error_groups",
    "incident",
]

Labels = frozenset[tuple[str, str]]
_MAX_SAMPLES = 3_600  # an hour of scrapes at one a second: every scenario stays far below


@dataclass(frozen=True)
class MetricsSample:
    """One scrape of /metrics: every sample by (name, labels)."""

    at: float
    series: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str, at: float) -> MetricsSample:
        series: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return cls(at, series)

    def matching(self, name: str, **labels: str) -> Iterator[tuple[dict[str, str], float]]:
        wanted = set(labels.items())
        for (sample_name, sample_labels), value in self.series.items():
            if sample_name == name and wanted <= sample_labels:
                yield dict(sample_labels), value

    def total(self, name: str, **labels: str) -> float | None:
        """Sum of every series of `name` carrying these labels; None if there is none."""
        values = [value for _, value in self.matching(name, **labels)]
        return sum(values) if values else None


class MetricsWatcher:
    """Scrapes /metrics every `interval` seconds in a thread and keeps the samples."""

    def __init__(self, base_url: str, token: str, interval: float = 1.0) -> None:
        self._client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )
        self.interval = interval
        self.samples: list[MetricsSample] = []
        self.failures = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gameday-metrics", daemon=True)

    def start(self) -> MetricsWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._client.close()

    def scrape(self) -> MetricsSample | None:
        """One scrape now (also kept); None if /metrics did not answer."""
        try:
            response = self._client.get("/metrics")
            response.raise_for_status()
        except httpx.HTTPError:
            with self._lock:
                self.failures += 1
            return None
        sample = MetricsSample.parse(response.text, time.time())
        with self._lock:
            self.samples.append(sample)
            del self.samples[:-_MAX_SAMPLES]
        return sample

    def between(self, start: float, end: float) -> list[MetricsSample]:
        with self._lock:
            return [s for s in self.samples if start <= s.at <= end]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scrape()
            self._stop.wait(self.interval)


# -- alert state, error groups, incident evidence ------------------------------------------
def alerts(engine: Engine) -> dict[str, AlertInstance]:
    """The evaluator's saved alert state (what `ep alerts list` shows)."""
    try:
        found, _ = StateStore(engine).load()
    except Exception:  # the table appears with the evaluator's first save: nothing yet
        return {}
    return found


def alert_label(alert: AlertInstance) -> str:
    extra = {k: v for k, v in alert.labels.items() if k in ("dependency", "slo", "mount")}
    return alert.name + (f"{{{','.join(f'{k}={v}' for k, v in extra.items())}}}" if extra else "")


def error_groups(client: httpx.Client, since: float | None = None) -> list[dict[str, Any]] | None:
    """Error groups active since `since` (unix time), most frequent first; None if the
    operator API did not answer."""
    params: dict[str, Any] = {"sort": "count", "limit": 50}
    if since is not None:
        params["since"] = datetime.fromtimestamp(since, UTC).isoformat()
    try:
        response = client.get("/api/v1/ops/errors", params=params)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None
    return items


def incident(client: httpx.Client, alert: str) -> dict[str, Any] | None:
    """The instance's incident evidence for a firing alert (the /ops incident page's JSON)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        response = client.get(f"/api/v1/ops/incidents/{alert}")
        if response.status_code == 200:
            doc: dict[str, Any] = response.json()
            return doc
    return None
