"""Conversion and product events, ingested in batches of up to 1,000."""

from __future__ import annotations

from fastapi import APIRouter

from experimentation_platform.api.deps import ClientKey, PlatformDep
from experimentation_platform.api.schemas import EventBatch, EventsAccepted

router = APIRouter(prefix="/api/v1/events", tags=["events"])


@router.post("", status_code=202, response_model=EventsAccepted)
def track_events(body: EventBatch, platform: PlatformDep, _: ClientKey) -> EventsAccepted:
    """All events of a batch are stored, or none (an unknown experiment rejects the batch)."""
    events = [event.model_dump() for event in body.events]
    return EventsAccepted(accepted=platform.events.ingest(events))
