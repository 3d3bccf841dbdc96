"""Conversion and product events, ingested in batches of up to 1,000."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, BackgroundTasks

from experimentation_platform.api.deps import ClientKey, MetricsDep, PlatformDep
from experimentation_platform.api.schemas import EventBatch, EventsAccepted
from experimentation_platform.telemetry.names import EVENTS_INGESTED
from observability.logging import get_logger

log = get_logger("experimentation_platform.events")


def _report_ingested(count: int, conversions: int) -> None:
    # After the response: the client does not wait for bookkeeping.
    log.info(EVENTS_INGESTED.removesuffix("_total"), count=count, conversions=conversions)


router = APIRouter(prefix="/api/v1/events", tags=["events"])


@router.post("", status_code=202, response_model=EventsAccepted)
def track_events(
    body: EventBatch,
    platform: PlatformDep,
    metrics: MetricsDep,
    _: ClientKey,
    background: BackgroundTasks,
) -> EventsAccepted:
    """All events of a batch are stored, or none (an unknown experiment rejects the batch)."""
    events = [event.model_dump() for event in body.events]
    accepted = platform.events.ingest(events)
    by_experiment = Counter(e["experiment_key"] for e in events if e.get("experiment_key"))
    metrics.events(accepted, dict(by_experiment))
    conversions = sum(by_experiment.values())
    background.add_task(_report_ingested, accepted, conversions)
    return EventsAccepted(accepted=accepted)
