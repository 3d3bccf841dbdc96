"""Conversion and product events, ingested in batches of up to 1,000."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, BackgroundTasks

from experimentation_platform.api.deps import ClientKey, MetricsDep, PlatformDep
from experimentation_platform.api.schemas import EventBatch, EventsAccepted
from experimentation_platform.errors import InvalidInput
from experimentation_platform.settings import Settings
from experimentation_platform.telemetry.names import EVENTS_STORED
from observability.logging import get_logger

log = get_logger("experimentation_platform.events")


def _report_ingested(count: int, conversions: int) -> None:
    # After the response: the client does not wait for bookkeeping.
    log.info(EVENTS_STORED, count=count, conversions=conversions)


router = APIRouter(prefix="/api/v1/events", tags=["events"])


def _check_timestamps(batch: EventBatch, settings: Settings) -> None:
    """Reject a batch holding an implausible timestamp (a client clock years off, a forged
    9999-12-31 that would sit at the top of every time-sorted query forever)."""
    now = datetime.now(UTC)
    latest = now + timedelta(seconds=settings.event_max_future_seconds)
    earliest = now - timedelta(days=settings.event_max_age_days)
    for index, event in enumerate(batch.events):
        stamp = event.timestamp
        if stamp is None:
            continue
        field = f"events[{index}].timestamp"
        if stamp > latest:
            raise InvalidInput(
                f"{field}: more than {settings.event_max_future_seconds:g} s in the future "
                f"(server time {now.isoformat(timespec='seconds')})",
                field=field,
            )
        if stamp < earliest:
            raise InvalidInput(
                f"{field}: older than {settings.event_max_age_days:g} days "
                f"(server time {now.isoformat(timespec='seconds')})",
                field=field,
            )


@router.post("", status_code=202, response_model=EventsAccepted)
def track_events(
    body: EventBatch,
    platform: PlatformDep,
    metrics: MetricsDep,
    _: ClientKey,
    background: BackgroundTasks,
) -> EventsAccepted:
    """All events of a batch are stored, or none (an unknown experiment rejects the batch, as
    does a timestamp outside EP_EVENT_MAX_AGE_DAYS / EP_EVENT_MAX_FUTURE_SECONDS)."""
    _check_timestamps(body, platform.settings)
    events = [event.model_dump() for event in body.events]
    accepted = platform.events.ingest(events)
    by_variant = platform.events.conversions_by_variant(events)
    metrics.events(accepted, by_variant)
    conversions = sum(by_variant.values())
    background.add_task(_report_ingested, accepted, conversions)
    return EventsAccepted(accepted=accepted)
